"""Telluric absorption: O2 b-X bands and water-vapour lines, fixed in the observatory frame.

The transmission is computed once per grid at airmass 1 and the reference water column,
convolved with the instrument, and kept as an effective optical depth that an epoch
scales by its airmass (and water column).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import oaconvolve

from specray.spectra.grid import SPEED_OF_LIGHT_KMS
from specray.spectra.synth.lines import LINE_LIST_SEED
from specray.spectra.synth.profiles import broadening_kernel, deposit
from specray.spectra.synth.tables import H2O_BANDS, O2_BANDS

O2_B_LOWER = 1.4377
"""Rotational constant B'' of the O2 ground state X, cm^-1."""
O2_ROTATION_T_K = 250.0
"""Rotational temperature (K) that sets the O2 line intensities."""
O2_B_BAND_TAU0 = 3.0
"""Zenith central optical depth (thermal core) of the strongest B-band line."""
TELLURIC_B_KMS = 0.45
"""Doppler width b (km/s) of every telluric line."""
TELLURIC_GAMMA_KMS = 0.7
"""Lorentzian (pressure) half-width (km/s) of every telluric line."""
PWV_REFERENCE_MM = 3.0
"""Precipitable water vapour of the H2O line strengths; epochs scale them by pwv / this."""

TELLURIC_SUB_STEP_KMS = 0.25
"""Upper bound on the sub-step at which telluric lines are computed, km/s."""


def _vacuum_to_air(wavelength_vacuum: np.ndarray) -> np.ndarray:
    """Air wavelength (A) from vacuum (A): Morton 2000 (ApJS 130, 403, eq. 8)."""
    s2 = (1e4 / wavelength_vacuum) ** 2
    n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s2) + 1.5998e-4 / (38.9 - s2)
    return wavelength_vacuum / n


def _o2_lines() -> tuple[np.ndarray, np.ndarray]:
    """O2 b-X lines: air wavelengths (A) and zenith central optical depths.

    P and R branches of odd N'' only (nuclear-spin statistics of 16O2), N'' = 1..41,
    intensities (2N''+1) exp(-E/kT) at T = 250 K; the B'' spin splitting is ignored.
    """
    n = np.arange(1, 42, 2, dtype=np.float64)
    energy = O2_B_LOWER * n * (n + 1)
    weight = (2 * n + 1) * np.exp(-energy * 1.438777 / O2_ROTATION_T_K)
    weight /= weight.max()
    wavelengths, depths = [], []
    for origin, upper, relative in O2_BANDS:
        p_branch = origin + upper * (n - 1) * n - energy
        r_branch = origin + upper * (n + 1) * (n + 2) - energy
        for wavenumber in (p_branch, r_branch):
            wavelengths.append(_vacuum_to_air(1e8 / wavenumber))
            depths.append(O2_B_BAND_TAU0 * relative * weight)
    return np.concatenate(wavelengths), np.concatenate(depths)


def _h2o_lines() -> tuple[np.ndarray, np.ndarray]:
    """Water lines: pseudo-random positions inside the real optical H2O bands (fixed seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(LINE_LIST_SEED, spawn_key=(1,)))
    wavelengths, depths = [], []
    for low, high, count, tau_max in H2O_BANDS:
        wavelengths.append(rng.uniform(low, high, count))
        depths.append(tau_max * 10 ** rng.uniform(-2.0, 0.0, count))
    return np.concatenate(wavelengths), np.concatenate(depths)


def telluric_lines() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Telluric lines by molecule: (air wavelength A in the observatory frame, zenith tau0)."""
    return {"O2": _o2_lines(), "H2O": _h2o_lines()}


def telluric_depths(log_start: float, step: float, n: int, sigma: float) -> dict[str, np.ndarray]:
    """Effective zenith optical depth of each molecule on a fine axis (ln of the first
    wavelength in A, step in km/s, n samples), for an instrument of Gaussian sigma (km/s):
    the transmission is computed on a sub-grid, convolved with the instrument, then
    sampled back; -ln of that is what airmass (and water column) multiply."""
    factor = max(1, math.ceil(step / TELLURIC_SUB_STEP_KMS))
    sub_step, n_sub = step / factor, n * factor
    kernel = broadening_kernel(0.0, sigma, sub_step)
    out = {}
    for molecule, (wavelength, tau0) in telluric_lines().items():
        centre = (np.log(wavelength) - log_start) / (sub_step / SPEED_OF_LIGHT_KMS)
        inside = (centre > -100) & (centre < n_sub + 100)
        strength = tau0[inside] * math.sqrt(math.pi) * TELLURIC_B_KMS
        count = int(inside.sum())
        tau = deposit(
            n_sub,
            centre[inside],
            strength,
            np.full(count, TELLURIC_B_KMS),
            np.full(count, TELLURIC_GAMMA_KMS),
            sub_step,
        )
        depth = oaconvolve(-np.expm1(-tau), kernel, mode="same")[::factor]
        out[molecule] = -np.log1p(-np.clip(depth, 0.0, 0.999))
    return out
