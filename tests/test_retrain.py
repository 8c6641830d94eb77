"""Scheduled retraining: new data, nothing new, and two retrains at once."""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from specray.data.synth_store import synthesize
from specray.locks import LockHeld, exclusive_lock
from specray.workflows.retrain import RetrainSummary, compare_analyses, retrain
from tests.conftest import ADP_FIXTURE, S1D_FIXTURE
from tests.helpers import analysis_record

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = {
    "model": {"preset": "demo", "latent_dim": 8},
    "loss": {"warmup_start": 5, "warmup_end": 20},
    "train": {"epochs": 1, "finetune_epochs": 1, "batch_size": 8, "lr": 0.002},
    "analysis": {"permutations": 99, "ci_resamples": 10, "labels": ["rv", "teff"]},
}


@pytest.mark.slow
def test_new_data_is_ingested_fine_tuned_and_compared_nothing_new_exits(tmp_path):
    raw, store, run = tmp_path / "raw", str(tmp_path / "store"), str(tmp_path / "run")
    synthesize(str(raw), n_stars=24, mean_epochs=2.0, grid="demo", fmt="fits", seed=3)
    labels = str(raw / "labels.csv")
    # A store with its own quarantine rule: later cycles must prepare new files the same way.
    new_store = {**SMALL, "ingest": {"min_median": 1.0}}
    first = retrain(str(raw), store, run, overrides=new_store, labels=labels)
    assert first.status == "retrained" and first.ingested > 10

    again = retrain(str(raw), store, run, overrides=SMALL, labels=labels)
    assert again.status.startswith("nothing new")

    for fixture in (ADP_FIXTURE, S1D_FIXTURE):  # real spectra arrive
        shutil.copy(fixture, raw)
    second = retrain(str(raw), store, run, overrides=SMALL, labels=labels)
    assert second.status == "retrained" and second.ingested == 2
    recorded = json.loads((tmp_path / "store" / "store.json").read_text())["preprocessing"]
    assert recorded["min_median"] == 1.0
    assert second.run == run  # fine-tuned the same run
    history = (tmp_path / "run" / "analysis" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    report = (tmp_path / "run" / "analysis").glob("*/report.html")
    assert any("Compared with the previous analysis" in p.read_text() for p in report)
    from specray.train.trainer import read_history

    assert [entry.epoch for entry in read_history(run)] == [1, 2]


def test_a_second_retrain_exits_while_the_first_holds_the_lock(tmp_path):
    run = tmp_path / "run"
    with exclusive_lock(str(run / ".retrain.lock"), purpose="a retrain"):
        result = retrain(str(tmp_path / "raw"), str(tmp_path / "store"), str(run))
        assert result.status.startswith("skipped") and "held by a retrain" in result.status
        assert not (tmp_path / "store").exists()  # it touched nothing
    with exclusive_lock(str(run / ".retrain.lock")):
        pass  # released, and can be taken again


def test_the_lock_is_exclusive_on_s3(s3_bucket):
    uri = f"{s3_bucket}/run/.retrain.lock"
    with exclusive_lock(uri), pytest.raises(LockHeld), exclusive_lock(uri):
        pass
    with exclusive_lock(uri):
        pass


def _race_for_lock(uri: str, ready, hold_s: float) -> tuple[float, float, bool]:
    """In a child process: meet the other racers, then try to take the lock once.

    Returns (attempt start, end of holding or of the refusal, won) in seconds since the epoch.
    """
    ready.wait()
    started = time.time()
    try:
        with exclusive_lock(uri):
            time.sleep(hold_s)
        return started, time.time(), True
    except LockHeld:
        return started, time.time(), False


def _race(uri: str, racers: int = 4, hold_s: float = 3.0) -> list[tuple[float, float, bool]]:
    """``racers`` processes released together try to take ``uri`` once each."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(racers) as pool:
        ready = manager.Barrier(racers)
        pending = [pool.apply_async(_race_for_lock, (uri, ready, hold_s)) for _ in range(racers)]
        return [result.get(timeout=120) for result in pending]


def _assert_exclusive(attempts: list[tuple[float, float, bool]]) -> None:
    """Holders never overlap, and every refused racer tried while someone held the lock.

    A racer slowed by a busy machine may legitimately win after the first holder released,
    so the test checks the lock's promise, not a fixed count of winners.
    """
    held = sorted((start, end) for start, end, won in attempts if won)
    assert held, "nobody took a free lock"
    for (_, first_end), (second_start, _) in zip(held, held[1:], strict=False):
        assert first_end <= second_start + 0.5, f"two holders at once: {held}"
    refused = [(start, end) for start, end, won in attempts if not won]
    for start, end in refused:
        assert any(start <= hold_end and end >= hold_start for hold_start, hold_end in held), (
            f"refused at {start:.2f}-{end:.2f} while nobody held the lock: {held}"
        )
    assert refused, "racers released together should not all win in turn"


def test_processes_racing_for_the_lock_one_wins_locally(tmp_path):
    _assert_exclusive(_race(str(tmp_path / "run" / ".retrain.lock")))
    assert not (tmp_path / "run" / ".retrain.lock").exists()


def test_processes_racing_for_the_lock_one_wins_on_s3(s3_bucket):
    _assert_exclusive(_race(f"{s3_bucket}/run/.retrain.lock"))


@pytest.mark.slow
def test_two_scheduled_retrains_at_once_one_runs_the_other_exits(tmp_path, ray_session):
    raw, store, run = tmp_path / "raw", tmp_path / "store", tmp_path / "run"
    synthesize(str(raw), n_stars=12, mean_epochs=2.0, grid="demo", fmt="fits", seed=5)
    settings = [f"{section}.{key}={json.dumps(value)}"
                for section, values in SMALL.items() for key, value in values.items()]  # fmt: skip
    command = [sys.executable, "-m", "specray.cli", "retrain", "--raw", str(raw),
               "--store", str(store), "--run", str(run), "--labels", str(raw / "labels.csv")]  # fmt: skip
    command += [arg for setting in settings for arg in ("--set", setting)]
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    pair = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [process.communicate(timeout=600)[0] for process in pair]
    assert [process.returncode for process in pair] == [0, 0]
    summaries = [
        line for out in outputs for line in out.splitlines() if line.startswith("retrain:")
    ]
    outcomes = sorted(line.split()[1] for line in summaries)
    assert outcomes == ["ingested", "skipped,"], outputs
    manifest = [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]
    sources = [row["source"] for row in manifest]
    assert len(sources) == len(set(sources)) == len(list(raw.glob("*.fits")))
    assert len((run / "analysis" / "history.jsonl").read_text().splitlines()) == 1
    assert not (run / ".retrain.lock").exists()


def test_compare_analyses_reports_node_changes_and_new_anomalies():
    before = analysis_record(
        label_nodes={"rv": {"node": 3, "mi": 1.2}, "teff": None},
        anomalies={"top": [{"id": "a"}, {"id": "b"}]},
    )
    now = analysis_record(
        label_nodes={"rv": {"node": 5, "mi": 1.5}, "teff": {"node": 2, "mi": 0.7}},
        anomalies={"top": [{"id": "b"}, {"id": "c"}]},
    )
    comparison = compare_analyses(before, now)
    assert comparison.labels["rv"] == {
        "node_before": 3,
        "node_now": 5,
        "mi_before": 1.2,
        "mi_now": 1.5,
    }
    assert comparison.labels["teff"]["node_before"] is None
    assert comparison.new_anomalies == ["c"]
    assert compare_analyses(None, now).new_anomalies == ["b", "c"]
    summary = RetrainSummary("retrained", 4, "run/", "analysis/", comparison).summary()
    assert "  rv: node 3 (1.20 nats) -> node 5 (1.50 nats)\n" in summary
    assert "  teff: no named node -> node 2 (0.70 nats)\n" in summary
    assert "  new anomalies: 1: c\n" in summary
    many = replace(comparison, new_anomalies=[f"id{i}" for i in range(12)])
    assert (
        "new anomalies: 12: id0, id1, id2, id3, id4, ...\n"
        in RetrainSummary("retrained", 4, "run/", "analysis/", many).summary()
    )
