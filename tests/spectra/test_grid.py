"""Grids and preprocessing against the published numbers and analytic cases."""

import numpy as np
import pytest

from specray.errors import SpecrayError
from specray.spectra.grid import (
    DegenerateSpectrum,
    Grid,
    GridError,
    estimate_snr,
    named_grid,
    prepare,
    resample,
)


def test_harps_grid_is_the_published_grid():
    grid = named_grid("harps")
    assert grid.n_native == 312_501
    assert grid.length == 327_680 == 20 * 2**14
    assert (grid.pad_left, grid.pad_right) == (7_589, 7_590)
    assert grid.wavelength[grid.pad_left] == pytest.approx(3785.0)
    assert grid.wavelength[grid.pad_left + grid.n_native - 1] == pytest.approx(6910.0)
    masked = np.flatnonzero(grid.mask == 0)
    inner = masked[(masked >= grid.pad_left) & (masked < grid.pad_left + grid.n_native)]
    # method.md section 2: the CCD gap is padded indices 159453-162893.
    assert (inner.min(), inner.max(), inner.size) == (159_453, 162_893, 162_893 - 159_453 + 1)
    assert grid.mask[: grid.pad_left].sum() == 0 and grid.mask[-grid.pad_right :].sum() == 0


def test_demo_and_linear_grids():
    demo = named_grid("demo")
    assert demo.length == 16_384 and demo.n_native == 16_251 and demo.length % 2**10 == 0
    linear = named_grid("linear:4000:5000:0.5")
    assert linear.n_native == 2001 and linear.length == 2048
    assert linear.resolving_power == pytest.approx(4500 / 1.25)
    assert named_grid("linear:4000:5000:0.5:30000", pad_multiple=4096).length == 4096
    assert named_grid("linear:4000:5000:0.5:30000").resolving_power == 30000


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("nope", "unknown grid"),
        ("linear:1:2", "expected linear:START:STOP:STEP"),
        ("linear:a:b:c", "must be numbers"),
        ("linear:5:4:1", "STOP 4 must exceed START 5"),
        ("linear:4000:4000:1", "STOP 4000 must exceed START 4000"),
        ("linear:4000:7000:0", "STEP must be > 0 A, got 0"),
        ("linear:4000:7000:-0.5", "STEP must be > 0 A, got -0.5"),
        ("linear:4000:7000:nan", "must be finite"),
        ("linear:nan:7000:1", "must be finite"),
        ("linear:4000:inf:1", "must be finite"),
        ("linear:-10:7000:1", "START must be a wavelength > 0"),
        ("linear:4000:7000:1e-9", "3e+12 pixels; at most 16,777,216"),
        ("linear:4000:7000:1:0", "resolving power R must be > 0"),
        ("linear:4000:4000.4:1", "at least 2 pixels"),
    ],
)
def test_bad_grid_names_raise_a_grid_error_naming_the_grid(spec, problem):
    with pytest.raises(GridError) as raised:
        named_grid(spec)
    assert repr(spec) in str(raised.value) and problem in str(raised.value)
    assert isinstance(raised.value, SpecrayError)


def test_pad_multiple_must_be_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        named_grid("demo", pad_multiple=1000)


def test_grid_json_roundtrip():
    grid = named_grid("harps")
    assert Grid.from_json(grid.to_json()) == grid


def test_resample_on_grid_copies_exactly_and_marks_uncovered_pixels():
    grid = named_grid("linear:5000:5010:0.01")
    wave = grid.native_wavelength[100:500]
    flux = np.random.default_rng(0).normal(size=400)
    out = resample(wave, flux, grid)
    np.testing.assert_array_equal(out[100:500], flux)
    assert np.isnan(out[:100]).all() and np.isnan(out[500:]).all()


def test_resample_interpolates_linear_functions_exactly():
    grid = named_grid("linear:5000:5010:0.01")
    wave = np.linspace(4990, 5020, 2000)  # finer-ish, not aligned
    out = resample(wave, 3.0 + 0.5 * wave, grid)
    np.testing.assert_allclose(out, 3.0 + 0.5 * grid.native_wavelength, rtol=1e-12)


def test_resample_to_a_coarser_grid_averages_each_pixel():
    grid = named_grid("linear:5000:5010:0.1")
    wave = np.arange(4990, 5020, 0.01)
    flux = np.sin(2 * np.pi * wave / 0.1)  # one period per grid pixel: averages to ~0
    out = resample(wave, flux, grid)
    assert np.abs(out).max() < 1e-6
    slope = resample(wave, 2.0 * wave, grid)
    np.testing.assert_allclose(slope, 2.0 * grid.native_wavelength, rtol=1e-9)


def test_non_finite_input_pixels_become_nan_not_zero():
    grid = named_grid("linear:5000:5010:0.01")
    wave = np.linspace(4999, 5011, 3000)
    flux = np.ones_like(wave)
    flux[1500] = np.nan
    out = resample(wave, flux, grid)
    bad = np.flatnonzero(np.isnan(out))
    assert 0 < bad.size <= 3
    assert abs(grid.native_wavelength[bad[0]] - wave[1500]) < 0.01


