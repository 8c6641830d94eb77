"""Line profiles on a uniform velocity axis: Gaussian and Voigt lines, the rotation +
Gaussian broadening kernel, and the TiO band depressions of cool stars."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import dawsn, voigt_profile

from specray.spectra.synth.tables import TIO_BANDS

TAU_MIN = 1e-3
"""Optical depth below which a line's wings are cut."""

MAX_WING_KMS = 8000.0
"""Widest half-window of any line profile, km/s (Balmer wings of A stars)."""

VOIGT_CORE_WIDTHS = 12.0
"""Beyond this many Doppler widths a Voigt profile equals its Lorentzian to ~1 %."""
VOIGT_SMALL_DAMPING = 0.05
"""Below this damping parameter a = gamma / b, the Voigt function is expanded to first
order in a, H(a, u) = exp(-u^2) - 2a/sqrt(pi) (1 - 2u F(u)), F Dawson's integral
(error < 1 %); above it the exact Faddeeva form is used."""

LIMB_DARKENING = 0.6
"""Linear limb-darkening coefficient of the rotation profile (Gray 2005, ch. 18)."""
_ROTATION_NODES = np.polynomial.legendre.leggauss(48)

TIO_ONSET_K = 4200.0
"""Teff (K) below which TiO bands appear."""
TIO_FULL_K = 3400.0
"""Teff (K) at and below which TiO bands have their full depth."""
TIO_EFOLD_A = 70.0
"""e-folding length (Angstrom) of a TiO band's depression to the red of its head."""


def deposit(
    n: int,
    centre: np.ndarray,
    strength: np.ndarray,
    doppler: np.ndarray,
    gamma: np.ndarray,
    step: float,
) -> np.ndarray:
    """Sum of line optical depths on a uniform velocity axis of ``n`` samples.

    centre: line centres in samples (float); strength: integrated optical depth (km/s);
    doppler: Doppler width b (km/s, 1/e half-width); gamma: Lorentzian half-width (km/s);
    step: sample spacing (km/s). Lines whose damping wings matter get Voigt profiles out
    to where the wing falls to TAU_MIN; the rest get Gaussians out to 4 b.
    """
    tau = np.zeros(n)
    core = 4.0 * doppler
    wing = np.sqrt(strength * gamma / (math.pi * TAU_MIN))
    damped = wing > core
    for voigt in (False, True):
        chosen = np.flatnonzero(damped if voigt else ~damped)
        if len(chosen) == 0:
            continue
        half_kms = np.minimum(wing[chosen], MAX_WING_KMS) if voigt else core[chosen]
        half = np.ceil(half_kms / step).astype(np.intp) + 1
        lengths = 2 * half + 1
        line = np.repeat(np.arange(len(chosen)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        index = (np.floor(centre[chosen]).astype(np.intp) - half)[line] + offsets
        inside = (index >= 0) & (index < n)
        index, line = index[inside], chosen[line[inside]]
        velocity = (index - centre[line]) * step
        if voigt:
            values = _voigt(velocity, strength[line], doppler[line], gamma[line])
        else:
            b = doppler[line]
            values = strength[line] / (math.sqrt(math.pi) * b) * np.exp(-((velocity / b) ** 2))
        tau += np.bincount(index, values, minlength=n)
    return tau


def _voigt(velocity: np.ndarray, strength: np.ndarray, doppler: np.ndarray, gamma: np.ndarray):
    """strength x Voigt profile (per km/s) at velocity (km/s) for Doppler width b and
    Lorentzian half-width gamma (km/s): Lorentzian far out, Voigt in the core."""
    values = strength * gamma / (math.pi * (velocity**2 + gamma**2))
    core = np.abs(velocity) < VOIGT_CORE_WIDTHS * doppler
    small = core & (gamma < VOIGT_SMALL_DAMPING * doppler)
    u = velocity[small] / doppler[small]
    h = np.exp(-(u**2)) - 2.0 * gamma[small] / doppler[small] / math.sqrt(math.pi) * (
        1.0 - 2.0 * u * dawsn(u)
    )
    values[small] = strength[small] * h / (math.sqrt(math.pi) * doppler[small])
    exact = core & ~small
    values[exact] = strength[exact] * voigt_profile(
        velocity[exact], doppler[exact] / math.sqrt(2.0), gamma[exact]
    )
    return values


def broadening_kernel(vsini: float, sigma: float, step: float) -> np.ndarray:
    """Rotation (vsini, km/s) convolved with a Gaussian (sigma, km/s), sampled every ``step``
    km/s; odd length, centred, sums to 1."""
    half = int(math.ceil((vsini + 5.0 * sigma) / step))
    velocity = np.arange(-half, half + 1) * step
    if vsini < 0.1 * step:
        kernel = np.exp(-0.5 * (velocity / sigma) ** 2)
    else:
        x, w = _ROTATION_NODES
        eps = LIMB_DARKENING
        rotation = w * (
            2.0 * (1.0 - eps) * np.sqrt(1.0 - x**2) + 0.5 * math.pi * eps * (1.0 - x**2)
        )
        shifted = (velocity[:, None] - vsini * x[None, :]) / sigma
        kernel = np.exp(-0.5 * shifted**2) @ rotation
    return kernel / kernel.sum()


def tio_transmission(wavelength: np.ndarray, teff: float) -> np.ndarray:
    """TiO band depressions (1 = none) at wavelength (A) for a star of Teff (K): sharp
    heads, fading to the red; all ones above ``TIO_ONSET_K``."""
    scale = np.clip((TIO_ONSET_K - teff) / (TIO_ONSET_K - TIO_FULL_K), 0.0, 1.0) ** 1.5
    out = np.ones_like(wavelength)
    if scale == 0.0:
        return out
    for head, depth in TIO_BANDS:
        after = wavelength >= head
        out[after] *= 1.0 - scale * depth * np.exp(-(wavelength[after] - head) / TIO_EFOLD_A)
    return out
