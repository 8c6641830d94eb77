"""Exit code 2 and one line naming the problem, for the mistakes a user makes first.

Each case drives the real CLI; S3 cases use the moto server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from specray.cli import main
from tests.analysis.test_analyze import planted_table
from tests.conftest import ADP_FIXTURE
from tests.helpers import write_toy_store


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Exit code and the one line written to stderr."""
    code = main(["-q", *args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return code, err


@pytest.fixture
def raw_folder(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(ADP_FIXTURE, folder)
    return folder


def test_missing_aws_credentials_name_the_variables_to_set(s3_bucket, tmp_path):
    # A fresh process without credentials: fsspec and botocore cache them per process.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=os.environ["AWS_ENDPOINT_URL"],
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    command = [sys.executable, "-m", "specray.cli", "-q", "ingest", f"{s3_bucket}/raw"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "store")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"{s3_bucket}/raw: no AWS credentials found" in line
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line


def test_a_missing_bucket_is_named_as_input_and_as_output(s3_endpoint, raw_folder, capsys):
    store = str(raw_folder.parent / "store")
    code, err = run_cli(capsys, "ingest", "s3://no-such-bucket-c1/raw", "--out", store)
    assert code == 2 and "bucket 'no-such-bucket-c1' does not exist" in err
    code, err = run_cli(capsys, "ingest", str(raw_folder), "--out", "s3://no-such-bucket-c2/s")
    assert code == 2 and "s3://no-such-bucket-c2/s/" in err
    assert "bucket 'no-such-bucket-c2' does not exist" in err


def test_an_existing_bucket_passes_the_check(s3_bucket):
    from specray import storage

    storage.atomic_write_text(f"{s3_bucket}/a/b.txt", "x")
    assert storage.read_text(f"{s3_bucket}/a/b.txt") == "x"


@pytest.mark.parametrize(
    ("grid", "problem"),
    [
        ("linear:4000:7000:0", "STEP must be > 0 A, got 0"),
        ("linear:4000:7000:-0.1", "STEP must be > 0 A, got -0.1"),
        ("linear:7000:4000:0.1", "STOP 4000 must exceed START 7000"),
        ("linear:4000:nan:0.1", "START, STOP and STEP must be finite"),
    ],
)
def test_an_impossible_grid_is_refused_before_anything_is_written(
    raw_folder, capsys, grid, problem
):
    store = raw_folder.parent / "store"
    code, err = run_cli(capsys, "ingest", str(raw_folder), "--out", str(store), "--grid", grid)
    assert code == 2 and f"grid '{grid}': {problem}" in err
    assert not store.exists()


def test_analyze_with_a_mistyped_label_fails_and_lists_the_labels_there_are(tmp_path, capsys):
    latents = tmp_path / "latents.parquet"
    planted_table(latents)
    out = tmp_path / "analysis"
    code, err = run_cli(
        capsys, "analyze", "--latents", str(latents), "--out", str(out), "--labels", "tef"
    )
    assert code == 2
    assert "'tef' is not in the data" in err
    assert "Labels with values: rv, teff, logg, snr" in err
    assert not (out / "analysis.json").exists()


def damage(path) -> None:
    """Overwrite a file with bytes that are neither JSON nor Parquet (a torn copy)."""
    path.write_bytes(b"\x00garbage, not the file that was here")


def test_a_damaged_store_descriptor_is_named(tmp_path, capsys):
    store = tmp_path / "store"
    write_toy_store(str(store), n_objects=4, epochs=1, shards=1, format_version=1)
    damage(store / "store.json")
    code, err = run_cli(capsys, "migrate", str(store))
    assert code == 2
    assert f"{store}/store.json: damaged, not valid JSON" in err


def test_a_damaged_shard_is_named(tmp_path, capsys):
    store = tmp_path / "store"
    write_toy_store(str(store), n_objects=4, epochs=1, shards=1, format_version=1)
    (shard,) = (store / "shards").glob("*.parquet")
    damage(shard)
    code, err = run_cli(capsys, "migrate", str(store))
    assert code == 2
    assert f"{shard}: damaged or not a Parquet file" in err


@pytest.mark.parametrize(("name", "kind"), [("bad.yaml", "YAML"), ("bad.json", "JSON")])
def test_a_settings_file_that_does_not_parse_is_named(tmp_path, capsys, name, kind):
    settings = tmp_path / name
    settings.write_text("train: {epochs: [1,\n")
    code, err = run_cli(capsys, "config", "--config", str(settings))
    assert code == 2
    assert f"{settings}: not valid {kind}" in err


def test_verbose_shows_the_chain_behind_a_user_error(raw_folder, capsys):
    store = raw_folder.parent / "store"
    code = main(["-q", "-v", "ingest", str(raw_folder), "--out", str(store), "--grid", "linear:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("specray ingest: error: ") and "grid 'linear:1'" in last


@pytest.mark.parametrize("bug", [KeyError("mu"), ValueError("operands could not be broadcast")])
def test_a_bug_is_not_dressed_as_a_user_error(tmp_path, monkeypatch, bug):
    """A KeyError or a builtin ValueError from inside specray is a bug: it must reach the
    terminal with its traceback, not as a one-line 'error:' that hides where it came from."""

    def broken_migrate(*args, **kwargs):
        raise bug

    monkeypatch.setattr("specray.data.migrate.migrate", broken_migrate)
    with pytest.raises(type(bug)):
        main(["-q", "migrate", str(tmp_path / "store")])
