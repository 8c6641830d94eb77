"""What a person sees: specray's own progress on stderr, results on stdout, Ray's messages
in a log file unless --verbose."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specray import progress
from specray.cli import main
from specray.spectra.grid import named_grid
from tests.helpers import TOY_GRID, TOY_MODEL, toy_spectra, write_linear_fits, write_toy_store

RAY_NOISE = re.compile(
    r"logging_progress|Running Dataset|streaming_executor|\((RayTrainWorker|TrainController|"
    r"SplitCoordinator|DatasetManager|PlacementGroupCleaner) pid="
)
"""Lines Ray itself prints: Data's progress tables, its actors' forwarded output."""


# --------------------------------------------------------------------------- the renderer


def test_the_line_has_percentage_bar_counts_rate_eta_and_fields():
    line = progress.format_line("train", 1530, 3640, "steps", 51.3, {"loss": 0.123456})
    assert line.startswith("train   42% |########            |")
    assert "1,530/3,640 steps" in line and "51.3 steps/s" in line
    assert "ETA 41 s" in line  # (3640 - 1530) / 51.3 = 41.1 s
    assert line.endswith("loss 0.1235")
    assert "ETA" not in progress.format_line("encode", 10, None, "spectra", 5.0, {})


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (192, "3 min 12 s"), (7500, "2 h 05 min")]
)
def test_durations_read_naturally(seconds, text):
    assert progress.format_duration(seconds) == text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stage_redraws_in_place_on_a_terminal_and_ends_with_one_line(monkeypatch):
    monkeypatch.setattr(progress, "REDRAW_S", 0.01)
    progress.enable()
    try:
        terminal = _Terminal()
        with progress.Progress("ingest", 4, "files", stream=terminal) as shown:
            for _ in range(4):
                shown.advance(1)
                __import__("time").sleep(0.03)
    finally:
        progress.enable(False)
    text = terminal.getvalue()
    assert "\r\033[K" in text and "/4 files" in text  # redrawn in place
    assert text.splitlines()[-1].endswith("") and re.search(r"ingest: 4 files in \d+ s", text)
    assert text.endswith("\n") and text.count("\n") == 1  # only the closing line is a line


def test_a_stage_over_within_a_second_claims_no_rate():
    progress.enable()
    try:
        out = io.StringIO()
        with progress.Progress("tasks", 21, "tasks", stream=out) as shown:
            shown.advance(21)
    finally:
        progress.enable(False)
    assert out.getvalue() == "tasks: 21 tasks in 0 s\n"


def test_progress_is_silent_unless_enabled():
    quiet = io.StringIO()
    with progress.Progress("ingest", 2, "files", stream=quiet) as shown:
        shown.advance(2)
    assert quiet.getvalue() == "" and shown.tally is None


def test_remote_workers_report_through_the_tally(ray_session):
    import ray

    @ray.remote
    def work(tally, n):
        for _ in range(n - 1):
            progress.report(tally, 1, loss=0.5)
        progress.report(tally, 1, message="chunk done")  # as the trainer's epoch lines

    progress.enable()
    try:
        out = io.StringIO()
        with progress.Progress("tasks", 30, "items", remote=True, stream=out) as shown:
            ray.get([work.remote(shown.tally, 10) for _ in range(3)])
    finally:
        progress.enable(False)
    text = out.getvalue()
    assert text.count("chunk done\n") == 3
    assert re.search(r"tasks: 30 items in \d+ s", text)


# --------------------------------------------------------------------------- the commands


def _fits_folder(folder: Path, n: int = 6) -> None:
    grid = named_grid(TOY_GRID)
    folder.mkdir()
    flux = 100.0 * toy_spectra(np.zeros(n), np.full(n, 5000.0), grid)
    flux += np.random.default_rng(0).normal(0, 1.0, flux.shape)
    for i in range(n):
        write_linear_fits(folder / f"s{i}.fits", grid, flux[i], f"S{i}")


def test_ingest_shows_its_files_and_q_after_the_subcommand_silences_it(
    tmp_path, capsys, ray_session
):
    _fits_folder(tmp_path / "raw")
    assert (
        main(["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "a"), "--grid", TOY_GRID])
        == 0
    )
    captured = capsys.readouterr()
    assert re.search(r"ingest: 6 files in \d+ s", captured.err)
    assert "ingested 6" in captured.out and "ingest:" not in captured.out
    command = ["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "b"), "--grid", TOY_GRID]
    assert main([*command, "-q"]) == 0
    assert "ingest:" not in capsys.readouterr().err


def _specray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed command line in a fresh process (its own Ray), as a user runs it."""
    env = {**os.environ, "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "specray.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_prints_its_own_progress_and_keeps_rays_messages_in_a_file(tmp_path):
    write_toy_store(str(tmp_path / "store"), n_objects=20, epochs=2, shards=1)
    settings = [*TOY_MODEL, "train.epochs=2", "train.batch_size=8", "train.log_every=1"]
    overrides = [item for setting in settings for item in ("--set", setting)]
    quiet = _specray("train", "--data", "store", "--out", "run", *overrides, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("trained 2 epochs") and quiet.stdout.count("\n") == 1
    assert not RAY_NOISE.search(quiet.stderr), quiet.stderr
    assert re.search(r"^epoch 2/2 step \d+ train_loss", quiet.stderr, re.MULTILINE)
    assert re.search(r"^train: \d+ steps in", quiet.stderr, re.MULTILINE)
    (log_file,) = (tmp_path / "run" / "logs").glob("train-*.log")
    assert str(log_file) in quiet.stderr  # the user is told where Ray's messages went
    assert "Dataset" in log_file.read_text()  # Ray Data's own lines are kept there

    loud = _specray(
        "train", "--data", "store", "--out", "run2", *overrides, "--verbose", cwd=tmp_path
    )
    assert loud.returncode == 0, loud.stderr
    assert RAY_NOISE.search(loud.stderr)  # --verbose: Ray's own output as before
    assert not (tmp_path / "run2" / "logs").exists()


def test_ingest_and_synth_read_their_settings_from_a_file(tmp_path, capsys, ray_session):
    """One configuration system: ingest.* and synth.* come from --config, an option on the
    command line wins over the file, and store.json records what was used."""
    settings = tmp_path / "survey.yaml"
    settings.write_text(
        f"ingest:\n  grid: '{TOY_GRID}'\n  min_snr: 3\n  min_coverage: 0.4\n"
        "synth:\n  stars: 2\n  visits: 1\n  grid: demo\n  seed: 4\n"
    )
    _fits_folder(tmp_path / "raw")
    store = tmp_path / "store"
    argv = ["-q", "ingest", str(tmp_path / "raw"), "--out", str(store)]
    assert main([*argv, "--config", str(settings), "--min-snr", "4"]) == 0
    assert "ingested 6" in capsys.readouterr().out
    descriptor = json.loads((store / "store.json").read_text())
    assert descriptor["grid"]["name"] == TOY_GRID
    assert descriptor["preprocessing"]["min_snr"] == 4.0  # the option, over the file's 3
    assert descriptor["preprocessing"]["min_coverage"] == 0.4  # the file's

    survey = tmp_path / "survey"
    assert main(["-q", "synth", "--out", str(survey), "--config", str(settings)]) == 0
    printed = capsys.readouterr().out
    assert "2 stars" in printed, printed
