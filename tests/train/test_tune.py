"""Ray Tune search: ASHA early stopping, tune.json, best-trial choice, resources, resume."""

import logging
import math
import re
import time

import pytest

from specray.config import ConfigError, load_config
from specray.data.store import open_store
from specray.model.checkpoint import load_trained_model
from specray.train.trainer import read_history
from specray.train.tune import (
    EARLY_STOPPED,
    TuneSetupError,
    check_tune_config,
    comparable_losses,
    max_concurrent_trials,
    read_results,
    select_best,
    tune,
)
from tests.helpers import TOY_MODEL, write_toy_store

FAST = TOY_MODEL + [
    "train.lr=0.003",
    "train.batch_size=16",
    "loss.warmup_start=10",
    "loss.warmup_end=40",
]


def _row(trial_id, val_loss, nodes, status="TERMINATED"):
    return {"trial_id": trial_id, "val_loss": val_loss, "active_nodes": nodes, "status": status}


def test_best_is_lowest_loss_or_fewest_nodes_within_tolerance():
    rows = [
        _row("a", 1.00, 12),
        _row("b", 1.04, 5),
        _row("c", 1.08, 3),
        _row("d", 0.50, 1, status=EARLY_STOPPED),  # stopped early: its loss is from epoch 1
        _row("e", None, 0, status="ERROR"),
        _row("f", math.nan, 0),
    ]
    assert select_best(rows)["trial_id"] == "a"
    assert select_best(rows, prefer_fewest_nodes_within=0.05)["trial_id"] == "b"
    assert select_best(rows, prefer_fewest_nodes_within=0.10)["trial_id"] == "c"
    assert select_best(rows, prefer_fewest_nodes_within=0.0)["trial_id"] == "a"
    # Ties in node count go to the lower loss.
    tied = [_row("x", 1.02, 4), _row("y", 1.01, 4), _row("z", 1.00, 9)]
    assert select_best(tied, prefer_fewest_nodes_within=0.05)["trial_id"] == "y"
    # With no finished trial, the early-stopped ones are all there is.
    early = [_row("p", 2.0, 3, EARLY_STOPPED), _row("q", 1.5, 6, EARLY_STOPPED)]
    assert select_best(early)["trial_id"] == "q"
    assert select_best([_row("e", None, 0, "ERROR")]) is None
    assert select_best([_row("r", 3.0, 2), _row("s", 2.0, 9)], metric="val_loss")["trial_id"] == "s"


def test_concurrency_comes_from_the_limiting_resource():
    cpu = load_config(overrides=["train.workers=2", "train.cpus_per_worker=1"])
    assert max_concurrent_trials(cpu, {"CPU": 8}) == 2  # 8 // (2 x 1 + 1 for the driver)
    assert max_concurrent_trials(cpu, {"CPU": 2}) == 1  # never fewer than one
    gpu = load_config(overrides=["train.workers=2", "train.use_gpu=true"])
    assert max_concurrent_trials(gpu, {"CPU": 64, "GPU": 8}) == 4
    assert max_concurrent_trials(gpu, {"CPU": 64, "GPU": 0}) == 1  # autoscaler: none yet
    assert max_concurrent_trials(gpu, {"CPU": 4, "GPU": 8}) == 1  # CPUs are the limit
    fixed = load_config(overrides=["tune.max_concurrent=3"])
    assert max_concurrent_trials(fixed, {"CPU": 1}) == 3


def test_sum_normalisation_losses_are_put_in_mean_units():
    # "sum": L1 summed over 1,024 pixels, KL summed over 8 nodes, KL weight 0.5.
    entry = {"val_loss": 512.0 + 0.5 * 16.0, "val_recon": 512.0, "val_kl": 16.0}
    losses = comparable_losses(entry, "sum", pixels=1024, latent_dim=8)
    assert losses["val_recon"] == pytest.approx(0.5)
    assert losses["val_loss"] == pytest.approx(0.5 + 0.5 * 2.0)
    mean = {"val_loss": 0.7, "val_recon": 0.6, "val_kl": 0.2}
    assert comparable_losses(mean, "mean", 1024, 8) == {"val_loss": 0.7, "val_recon": 0.6}
    assert comparable_losses({"val_loss": math.nan}, "mean", 1024, 8)["val_loss"] is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("tune.beta_min=0", "beta_min"),
        ("tune.normalisations=[median]", "normalisations"),
        ("tune.grace_epochs=9", "grace_epochs"),
        ("tune.latent_dims=[]", "latent_dims"),
    ],
)
def test_impossible_searches_are_refused_before_ray_starts(override, message):
    with pytest.raises(TuneSetupError, match=message):
        check_tune_config(load_config(overrides=["train.epochs=3", override]))


@pytest.mark.parametrize("override", ["tune.searcher=grid", "tune.metric=accuracy"])
def test_unknown_search_choices_are_refused_when_the_config_is_loaded(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: expected one of"):
        load_config(overrides=["train.epochs=3", override])


def test_optuna_searcher_needs_the_optional_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a)
    )
    from specray.train import tune as tune_module

    with pytest.raises(TuneSetupError, match=r"specray\[tune\]"):
        tune_module._searcher(load_config(overrides=["tune.searcher=optuna"]), 1)


