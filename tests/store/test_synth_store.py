"""The synthetic survey through both routes: ready store, and archive files + ingest."""

import csv

import numpy as np
import pytest

from specray import schema
from specray.cli import main
from specray.data.store import open_store
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
    defective = {row["id"] for row in rows if row["defect"]}
    assert len(defective) == 2  # seed 24: one low-flux and one negative-mean epoch
    assert len(list(raw.glob("*.fits"))) == len(rows)

    _, a = read_store(str(direct))
    _, b = read_store(str(ingested))
    assert a["id"].to_pylist() == b["id"].to_pylist()
    assert set(a["id"].to_pylist()) == {row["id"] for row in rows} - defective
    flux_a = schema.decode_flux(a["flux"]).astype(np.float32)
    flux_b = schema.decode_flux(b["flux"]).astype(np.float32)
    np.testing.assert_allclose(flux_a, flux_b, atol=2e-3)  # float16 steps near 1
    for column in ("rv", "teff", "logg", "feh", "vsini", "berv", "snr"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-6)
    quarantined = {record["id"] for record in open_store(str(ingested)).quarantine}
    assert quarantined == defective
    assert main(["synth", "--out", str(direct), "--format", "parquet", *common]) == 0
    assert "nothing generated" in capsys.readouterr().out
