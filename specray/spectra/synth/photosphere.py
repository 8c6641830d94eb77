"""A one-layer LTE photosphere: electron pressure, ionisation, continuum opacity, turbulence.

Everything here is a function of Teff (K) and logg (dex, cgs) alone; the line strengths in
``lines`` are built from it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from specray.spectra.synth.tables import ELEMENTS, SPECIES, SPECIES_INDEX

THETA_K_EV = 5039.77
"""theta = THETA_K_EV / T: 10**(-theta * chi) = exp(-chi / kT) with chi in eV and T in K."""

SOLAR_TEFF_K = 5777.0
SOLAR_LOGG = 4.44

LOG_PE_SUN = 1.5
"""log10 of the photospheric electron pressure (dyn/cm^2) of the Sun near tau = 2/3."""
PE_TEFF_EXPONENT_HOT = 2.0
"""Above the solar Teff, Pe grows as Teff**2: places the Balmer maximum near 9,500 K."""
PE_TEFF_EXPONENT_COOL = 5.0
"""Below the solar Teff, Pe falls as Teff**5 (fewer ionised metals supply electrons)."""
PE_LOGG_SLOPE = 0.5
"""d log10 Pe / d logg (hydrostatic equilibrium in a photosphere: Pe ~ g**(1/2))."""
H_BOUND_FREE_CROSSOVER_K = 7500.0
"""Teff at which H I bound-free equals H- opacity (logg 4.2) in the continuum model."""
BALMER_LOWER_EXCITATION_EV = 10.199
"""Excitation energy of the n = 2 level of hydrogen, the lower level of the Balmer lines."""


def electron_pressure(teff: float, logg: float) -> float:
    """Photospheric electron pressure (dyn/cm^2): a broken power law in Teff and g (a crude
    fit): steep below the solar Teff (electrons from metals), gentler above (hydrogen)."""
    exponent = PE_TEFF_EXPONENT_HOT if teff >= SOLAR_TEFF_K else PE_TEFF_EXPONENT_COOL
    log_pe = (
        LOG_PE_SUN
        + PE_LOGG_SLOPE * (logg - SOLAR_LOGG)
        + exponent * math.log10(teff / SOLAR_TEFF_K)
    )
    return 10**log_pe


def _log_saha(teff: float, pe: float, chi: np.ndarray, u_low, u_high) -> np.ndarray:
    """log10(N_{r+1} / N_r) from the Saha equation (Gray 2005 form, Pe in dyn/cm^2)."""
    theta = THETA_K_EV / teff
    return (
        np.log10(np.asarray(u_high) / np.asarray(u_low))
        + 2.5 * math.log10(teff)
        - theta * np.asarray(chi)
        - math.log10(pe)
        - 0.1762
    )


def stage_fractions(teff: float, pe: float) -> np.ndarray:
    """Fraction of each element in stage 1 and 2 (array aligned with ``SPECIES``), for
    Teff (K) and electron pressure (dyn/cm^2)."""
    out = np.empty(len(SPECIES))
    for name, element in ELEMENTS.items():
        if name == "H":
            continue
        phi1 = 10 ** _log_saha(teff, pe, element.chi1, element.u1, element.u2)
        phi2 = 10 ** _log_saha(teff, pe, element.chi2, element.u2, element.u3)
        neutral = 1.0 / (1.0 + phi1 + phi1 * phi2)
        out[SPECIES_INDEX[(name, 1)]] = neutral
        out[SPECIES_INDEX[(name, 2)]] = phi1 * neutral
    return out


def continuum_opacity(teff: float, pe: float) -> float:
    """Relative continuum opacity per hydrogen atom: H- bound-free + H I bound-free (n >= 3)."""
    theta = THETA_K_EV / teff
    h_minus = pe * theta**2.5 * 10 ** (0.754 * theta)
    return h_minus + _H_BF_SCALE * 10 ** (-12.09 * theta)


def _h_minus_at(teff: float, logg: float) -> float:
    theta = THETA_K_EV / teff
    return electron_pressure(teff, logg) * theta**2.5 * 10 ** (0.754 * theta)


_H_BF_SCALE = _h_minus_at(H_BOUND_FREE_CROSSOVER_K, 4.2) / 10 ** (
    -12.09 * THETA_K_EV / H_BOUND_FREE_CROSSOVER_K
)


def balmer_factor(teff: float, logg: float) -> float:
    """n = 2 population of hydrogen per H nucleus: Boltzmann x Saha (neutral fraction)."""
    pe = electron_pressure(teff, logg)
    phi = 10 ** float(_log_saha(teff, pe, ELEMENTS["H"].chi1, 2.0, 1.0))
    return 10 ** (-BALMER_LOWER_EXCITATION_EV * THETA_K_EV / teff) / (1.0 + phi)


def microturbulence(teff: float, logg: float) -> float:
    """Microturbulent velocity (km/s): ~1 km/s for the Sun, larger for F/A stars and giants."""
    xi = 1.0 + 0.4e-3 * (teff - SOLAR_TEFF_K) + 0.25 * (SOLAR_LOGG - logg)
    return float(np.clip(xi, 0.5, 3.0))


def macroturbulence(teff: float, logg: float) -> float:
    """Macroturbulent velocity (km/s), applied as a Gaussian of that 1/e half-width."""
    zeta = 3.0 + 1.5e-3 * (teff - SOLAR_TEFF_K) + 0.5 * (SOLAR_LOGG - logg)
    return float(np.clip(zeta, 1.0, 8.0))


@functools.lru_cache(maxsize=1)
def species_tables() -> tuple[np.ndarray, np.ndarray]:
    """log10 abundance and log10 partition function of each species in ``SPECIES``."""
    log_eps = np.array([ELEMENTS[name].log_eps for name, _ in SPECIES])
    log_u = np.array(
        [
            math.log10(ELEMENTS[name].u1 if stage == 1 else ELEMENTS[name].u2)
            for name, stage in SPECIES
        ]
    )
    return log_eps, log_u
