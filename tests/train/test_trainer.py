"""Ray Train on CPU: learning, checkpoints, resume, crash recovery, and S3 storage."""

import json
import logging
import re

import pytest
import torch

from specray.cli import main
from specray.config import load_config
from specray.data.reader import object_counts, split_sizes
from specray.data.store import open_store
from specray.model.checkpoint import CheckpointError, latest_checkpoint, load_trained_model
from specray.model.loss import kl_weight
from specray.train.trainer import (
    TrainingSetupError,
    planned_steps,
    preflight,
    read_history,
    short_warmup,
    train,
)
from specray.train.tune import tune
from tests.helpers import TOY_MODEL, write_toy_store

pytestmark = pytest.mark.usefixtures("ray_session")

FAST = TOY_MODEL + [
    "train.lr=0.003",
    "train.batch_size=16",
    "loss.warmup_start=10",
    "loss.warmup_end=40",
]
REQUIRED = {"epoch", "step", "train_loss", "val_loss", "recon", "kl", "active_nodes",
            "data_wait_s", "step_s", "samples_per_s"}  # fmt: skip


def test_two_workers_learn_checkpoint_survive_a_crash_and_resume(tmp_path):
    store, run = str(tmp_path / "store"), str(tmp_path / "run")
    write_toy_store(store)
    config = load_config(
        overrides=FAST
        + [
            "train.epochs=3",
            "train.workers=2",
            "train.crash_once_at_epoch=1",
            "train.max_failures=1",
        ]
    )
    summary = train(store, run, config)
    history = read_history(run)
    assert [entry.epoch for entry in history] == [1, 2, 3]  # the crash repeated nothing
    assert all(set(entry.to_dict()) >= REQUIRED for entry in history)
    assert (tmp_path / "run" / ".crash-injected").exists()
    assert history[-1].val_loss < history[0].val_loss
    for entry in history:  # where the time went: waiting plus stepping fit in the epoch
        assert entry.data_wait_s >= 0 and entry.step_s > 0
        assert entry.data_wait_s + entry.step_s <= entry.seconds + 0.01
        trained = entry.samples_per_s * (entry.data_wait_s + entry.step_s)
        assert trained == pytest.approx(history[0].step * 16, rel=0.02)  # steps x batch
    steps_per_epoch = history[0].step
    assert [entry.step for entry in history] == [steps_per_epoch * k for k in (1, 2, 3)]
    model, meta, _ = load_trained_model(run)
    assert meta.epoch == 3 and meta.grid["n_native"] == 1024 and summary.final.epoch == 3
    assert model.arch.latent_dim == 8

    # Re-running the same RUN with more epochs resumes: steps continue, no epoch repeats.
    code = main(
        [
            "train",
            "--data",
            store,
            "--out",
            run,
            "--set",
            "train.epochs=4",
            "--set",
            "train.workers=2",
        ]
        + [arg for item in FAST for arg in ("--set", item)]
    )
    assert code == 0
    resumed = read_history(run)
    assert [entry.epoch for entry in resumed] == [1, 2, 3, 4]
    assert resumed[3].step == 4 * steps_per_epoch
    assert (
        json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 4
    )


def test_training_from_and_to_s3(s3_bucket):
    store, run = f"{s3_bucket}/store", f"{s3_bucket}/runs/first"
    write_toy_store(store, n_objects=30, epochs=2, shards=1)
    summary = train(store, run, load_config(overrides=FAST + ["train.epochs=1"]))
    assert summary.checkpoint.startswith(f"{run}/checkpoint_")
    assert latest_checkpoint(run) == summary.checkpoint
    meta = load_trained_model(run).meta
    assert meta.epoch == 1 and len(read_history(run)) == 1


def test_a_missing_run_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such run"):
        latest_checkpoint(str(tmp_path / "nothing"))


def _trained_weights(store: str, run: str, seed: int) -> dict:
    overrides = FAST + ["train.epochs=2", f"train.seed={seed}"]
    summary = train(store, run, load_config(overrides=overrides))
    return load_trained_model(summary.checkpoint).model.state_dict()


def test_the_same_seed_trains_the_same_model_from_a_store_of_many_shards(tmp_path):
    """Read tasks finish in any order and the shards are shuffled every epoch; with the
    seed fixing the shuffle and the blocks kept in read order, a rerun is bit-identical."""
    store = str(tmp_path / "store")
    write_toy_store(store, n_objects=40, epochs=3, shards=4)
    first = _trained_weights(store, str(tmp_path / "a"), seed=3)
    again = _trained_weights(store, str(tmp_path / "b"), seed=3)
    other = _trained_weights(store, str(tmp_path / "c"), seed=4)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_a_relative_run_folder_keeps_its_metrics_and_checkpoints_there(tmp_path, monkeypatch):
    """Ray's workers run in another folder: a relative RUN must still mean the caller's."""
    monkeypatch.chdir(tmp_path)
    write_toy_store("store", n_objects=20, epochs=2)
    summary = train("store/", "run", load_config(overrides=FAST + ["train.epochs=2"]))
    assert summary.final.epoch == 2 and summary.run == str(tmp_path / "run")
    assert [entry.epoch for entry in read_history(str(tmp_path / "run"))] == [1, 2]
    assert latest_checkpoint("run").startswith(str(tmp_path / "run"))


def test_a_run_too_short_for_its_warmup_is_warned_with_settings_that_fit(tmp_path, caplog):
    store = str(tmp_path / "store")
    write_toy_store(store)
    config = load_config(overrides=TOY_MODEL + ["train.epochs=3"])  # published warm-up
    n_train, _ = split_sizes(object_counts(open_store(store)), config.train.val_fraction)
    steps = planned_steps(n_train, config)
    with caplog.at_level(logging.WARNING, "specray.train.trainer"):
        plan = preflight(store, str(tmp_path / "run"), config)
    assert plan.steps == steps == 3 * (n_train // config.train.batch_size)
    assert f"this run has {steps:,} optimiser steps" in caplog.text
    assert "step 20,000 (loss.warmup_end)" in caplog.text
    fixes = re.findall(r"--set (\S+)", caplog.text)
    fitted = load_config(overrides=TOY_MODEL + ["train.epochs=3", *fixes])
    loss = fitted.loss
    assert kl_weight(steps, loss.warmup_start, loss.warmup_end, loss.beta) == loss.beta
    assert 0 < loss.warmup_start < loss.warmup_end < steps
    assert short_warmup(steps, fitted) is None


def test_an_empty_validation_split_is_a_warning_for_train_and_an_error_for_tune(tmp_path, caplog):
    store = str(tmp_path / "store")
    write_toy_store(store, n_objects=4, epochs=8)  # 4 stars: 5% of them is none
    config = load_config(overrides=FAST + ["train.epochs=1"])
    with caplog.at_level(logging.WARNING, "specray.train.trainer"):
        preflight(store, str(tmp_path / "run"), config)
    assert "puts none of its 32 spectra in the validation split" in caplog.text
    assert "val_loss will be NaN" in caplog.text
    with pytest.raises(TrainingSetupError, match="raise --set train.val_fraction"):
        tune(store, str(tmp_path / "search"), config)
