"""Damaged checkpoints and errors a retry cannot fix, on real runs and real files.

One tiny run is trained once per module (two checkpoints, epochs 1 and 2); each test damages
its own copy. Errors that must come before Ray are checked in a fresh `specray` process,
where ``ray.is_initialized()`` tells whether Ray was started.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specray.config import load_config
from specray.model.checkpoint import (
    META_FILE,
    MODEL_FILE,
    CheckpointError,
    latest_checkpoint,
    load_trained_model,
)
from specray.spectra.grid import named_grid
from specray.train.trainer import RAY_SNAPSHOT_FILE, check_architecture, run_config, train
from tests.helpers import TOY_MODEL, write_toy_store

FAST = TOY_MODEL + ["train.lr=0.003", "train.batch_size=16", "train.checkpoint_every=1"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_session):
    """(store, run) of a 2-epoch run with a checkpoint after each epoch."""
    root = tmp_path_factory.mktemp("trained")
    store, run = root / "store", root / "run"
    write_toy_store(str(store), n_objects=30, epochs=2, shards=1)
    train(str(store), str(run), load_config(overrides=FAST + ["train.epochs=2"]))
    return store, run


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained run (tests damage it), and the store."""
    store, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return store, copy


def checkpoints_by_epoch(run: Path) -> dict[int, Path]:
    folders = [p for p in run.iterdir() if p.name.startswith("checkpoint_") and p.is_dir()]
    return {json.loads((path / META_FILE).read_text())["epoch"]: path for path in folders}


def truncate(path: Path) -> int:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data) // 2


def specray(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process; its last stdout line says whether Ray was started."""
    code = (
        "import sys, ray\nfrom specray.cli import main\ncode = main(sys.argv[1:])\n"
        "print('ray_initialized', ray.is_initialized())\nsys.exit(code)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_resume_skips_a_truncated_latest_checkpoint_and_moves_it_aside(run_copy, caplog):
    store, run = run_copy
    before = checkpoints_by_epoch(run)
    assert sorted(before) == [1, 2]
    damaged_size = truncate(before[2] / MODEL_FILE)
    steps_per_epoch = json.loads((before[1] / META_FILE).read_text())["step"]

    config = load_config(overrides=FAST + ["train.epochs=3"])
    with caplog.at_level(logging.INFO, logger="specray"):
        summary = train(str(store), str(run), config)

    moved = run / f"corrupt-{before[2].name}"
    assert (moved / MODEL_FILE).stat().st_size == damaged_size  # kept as it was, not deleted
    assert not before[2].exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{before[2]}/{MODEL_FILE}" in w and str(moved) in w for w in warnings)
    assert any(f"resuming from {before[1]} (epoch 1" in r.getMessage() for r in caplog.records)
    # Ray's snapshot named the moved checkpoint: it is set aside, not trusted.
    assert (run / f"stale-{RAY_SNAPSHOT_FILE}").exists()
    # Epoch 2 was trained again from epoch 1's weights; nothing repeats in the history.
    assert [entry.epoch for entry in summary.history] == [1, 2, 3]
    assert summary.final.step == 3 * steps_per_epoch
    assert json.loads((Path(summary.checkpoint) / META_FILE).read_text())["epoch"] == 3


def test_readers_fall_back_past_a_damaged_meta_json_and_name_it(run_copy, caplog):
    _, run = run_copy
    folders = checkpoints_by_epoch(run)
    (folders[2] / META_FILE).write_text('{"epoch": 2, "step": ')
    with caplog.at_level(logging.WARNING):
        _, meta, checkpoint = load_trained_model(str(run))
    assert meta.epoch == 1 and checkpoint == str(folders[1])
    assert latest_checkpoint(str(run)) == str(folders[1])
    assert any(f"{folders[2]}/{META_FILE}: damaged" in r.getMessage() for r in caplog.records)
    assert folders[2].exists()  # readers never move anything
    with pytest.raises(
        CheckpointError, match=rf"{folders[2]}/{META_FILE}: damaged, not valid JSON"
    ):
        load_trained_model(str(folders[2]))


def test_a_damaged_model_file_is_named_without_unsafe_advice(run_copy):
    _, run = run_copy
    folder = checkpoints_by_epoch(run)[1]
    truncate(folder / MODEL_FILE)
    with pytest.raises(CheckpointError) as caught:
        load_trained_model(str(folder))
    message = str(caught.value)
    assert message.startswith(f"{folder}/{MODEL_FILE}: damaged")  # "or unreadable (...)"
    assert "weights_only" not in message and "\n" not in message


def test_a_checkpoint_error_in_the_loop_is_not_retried(tmp_path):
    """Ray retries worker errors up to max_failures; a SpecrayError is stopped at once."""
    from ray.train.torch import TorchTrainer

    from specray.train.trainer import fit

    attempts = tmp_path / "attempts"

    def loop(_):
        with open(attempts, "a") as handle:
            handle.write("attempt\n")
        raise CheckpointError("run/checkpoint_x/model.pt: damaged (test)")

    config = load_config(overrides=["train.max_failures=2"])
    trainer = TorchTrainer(loop, run_config=run_config(str(tmp_path / "run"), config))
    with pytest.raises(CheckpointError, match="checkpoint_x/model.pt: damaged"):
        fit(trainer)
    assert attempts.read_text().count("attempt") == 1


def test_too_few_spectra_for_the_batch_size_fails_before_ray(tmp_path):
    store = tmp_path / "store"
    write_toy_store(str(store), n_objects=8, epochs=2, shards=1)
    result = specray(
        "train", "--data", str(store), "--out", str(tmp_path / "run"),
        *[arg for item in TOY_MODEL for arg in ("--set", item)],
        "--set", "train.batch_size=32",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in result.stderr
    # 8 objects x 2 epochs, val_fraction 0.1: count the training side as the split does.
    from specray.data.reader import object_counts, split_sizes
    from specray.data.store import open_store

    n_train, _ = split_sizes(object_counts(open_store(str(store))), 0.1)
    hint = 1 << (n_train.bit_length() - 1)
    assert (
        f"{n_train} training spectra, batch size 32: use --set train.batch_size={hint}"
        in (error[0])
    )
    assert result.stdout.strip().endswith("ray_initialized False")


def test_analyze_with_a_corrupt_checkpoint_exits_2_with_one_line(run_copy, tmp_path):
    store, run = run_copy
    for folder in checkpoints_by_epoch(run).values():
        truncate(folder / MODEL_FILE)
    result = specray(
        "analyze", "--data", str(store), "--model", str(run), "--out", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "weights_only" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"specray analyze: error: no intact checkpoint in {run}: {run}/")
    assert f"/{MODEL_FILE}: damaged" in errors[0]
    assert result.stdout.strip().endswith("ray_initialized False")


def test_the_paper_preset_fits_a_linear_grid_of_odd_length(caplog):
    grid = named_grid("linear:5000:5400.2:0.1")  # 4,003 pixels, padded to 4,096 by the store
    assert grid.n_native % 2 == 1 and grid.length == 4096
    with caplog.at_level(logging.WARNING):
        arch = check_architecture(load_config(), grid)
    assert arch["input_length"] == 4096 and len(arch["channels"]) == 15
    assert any("pads the 4096 pixels" in r.getMessage() for r in caplog.records)
