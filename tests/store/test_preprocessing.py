"""Preprocessing that fits the data's units, recorded in the store, and a loud failed run."""

import json

import numpy as np
import pytest

from specray import schema
from specray.cli import main
from specray.data.ingest import IngestReport, Preprocessing, ingest, prepared_row, reason_class
from specray.data.records import QuarantineEntry
from specray.spectra.grid import named_grid
from tests.helpers import TOY_GRID, toy_spectra, write_linear_fits
from tests.store.test_ingest import read_store

N_GOOD = 6
UNITS = {
    "normalised": lambda wave: np.ones_like(wave),
    # erg/s/cm2/A: a hot star's blue slope at 1e-16 scale
    "flux-calibrated": lambda wave: 2.3e-16 * (wave / 5000.0) ** -4,
}


def write_library(folder, sed) -> np.ndarray:
    """N_GOOD spectra with median ~1 times ``sed`` (SNR 100) and one all-zero file, as
    linear-WCS FITS images; returns the good spectra's flux as written (float32)."""
    folder.mkdir()
    grid = named_grid(TOY_GRID)
    rng = np.random.default_rng(3)
    rv, teff = rng.uniform(-100, 100, N_GOOD), rng.uniform(4000, 6500, N_GOOD)
    noise = 1 + rng.normal(0, 0.01, (N_GOOD, grid.n_native))
    flux = (toy_spectra(rv, teff, grid) * noise * sed(grid.native_wavelength)).astype(np.float32)
    for i in range(N_GOOD):
        write_linear_fits(folder / f"lib-{i}.fits", grid, flux[i], f"LIB-{i}")
    write_linear_fits(folder / "blank.fits", grid, np.zeros(grid.n_native), "BLANK")
    return flux


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("units", sorted(UNITS))
def test_a_library_in_any_unit_keeps_every_spectrum_by_default(tmp_path, units):
    flux = write_library(tmp_path / "lib", UNITS[units])
    out = tmp_path / "store"
    report = ingest(str(tmp_path / "lib"), str(out), grid=TOY_GRID)
    assert (report.ingested, report.quarantined) == (N_GOOD, 1)
    assert report.reasons == {"median flux <= 0": 1} and not report.failed
    store, table = read_store(str(out))
    assert table["id"].to_pylist() == [f"lib-{i}" for i in range(N_GOOD)]
    median = np.median(flux.astype(np.float64), axis=1)
    np.testing.assert_allclose(table["norm"].to_numpy(), median, rtol=1e-6)
    grid = named_grid(TOY_GRID)
    stored = schema.decode_flux(table["flux"]).astype(np.float64)
    native = stored[:, grid.pad_left : grid.pad_left + grid.n_native]
    np.testing.assert_allclose(native, flux / median[:, None], rtol=1e-3, atol=1e-3)
    recorded = json.loads((out / "store.json").read_text())["preprocessing"]
    assert recorded == Preprocessing().record() == store.preprocessing
    assert recorded["min_median"] is None and recorded["min_snr"] == 5.0


@pytest.mark.usefixtures("ray_session")
def test_cli_fails_when_all_is_quarantined_and_names_the_reason_and_option(tmp_path, capsys):
    write_library(tmp_path / "lib", UNITS["normalised"])
    lib, out = str(tmp_path / "lib"), str(tmp_path / "store")
    harps_rule = ["ingest", lib, "--out", out, "--grid", TOY_GRID, "--min-median", "50"]
    assert main(harps_rule) == 1
    captured = capsys.readouterr()
    assert "ingested 0, skipped 0 already present, quarantined 7" in captured.out
    assert "quarantined for: 6 median flux <= 50; 1 median flux <= 0" in captured.out
    assert (
        "most inputs were quarantined (7 of 7), 6 for 'median flux <= 50': --min-median is "
        "in the input's units"
    ) in captured.out
    assert (
        "error: nothing was ingested and the store holds no spectra (7 quarantined: "
        "6 median flux <= 50, 1 median flux <= 0)"
    ) in captured.err
    assert main(harps_rule) == 1  # still nothing in the store on a re-run

    assert main(["ingest", lib, "--out", out, "--grid", TOY_GRID]) == 2
    error = capsys.readouterr().err
    assert "prepared with min_median=50.0" in error and "asks for min_median=None" in error

    fresh = ["ingest", lib, "--out", str(tmp_path / "fresh"), "--grid", TOY_GRID]
    assert main(fresh) == 0
    assert "ingested 6, skipped 0 already present, quarantined 1" in capsys.readouterr().out


def staged_reason(flux: np.ndarray) -> QuarantineEntry:
    """The quarantine record prepare's real message gives for a spectrum (no Ray)."""
    grid = named_grid(TOY_GRID)
    row = prepared_row("x", "X", grid.native_wavelength, flux, {}, grid, Preprocessing())
    return QuarantineEntry(
        source="s3://bucket/raw/x.fits", id="x", reason=f"x.fits: {row['error']}"
    )


def test_a_noise_dominated_run_names_the_snr_option():
    grid = named_grid(TOY_GRID)
    rng = np.random.default_rng(0)
    noisy = [staged_reason(1.0 + rng.normal(0, 0.5, grid.n_native)) for _ in range(5)]
    classes = [reason_class(record) for record in noisy]
    assert classes == ["SNR estimate < 5"] * 5
    report = IngestReport(1, 0, 5, [], reasons={"SNR estimate < 5": 5}, stored=1)
    assert "most inputs were quarantined (5 of 6), 5 for 'SNR estimate < 5': lower --min-snr" in (
        report.summary()
    )
    assert not report.failed


def test_no_dominant_reason_no_hint():
    grid = named_grid(TOY_GRID)
    reasons = [
        staged_reason(np.zeros(grid.n_native)),
        staged_reason(np.full(grid.n_native, 2.0)),
        QuarantineEntry(
            source="/raw/bad.fits",
            id="bad",
            reason="/raw/bad.fits: not a FITS file (no SIMPLE card)",
        ),
    ]
    assert [reason_class(r) for r in reasons] == [
        "median flux <= 0",
        "constant flux",
        "not a FITS file (no SIMPLE card)",
    ]
    report = IngestReport(0, 0, 3, [], reasons={"median flux <= 0": 1, "constant flux": 1, "x": 1})
    assert "most inputs" not in report.summary()
    assert report.failed
