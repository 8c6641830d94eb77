"""The one configuration system: defaults, files, --set overrides, and clear errors."""

import pytest

from specray.config import (
    DEMO_OVERRIDES,
    ConfigError,
    load_config,
    parse_overrides,
    read_overrides,
)
from specray.storage import StorageError


def test_defaults_are_the_published_settings():
    config = load_config()
    assert (config.model.preset, config.loss.beta, config.loss.normalisation) == (
        "paper",
        0.3,
        "mean",
    )
    assert (config.loss.warmup_start, config.loss.warmup_end) == (5_000, 20_000)
    assert (config.train.batch_size, config.train.lr) == (32, 1e-4)
    assert config.analysis.dispersion_threshold == 0.02


def test_file_then_overrides(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("model:\n  latent_dim: 16\ntrain:\n  epochs: 7\n  use_gpu: true\n")
    config = load_config(str(path), ["train.epochs=3", "model.channels=[4, 8]", "loss.beta=0.1"])
    assert config.model.latent_dim == 16 and config.train.epochs == 3 and config.train.use_gpu
    assert config.model.channels == [4, 8] and config.loss.beta == 0.1
    assert config.model.overrides() == {"latent_dim": 16, "channels": [4, 8]}


def test_settings_from_a_pipe_and_unreadable_paths_are_named(tmp_path):
    """``--config <(...)`` hands over a pipe, which cannot seek; it must read all the same,
    and a path that cannot be read is an error naming it."""
    import os

    read_end, write_end = os.pipe()
    os.write(write_end, b"train:\n  epochs: 7\n")  # a few bytes fit in the pipe's buffer
    os.close(write_end)
    try:
        assert load_config(f"/dev/fd/{read_end}").train.epochs == 7
    finally:
        os.close(read_end)
    with pytest.raises(StorageError, match=rf"{tmp_path}: cannot be read: .*directory"):
        load_config(str(tmp_path))


def test_json_file_over_the_demo_settings(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"analysis": {"labels": ["rv"]}}')
    config = load_config(str(path), base=DEMO_OVERRIDES)  # as `specray demo --config`
    assert config.analysis.labels == ["rv"] and config.model.preset == "demo"
    assert load_config(base=DEMO_OVERRIDES).analysis.labels[:2] == ["rv", "teff"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown setting 'epoch'"),
        ("nosuch.key=1", "unknown setting 'nosuch'"),
        ("train.epochs=three", "expected a number"),
        ("train.epochs=2.5", "whole number"),
        ("train.use_gpu=1", "true or false"),
        ("train=3", "needs a mapping"),
        ("model.channels=4", "expected a list"),
        ("train.crash_once_at_epoch=x", "expected a number"),
        ("epochs", "expected key=value"),
        ("analysis.permutations=many", "expected a number.*or expected one of \\['auto'\\]"),
        ("analysis.permutations=-5", "positive number of permutations"),
        ("analysis.permutations=99.5", "whole number"),
        ("analysis.live_criterion=kl", "expected one of \\['information', 'mad'\\]"),
        ("analysis.information_threshold=-0.1", "threshold must be >= 0"),
    ],
)
def test_bad_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_round_trip_through_a_dict():
    config = load_config(overrides=["model.latent_dim=12", "tune.samples=3"])
    again = type(config).from_dict(config.to_dict())
    assert again == config


def test_parse_overrides_nests_dotted_keys():
    assert parse_overrides(["a.b.c=1", "a.d=[1, 2]", "e=x"]) == {
        "a": {"b": {"c": 1}, "d": [1, 2]},
        "e": "x",
    }


def test_permutations_auto_by_default_or_a_number():
    assert load_config().analysis.permutations == "auto"
    assert load_config(overrides=DEMO_OVERRIDES).analysis.permutations == "auto"
    assert load_config(overrides=["analysis.permutations=1919"]).analysis.permutations == 1919
    assert load_config(overrides=["analysis.permutations=auto"]).analysis.permutations == "auto"
    assert load_config(overrides=["analysis.live_criterion=mad"]).analysis.live_criterion == "mad"
    assert (
        load_config(overrides=["train.crash_once_at_epoch=null"]).train.crash_once_at_epoch is None
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("loss.normalisation=median", "loss.normalisation: expected one of ['mean', 'sum']"),
        ("analysis.fdr=bonferroni", "analysis.fdr: expected one of ['bh', 'by', 'none']"),
        ("analysis.estimator=mine", "analysis.estimator: expected one of"),
        ("tune.searcher=grid", "tune.searcher: expected one of ['random', 'optuna']"),
        ("tune.metric=loss", "tune.metric: expected one of"),
        ("model.preset=big", "model.preset: expected one of ['demo', 'paper']"),
    ],
)
def test_enumerated_choices_are_checked_when_the_config_is_loaded(override, expected):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert expected in str(error.value)


def test_a_commands_own_settings_sit_under_the_users_file_and_set(tmp_path):
    """The demo's settings are a base: a settings file overrides them, --set the file."""
    settings = tmp_path / "mine.yaml"
    settings.write_text("train:\n  epochs: 7\n  batch_size: 16\nloss:\n  beta: 0.5\n")
    config = load_config(str(settings), ["train.batch_size=8"], base=DEMO_OVERRIDES)
    assert (config.train.epochs, config.train.batch_size, config.loss.beta) == (7, 8, 0.5)
    assert config.model.preset == "demo"  # the demo's, where the user said nothing


def test_settings_for_a_checkpoint_are_merged_and_checked_before_use(tmp_path):
    settings = tmp_path / "retrain.yaml"
    settings.write_text("train:\n  finetune_epochs: 2\n  lr: 0.001\n")
    assert read_overrides(str(settings), ["train.lr=0.01"]) == {
        "train": {"finetune_epochs": 2, "lr": 0.01}
    }
    settings.write_text("train:\n  finetune_epoch: 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'finetune_epoch'"):
        read_overrides(str(settings))
    settings.write_text("- train.epochs=3\n")
    with pytest.raises(ConfigError, match="retrain.yaml: expected sections of settings"):
        read_overrides(str(settings))
    settings.write_text("")
    assert read_overrides(str(settings)) == {}


def test_demo_and_retrain_take_a_settings_file(tmp_path, capsys):
    from specray.cli import main

    settings = tmp_path / "typo.yaml"
    settings.write_text("train:\n  finetune_epoch: 2\n")
    raw, store, run = tmp_path / "raw", tmp_path / "store", tmp_path / "run"
    raw.mkdir()
    argv = ["-q", "retrain", "--raw", str(raw), "--store", str(store), "--run", str(run)]
    assert main([*argv, "--config", str(settings)]) == 2
    assert "unknown setting 'finetune_epoch'" in capsys.readouterr().err
    assert not store.exists() and not run.exists()  # refused before any work
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--config", str(settings)]) == 2
    assert "unknown setting 'finetune_epoch'" in capsys.readouterr().err
    assert not out.exists()
