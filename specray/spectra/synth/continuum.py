"""The continuum and the counts: Planck, instrument throughput, atmospheric extinction, and
the counts that give an epoch its signal-to-noise ratio."""

from __future__ import annotations

import math

import numpy as np

HC_OVER_K_AK = 1.438776877e8
"""Second radiation constant hc/k in Angstrom K."""

SNR_REFERENCE_A = 5500.0
"""Wavelength (Angstrom) at which an epoch's SNR per pixel is defined (on the continuum)."""

READ_NOISE_E = 5.0
"""CCD read noise per pixel, electrons (= ADU at gain 1)."""

THROUGHPUT_PEAK_A = 5600.0
THROUGHPUT_LOG_WIDTH = 0.25

SITE_PRESSURE_RATIO = 0.76
"""Surface pressure at La Silla (2,400 m) over sea level: scales Rayleigh scattering."""


def planck(wavelength: np.ndarray, teff: float) -> np.ndarray:
    """Planck B_lambda (arbitrary units) at wavelength (A) and temperature (K)."""
    x = HC_OVER_K_AK / (np.asarray(wavelength, dtype=np.float64) * teff)
    return np.asarray(wavelength, dtype=np.float64) ** -5 / np.expm1(x)


def throughput(wavelength: np.ndarray) -> np.ndarray:
    """Instrument + telescope efficiency (peak 1): log-normal in wavelength, peak at 5,600 A,
    sigma 0.25 in ln(lambda): ~0.3 at 3,800 A and ~0.7 at 6,900 A, like HARPS."""
    return np.exp(
        -0.5 * (np.log(np.asarray(wavelength) / THROUGHPUT_PEAK_A) / THROUGHPUT_LOG_WIDTH) ** 2
    )


def extinction_mag(wavelength: np.ndarray) -> np.ndarray:
    """Atmospheric extinction (mag per airmass) at wavelength (A): Rayleigh (Hansen & Travis
    1974, Space Sci. Rev. 16, 527, eq. 2.32) + aerosols (0.03 at 5,500 A, ~lambda**-1.3) +
    the ozone Chappuis band (0.04 peak near 6,000 A)."""
    micron = np.asarray(wavelength, dtype=np.float64) / 1e4
    rayleigh = 0.008569 * micron**-4 * (1 + 0.0113 * micron**-2 + 0.00013 * micron**-4)
    aerosol = 0.03 * (micron / 0.55) ** -1.3
    ozone = 0.04 * np.exp(-0.5 * ((micron - 0.602) / 0.05) ** 2)
    return 2.5 / math.log(10.0) * (SITE_PRESSURE_RATIO * rayleigh + aerosol + ozone)


def counts_for_snr(snr: float | np.ndarray) -> float | np.ndarray:
    """Counts c (ADU, gain 1) with c / sqrt(c + read_noise**2) = snr."""
    s2 = np.asarray(snr, dtype=np.float64) ** 2
    return 0.5 * (s2 + np.sqrt(s2 * s2 + 4.0 * s2 * READ_NOISE_E**2))
