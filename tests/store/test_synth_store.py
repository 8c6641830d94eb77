"""The synthetic survey through both routes: ready store, and archive files + ingest."""

import csv

import numpy as np
import pytest

from specray import schema
from specray.cli import main
from specray.data.store import open_store
from specray.data.synth_store import NO_DEFECT
from tests.store.test_ingest import read_store

pytestmark = pytest.mark.usefixtures("ray_session")


def test_fits_route_and_parquet_route_give_the_same_store(tmp_path, capsys):
    raw, direct, ingested = tmp_path / "raw", tmp_path / "direct", tmp_path / "ingested"
    common = ["--stars", "12", "--epochs", "3", "--grid", "demo", "--seed", "24"]
    assert main(["synth", "--out", str(raw), "--format", "fits", *common]) == 0
    assert main(["synth", "--out", str(direct), "--format", "parquet", *common]) == 0
    labels = raw / "labels.csv"
    assert main(["ingest", str(raw), "--out", str(ingested), "--labels", str(labels)]) == 0
    rows = list(csv.DictReader(labels.open()))
    defective = {row["id"] for row in rows if row["defect"] != NO_DEFECT}
    assert len(defective) == 2  # seed 24: one low-flux and one negative-mean epoch
    assert len(list(raw.glob("*.fits"))) == len(rows)

    _, a = read_store(str(direct))
    _, b = read_store(str(ingested))
    assert a["id"].to_pylist() == b["id"].to_pylist()
    assert set(a["id"].to_pylist()) == {row["id"] for row in rows} - defective
    flux_a = schema.decode_flux(a["flux"]).astype(np.float32)
    flux_b = schema.decode_flux(b["flux"]).astype(np.float32)
    np.testing.assert_allclose(flux_a, flux_b, atol=2e-3)  # float16 steps near 1
    for column in ("rv", "teff", "logg", "feh", "vsini", "berv", "snr", "pwv", "tilt"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-6)
    # The generator-only factors reach both stores from the generator's own values.
    truth = {row["id"]: (float(row["pwv"]), float(row["tilt"])) for row in rows}
    stored = zip(a["id"].to_pylist(), a["pwv"].to_pylist(), a["tilt"].to_pylist(), strict=True)
    assert all(truth[i] == pytest.approx((pwv, tilt)) for i, pwv, tilt in stored)
    assert np.std(a["tilt"].to_numpy()) > 0.01  # varied per epoch, not a constant fill
    quarantined = {record.id for record in open_store(str(ingested)).quarantine}
    assert quarantined == defective
    assert main(["synth", "--out", str(direct), "--format", "parquet", *common]) == 0
    assert "nothing generated" in capsys.readouterr().out


def _synth_fits(out, seed: int) -> list[dict]:
    command = ["synth", "--out", str(out), "--format", "fits", "--stars", "6", "--epochs", "2"]
    assert main([*command, "--grid", "demo", "--seed", str(seed)]) == 0
    return list(csv.DictReader((out / "labels.csv").open()))


def test_two_seasons_of_different_seeds_land_in_one_store(tmp_path):
    # The retrain scenario: a second survey (seed 2) arrives in its own folder and is
    # ingested into the store of the first; every spectrum of both must be there.
    store = str(tmp_path / "store")
    seasons = {seed: tmp_path / f"season{seed}" for seed in (1, 2)}
    rows = {seed: _synth_fits(folder, seed) for seed, folder in seasons.items()}
    for folder in seasons.values():
        labels = str(folder / "labels.csv")
        assert main(["ingest", str(folder), "--out", store, "--labels", labels]) == 0
    _, table = read_store(store)
    quarantine = open_store(store).quarantine
    good = {row["id"] for season in rows.values() for row in season if row["defect"] == NO_DEFECT}
    assert set(table["id"].to_pylist()) == good
    assert table.num_rows == len(good)  # each id once
    bad = {row["id"] for season in rows.values() for row in season if row["defect"] != NO_DEFECT}
    assert {record.id for record in quarantine} == bad  # defects only, no duplicates
    assert set(table["defect"].to_pylist()) == {NO_DEFECT}  # a text label in both seasons
    # labels.csv and the store agree: each id's labels came from its own season's table.
    truth = {row["id"]: float(row["teff"]) for season in rows.values() for row in season}
    for identifier, teff in zip(table["id"].to_pylist(), table["teff"].to_pylist(), strict=True):
        assert teff == pytest.approx(truth[identifier])


def test_the_same_synth_command_writes_the_same_files(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert _synth_fits(first, 3) == _synth_fits(second, 3)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    modified = {name: (first / name).stat().st_mtime_ns for name in names}
    _synth_fits(first, 3)  # again into the same folder: nothing added, nothing changed
    assert sorted(path.name for path in first.iterdir()) == names
    fits = [name for name in names if name.endswith(".fits")]
    assert {n: (first / n).stat().st_mtime_ns for n in fits} == {n: modified[n] for n in fits}
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
