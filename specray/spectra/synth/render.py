"""Rendering: a star's broadened rest-frame template, and one observation of it in ADU
(Doppler shift, continuum, extinction, tilt, tellurics, counts, noise, gaps, defects)."""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import oaconvolve

from specray.errors import InputError
from specray.spectra.grid import SPEED_OF_LIGHT_KMS, Grid
from specray.spectra.synth.continuum import READ_NOISE_E, SNR_REFERENCE_A, counts_for_snr, planck
from specray.spectra.synth.epochs import DEFECTS
from specray.spectra.synth.grid_model import MAX_ABS_BERV_KMS, GridModel, as_grid, grid_model
from specray.spectra.synth.lines import line_strengths
from specray.spectra.synth.photosphere import macroturbulence
from specray.spectra.synth.profiles import (
    TIO_ONSET_K,
    broadening_kernel,
    deposit,
    tio_transmission,
)
from specray.spectra.synth.tellurics import PWV_REFERENCE_MM

D_MAX = 0.93
"""Largest line depth: residual flux is 1 - D_MAX * (1 - exp(-tau))."""

MAX_ABS_RV_KMS = 500.0
"""Largest |radial velocity| a spectrum can be rendered at, km/s."""

LOW_FLUX_MEDIAN_ADU = 40.0
"""A low_flux spectrum's median is brought to at most this (the ingest cut is 50 ADU)."""


