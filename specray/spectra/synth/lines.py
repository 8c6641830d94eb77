"""The atomic line list (real lines + a pseudo-random metal forest) and each line's strength
and widths for a given star.

Metal-line strength, with S the integrated optical depth in km/s:

    log10 S = LOG_S0 + log gf + (log eps - 12) + [Fe/H] + log10(lambda / 5000 A)
              - theta chi - log10 u_stage + log10 f_stage - log10 kappa
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from specray.spectra.synth.photosphere import (
    BALMER_LOWER_EXCITATION_EV,
    SOLAR_LOGG,
    SOLAR_TEFF_K,
    THETA_K_EV,
    balmer_factor,
    continuum_opacity,
    electron_pressure,
    microturbulence,
    species_tables,
    stage_fractions,
)
from specray.spectra.synth.tables import BALMER_LINES, ELEMENTS, REAL_LINES, SPECIES, SPECIES_INDEX

LINE_LIST_SEED = 2_009_122_872
"""Seed of the pseudo-random metal-line forest and telluric water lines (fixed)."""

LOG_S0 = 14.09
"""Calibration of metal-line strengths (tuned: Fe I 6393.6 has ~0.13 A in the Sun)."""

THERMAL_KMS2_PER_K_AMU = 0.0166289
"""2 k / m_u in (km/s)**2 per K per atomic mass unit: b_thermal**2 = this * T / mass."""

GAMMA_METAL_KMS = 0.04
"""Default van der Waals half-width (km/s) at 5,000 A for a solar-parameter photosphere."""

BALMER_S_HALPHA_SUN_KMS = 40000.0
"""Integrated optical depth (km/s) of H-alpha for a solar-parameter star."""
BALMER_COMPRESSION = 0.3
"""Power applied to the Boltzmann x Saha factor of the n = 2 level of hydrogen: the
continuum opacity (H-) also rises with Teff, so line/continuum changes far less than the
n = 2 population itself; 0.3 gives Balmer lines peaking near 9,500 K with a credible
contrast between K dwarfs and A stars."""

# Forest of pseudo-random metal lines: range (A), density at 5,000 A (lines per A, falling
# as lambda**-3), species mix, and the distribution of central optical depths at solar
# parameters (log10 tau0 ~ N(mean, sd), clipped).
FOREST_RANGE_A = (3500.0, 9000.0)
FOREST_DENSITY_5000 = 3.5
FOREST_LOG_TAU_SUN = (-0.6, 1.0, -3.0, 1.6)
FOREST_SPECIES: dict[tuple[str, int], float] = {
    ("Fe", 1): 0.50,
    ("Fe", 2): 0.06,
    ("Ti", 1): 0.08,
    ("Ti", 2): 0.03,
    ("Cr", 1): 0.06,
    ("Ni", 1): 0.08,
    ("Ca", 1): 0.03,
    ("Si", 1): 0.04,
    ("V", 1): 0.04,
    ("Co", 1): 0.04,
    ("Mn", 1): 0.04,
}


@dataclass(frozen=True)
class LineList:
    """Atomic lines: air wavelength (A), species index into ``SPECIES`` (-1 for hydrogen),
    lower excitation (eV), log gf, damping half-width at solar parameters (km/s)."""

    wavelength: np.ndarray
    species: np.ndarray
    chi: np.ndarray
    loggf: np.ndarray
    gamma0: np.ndarray

    def select(self, low: float, high: float) -> LineList:
        keep = (self.wavelength >= low) & (self.wavelength <= high)
        return LineList(*(getattr(self, f)[keep] for f in LineList.__dataclass_fields__))


def _solar_metal_log_terms(species: np.ndarray, wavelength: np.ndarray, chi: np.ndarray):
    """log10 S (km/s) of metal lines at solar parameters, without log gf."""
    pe = electron_pressure(SOLAR_TEFF_K, SOLAR_LOGG)
    fractions = stage_fractions(SOLAR_TEFF_K, pe)
    log_eps, log_u = species_tables()
    theta = THETA_K_EV / SOLAR_TEFF_K
    return (
        LOG_S0
        + log_eps[species]
        - 12.0
        + np.log10(wavelength / 5000.0)
        - theta * chi
        - log_u[species]
        + np.log10(fractions[species])
        - math.log10(continuum_opacity(SOLAR_TEFF_K, pe))
    )


def _forest(rng: np.random.Generator) -> LineList:
    """Pseudo-random metal lines with density ~ lambda**-3 and credible solar strengths."""
    low, high = FOREST_RANGE_A
    count = int(round(FOREST_DENSITY_5000 * 5000.0**3 / 2.0 * (low**-2 - high**-2)))
    u = rng.random(count)
    wavelength = (low**-2 - u * (low**-2 - high**-2)) ** -0.5
    keys = list(FOREST_SPECIES)
    probs = np.array(list(FOREST_SPECIES.values()))
    choice = rng.choice(len(keys), size=count, p=probs / probs.sum())
    species = np.array([SPECIES_INDEX[keys[c]] for c in choice], dtype=np.int64)
    chi = rng.uniform(0.0, 5.0, count)
    mean, sd, lo, hi = FOREST_LOG_TAU_SUN
    log_tau_sun = np.clip(rng.normal(mean, sd, count), lo, hi)
    # Invert the solar strength to a log gf (thermal core b ~ 1.5 km/s), then clip to the
    # range real lines have: strong high-excitation lines become rarer, as in the Sun.
    log_s_sun = log_tau_sun + math.log10(math.sqrt(math.pi) * 1.5)
    loggf = np.clip(log_s_sun - _solar_metal_log_terms(species, wavelength, chi), -5.0, 1.0)
    gamma0 = GAMMA_METAL_KMS * np.exp(rng.normal(0.0, 0.3, count))
    order = np.argsort(wavelength)
    return LineList(wavelength[order], species[order], chi[order], loggf[order], gamma0[order])


@functools.lru_cache(maxsize=1)
def line_list() -> LineList:
    """All metal lines (real + forest, sorted by wavelength) and the Balmer lines (species -1).

    Fixed by ``LINE_LIST_SEED``: the same for every survey seed.
    """
    forest = _forest(np.random.default_rng(np.random.SeedSequence(LINE_LIST_SEED, spawn_key=(0,))))
    real = np.array([(r[2], r[3], r[4], r[5]) for r in REAL_LINES])
    real_species = np.array([SPECIES_INDEX[(r[0], r[1])] for r in REAL_LINES], dtype=np.int64)
    balmer = np.array(BALMER_LINES)
    wavelength = np.concatenate([forest.wavelength, real[:, 0], balmer[:, 0]])
    order = np.argsort(wavelength, kind="stable")
    columns = (
        wavelength,
        np.concatenate([forest.species, real_species, np.full(len(balmer), -1)]),
        np.concatenate([forest.chi, real[:, 1], np.full(len(balmer), BALMER_LOWER_EXCITATION_EV)]),
        np.concatenate([forest.loggf, real[:, 2], balmer[:, 1]]),
        np.concatenate([forest.gamma0, real[:, 3], balmer[:, 2]]),
    )
    return LineList(*(column[order] for column in columns))


def line_strengths(
    lines: LineList, teff: float, logg: float, feh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrated optical depth S (km/s), Doppler width b (km/s), damping half-width (km/s).

    A line's central optical depth is S / (sqrt(pi) b) for a pure Doppler profile.
    """
    pe = electron_pressure(teff, logg)
    theta = THETA_K_EV / teff
    metal = lines.species >= 0
    species = np.where(metal, lines.species, 0)
    log_eps, log_u = species_tables()
    fractions = stage_fractions(teff, pe)
    log_s = (
        LOG_S0
        + lines.loggf
        + log_eps[species]
        - 12.0
        + feh
        + np.log10(lines.wavelength / 5000.0)
        - theta * lines.chi
        - log_u[species]
        + np.log10(fractions[species])
        - math.log10(continuum_opacity(teff, pe))
    )
    strength = 10**log_s
    gamma = lines.gamma0 * (lines.wavelength / 5000.0) * 10 ** (0.4 * (logg - SOLAR_LOGG))
    gamma = gamma * (teff / SOLAR_TEFF_K) ** 0.3
    mass = np.array([ELEMENTS[name].mass for name, _ in SPECIES])[species]
    xi = microturbulence(teff, logg)
    if not metal.all():
        h = ~metal
        ratio = (balmer_factor(teff, logg) / balmer_factor(SOLAR_TEFF_K, SOLAR_LOGG)) ** (
            BALMER_COMPRESSION
        )
        gf_lambda = 10 ** lines.loggf[h] * lines.wavelength[h]
        strength[h] = BALMER_S_HALPHA_SUN_KMS * gf_lambda / (10**0.710 * 6562.797) * ratio
        # Stark width ~ electron density**(2/3), n_e ~ Pe / T.
        density = electron_pressure(teff, logg) / teff
        density_sun = electron_pressure(SOLAR_TEFF_K, SOLAR_LOGG) / SOLAR_TEFF_K
        gamma[h] = lines.gamma0[h] * (density / density_sun) ** (2.0 / 3.0)
        mass = np.where(metal, mass, ELEMENTS["H"].mass)
    doppler = np.sqrt(THERMAL_KMS2_PER_K_AMU * teff / mass + xi**2)
    return strength, doppler, gamma