def _placement_groups_in_use(ray) -> list[str]:
    table = ray.util.placement_group_table()
    return [pg_id for pg_id, pg in table.items() if pg["state"] not in ("REMOVED",)]


def test_search_stops_poor_trials_records_them_and_resumes(
    ray_session, tmp_path, caplog, capsys, progress_shown
):
    caplog.set_level(logging.INFO, logger="specray.train.tune")
    store, out = str(tmp_path / "store"), str(tmp_path / "search")
    write_toy_store(store, shards=1)  # one file: the same spectrum order in every trial
    pixels = open_store(store).grid.length
    config = load_config(
        overrides=FAST
        + [
            "train.epochs=3",
            "train.crash_once_at_epoch=2",  # every run dies once in epoch 3: an interruption
            "train.max_failures=0",
            "tune.samples=4",
            "tune.latent_dims=[4, 8]",
            "tune.grace_epochs=1",
            "tune.seed=0",
        ]
    )
    # 4 logical CPUs: 2 trials at once (each: 1 worker CPU + 1 left for its driver and reads).
    assert max_concurrent_trials(config) == 2

    first = tune(store, out, config)
    assert len(first.trials) == 4
    ids = [trial["trial_id"] for trial in first.trials]
    histories = {trial["trial_id"]: read_history(trial["run"]) for trial in first.trials}
    # tune.seed=0 draws latent sizes [8, 4, 4, 8] in trial order. Until the KL warm-up starts
    # (step 10 = the end of epoch 1) a trial's loss depends only on its latent size (same
    # seed, same data order), and the 4-node network is worse at epoch 1. With two trials at
    # a time, trials[2] starts only after trials[0] or trials[1] has ended, i.e. after both
    # reported epoch 1, so ASHA must stop it at the grace epoch.
    assert [trial["config"]["latent_dim"] for trial in first.trials] == [8, 4, 4, 8]
    at_grace = {
        trial["trial_id"]: comparable_losses(
            histories[trial["trial_id"]][0].as_metrics(),
            trial["config"]["normalisation"],
            pixels,
            trial["config"]["latent_dim"],
        )["val_loss"]
        for trial in first.trials
    }
    by_size = {
        d: [at_grace[t["trial_id"]] for t in first.trials if t["config"]["latent_dim"] == d]
        for d in (4, 8)
    }
    assert min(by_size[4]) > max(by_size[8]), f"premise of this test: {by_size}"
    third = first.trials[2]
    assert third["status"] == EARLY_STOPPED and third["stopped_at_epoch"] == 1
    crashed = [trial for trial in first.trials if trial["status"] == "ERROR"]
    assert crashed, "the runs that ASHA let go on should have died in epoch 3"
    assert all(trial["epochs"] == 2 and trial["checkpoint"] for trial in crashed)
    shown = capsys.readouterr().err  # one line per trial and a count of them all
    assert re.search(r"^tune: 4 trials in ", shown, re.MULTILINE), shown
    assert f"trial {third['trial_id']} stopped early by ASHA after 1 of 3 epochs" in shown
    assert all(f"trial {trial['trial_id']} failed" in shown for trial in crashed), shown
    for trial in first.trials:
        assert set(trial["config"]) >= {"latent_dim", "beta", "normalisation"}
        assert 0.01 <= trial["config"]["beta"] <= 3.0

    # The same DIR again: the interrupted trials continue from their checkpoints; the
    # early-stopped ones are not run again.
    started = time.monotonic()
    second = tune(store, out, config)
    resumed_in = time.monotonic() - started
    assert "resuming the search" in caplog.text
    shown = capsys.readouterr().err  # only the resumed trials run, and finish
    assert re.search(rf"^tune: {len(crashed)} trials in ", shown, re.MULTILINE), shown
    assert all(f"trial {t['trial_id']} finished 3 epochs" in shown for t in crashed), shown
    assert [trial["trial_id"] for trial in second.trials] == ids
    for before, after in zip(first.trials, second.trials, strict=True):
        history = read_history(after["run"])
        if before["status"] == "ERROR":
            assert after["status"] == "TERMINATED" and after["epochs"] == 3
            assert [entry.epoch for entry in history] == [1, 2, 3]
            assert history[:2] == histories[before["trial_id"]]  # epochs 1-2 not repeated
        else:
            assert after["status"] == before["status"]
            assert history == histories[before["trial_id"]]  # untouched
    finished = [trial for trial in second.trials if trial["status"] == "TERMINATED"]
    assert second.best["trial_id"] == min(finished, key=lambda t: t["val_loss"])["trial_id"]

    document = read_results(out)
    assert [trial["trial_id"] for trial in document.trials] == ids
    assert document.best == second.best and document.max_epochs == 3
    model, meta, _ = load_trained_model(document.best["checkpoint"])
    assert meta.epoch == 3
    assert model.arch.latent_dim == document.best["config"]["latent_dim"]
    assert meta.config["loss"]["beta"] == pytest.approx(document.best["config"]["beta"])
    assert (tmp_path / "search" / "tune.png").read_bytes()[:4] == b"\x89PNG"
    assert document.best["checkpoint"] in second.summary()

    # No trial left its workers' resources behind (that would starve later trials).
    deadline = time.monotonic() + 60
    while _placement_groups_in_use(ray_session) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _placement_groups_in_use(ray_session)
    print(f"resume took {resumed_in:.0f} s")