def _interpolate_cubic(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Four-point Lagrange interpolation of uniformly sampled values at float positions."""
    i = np.clip(np.floor(position).astype(np.intp), 1, len(values) - 3)
    t = position - i
    tm1, tm2, tp1 = t - 1.0, t - 2.0, t + 1.0
    return (
        values[i - 1] * (-t * tm1 * tm2 / 6.0)
        + values[i] * (tp1 * tm1 * tm2 / 2.0)
        + values[i + 1] * (-tp1 * t * tm2 / 2.0)
        + values[i + 2] * (tp1 * t * tm1 / 6.0)
    )


def _interpolate_linear(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    i = np.clip(np.floor(position).astype(np.intp), 0, len(values) - 2)
    t = position - i
    return values[i] * (1.0 - t) + values[i + 1] * t


def template(model: GridModel, teff: float, logg: float, feh: float, vsini: float) -> np.ndarray:
    """Normalised rest-frame stellar spectrum on the model's fine log-lambda axis, after
    rotation, macroturbulence and instrumental broadening (1 = continuum)."""
    strength, doppler, gamma = line_strengths(model.lines, teff, logg, feh)
    doppler = np.maximum(doppler, model.step)  # the fine axis must sample every core
    keep = strength / (math.sqrt(math.pi) * doppler) > 1e-4
    centre = (np.log(model.lines.wavelength[keep]) - model.log_start) / model.log_step
    tau = deposit(model.n_fine, centre, strength[keep], doppler[keep], gamma[keep], model.step)
    residual = 1.0 + D_MAX * np.expm1(-tau)
    if teff < TIO_ONSET_K:
        residual *= tio_transmission(model.fine_wavelength, teff)
    sigma = math.hypot(model.sigma_instrument, macroturbulence(teff, logg) / math.sqrt(2.0))
    kernel = broadening_kernel(vsini, sigma, model.step)
    return 1.0 - oaconvolve(1.0 - residual, kernel, mode="same")


def rest_frame_spectrum(
    grid: Grid | str, teff: float, logg: float, feh: float, vsini: float
) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless normalised stellar spectrum at rest (a template), broadened by rotation
    (vsini, km/s), macroturbulence and the grid's instrument: (wavelength in A on a fine
    uniform log-lambda axis covering the grid, normalised flux)."""
    model = grid_model(as_grid(grid))
    return model.fine_wavelength, template(model, teff, logg, feh, vsini)


def star_continuum(model: GridModel, teff: float) -> np.ndarray:
    """Planck x throughput on the native pixels, 1 at SNR_REFERENCE_A."""
    wavelength = model.grid.native_wavelength
    return planck(wavelength, teff) / planck(np.array(SNR_REFERENCE_A), teff) * model.throughput


def observe(
    model: GridModel,
    rest: np.ndarray | None,
    continuum: np.ndarray,
    epoch: dict[str, float | str],
    rng: np.random.Generator | None,
) -> np.ndarray:
    """One barycentric spectrum in ADU (float64) from a star's rest-frame spectrum.

    ``epoch`` holds rv, berv (km/s), airmass, pwv (mm), tilt, snr and defect; ``rest``
    None means a pure continuum (no stellar lines); ``rng`` None means no noise.
    """
    ln10 = math.log(10.0)
    flux = continuum * np.exp(
        -0.4 * ln10 * epoch["airmass"] * model.extinction + epoch["tilt"] * model.tilt_axis
    )
    if rest is not None:
        shift = math.log1p(epoch["rv"] / SPEED_OF_LIGHT_KMS) / model.log_step
        flux *= _interpolate_cubic(rest, model.pixel_position - shift)
    pixels = model.telluric_pixels
    if len(pixels):
        shift = math.log1p(epoch["berv"] / SPEED_OF_LIGHT_KMS) / model.log_step
        position = model.pixel_position[pixels] - shift
        tau = _interpolate_linear(model.tau_o2, position) + epoch["pwv"] / PWV_REFERENCE_MM * (
            _interpolate_linear(model.tau_h2o, position)
        )
        flux[pixels] *= np.exp(-epoch["airmass"] * tau)
    flux *= counts_for_snr(epoch["snr"])
    if rng is not None:
        noise = rng.standard_normal(len(flux))
        flux += np.sqrt(np.maximum(flux, 0.0) + READ_NOISE_E**2) * noise
    flux[model.gap] = 0.0
    return _apply_defect(flux, str(epoch["defect"]), model.gap, rng)


def _apply_defect(
    flux: np.ndarray, defect: str, gap: np.ndarray, rng: np.random.Generator | None
) -> np.ndarray:
    """Corrupt a spectrum as labelled: low_flux, negative (sky over-subtraction), all_nan."""
    if defect == "":
        return flux
    if defect == "all_nan":
        return np.full_like(flux, np.nan)
    usable = ~gap
    if defect == "low_flux":
        median = float(np.median(flux[usable]))
        if median > LOW_FLUX_MEDIAN_ADU:
            flux *= LOW_FLUX_MEDIAN_ADU / median
        return flux
    if defect == "negative":
        offset = 5.0 + 45.0 * (rng.random() if rng is not None else 0.5)
        flux[usable] -= float(np.mean(flux[usable])) + offset
        return flux
    raise InputError(f"unknown defect {defect!r}; expected one of {DEFECTS}")


def render(
    grid: Grid | str,
    teff: float,
    logg: float,
    feh: float,
    vsini: float,
    rv: float,
    *,
    berv: float = 0.0,
    airmass: float = 1.0,
    snr: float = 100.0,
    pwv: float = PWV_REFERENCE_MM,
    tilt: float = 0.0,
    defect: str = "",
    noise: bool = True,
    lines: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """One spectrum (float32, ADU, on ``grid.native_wavelength``) of a star with the given
    Teff (K), logg (dex), [Fe/H] (dex), vsini (km/s), barycentric rv (km/s), observed with
    the given berv (km/s), airmass, snr (per pixel at 5,500 A), pwv (mm), and tilt.

    ``noise=False`` gives the expected counts; ``lines=False`` the continuum x tellurics
    alone (dividing by it normalises a spectrum exactly).
    """
    if abs(rv) > MAX_ABS_RV_KMS:
        raise InputError(f"|rv| must be <= {MAX_ABS_RV_KMS} km/s, got {rv}")
    if abs(berv) > MAX_ABS_BERV_KMS:
        raise InputError(f"|berv| must be <= {MAX_ABS_BERV_KMS} km/s, got {berv}")
    model = grid_model(as_grid(grid))
    rest = template(model, teff, logg, feh, vsini) if lines else None
    epoch = {"rv": rv, "berv": berv, "airmass": airmass, "pwv": pwv, "tilt": tilt, "snr": snr}
    epoch["defect"] = defect
    rng = np.random.default_rng(seed) if noise else None
    return observe(model, rest, star_continuum(model, teff), epoch, rng).astype(np.float32)
