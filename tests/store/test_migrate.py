"""`specray migrate`: a format-1 store rewritten to format 2 with nothing lost or doubled,
idempotent, on local paths and S3, and finished by a rerun after a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from specray import schema, storage
from specray.cli import main
from specray.data.migrate import migrate
from specray.data.shards import add_native_spectra
from specray.data.store import SHARDS_DIR, open_or_create_store, open_store
from specray.spectra.grid import named_grid
from tests.helpers import plain_rows, write_toy_store


def shard_files(uri: str) -> set[str]:
    """Names of the Parquet files under ``<store>/shards`` (a kill may leave a temporary
    file of an unfinished atomic write, which is not a shard)."""
    fs, path = storage.filesystem(storage.join(uri, SHARDS_DIR))
    names = {os.path.basename(name) for name in fs.ls(path, detail=False)}
    return {name for name in names if name.endswith(".parquet")}


def assert_same_spectra(before: dict, uri: str) -> None:
    after = plain_rows(uri)  # raises if an id is in two shards
    assert sorted(after) == sorted(before)
    for spectrum_id, (flux, mask) in before.items():
        assert np.array_equal(after[spectrum_id][0].view(np.uint16), flux.view(np.uint16))
        assert np.array_equal(after[spectrum_id][1], mask)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_migrate_rewrites_a_v1_store_once(where, tmp_path, s3_bucket):
    uri = f"{s3_bucket}/store" if where == "s3" else str(tmp_path / "store")
    write_toy_store(uri, n_objects=10, shards=3, format_version=1)
    before = plain_rows(uri)
    manifest_before = open_store(uri).manifest

    report = migrate(uri)
    assert (report.rewritten, report.reused, report.spectra, report.removed) == (3, 0, 30, 3)
    store = open_store(uri)
    assert store.format_version == 2
    for shard in store.shard_uris():
        fs, path = storage.arrow_filesystem(shard)
        assert schema.shard_format(pq.read_schema(path, filesystem=fs)) == 2
    assert shard_files(uri) == store.shard_names() and len(store.shard_names()) == 3
    assert [e.id for e in store.manifest] == [e.id for e in manifest_before]
    assert_same_spectra(before, uri)

    files = shard_files(uri)
    again = migrate(uri)
    assert (again.rewritten, again.reused, again.removed) == (0, 0, 0)
    assert "nothing to do" in again.summary()
    assert shard_files(uri) == files


def test_migrate_cli_and_a_store_that_is_already_v2(tmp_path, capsys):
    uri = str(tmp_path / "store")
    write_toy_store(uri, n_objects=4, shards=2)
    files = shard_files(uri)
    assert main(["migrate", uri]) == 0
    assert "already in store format 2" in capsys.readouterr().out
    assert shard_files(uri) == files
    assert main(["migrate", str(tmp_path / "nothing-here")]) == 2
    assert "not a specray store" in capsys.readouterr().err


def _many_shard_store(uri: str, shards: int) -> None:
    """A format-1 store on the demo grid (16,384 pixels) of distinct noisy spectra, in
    ``shards`` shards: enough work that a migration is still running when it is killed."""
    grid = named_grid("demo")
    store = open_or_create_store(uri, grid, format_version=1)
    n = 4 * shards
    rng = np.random.default_rng(5)
    flux = rng.normal(1.0, 0.05, (n, grid.n_native)).astype(np.float32)
    ids = [f"S{i:04d}" for i in range(n)]
    objects = np.array([f"OBJ{i // 2:03d}" for i in range(n)])
    add_native_spectra(store, ids, objects, flux, {"rv": rng.normal(0, 50, n)}, "many", shards)


def test_migrate_killed_mid_way_then_rerun_loses_and_doubles_nothing(tmp_path):
    uri = str(tmp_path / "store")
    _many_shard_store(uri, shards=60)
    before = plain_rows(uri)
    command = [sys.executable, "-m", "specray.cli", "migrate", uri]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # the first shard is rewritten: kill it mid-way
        if "shard 2/60" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed = open_store(uri)
    assert killed.format_version == 1  # nothing committed: readers still see format 1
    written = {name for name in shard_files(uri) if name.endswith(".v2.parquet")}
    assert 2 <= len(written) < 60
    assert_same_spectra(before, uri)

    report = migrate(uri)
    assert report.reused == len(written) and report.rewritten == 60 - len(written)
    assert report.spectra == 240
    store = open_store(uri)
    assert store.format_version == 2
    assert shard_files(uri) == store.shard_names()
    assert all(name.endswith(".v2.parquet") for name in store.shard_names())
    assert_same_spectra(before, uri)
    assert migrate(uri).rewritten == 0
