"""The notebook API (specray.api) against the files the pipeline writes and reads."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy import units as u

import specray
from specray import schema
from specray.analysis.encode import encode_store
from specray.analysis.mi import mutual_information
from specray.config import load_config
from specray.data.ingest import Preprocessing, ingest
from specray.spectra.fits import read_spectrum as read_raw
from specray.spectra.grid import DegenerateSpectrum, named_grid
from specray.train.trainer import train
from tests.conftest import ADP_FIXTURE, S1D_FIXTURE
from tests.helpers import (
    TOY_GRID,
    TOY_MODEL,
    plain_rows,
    toy_spectra,
    write_linear_fits,
    write_toy_store,
)


def test_the_api_is_exported_from_the_package():
    for name in ("open_store", "read_spectrum", "load_model", "mutual_information"):
        assert callable(getattr(specray, name)), name
    assert specray.__version__


# --------------------------------------------------------------------------- read_spectrum


def test_read_spectrum_gives_quantities_in_the_files_units():
    raw = read_raw(str(ADP_FIXTURE))
    spectrum = specray.read_spectrum(ADP_FIXTURE)
    assert spectrum.wavelength.unit == u.AA and spectrum.flux.unit == u.adu
    np.testing.assert_array_equal(spectrum.wavelength.value, raw.wavelength)
    np.testing.assert_array_equal(spectrum.flux.value, raw.flux)
    assert spectrum.wavelength.to(u.nm)[0].value == pytest.approx(raw.wavelength[0] / 10)
    assert spectrum.uncertainty is None  # the ADP file says "Error spectrum not available"
    assert spectrum.object == "IC4651No9122" and spectrum.meta["format"] == "adp"


def test_a_flux_unit_astropy_does_not_know_is_dimensionless_and_kept_as_written():
    spectrum = specray.read_spectrum(f"file://{S1D_FIXTURE}")
    assert spectrum.flux.unit == u.dimensionless_unscaled
    assert spectrum.meta["flux_unit"] == "Relative Flux"


def test_read_spectrum_names_a_missing_file(tmp_path):
    with pytest.raises(specray.SpecrayError, match="nope.fits: no such file"):
        specray.read_spectrum(tmp_path / "nope.fits")


def test_to_specutils_carries_axis_flux_and_uncertainty(tmp_path):
    specutils = pytest.importorskip("specutils")
    grid = named_grid(TOY_GRID)
    flux = 1e-13 * toy_spectra(np.array([10.0]), np.array([5000.0]), grid)[0]
    path = tmp_path / "lib.fits"
    write_linear_fits(path, grid, flux, "LIB")
    spectrum = specray.read_spectrum(path)
    converted = spectrum.to_specutils()
    assert isinstance(converted, getattr(specutils, "Spectrum", None) or specutils.Spectrum1D)
    np.testing.assert_allclose(converted.spectral_axis.to_value(u.AA), grid.native_wavelength)
    np.testing.assert_allclose(converted.flux.value, flux.astype(np.float32))
    assert converted.meta["object"] == "LIB"
    adp = specray.read_spectrum(ADP_FIXTURE).to_specutils()
    assert adp.flux.unit == u.adu and adp.uncertainty is None


def test_to_specutils_without_specutils_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "specutils", None)  # import specutils -> ImportError
    with pytest.raises(ImportError, match="pip install specutils"):
        specray.read_spectrum(ADP_FIXTURE).to_specutils()


# --------------------------------------------------------------------------- open_store


@pytest.mark.parametrize("format_version", [1, 2])
def test_open_store_round_trips_to_the_shards_arrays(tmp_path, format_version):
    uri = str(tmp_path / "store")
    truth = write_toy_store(uri, n_objects=8, epochs=2, shards=3, format_version=format_version)
    store = specray.open_store(uri)
    grid = named_grid(TOY_GRID)
    assert len(store) == 16 and sorted(store.ids) == sorted(truth["id"])
    np.testing.assert_array_equal(store.wavelength.to_value(u.AA), grid.native_wavelength)

    stored = plain_rows(uri)  # read with pyarrow alone
    native = slice(grid.pad_left, grid.pad_left + grid.n_native)
    ids = truth["id"][::-1]  # any order is honoured
    flux = store.flux(ids)
    for row, identifier in zip(flux, ids, strict=True):
        expected = stored[identifier][0][native].astype(np.float32)
        np.testing.assert_array_equal(row, expected)
    frame = store.to_pandas()
    for identifier, rv in zip(truth["id"], truth["rv"], strict=True):
        assert frame.loc[identifier, "rv"] == pytest.approx(rv)
        np.testing.assert_array_equal(frame.loc[identifier, "flux"], flux[ids.index(identifier)])
    assert store.table(flux=False).column_names[:2] == ["id", "object"]


def test_open_store_marks_masked_pixels_nan(tmp_path, ray_session):
    grid = named_grid(TOY_GRID)
    raw = tmp_path / "raw"
    raw.mkdir()
    flux = 5e3 * toy_spectra(np.zeros(2), np.full(2, 5000.0), grid)
    flux[1, :300] = np.nan  # no data on the first 300 pixels
    for i in range(2):
        write_linear_fits(raw / f"s{i}.fits", grid, flux[i], f"S{i}")
    ingest(str(raw), str(tmp_path / "store"), grid=TOY_GRID, preprocessing=Preprocessing(None))
    store = specray.open_store(tmp_path / "store")
    got = store.flux(["s0", "s1"])
    assert np.isnan(got[1, :300]).all() and np.isfinite(got[1, 300:]).all()
    np.testing.assert_allclose(got[0], flux[0] / np.median(flux[0]), rtol=1e-3)


def test_open_store_refuses_a_folder_that_is_not_a_store(tmp_path):
    with pytest.raises(specray.SpecrayError, match="not a specray store"):
        specray.open_store(tmp_path)


# --------------------------------------------------------------------------- load_model


@pytest.fixture(scope="module")
def fits_run(tmp_path_factory, ray_session):
    """A tiny model trained on a store ingested from FITS files in physical flux units,
    and the Ray Data encoding of that store (``specray analyze``'s own path)."""
    root = tmp_path_factory.mktemp("api")
    raw, store, run = root / "raw", str(root / "store"), str(root / "run")
    raw.mkdir()
    grid = named_grid(TOY_GRID)
    rng = np.random.default_rng(3)
    n = 40
    rv, teff = rng.uniform(-100, 100, n), rng.uniform(4000, 6500, n)
    flux = 2e-14 * (toy_spectra(rv, teff, grid) + rng.normal(0, 0.01, (n, grid.n_native)))
    flux[3, -200:] = np.nan  # a spectrum that stops short of the grid's end
    paths = [raw / f"lib-{i:02d}.fits" for i in range(n)]
    for i, path in enumerate(paths):
        write_linear_fits(path, grid, flux[i], f"LIB-{i // 2:02d}")
    ingest(str(raw), store, grid=TOY_GRID)
    overrides = TOY_MODEL + ["train.lr=0.003", "train.batch_size=16", "train.epochs=1"]
    train(store, run, load_config(overrides=overrides))
    latents = pq.read_table(encode_store(store, run, str(root / "analysis")))
    return paths, store, run, latents


def test_encoding_a_fits_file_equals_the_ray_data_encoding_of_the_same_spectrum(fits_run):
    paths, store, run, latents = fits_run
    model = specray.load_model(run)
    picked = [paths[0], paths[3], paths[17]]
    got = model.encode(picked)
    assert got.ids == ["lib-00", "lib-03", "lib-17"]
    position = {name: i for i, name in enumerate(latents["id"].to_pylist())}
    rows = [position[name] for name in got.ids]
    mu = schema.tensor_column_to_numpy(latents["mu"])[rows]
    logvar = schema.tensor_column_to_numpy(latents["logvar"])[rows]
    np.testing.assert_allclose(got.mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.logvar, logvar, rtol=1e-5, atol=1e-6)
    # the same spectra taken from the store, and Spectrum objects, encode the same way
    from_store = model.encode(specray.open_store(store).flux(got.ids))
    np.testing.assert_allclose(from_store.mu, mu, rtol=1e-5, atol=1e-6)
    from_objects = model.encode([specray.read_spectrum(p) for p in picked])
    np.testing.assert_array_equal(from_objects.mu, got.mu)
    assert list(got.to_pandas().index) == got.ids


def test_the_model_applies_its_stores_preprocessing(fits_run, tmp_path):
    paths, _, run, _ = fits_run
    model = specray.load_model(run)
    assert model.preprocessing.min_coverage == 0.5
    grid = named_grid(TOY_GRID)
    flux = 2e-14 * toy_spectra(np.zeros(1), np.full(1, 5000.0), grid)[0]
    flux[: int(0.6 * grid.n_native)] = np.nan  # covers 40% of the grid: ingest rejects it
    short = tmp_path / "short.fits"
    write_linear_fits(short, grid, flux, "SHORT")
    with pytest.raises(DegenerateSpectrum, match="covers only"):
        model.encode(short)
    with pytest.raises(specray.SpecrayError, match=r"expected \(n, 1024\)"):
        model.encode(np.ones((2, 77)))
    decoded = model.decode(model.encode(paths[0]).mu)
    assert decoded.shape == (1, grid.n_native)


# --------------------------------------------------------------------------- MI on 2-D input


def test_mutual_information_on_a_node_matrix_equals_the_per_node_estimates():
    rng = np.random.default_rng(1)
    nodes = rng.normal(size=(3000, 3))
    label = nodes[:, 1] + 0.5 * rng.normal(size=3000)
    values = mutual_information(nodes, label)
    assert values.shape == (3,)
    for j in range(3):
        assert values[j] == mutual_information(nodes[:, j], label)
    assert values[1] == pytest.approx(0.5 * np.log(5.0), abs=0.05)  # Gaussian: -0.5 ln(1-rho^2)
    assert abs(values[0]) < 0.03 and abs(values[2]) < 0.03
