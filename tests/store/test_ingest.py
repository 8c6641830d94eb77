"""Ingest of real HARPS files and of bad inputs, locally and between S3 buckets."""

import gzip
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from specray import schema, storage
from specray.cli import main
from specray.data.ingest import ingest
from specray.data.store import StoreError, open_store
from specray.spectra.fits import read_spectrum, write_adp
from specray.spectra.grid import named_grid
from tests.conftest import ADP_FIXTURE, S1D_FIXTURE

pytestmark = pytest.mark.usefixtures("ray_session")

ADP_ID = "ADP.2014-09-16T11:04:45.123"
S1D_ID = "HARPS.2010-09-18T23:42:36.178_s1d_A"


def read_store(uri: str):
    """All committed rows of a store, read with plain pyarrow (no Ray)."""
    import pyarrow as pa

    store = open_store(uri)
    tables = []
    for shard in store.shard_uris():
        fs, path = storage.arrow_filesystem(shard)
        tables.append(pq.read_table(path, filesystem=fs))
    return store, pa.concat_tables(tables).sort_by("id")


@pytest.fixture
def real_inputs(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for fixture in (ADP_FIXTURE, S1D_FIXTURE):
        shutil.copy(fixture, folder)
    return folder


def write_bad_inputs(folder, grid):
    """One of each kind of bad input; returns {file name: expected words in the reason}."""
    real = ADP_FIXTURE.read_bytes()
    (folder / "truncated.fits.gz").write_bytes(real[: len(real) // 2])
    (folder / "notes.fits").write_text("this is not a FITS file\n")
    (folder / "garbage.fits").write_bytes(b"SIMPLE  =" + bytes(range(256)) * 20)
    wave = grid.native_wavelength[::10]
    write_adp(folder / "allnan.fits", wave, np.full(wave.size, np.nan), {"object": "X"})
    far = np.linspace(8000.0, 9000.0, 5000)
    write_adp(folder / "offgrid.fits", far, np.full(far.size, 500.0), {"object": "Y"})
    write_adp(folder / "faint.fits", wave, np.full(wave.size, 12.0), {"object": "Z"})
    return {
        "truncated.fits.gz": "truncated",
        "notes.fits": "not a FITS file",
        "garbage.fits": "FITS",
        "allnan.fits": "no finite flux",
        "offgrid.fits": "no finite flux",
        "faint.fits": "constant flux 12",
    }


def test_real_files_land_on_the_harps_grid(real_inputs, tmp_path):
    report = ingest(str(real_inputs), str(tmp_path / "store"), grid="harps")
    assert (report.ingested, report.skipped, report.quarantined) == (2, 0, 0)
    store, table = read_store(str(tmp_path / "store"))
    grid = named_grid("harps")
    assert schema.grid_from_schema(table.schema) == grid == store.grid
    assert store.format_version == schema.FORMAT_VERSION
    assert table.schema.field("flux") == schema.flux_field(327_680)
    assert table["id"].to_pylist() == [ADP_ID, S1D_ID]
    assert table["object"].to_pylist() == ["IC4651No9122", "Gl581"]
    flux = schema.decode_flux(table["flux"]).astype(np.float64)
    mask = schema.decode_mask(table["mask"], grid.length).astype(bool)
    gap = (grid.wavelength > 5305) & (grid.wavelength < 5336)
    assert not mask[:, gap].any() and not mask[:, : grid.pad_left].any()
    for row in range(2):
        assert np.median(flux[row, mask[row]]) == pytest.approx(1.0, abs=1e-3)
        assert (flux[row, ~mask[row]] == 0).all()
    # The ADP file is on the grid already: its pixels are copied (up to float16 rounding).
    raw = read_spectrum(ADP_FIXTURE)
    first = int(round((3785.0 - raw.wavelength[0]) / 0.01))
    expected = raw.flux[first : first + 1000] / table["norm"][0].as_py()
    got = flux[0, grid.pad_left : grid.pad_left + 1000]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert table["berv"].to_pylist() == pytest.approx([-8.686, -23.544], abs=1e-3)


def test_bad_inputs_are_quarantined_and_the_rest_lands(real_inputs, tmp_path, capsys):
    expected = write_bad_inputs(real_inputs, named_grid("harps"))
    out = tmp_path / "store"
    code = main(["ingest", str(real_inputs), "--out", str(out), "--grid", "harps"])
    assert code == 0
    out_text = capsys.readouterr().out
    assert "ingested 2, skipped 0 already present, quarantined 6" in out_text
    assert "2 no finite flux on grid harps" in out_text
    assert "most inputs" not in out_text  # 6 of 8, but no reason accounts for most
    _, table = read_store(str(out))
    assert table.num_rows == 2
    records = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    reasons = {record["source"].rsplit("/", 1)[-1]: record["reason"] for record in records}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert name in reasons[name] and words in reasons[name], reasons[name]


def test_rerun_adds_nothing_and_new_files_are_added_incrementally(real_inputs, tmp_path):
    out = str(tmp_path / "store")
    (real_inputs / "faint.fits").parent.mkdir(exist_ok=True)
    grid = named_grid("harps")
    wave = grid.native_wavelength[::10]
    write_adp(real_inputs / "faint.fits", wave, np.full(wave.size, 12.0), {"object": "Z"})
    first = ingest(str(real_inputs), out, grid="harps")
    assert (first.ingested, first.skipped, first.quarantined) == (2, 0, 1)
    again = ingest(str(real_inputs), out, grid="harps")
    assert (again.ingested, again.skipped, again.quarantined, again.shards) == (0, 2, 0, [])
    assert again.still_quarantined == 1
    flux = 1000.0 + 10.0 * np.sin(wave)
    write_adp(real_inputs / "new_star.fits", wave, flux, {"object": "NEW"})
    added = ingest(str(real_inputs), out, grid="harps")
    assert (added.ingested, added.skipped, added.quarantined) == (1, 2, 0)
    assert added.still_quarantined == 1
    store, table = read_store(out)
    assert len(store.shard_uris()) == 2
    assert sorted(table["id"].to_pylist()) == sorted([ADP_ID, S1D_ID, "new_star"])
    assert len(store.quarantine) == 1


def test_orphan_shards_from_a_dead_run_are_removed(real_inputs, tmp_path):
    out = tmp_path / "store"
    ingest(str(real_inputs), str(out), grid="harps")
    orphan = out / "shards" / "part-dead-00000-000.parquet"
    shutil.copy(next((out / "shards").glob("*.parquet")), orphan)
    report = ingest(str(real_inputs), str(out), grid="harps")
    assert report.orphans_removed == 1 and not orphan.exists()
    assert read_store(str(out))[1].num_rows == 2


def test_a_store_keeps_its_grid(real_inputs, tmp_path):
    ingest(str(real_inputs), str(tmp_path / "store"), grid="harps")
    with pytest.raises(StoreError, match="grid harps"):
        ingest(str(real_inputs), str(tmp_path / "store"), grid="demo")


@pytest.mark.parametrize("key", ["ID", "object"])
def test_labels_join_by_id_or_object(real_inputs, tmp_path, key):
    """By id every column joins; by object (no id column) the per-epoch rv does not."""
    keys = {"ID": (ADP_ID, S1D_ID), "object": ("IC4651No9122", "Gl581")}[key]
    labels = tmp_path / "labels.csv"
    rows = f"{keys[0]},6100,-30.5,1.1,\n{keys[1]},3480,-9.2,0.3,30\n"
    labels.write_text(f"{key},teff,rv,mass,snr\n{rows}")
    report = ingest(str(real_inputs), str(tmp_path / "store"), grid="harps", labels=str(labels))
    assert report.labelled == 2
    store, table = read_store(str(tmp_path / "store"))
    assert table["teff"].to_pylist() == [6100, 3480]
    rv = table["rv"].to_numpy()
    assert rv.tolist() == [-30.5, -9.2] if key == "ID" else np.isnan(rv).all()
    assert table["mass"].to_pylist() == [1.1, 0.3] and store.extra_labels == ("mass",)
    assert np.isnan(table["logg"].to_numpy()).all()
    # a blank cell keeps the header's SNR; a per-epoch value joins by id only
    assert table["snr"].to_pylist() == [23.35, 30.0 if key == "ID" else 23.9]


def test_s3_to_s3_ingest_through_a_real_endpoint(s3_bucket, tmp_path):
    fs, _ = storage.filesystem(s3_bucket)
    for fixture in (ADP_FIXTURE, S1D_FIXTURE):
        fs.put(str(fixture), f"{s3_bucket[5:]}/raw/{fixture.name}")
    fs.pipe(f"{s3_bucket[5:]}/raw/broken.fits", gzip.compress(b"no fits here"))
    store_uri = f"{s3_bucket}/store"
    report = ingest(f"{s3_bucket}/raw", store_uri, grid="harps")
    assert (report.ingested, report.quarantined) == (2, 1)
    store, table = read_store(store_uri)
    assert table["id"].to_pylist() == [ADP_ID, S1D_ID]
    assert store.shard_uris()[0].startswith(f"{store_uri}/shards/part-")
    rerun = ingest(f"{s3_bucket}/raw", store_uri, grid="harps")
    assert (rerun.ingested, rerun.skipped, rerun.still_quarantined) == (0, 2, 1)


def test_every_suffix_the_reader_accepts_is_listed_and_named_alike(tmp_path):
    from specray.data.ingest import list_inputs
    from specray.spectra.fits import FITS_SUFFIXES, spectrum_id

    for k, suffix in enumerate(FITS_SUFFIXES):
        (tmp_path / f"star{k}{suffix.upper() if k % 2 else suffix}").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a spectrum")
    (tmp_path / "star.fits.bak").write_bytes(b"")
    listed = sorted(entry.uri.rsplit("/", 1)[-1] for entry in list_inputs(str(tmp_path)))
    assert len(listed) == len(FITS_SUFFIXES) and not any(".txt" in n or ".bak" in n for n in listed)
    assert sorted(spectrum_id(name) for name in listed) == [f"star{k}" for k in range(6)]
