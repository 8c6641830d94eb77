"""Nothing lost or mixed up: path spellings, concurrent ingests, retried and changed inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from specray import schema, storage
from specray.data.ingest import ingest
from specray.data.records import ManifestEntry
from specray.data.store import LOCK_FILE, open_store
from specray.locks import exclusive_lock
from specray.spectra.fits import write_adp
from specray.spectra.grid import named_grid
from tests.helpers import TOY_GRID, toy_spectra

pytestmark = pytest.mark.usefixtures("ray_session")


def write_toy_files(folder, names: list[str], seed: int = 0, scale: float = 1000.0) -> dict:
    """One toy ADP file per name (flux in ADU-like units); returns {name: native flux}."""
    grid = named_grid(TOY_GRID)
    rng = np.random.default_rng(seed)
    fluxes = {}
    for name in names:
        rv, teff = rng.uniform(-100, 100, 1), rng.uniform(4000, 6500, 1)
        flux = scale * toy_spectra(rv, teff, grid)[0]
        write_adp(folder / f"{name}.fits", grid.native_wavelength, flux, {"object": name})
        fluxes[name] = flux
    return fluxes


def committed_rows(uri: str) -> tuple[list[ManifestEntry], pa.Table]:
    """(live manifest entries, every row of the committed shards), read with plain pyarrow."""
    store = open_store(uri)
    tables = []
    for shard in store.shard_uris():
        fs, path = storage.arrow_filesystem(shard)
        tables.append(pq.read_table(path, filesystem=fs))
    live = [entry for entry in store.manifest if entry.ingested]
    return live, pa.concat_tables(tables).sort_by("id")


def assert_consistent(uri: str, expected_ids: set[str]) -> pa.Table:
    """Manifest and shards agree, every expected id once, no shard outside the manifest."""
    live, table = committed_rows(uri)
    ids = table["id"].to_pylist()
    assert sorted(ids) == sorted(expected_ids), "rows in shards"
    assert sorted(entry.id for entry in live) == sorted(expected_ids), "manifest"
    fs, path = storage.filesystem(storage.join(uri, "shards"))
    on_disk = {name.rsplit("/", 1)[-1] for name in fs.ls(path, detail=False)}
    assert on_disk == open_store(uri).shard_names()
    return table


def test_rerun_with_relative_and_file_uri_spellings_keeps_every_shard(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_toy_files(raw, ["a1", "a2", "a3"])
    monkeypatch.chdir(tmp_path)
    first = ingest("raw/", "store/", grid=TOY_GRID)
    assert first.ingested == 3
    for spelling in ("store/", "./store", f"file://{tmp_path}/store", str(tmp_path / "store")):
        again = ingest("raw", spelling, grid=TOY_GRID)
        assert (again.ingested, again.skipped, again.orphans_removed) == (0, 3, 0), spelling
    assert_consistent(str(tmp_path / "store"), {"a1", "a2", "a3"})


def _ingest_command(raw, store) -> list[str]:
    return [sys.executable, "-m", "specray.cli", "-q", "ingest", str(raw), "--out", str(store),
            "--grid", TOY_GRID]  # fmt: skip


def _two_concurrent_ingests(tmp_path, store: str, ray_session) -> None:
    """Two real `specray ingest` processes, different inputs, one store, started together."""
    folders = []
    for half, names in (("A", ["a1", "a2", "a3"]), ("B", ["b1", "b2", "b3", "b4"])):
        folder = tmp_path / f"raw{half}"
        folder.mkdir()
        write_toy_files(folder, names, seed=len(names))
        folders.append(folder)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    pair = [
        subprocess.Popen(_ingest_command(folder, store), env=env, stderr=subprocess.PIPE, text=True)
        for folder in folders
    ]
    errors = [process.communicate(timeout=600)[1] for process in pair]
    assert [process.returncode for process in pair] == [0, 0], errors
    assert_consistent(store, {"a1", "a2", "a3", "b1", "b2", "b3", "b4"})
    assert not storage.exists(storage.join(store, LOCK_FILE))


def test_two_ingests_at_once_into_a_local_store_keep_both_runs_spectra(tmp_path, ray_session):
    _two_concurrent_ingests(tmp_path, str(tmp_path / "store"), ray_session)


def test_two_ingests_at_once_into_an_s3_store_keep_both_runs_spectra(
    tmp_path, s3_bucket, ray_session
):
    _two_concurrent_ingests(tmp_path, f"{s3_bucket}/store", ray_session)


def test_a_file_that_could_not_be_read_is_retried_once_it_can(tmp_path):
    """The file vanishes between listing and reading (an I/O failure, not its content): it is
    quarantined as transient, and read again on the next run although its size and
    modification time are unchanged."""
    raw, store = tmp_path / "raw", str(tmp_path / "store")
    raw.mkdir()
    write_toy_files(raw, ["a1", "a2"])
    late = raw / "a2.fits"
    content, stat = late.read_bytes(), late.stat()
    with exclusive_lock(storage.join(store, LOCK_FILE)):
        reports = []
        worker = threading.Thread(target=lambda: reports.append(ingest(str(raw), store, TOY_GRID)))
        worker.start()
        time.sleep(2.0)  # the ingest has listed both files and waits for the lock
        late.unlink()
    worker.join(timeout=300)
    assert (reports[0].ingested, reports[0].quarantined) == (1, 1)
    reason = open_store(store).quarantine[-1]
    assert reason.transient and "a2.fits" in reason.reason
    late.write_bytes(content)
    os.utime(late, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same version
    again = ingest(str(raw), store, TOY_GRID)
    assert (again.ingested, again.retried, again.skipped) == (1, 1, 1)
    assert_consistent(store, {"a1", "a2"})
    assert ingest(str(raw), store, TOY_GRID).skipped == 2


def test_a_file_changed_after_ingest_replaces_its_old_row(tmp_path):
    raw, store = tmp_path / "raw", str(tmp_path / "store")
    raw.mkdir()
    write_toy_files(raw, ["a1", "a2", "a3"])
    ingest(str(raw), store, TOY_GRID)
    (raw / "a2.fits").unlink()
    new_flux = write_toy_files(raw, ["a2"], seed=99, scale=3000.0)["a2"]
    os.utime(raw / "a2.fits", (time.time() + 5, time.time() + 5))
    report = ingest(str(raw), store, TOY_GRID)
    assert (report.ingested, report.replaced, report.skipped) == (1, 1, 2)
    table = assert_consistent(store, {"a1", "a2", "a3"})
    grid = named_grid(TOY_GRID)
    row = table.filter(pc.equal(table["id"], "a2"))
    stored = schema.decode_flux(row["flux"])[0][grid.pad_left :][: grid.n_native]
    expected = new_flux / np.median(new_flux)
    np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3)
    assert float(row["norm"][0].as_py()) == pytest.approx(np.median(new_flux), rel=1e-3)
    superseded = [e for e in open_store(store).manifest if e.status == "superseded"]
    assert [e.id for e in superseded] == ["a2"]
    assert ingest(str(raw), store, TOY_GRID).skipped == 3


def test_a_typo_in_the_input_path_creates_no_store(tmp_path):
    from specray.cli import main

    store = tmp_path / "store"
    assert main(["ingest", str(tmp_path / "no-such-folder"), "--out", str(store)]) == 2
    assert not store.exists()
    (tmp_path / "empty").mkdir()
    assert main(["ingest", str(tmp_path / "empty"), "--out", str(store)]) == 2
    assert not store.exists()


def test_manifest_records_are_json_lines_with_normalised_sources(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_toy_files(raw, ["a1"])
    monkeypatch.chdir(tmp_path)
    ingest("raw", "store", TOY_GRID)
    lines = (tmp_path / "store" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["source"] for line in lines] == [str(raw / "a1.fits")]