def test_prepare_normalises_by_the_masked_median():
    grid = named_grid("linear:5000:5100:0.1")
    flux = np.full(grid.n_native, 200.0)
    flux[:10] = 1e6  # a few hot pixels do not move the median
    flux[20:30] = np.nan
    prepared = prepare(grid.native_wavelength, flux, grid)
    assert prepared.median == 200.0
    mask = prepared.mask.astype(bool)
    assert mask.sum() == grid.n_native - 10
    np.testing.assert_allclose(prepared.flux[mask][10:], 1.0)
    assert (prepared.flux[~mask] == 0).all()
    assert prepared.flux.dtype == np.float32 and prepared.flux.size == grid.length


def noisy_lines(grid, level: float, snr: float, seed: int = 0) -> np.ndarray:
    """Absorption lines 0.3 A wide (sampled by several pixels) on a continuum ``level``,
    with Gaussian noise of standard deviation level / snr."""
    rng = np.random.default_rng(seed)
    wave = grid.native_wavelength
    profile = np.ones_like(wave)
    for centre in np.arange(grid.start + 2.0, grid.stop - 2.0, 7.3):
        profile -= 0.5 * np.exp(-0.5 * ((wave - centre) / 0.3) ** 2)
    return level * (profile + rng.normal(0.0, 1.0 / snr, wave.size))


def test_der_snr_recovers_the_noise_whatever_the_units():
    grid = named_grid("linear:5000:5100:0.05")
    flux = noisy_lines(grid, 1.0, 40.0)
    signal = np.median(flux)  # a little under the continuum: the lines
    assert estimate_snr(flux) == pytest.approx(40.0 * signal, rel=0.05)
    assert estimate_snr(flux * 1e-16) == pytest.approx(estimate_snr(flux), rel=1e-9)
    assert estimate_snr(flux * 3e4) == pytest.approx(estimate_snr(flux), rel=1e-9)
    assert estimate_snr(np.ones(100)) == np.inf
    assert np.isnan(estimate_snr(np.array([1.0, np.nan, 2.0])))


@pytest.mark.parametrize("level", [1.0, 3.2e-16, 2.5e4])
def test_default_rule_keeps_good_spectra_in_any_unit(level):
    """Normalised, flux-calibrated (erg/s/cm2/A) and raw-count spectra all pass by default,
    and normalise to the same flux."""
    grid = named_grid("linear:5000:5100:0.05")
    prepared = prepare(grid.native_wavelength, noisy_lines(grid, level, 40.0), grid)
    reference = prepare(grid.native_wavelength, noisy_lines(grid, 1.0, 40.0), grid)
    np.testing.assert_allclose(prepared.flux, reference.flux, rtol=1e-5)
    assert prepared.median == pytest.approx(level * reference.median)


@pytest.mark.parametrize(
    ("flux", "reason"),
    [
        (np.zeros(2001), "median flux 0 <= 0"),
        (np.full(2001, -3.0), "median flux -3 <= 0"),
        (np.full(2001, 1.0), "constant flux 1: no spectral information"),
        (np.full(2001, 4e-16), "constant flux 4e-16"),
    ],
)
def test_empty_negative_and_constant_spectra_are_degenerate(flux, reason):
    grid = named_grid("linear:5000:5100:0.05")
    assert grid.n_native == flux.size
    with pytest.raises(DegenerateSpectrum, match=reason):
        prepare(grid.native_wavelength, flux, grid)


def test_noise_dominated_spectra_are_degenerate_unless_the_cut_is_off():
    grid = named_grid("linear:5000:5100:0.05")
    flux = noisy_lines(grid, 1e-16, 2.0)
    with pytest.raises(DegenerateSpectrum, match=r"SNR estimate 1\.\d+ < 5 \(DER_SNR; --min-snr\)"):
        prepare(grid.native_wavelength, flux, grid)
    assert prepare(grid.native_wavelength, flux, grid, min_snr=0).mask.sum() > 0


def test_the_adu_median_cut_applies_only_when_asked():
    grid = named_grid("linear:5000:5100:0.05")
    flux = noisy_lines(grid, 30.0, 40.0)
    assert prepare(grid.native_wavelength, flux, grid).median < 30.0
    with pytest.raises(DegenerateSpectrum, match=r"median flux 2\d\.\d+ <= 50 \(--min-median\)"):
        prepare(grid.native_wavelength, flux, grid, min_median=50.0)


def test_negative_mean_is_degenerate_even_with_a_high_median():
    grid = named_grid("linear:5000:5100:0.1")
    flux = np.full(grid.n_native, 100.0)
    flux[: grid.n_native // 3] = -1e5
    with pytest.raises(DegenerateSpectrum, match="mean flux .* <= 0"):
        prepare(grid.native_wavelength, flux, grid)


def test_all_nan_and_off_grid_spectra_are_degenerate():
    grid = named_grid("linear:5000:5100:0.1")
    with pytest.raises(DegenerateSpectrum, match="no finite flux"):
        prepare(grid.native_wavelength, np.full(grid.n_native, np.nan), grid)
    with pytest.raises(DegenerateSpectrum, match="no finite flux"):
        prepare(np.linspace(7000, 7100, 500), np.full(500, 100.0), grid)
    with pytest.raises(DegenerateSpectrum, match=r"covers only 19\.9% of grid"):
        prepare(np.linspace(5000, 5020, 500), np.full(500, 100.0), grid)
