"""Tests of the synthetic survey against physics and the survey's stated design."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from specray.spectra import synth
from specray.spectra.grid import SPEED_OF_LIGHT_KMS, named_grid

DEMO = named_grid("demo")
WAVE = DEMO.native_wavelength
SUN = {"teff": 5777.0, "logg": 4.44, "feh": 0.0, "vsini": 2.0}
LABEL_KEYS = {
    "id",
    "object",
    "rv",
    "teff",
    "logg",
    "feh",
    "vsini",
    "snr",
    "berv",
    "mjd_obs",
    "airmass",
    "pwv",
    "tilt",
    "exptime",
    "ra",
    "dec",
    "defect",
}
# Air wavelengths (Angstrom, NIST ASD) of lines the tests look at.
NA_D2_A = 5889.951
H_ALPHA_A = 6562.797
FE_6393_A = 6393.601
MG_B1_A = 5183.604


def noiseless(**kwargs) -> np.ndarray:
    params = {**SUN, "rv": 0.0, **kwargs}
    return synth.render(DEMO, noise=False, **params).astype(np.float64)


def normalised(**kwargs) -> np.ndarray:
    """Stellar spectrum divided by continuum x tellurics (exactly 1 where no star line)."""
    return noiseless(**kwargs) / noiseless(lines=False, **kwargs)


def window(centre: float, half: float) -> np.ndarray:
    return np.abs(WAVE - centre) < half


def velocity_shift(
    spectrum: np.ndarray,
    template: np.ndarray,
    region: np.ndarray,
    template_wave: np.ndarray = WAVE,
) -> float:
    """Velocity (km/s) by which ``template`` must be Doppler shifted to match ``spectrum``
    in the region: least squares over a velocity grid, refined by a parabola."""
    spline = CubicSpline(template_wave, template)
    trials = np.arange(-150.0, 150.0, 0.25)
    chi2 = np.array(
        [
            np.sum((spectrum[region] - spline(WAVE[region] / (1 + v / SPEED_OF_LIGHT_KMS))) ** 2)
            for v in trials
        ]
    )
    best = int(np.argmin(chi2))
    assert 0 < best < len(trials) - 1, "no minimum inside the trial range"
    left, mid, right = chi2[best - 1 : best + 2]
    return trials[best] + 0.25 * 0.5 * (left - right) / (left - 2 * mid + right)


def line_centroid(spectrum: np.ndarray, centre: float, half: float) -> float:
    """Depth-weighted centroid (Angstrom) of a normalised absorption line."""
    region = window(centre, half)
    depth = 1.0 - spectrum[region]
    return float(np.sum(WAVE[region] * depth) / np.sum(depth))


def mean_depth(spectrum: np.ndarray, region: np.ndarray) -> float:
    return float(np.mean(1.0 - spectrum[region]))


# --------------------------------------------------------------------------- Doppler


@pytest.mark.parametrize("rv", [-80.0, 0.0, 80.0])
def test_lines_move_by_the_radial_velocity(rv: float) -> None:
    # Cross-correlation with the noiseless rest-frame template of the same star.
    template_wave, template = synth.rest_frame_spectrum(DEMO, **SUN)
    shifted = normalised(rv=rv)
    metal_region = (WAVE > 5150) & (WAVE < 5450)  # Mg b and Fe I, no tellurics
    measured = velocity_shift(shifted, template, metal_region, template_wave)
    assert measured == pytest.approx(rv, abs=0.3)
    # The Na D2 core sits at its laboratory wavelength times (1 + rv / c), within a pixel.
    expected = NA_D2_A * (1 + rv / SPEED_OF_LIGHT_KMS)
    assert abs(line_centroid(shifted, expected, 0.35) - expected) < 0.5 * DEMO.step
    star = normalised(rv=rv, teff=9000.0, logg=4.1, vsini=20.0)
    expected = H_ALPHA_A * (1 + rv / SPEED_OF_LIGHT_KMS)
    assert abs(line_centroid(star, expected, 6.0) - expected) < 0.5 * DEMO.step


def telluric_transmission(**kwargs) -> np.ndarray:
    """Water-vapour transmission alone: continuum x tellurics over the same without H2O."""
    return noiseless(lines=False, **kwargs) / noiseless(lines=False, pwv=0.0, **kwargs)


def test_tellurics_follow_berv_and_stellar_lines_follow_rv() -> None:
    water = (WAVE > 6460) & (WAVE < 6600)
    metal_region = (WAVE > 5150) & (WAVE < 5450)
    # Same RV, BERV -15 and +15 km/s: the water lines move by 30 km/s, the star not at all.
    low, high = (
        telluric_transmission(rv=25.0, berv=-15.0),
        telluric_transmission(rv=25.0, berv=15.0),
    )
    assert np.ptp(low[water]) > 0.01  # there are water lines to see
    assert velocity_shift(high, low, water) == pytest.approx(30.0, abs=0.5)
    star_low, star_high = normalised(rv=25.0, berv=-15.0), normalised(rv=25.0, berv=15.0)
    assert velocity_shift(star_high, star_low, metal_region) == pytest.approx(0.0, abs=0.05)
    # Same BERV, RV -10 and +30 km/s: the star moves by 40 km/s, the water lines stay.
    star_a, star_b = normalised(rv=-10.0, berv=5.0), normalised(rv=30.0, berv=5.0)
    assert velocity_shift(star_b, star_a, metal_region) == pytest.approx(40.0, abs=0.3)
    tell_a, tell_b = (
        telluric_transmission(rv=-10.0, berv=5.0),
        telluric_transmission(rv=30.0, berv=5.0),
    )
    np.testing.assert_allclose(tell_a, tell_b, rtol=1e-9)


# --------------------------------------------------------------------------- physics


def test_hotter_stars_are_bluer() -> None:
    blue, red = window(4900.0, 50.0), window(6650.0, 50.0)
    ratios = []
    for teff, logg in [
        (3600, 4.8),
        (4500, 4.65),
        (5500, 4.5),
        (6500, 4.3),
        (8000, 4.15),
        (9800, 4.1),
    ]:
        flux = noiseless(teff=float(teff), logg=logg)
        ratios.append(flux[blue].mean() / flux[red].mean())
    assert np.all(np.diff(ratios) > 0), ratios


def test_neutral_metal_lines_weaken_with_teff_and_grow_with_metallicity() -> None:
    core = window(FE_6393_A, 0.2)
    cool = 1 - normalised(teff=5000.0, logg=4.55)[core].min()
    hot = 1 - normalised(teff=6500.0, logg=4.3)[core].min()
    assert cool > hot + 0.05
    rich = 1 - normalised(feh=0.3)[core].min()
    poor = 1 - normalised(feh=-0.5)[core].min()
    assert rich > poor + 0.05
    # Over many lines: the mean absorption of 5,300-5,500 A grows with [Fe/H].
    band = (WAVE > 5340) & (WAVE < 5500)
    depths = [mean_depth(normalised(feh=feh), band) for feh in (-1.0, -0.5, 0.0, 0.4)]
    assert np.all(np.diff(depths) > 0), depths


def test_balmer_lines_grow_from_k_to_a_stars() -> None:
    halpha = window(H_ALPHA_A, 3.0)
    depths = [
        mean_depth(normalised(teff=teff, logg=logg, vsini=5.0), halpha)
        for teff, logg in [(4000.0, 4.7), (5000.0, 4.55), (6500.0, 4.3), (8000.0, 4.15)]
    ]
    assert np.all(np.diff(depths) > 0), depths
    core = window(H_ALPHA_A, 0.3)
    assert 1 - normalised(teff=8000.0, logg=4.15)[core].min() > (
        1 - normalised(teff=5000.0, logg=4.55)[core].min()
    )


@pytest.mark.parametrize("centre", [MG_B1_A, NA_D2_A])
def test_pressure_wings_grow_with_gravity(centre: float) -> None:
    # Wings 0.6-1.6 A from the core, at the same Teff and [Fe/H]: dwarf against giant.
    offset = np.abs(WAVE - centre)
    wings = (offset > 0.6) & (offset < 1.6)
    dwarf = mean_depth(normalised(teff=4900.0, logg=4.6), wings)
    giant = mean_depth(normalised(teff=4900.0, logg=2.5), wings)
    assert dwarf > 1.3 * giant


def test_ionised_lines_grow_as_gravity_falls() -> None:
    core = window(5018.44, 0.25)  # Fe II
    dwarf = 1 - normalised(teff=4900.0, logg=4.6)[core].min()
    giant = 1 - normalised(teff=4900.0, logg=2.5)[core].min()
    assert giant > dwarf + 0.03


@pytest.mark.parametrize("snr", [30.0, 150.0])
def test_noise_matches_snr_on_a_flat_continuum(snr: float) -> None:
    star = {"teff": 9000.0, "logg": 4.1, "feh": -1.0, "vsini": 150.0, "rv": 0.0}
    expected = synth.render(DEMO, noise=False, snr=snr, **star).astype(np.float64)
    noisy = synth.render(DEMO, noise=True, snr=snr, seed=7, **star).astype(np.float64)
    region = window(synth.SNR_REFERENCE_A, 40.0)
    assert np.ptp(expected[region]) / expected[region].mean() < 0.05  # flat
    relative = (noisy - expected)[region] / expected[region]
    assert np.std(relative) == pytest.approx(1.0 / snr, rel=0.1)
    assert abs(np.mean(relative)) < 3.0 / snr / np.sqrt(region.sum())
    # The continuum at 5,500 A holds the counts that give this SNR with the read noise.
    counts = expected[np.argmin(np.abs(WAVE - synth.SNR_REFERENCE_A))]
    assert counts / np.sqrt(counts + synth.READ_NOISE_E**2) == pytest.approx(snr, rel=0.02)


# --------------------------------------------------------------------------- survey


def collect(*args, **kwargs) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    batches = list(synth.generate(*args, **kwargs))
    flux = np.concatenate([batch.flux for batch in batches])
    labels = {key: np.concatenate([b.labels[key] for b in batches]) for key in batches[0].labels}
    return flux, labels


def test_generate_is_deterministic_and_chunkable() -> None:
    flux, labels = collect(7, 2.0, DEMO, seed=11, batch_size=4)
    assert flux.dtype == np.float32 and flux.shape == (len(labels["id"]), DEMO.n_native)
    assert set(labels) == LABEL_KEYS
    assert all(len(column) == len(flux) for column in labels.values())
    again, _ = collect(7, 2.0, "demo", seed=11)
    np.testing.assert_array_equal(flux, again)
    parts = [collect(7, 2.0, DEMO, seed=11, star_range=r) for r in [(0, 3), (3, 4), (4, 7)]]
    np.testing.assert_array_equal(flux, np.concatenate([p[0] for p in parts]))
    for key, column in labels.items():
        np.testing.assert_array_equal(column, np.concatenate([p[1][key] for p in parts]))
    other, other_labels = collect(7, 2.0, DEMO, seed=12)
    assert other.shape != flux.shape or not np.array_equal(other, flux)
    assert not np.array_equal(other_labels["teff"][:1], labels["teff"][:1])
    assert labels["object"][0] == "SYN-s11-000000"
    assert labels["id"][0] == "SYN-s11-000000." + synth.observation_timestamp(labels["mjd_obs"][0])
    assert not set(labels["id"]) & set(other_labels["id"])  # another seed: other names


def test_observation_timestamp_is_the_utc_time_of_the_mjd() -> None:
    # MJD 51544.5 is 2000-01-01T12:00 (J2000.0); 53000 is 1,456 days later, 2003-12-27.
    assert synth.observation_timestamp(51544.5) == "2000-01-01T12:00:00.000"
    assert synth.observation_timestamp(53000.0 + 1.5 / 86400) == "2003-12-27T00:00:01.500"


def test_batches_are_bounded() -> None:
    sizes = [len(batch) for batch in synth.generate(3, 4.0, DEMO, seed=2, batch_size=5)]
    assert max(sizes) <= 5 and sum(sizes) > 5
    assert synth.default_batch_size(DEMO) == 256
    assert 0 < synth.default_batch_size(named_grid("harps")) <= 256


@pytest.fixture(scope="module")
def survey() -> tuple[synth.Stars, synth.Epochs]:
    stars = synth.draw_stars(3000, seed=5)
    return stars, synth.draw_epochs(stars, 5.0, seed=5)


def test_star_population_is_harps_like(survey) -> None:
    stars, _ = survey
    assert stars.teff.min() >= 3500 and stars.teff.max() <= 10000
    assert np.mean((stars.teff >= 4800) & (stars.teff <= 6500)) > 0.55
    assert np.mean(stars.teff < 4000) > 0.03 and np.mean(stars.teff > 7000) > 0.02
    giants = stars.logg < 3.6
    assert 0.10 < giants.mean() < 0.16
    assert stars.teff[giants].min() >= 4000 and stars.teff[giants].max() <= 5200
    assert stars.logg.min() >= 1.5 and stars.logg.max() <= 5.0
    dwarfs = ~giants
    # Main sequence: cooler dwarfs have higher gravity.
    assert np.corrcoef(stars.teff[dwarfs], stars.logg[dwarfs])[0, 1] < -0.5
    assert stars.feh.mean() == pytest.approx(-0.1, abs=0.03)
    assert stars.feh.std() == pytest.approx(0.25, abs=0.03)
    slow = np.median(stars.vsini[dwarfs & (stars.teff < 6000)])
    fast = np.median(stars.vsini[stars.teff > 7500])
    assert slow < 5 and fast > 10 * slow
    assert np.abs(stars.rv_sys).max() <= 100 and np.abs(stars.rv_sys).max() > 90
    assert np.all((stars.dec >= -90) & (stars.dec <= 30.0 + 1e-9))


def test_epochs_are_heavy_tailed_with_sane_labels(survey) -> None:
    stars, epochs = survey
    counts = np.bincount(epochs.star, minlength=len(stars))
    assert counts.min() >= 1
    assert np.median(counts) <= 2 and np.mean(counts <= 3) > 0.6
    assert counts.max() >= 30 * np.median(counts)
    assert counts.mean() == pytest.approx(5.0, rel=0.3)
    labels = synth.epoch_labels(stars, epochs)
    assert set(labels) == LABEL_KEYS
    assert len(set(labels["id"])) == len(labels["id"])  # each of ~15,000 ids once
    assert np.abs(labels["berv"]).max() <= 30.0
    assert np.abs(labels["berv"]).max() > 25.0
    assert labels["airmass"].min() >= 1.0 and labels["airmass"].max() <= 2.5
    assert np.array_equal(labels["pwv"], epochs.pwv) and np.array_equal(labels["tilt"], epochs.tilt)
    assert labels["pwv"].min() >= 0.3 and np.std(labels["tilt"]) == pytest.approx(0.03, rel=0.1)
    good = labels["defect"] == ""
    assert labels["snr"][good].min() >= 10 and labels["snr"][good].max() <= 400
    assert np.median(labels["snr"][good]) == pytest.approx(80, rel=0.15)
    assert labels["mjd_obs"].min() > 52_700 and labels["mjd_obs"].max() < 59_400
    assert np.all((labels["exptime"] >= 15) & (labels["exptime"] <= 3600))
    assert set(np.unique(labels["defect"])) == set(synth.DEFECTS)
    assert 0.01 < np.mean(~good) < 0.03
    # Single stars keep their systemic velocity; binaries move by up to 2 K.
    single = stars.binary_k[epochs.star] == 0
    spread = np.abs(labels["rv"] - stars.rv_sys[epochs.star])
    assert spread[single].max() < 0.05
    assert spread[~single].max() > 1.0
    assert np.all(spread <= 2 * stars.binary_k[epochs.star] + 0.05)


def test_berv_is_the_seasonal_orbital_velocity() -> None:
    # A star on the ecliptic (RA 90, Dec +23.44) sees the full 29.78 km/s, a year apart.
    mjd = np.linspace(55_000, 55_365.25, 200)
    berv = synth.barycentric_correction(mjd, 90.0, 23.439)
    assert berv.max() == pytest.approx(29.78, abs=0.05)
    assert berv.min() == pytest.approx(-29.78, abs=0.05)
    # At the ecliptic pole it vanishes.
    assert np.abs(synth.barycentric_correction(mjd, 270.0, 66.561)).max() < 0.05


@pytest.mark.parametrize("defect", ["low_flux", "negative", "all_nan"])
def test_defects_are_as_labelled(survey, defect: str) -> None:
    stars, epochs = survey
    counts = np.bincount(epochs.star, minlength=len(stars))
    star = next(int(s) for s in epochs.star[epochs.defect == defect] if counts[s] <= 6)
    flux, labels = collect(len(stars), 5.0, DEMO, seed=5, star_range=(star, star + 1))
    assert np.any(labels["defect"] == defect)
    for row, label in zip(flux, labels["defect"], strict=True):
        if label == "all_nan":
            assert np.all(np.isnan(row))
            continue
        assert np.all(np.isfinite(row))
        if label == "low_flux":
            assert np.median(row) <= 50.0
        elif label == "negative":
            assert np.mean(row) <= 0.0
        else:
            assert np.median(row) > 50.0 and np.mean(row) > 0.0


def test_harps_grid_has_exact_zeros_in_the_ccd_gap() -> None:
    harps = named_grid("harps")
    flux, labels = collect(1, 1.0, harps, seed=3)
    wave = harps.native_wavelength
    ((low, high),) = harps.gaps
    gap = (wave >= low) & (wave <= high)
    assert gap.sum() > 3000 and flux.shape[1] == harps.n_native
    for row, defect in zip(flux, labels["defect"], strict=True):
        if defect != "all_nan":
            assert np.all(row[gap] == 0.0)
            assert np.all(row[~gap] != 0.0) and np.median(row[~gap]) > 50.0


def test_render_rejects_absurd_velocities() -> None:
    with pytest.raises(ValueError):
        synth.render(DEMO, 5777.0, 4.44, 0.0, 2.0, rv=900.0)
    with pytest.raises(ValueError):
        list(synth.generate(3, 2.0, DEMO, seed=1, star_range=(2, 5)))
