"""The embedded synthetic survey: HARPS-like stars, epochs and spectra with known truth.

A survey is drawn in three steps, each deterministic for a seed and chunkable by star:

1. ``draw_stars``: effective temperature, surface gravity, metallicity, projected
   rotation, systemic radial velocity, sky position and brightness of each star.
2. ``draw_epochs``: a heavy-tailed number of observations per star, each with its own
   signal-to-noise ratio, date, barycentric correction, airmass, water column, radial
   velocity (binaries move) and, rarely, a defect that the ingest must flag. Each
   observation's id is its star's name (which holds the seed) and its time to the
   millisecond, as archive names carry a timestamp: surveys or seasons drawn with
   different seeds never share an id, and the same survey always has the same ids.
3. ``generate``: the spectra, in ADU on a grid's native pixels, in batches.

Per-star randomness comes from ``numpy.random.SeedSequence(seed, spawn_key=(star, k))``
(k = 0 stellar parameters, 1 epochs, 2 noise), so any range of stars can be produced on
its own and matches the whole survey exactly (parallel tasks each take a range).

Spectrum model (all wavelengths in Angstrom, in air like the HARPS products):

- Continuum: Planck B_lambda(Teff) times a fixed instrument throughput (``throughput``:
  a log-normal in wavelength peaking at 5,600 A) times atmospheric extinction at the
  epoch's airmass (Rayleigh + aerosol + ozone, ``extinction_mag``) times a small
  per-epoch chromatic tilt (fibre/slit losses).
- Lines: real strong lines (Balmer, Na D, Mg b, Ca II H&K, Ca I, Fe I, Fe II, Ba II, ...)
  plus a pseudo-random metal-line forest, fixed by ``LINE_LIST_SEED`` and independent of
  the survey seed. Each line's integrated optical depth follows a one-layer LTE recipe:
  abundance x 10**[Fe/H] x gf x Boltzmann factor 10**(-theta chi) x Saha ionisation
  fraction, divided by the H- + H I bound-free continuum opacity, with an electron
  pressure that grows with Teff and logg (``electron_pressure``). Neutral lines of
  ionised metals thus strengthen strongly towards K and M stars; ionised lines grow
  with falling gravity; damping (van der Waals for metals, Stark for hydrogen) widens
  with gravity. Profiles are Voigt (Gaussian thermal + microturbulent core, Lorentzian
  damping wings); the residual flux is 1 - D_MAX * (1 - exp(-tau)), so even saturated
  cores keep a little flux, as real photospheric cores do. Stars below 4,200 K get TiO
  band depressions.
- Broadening: rotation (limb-darkened profile, vsini), a Gaussian macroturbulence and
  the instrumental Gaussian (FWHM = c / grid.resolving_power) are combined into one
  kernel and applied once per star on a uniform log-lambda ("velocity") axis.

Frames and signs: the output is barycentric, like the HARPS archive. A stellar line with
rest wavelength lambda0 appears at lambda0 * (1 + rv / c), rv the star's barycentric
radial velocity of that epoch (positive = receding). Telluric lines are fixed in the
observatory frame; the barycentric correction maps lambda_topo to
lambda_topo * (1 + berv / c), so a telluric line at lambda_tel appears at
lambda_tel * (1 + berv / c). ``berv`` is the Earth's velocity towards the star
(positive = approaching the star), the HARPS DRS convention in which
rv = rv_observed + berv. Doppler factors are the first-order 1 + v / c throughout.

Counts: the spectrum is scaled so that the continuum at 5,500 A (``SNR_REFERENCE_A``,
before line absorption) holds the counts c for which c / sqrt(c + read_noise**2) equals
the epoch's SNR; the noise is Gaussian with variance counts + read_noise**2 (gain 1
e-/ADU). Grid gaps hold exact zeros. Defects: ``low_flux`` (a very low SNR and a median
below 50 ADU), ``negative`` (an over-subtracted sky: a constant offset makes the mean
<= 0), ``all_nan`` (corrupt: every pixel NaN).

Simplifications a reviewer should know: one-layer line formation (no model atmosphere,
no radiative transfer, no limb-darkening dependence of line profiles); atomic data of
the real lines are approximate (see ``REAL_LINES``); continuum opacity ignores hydrogen
ionisation and electron scattering; Balmer strengths use a compressed Boltzmann-Saha
factor (``BALMER_COMPRESSION``) and Lorentzian Stark wings; telluric transmission is
computed once at airmass 1 (convolved with the instrument) and raised to the power
airmass x column; no Rossiter, no convective blueshift, no activity, no blaze residuals,
no cosmic rays, no sky emission lines; the forest is random, not a real line list.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.signal import oaconvolve
from scipy.special import dawsn, ndtr, voigt_profile

from specray.errors import InputError
from specray.spectra.grid import SPEED_OF_LIGHT_KMS, Grid, named_grid

# --------------------------------------------------------------------------- constants

THETA_K_EV = 5039.77
"""theta = THETA_K_EV / T: 10**(-theta * chi) = exp(-chi / kT) with chi in eV and T in K."""

HC_OVER_K_AK = 1.438776877e8
"""Second radiation constant hc/k in Angstrom K."""

THERMAL_KMS2_PER_K_AMU = 0.0166289
"""2 k / m_u in (km/s)**2 per K per atomic mass unit: b_thermal**2 = this * T / mass."""

SOLAR_TEFF_K = 5777.0
SOLAR_LOGG = 4.44

SNR_REFERENCE_A = 5500.0
"""Wavelength (Angstrom) at which an epoch's SNR per pixel is defined (on the continuum)."""

READ_NOISE_E = 5.0
"""CCD read noise per pixel, electrons (= ADU at gain 1)."""

D_MAX = 0.93
"""Largest line depth: residual flux is 1 - D_MAX * (1 - exp(-tau))."""

TAU_MIN = 1e-3
"""Optical depth below which a line's wings are cut."""

MAX_WING_KMS = 8000.0
"""Widest half-window of any line profile, km/s (Balmer wings of A stars)."""

FINE_MARGIN_KMS = 1000.0
"""Extra velocity range of the fine rest-frame axis on each side of a grid, km/s."""

MAX_ABS_RV_KMS = 500.0
"""Largest |radial velocity| a spectrum can be rendered at, km/s."""

MAX_ABS_BERV_KMS = 40.0
"""Largest |barycentric correction| a spectrum can be rendered at, km/s (Earth: < 31)."""

MAX_FINE_STEP_KMS = 1.0
"""Upper bound on the fine axis step, km/s (resolves thermal line cores)."""

TELLURIC_SUB_STEP_KMS = 0.25
"""Upper bound on the sub-step at which telluric lines are computed, km/s."""

MAX_BATCH_BYTES = 64 * 2**20
"""Bound on the float32 flux of one batch, bytes."""

MAX_BATCH_SPECTRA = 256

DEFECTS = ("", "low_flux", "negative", "all_nan")
DEFECT_RATES = {"low_flux": 0.008, "negative": 0.006, "all_nan": 0.006}
"""Per-epoch probability of each defect (about 2 % in all)."""

LOW_FLUX_MEDIAN_ADU = 40.0
"""A low_flux spectrum's median is brought to at most this (the ingest cut is 50 ADU)."""

LINE_LIST_SEED = 2_009_122_872
"""Seed of the pseudo-random metal-line forest and telluric water lines (fixed)."""

# La Silla (ESO 3.6 m, HARPS): latitude in degrees.
OBSERVATORY_LATITUDE_DEG = -29.2584
EARTH_ORBITAL_SPEED_KMS = 29.78
OBLIQUITY_DEG = 23.439
HARPS_FIRST_MJD = 52_940.0
"""First night of the synthetic campaign (Nov 2003, the start of HARPS operations)."""
SURVEY_YEARS = 17


# --------------------------------------------------------------------------- atomic data


@dataclass(frozen=True)
class Element:
    """Atomic data of one element.

    mass (amu); log_eps: solar abundance log10(N/N_H) + 12 (Asplund et al. 2009, ARA&A 47,
    481); chi1, chi2: first and second ionisation energies, eV (NIST ASD); u1, u2, u3:
    partition functions of the neutral, singly and doubly ionised atom, held constant at
    approximate solar-photosphere values (Gray 2005, The Observation and Analysis of
    Stellar Photospheres, app. D).
    """

    mass: float
    log_eps: float
    chi1: float
    chi2: float
    u1: float
    u2: float
    u3: float


ELEMENTS: dict[str, Element] = {
    "H": Element(1.008, 12.00, 13.598, 1e9, 2.0, 1.0, 1.0),
    "Na": Element(22.99, 6.24, 5.139, 47.29, 2.0, 1.0, 6.0),
    "Mg": Element(24.31, 7.60, 7.646, 15.035, 1.0, 2.0, 1.0),
    "Al": Element(26.98, 6.45, 5.986, 18.83, 6.0, 1.0, 2.0),
    "Si": Element(28.09, 7.51, 8.152, 16.35, 9.5, 5.7, 1.0),
    "Ca": Element(40.08, 6.34, 6.113, 11.872, 1.2, 2.2, 1.0),
    "Ti": Element(47.87, 4.95, 6.828, 13.576, 30.0, 55.0, 25.0),
    "V": Element(50.94, 3.93, 6.746, 14.66, 40.0, 35.0, 25.0),
    "Cr": Element(52.00, 5.64, 6.767, 16.486, 10.0, 7.5, 20.0),
    "Mn": Element(54.94, 5.43, 7.434, 15.64, 6.5, 7.5, 10.0),
    "Fe": Element(55.85, 7.50, 7.902, 16.199, 25.0, 42.0, 25.0),
    "Co": Element(58.93, 4.99, 7.881, 17.084, 30.0, 28.0, 20.0),
    "Ni": Element(58.69, 6.22, 7.640, 18.169, 30.0, 10.0, 20.0),
    "Sr": Element(87.62, 2.87, 5.695, 11.030, 1.0, 2.0, 1.0),
    "Ba": Element(137.33, 2.18, 5.212, 10.004, 2.5, 3.5, 1.0),
}

SPECIES: tuple[tuple[str, int], ...] = tuple(
    (name, stage) for name in ELEMENTS if name != "H" for stage in (1, 2)
)
"""(element, ionisation stage) pairs of the metal lines: stage 1 neutral, 2 singly ionised."""
_SPECIES_INDEX = {species: i for i, species in enumerate(SPECIES)}

# Real lines: (element, stage, air wavelength A, lower excitation eV, log gf, gamma0 km/s).
# Wavelengths are the standard air values of the NIST Atomic Spectra Database / VALD;
# excitation energies and log gf are approximate VALD values (rounded, good to ~0.2
# dex). gamma0 is the Lorentzian damping half-width (km/s) at solar Teff and logg, tuned
# so that a solar-parameter star has roughly the solar equivalent widths of Moore,
# Minnaert & Houtgast 1966 (NBS Monograph 61) for Na D, Mg b, Ca II H&K, Ca I 4227.
GAMMA_METAL_KMS = 0.04
"""Default van der Waals half-width (km/s) at 5,000 A for a solar-parameter photosphere."""

REAL_LINES: tuple[tuple[str, int, float, float, float, float], ...] = (
    ("Na", 1, 5889.951, 0.000, 0.117, 0.20),  # Na D2
    ("Na", 1, 5895.924, 0.000, -0.184, 0.20),  # Na D1
    ("Na", 1, 5682.633, 2.102, -0.706, 0.10),
    ("Na", 1, 5688.205, 2.104, -0.450, 0.10),
    ("Na", 1, 6154.226, 2.102, -1.547, 0.06),
    ("Na", 1, 6160.747, 2.104, -1.246, 0.06),
    ("Mg", 1, 5167.321, 2.709, -0.870, 0.40),  # Mg b4
    ("Mg", 1, 5172.684, 2.712, -0.393, 0.42),  # Mg b2
    ("Mg", 1, 5183.604, 2.717, -0.167, 0.40),  # Mg b1
    ("Mg", 1, 5528.405, 4.346, -0.498, 0.50),
    ("Mg", 1, 4702.991, 4.346, -0.440, 0.50),
    ("Ca", 2, 3933.663, 0.000, 0.135, 0.75),  # Ca II K
    ("Ca", 2, 3968.468, 0.000, -0.180, 0.80),  # Ca II H
    ("Ca", 1, 4226.728, 0.000, 0.244, 0.55),
    ("Ca", 1, 6102.723, 1.879, -0.793, 0.24),
    ("Ca", 1, 6122.217, 1.886, -0.316, 0.30),
    ("Ca", 1, 6162.173, 1.899, -0.090, 0.20),
    ("Ca", 1, 6439.075, 2.526, 0.390, 0.05),
    ("Ca", 1, 6717.681, 2.709, -0.524, 0.20),
    ("Al", 1, 3944.006, 0.000, -0.640, 0.05),
    ("Al", 1, 3961.520, 0.014, -0.340, 0.05),
    ("Sr", 2, 4077.709, 0.000, 0.167, 0.05),
    ("Sr", 2, 4215.519, 0.000, -0.145, 0.05),
    ("Ba", 2, 4554.029, 0.000, 0.170, 0.30),
    ("Ba", 2, 5853.668, 0.604, -1.010, 0.05),
    ("Ba", 2, 6141.713, 0.704, -0.077, 0.05),
    ("Ba", 2, 6496.897, 0.604, -0.377, 0.05),
    ("Cr", 1, 5204.506, 0.941, -0.208, 0.05),
    ("Cr", 1, 5206.038, 0.941, 0.019, 0.05),
    ("Cr", 1, 5208.419, 0.941, 0.158, 0.05),
    ("Mn", 1, 4030.753, 0.000, -0.470, 0.05),
    ("Mn", 1, 4033.062, 0.000, -0.618, 0.05),
    ("Mn", 1, 4034.483, 0.000, -0.811, 0.05),
    ("Si", 1, 6155.134, 5.619, -0.754, 0.05),
    ("Ni", 1, 6643.630, 1.676, -2.300, 0.05),
    ("Ni", 1, 6767.772, 1.826, -2.170, 0.05),
    ("Fe", 1, 4045.812, 1.485, 0.280, 0.06),
    ("Fe", 1, 4063.594, 1.558, 0.062, 0.06),
    ("Fe", 1, 4071.738, 1.608, -0.008, 0.06),
    ("Fe", 1, 4383.545, 1.485, 0.200, 0.06),
    ("Fe", 1, 4404.750, 1.557, -0.142, 0.06),
    ("Fe", 1, 4957.597, 2.808, 0.233, 0.06),
    ("Fe", 1, 5012.068, 0.859, -2.642, 0.04),
    ("Fe", 1, 5110.413, 0.000, -3.760, 0.04),
    ("Fe", 1, 5166.282, 0.000, -4.195, 0.04),
    ("Fe", 1, 5171.596, 1.485, -1.793, 0.04),
    ("Fe", 1, 5227.190, 1.557, -1.228, 0.05),
    ("Fe", 1, 5232.940, 2.940, -0.058, 0.05),
    ("Fe", 1, 5269.537, 0.859, -1.321, 0.05),
    ("Fe", 1, 5324.179, 3.211, -0.103, 0.05),
    ("Fe", 1, 5328.039, 0.915, -1.466, 0.05),
    ("Fe", 1, 5367.466, 4.415, 0.443, 0.05),
    ("Fe", 1, 5371.490, 0.958, -1.645, 0.05),
    ("Fe", 1, 5383.369, 4.312, 0.645, 0.05),
    ("Fe", 1, 5397.128, 0.915, -1.993, 0.05),
    ("Fe", 1, 5405.775, 0.990, -1.844, 0.05),
    ("Fe", 1, 5415.199, 4.386, 0.642, 0.05),
    ("Fe", 1, 5429.697, 0.958, -1.879, 0.05),
    ("Fe", 1, 5434.524, 1.011, -2.122, 0.05),
    ("Fe", 1, 5446.917, 0.990, -1.914, 0.05),
    ("Fe", 1, 5455.609, 1.011, -2.091, 0.05),
    ("Fe", 1, 5586.756, 3.368, -0.144, 0.05),
    ("Fe", 1, 5615.644, 3.332, 0.050, 0.05),
    ("Fe", 1, 6065.482, 2.608, -1.530, 0.05),
    ("Fe", 1, 6136.615, 2.453, -1.400, 0.05),
    ("Fe", 1, 6137.692, 2.588, -1.403, 0.05),
    ("Fe", 1, 6191.558, 2.433, -1.417, 0.05),
    ("Fe", 1, 6230.723, 2.559, -1.281, 0.05),
    ("Fe", 1, 6252.555, 2.404, -1.687, 0.05),
    ("Fe", 1, 6393.601, 2.433, -1.432, 0.05),
    ("Fe", 1, 6400.001, 3.602, -0.290, 0.05),
    ("Fe", 1, 6421.351, 2.279, -2.027, 0.05),
    ("Fe", 1, 6430.846, 2.176, -2.006, 0.05),
    ("Fe", 1, 6494.980, 2.404, -1.273, 0.05),
    ("Fe", 1, 6546.239, 2.759, -1.536, 0.05),
    ("Fe", 1, 6592.914, 2.727, -1.473, 0.05),
    ("Fe", 1, 6677.987, 2.692, -1.418, 0.05),
    ("Fe", 1, 6750.153, 2.424, -2.621, 0.05),
    ("Fe", 2, 4923.927, 2.891, -1.320, 0.03),
    ("Fe", 2, 5018.440, 2.891, -1.220, 0.03),
    ("Fe", 2, 5169.033, 2.891, -0.870, 0.03),
    ("Fe", 2, 5197.577, 3.230, -2.100, 0.03),
    ("Fe", 2, 5234.625, 3.221, -2.180, 0.03),
    ("Fe", 2, 5276.002, 3.199, -1.940, 0.03),
    ("Fe", 2, 5316.615, 3.153, -1.850, 0.03),
    ("Fe", 2, 5534.847, 3.245, -2.930, 0.03),
    ("Fe", 2, 6247.557, 3.892, -2.300, 0.03),
    ("Fe", 2, 6456.383, 3.903, -2.050, 0.03),
    ("Fe", 2, 6516.080, 2.891, -3.310, 0.03),
)

# Balmer lines: (air wavelength A, log gf, Stark half-width at solar Teff/logg in km/s).
# Wavelengths and log gf: NIST ASD. Stark widths are tuned so that a solar-parameter star
# has roughly the solar equivalent widths (H-alpha ~4 A, H-beta ~3.7 A; Moore et al. 1966).
BALMER_LINES: tuple[tuple[float, float, float], ...] = (
    (6562.797, 0.710, 0.25),  # H-alpha
    (4861.323, -0.020, 2.8),  # H-beta
    (4340.462, -0.447, 6.3),  # H-gamma
    (4101.734, -0.753, 18.6),  # H-delta
    (3970.072, -0.993, 40.0),  # H-epsilon
    (3889.049, -1.184, 70.0),  # H8
    (3835.384, -1.340, 110.0),  # H9
    (3797.898, -1.474, 160.0),  # H10
)
BALMER_LOWER_EXCITATION_EV = 10.199
BALMER_S_HALPHA_SUN_KMS = 40000.0
"""Integrated optical depth (km/s) of H-alpha for a solar-parameter star."""
BALMER_COMPRESSION = 0.3
"""Power applied to the Boltzmann x Saha factor of the n = 2 level of hydrogen: the
continuum opacity (H-) also rises with Teff, so line/continuum changes far less than the
n = 2 population itself; 0.3 gives Balmer lines peaking near 9,500 K with a credible
contrast between K dwarfs and A stars."""

# Metal-line strength: log10 S[km/s] = LOG_S0 + log gf + (log eps - 12) + [Fe/H]
#   + log10(lambda / 5000 A) - theta chi - log10 u_stage + log10 f_stage - log10 kappa.
LOG_S0 = 14.09
"""Calibration of metal-line strengths (tuned: Fe I 6393.6 has ~0.13 A in the Sun)."""

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

# TiO band heads (Angstrom, degraded to the red) with relative depths: approximate heads
# of the alpha and gamma' systems (Pearse & Gaydon, The Identification of Molecular
# Spectra) as they appear in M-dwarf spectra.
TIO_BANDS: tuple[tuple[float, float], ...] = (
    (4761.0, 0.30),
    (4954.6, 0.40),
    (5166.7, 0.45),
    (5448.0, 0.30),
    (5597.7, 0.25),
    (5847.0, 0.35),
    (6158.7, 0.45),
    (6651.0, 0.30),
    (7053.5, 0.60),
)
TIO_ONSET_K = 4200.0
TIO_FULL_K = 3400.0
TIO_EFOLD_A = 70.0

# Telluric O2 bands of the b-X system (Babcock & Herzberg 1948, ApJ 108, 167; molecular
# constants from Huber & Herzberg 1979): band origin (vacuum, cm^-1), B' (cm^-1) and
# strength relative to the B band. The X-state rotational constant is B'' = 1.4377 cm^-1.
O2_BANDS: tuple[tuple[float, float, float], ...] = (
    (13120.9, 1.3913, 15.0),  # A band (0,0), head 7594 A
    (14525.7, 1.3731, 1.0),  # B band (1,0), head 6867 A
    (15902.6, 1.3549, 0.04),  # gamma band (2,0), head ~6277 A
)
O2_B_LOWER = 1.4377
O2_ROTATION_T_K = 250.0
O2_B_BAND_TAU0 = 3.0
"""Zenith central optical depth (thermal core) of the strongest B-band line."""
TELLURIC_B_KMS = 0.45
TELLURIC_GAMMA_KMS = 0.7
# Water vapour: bands (Angstrom) with the number of pseudo-random lines and the largest
# zenith central optical depth at the reference column. Band positions are the real
# H2O absorption regions of the optical; individual line positions are pseudo-random.
H2O_BANDS: tuple[tuple[float, float, int, float], ...] = (
    (5880.0, 6000.0, 24, 0.25),
    (6270.0, 6330.0, 6, 0.03),
    (6470.0, 6580.0, 26, 0.30),
    (6860.0, 6960.0, 18, 0.30),
    (7160.0, 7350.0, 60, 0.80),
    (8120.0, 8350.0, 60, 0.60),
)
PWV_REFERENCE_MM = 3.0
"""Precipitable water vapour of the H2O line strengths; epochs scale them by pwv / this."""

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


# --------------------------------------------------------------------------- stars


@dataclass(frozen=True)
class Stars:
    """Per-star ground truth (one entry per star, numpy arrays).

    index: position of the star in the survey; object: name (``SYN-s<seed>-000123``, see ``star_name``); teff (K);
    logg (dex, cgs); feh ([Fe/H], dex); vsini (km/s); rv_sys: systemic barycentric radial
    velocity (km/s); ra, dec (deg); vmag (V magnitude); binary_k: velocity semi-amplitude
    (km/s, 0 for single stars); binary_period (d); binary_t0 (MJD of zero phase).
    """

    index: np.ndarray
    object: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    feh: np.ndarray
    vsini: np.ndarray
    rv_sys: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    vmag: np.ndarray
    binary_k: np.ndarray
    binary_period: np.ndarray
    binary_t0: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


# Main-sequence logg against Teff (K): a smooth approximation to dwarf sequences such as
# Pecaut & Mamajek 2013 (ApJS 208, 9), from M2 V to A0 V.
_MS_TEFF_K = np.array([3400.0, 4000.0, 5000.0, 5800.0, 6500.0, 7500.0, 10000.0])
_MS_LOGG = np.array([4.85, 4.70, 4.58, 4.44, 4.28, 4.15, 4.10])

# Population mixture: fraction of each component (HARPS targets are mostly FGK dwarfs).
POPULATION = {"fgk": 0.66, "cool": 0.13, "hot": 0.08, "giant": 0.13}


def _star_rng(seed: int, star: int, stream: int, *extra: int) -> np.random.Generator:
    """The random generator of one star and one stream (0 stars, 1 epochs, 2 noise)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(star, stream, *extra)))


def _draw_teff_logg(rng: np.random.Generator) -> tuple[float, float]:
    """Teff (K) and logg (dex) from the population mixture."""
    u = rng.random()
    fractions = np.cumsum(list(POPULATION.values()))
    if u < fractions[0]:  # F, G and K dwarfs
        teff = float(np.clip(rng.normal(5600.0, 450.0), 4800.0, 6500.0))
    elif u < fractions[1]:  # M dwarfs and late K dwarfs
        teff = rng.uniform(3500.0, 4000.0) if rng.random() < 0.6 else rng.uniform(4000.0, 4800.0)
    elif u < fractions[2]:  # F and A stars
        teff = float(10 ** rng.uniform(math.log10(6500.0), 4.0))
    else:  # red clump and red giant branch
        teff = float(np.clip(rng.normal(4750.0, 280.0), 4000.0, 5200.0))
        return teff, float(np.clip(rng.normal(2.7, 0.45), 1.5, 3.5))
    logg = float(np.interp(teff, _MS_TEFF_K, _MS_LOGG)) + rng.normal(0.0, 0.08)
    return teff, float(np.clip(logg, 3.9, 5.0))


def _vsini_median(teff: float, logg: float) -> float:
    """Median vsini (km/s): slow below the Kraft break (~6,200 K), fast for A stars."""
    if logg < 3.6:
        return 3.0
    return float(np.interp(teff, [6000.0, 6500.0, 7000.0, 8000.0], [2.5, 10.0, 40.0, 100.0]))


def _draw_star(seed: int, star: int) -> dict[str, float]:
    rng = _star_rng(seed, star, 0)
    teff, logg = _draw_teff_logg(rng)
    spread = 0.5 if teff < 6200.0 else 0.7
    vsini = float(np.clip(_vsini_median(teff, logg) * math.exp(rng.normal(0.0, spread)), 0.5, 300))
    if teff < 6200.0 and rng.random() < 0.04:  # young, active, fast rotators
        vsini = rng.uniform(10.0, 40.0)
    wide = rng.random() < 0.15
    rv_sys = rng.uniform(-100.0, 100.0) if wide else rng.normal(0.0, 30.0)
    binary = rng.random() < 0.08
    period = float(10 ** rng.uniform(math.log10(2.0), math.log10(3000.0)))
    return {
        "teff": teff,
        "logg": logg,
        "feh": float(np.clip(rng.normal(-0.1, 0.25), -1.2, 0.6)),
        "vsini": vsini,
        "rv_sys": float(np.clip(rv_sys, -100.0, 100.0)),
        "ra": rng.uniform(0.0, 360.0),
        "dec": math.degrees(math.asin(rng.uniform(-1.0, 0.5))),
        "vmag": float(np.clip(rng.normal(8.0, 1.5), 2.5, 13.0)),
        "binary_k": float(10 ** rng.uniform(math.log10(0.5), math.log10(20.0))) if binary else 0.0,
        "binary_period": period,
        "binary_t0": HARPS_FIRST_MJD + rng.uniform(0.0, period),
    }


def draw_stars(n_stars: int, seed: int, star_range: tuple[int, int] | None = None) -> Stars:
    """Draw the stars of a survey of ``n_stars`` (only ``star_range = (a, b)`` if given).

    Each star's parameters depend only on ``seed`` and its index, so any range equals the
    matching slice of the whole survey.
    """
    start, stop = _check_range(n_stars, star_range)
    rows = [_draw_star(seed, star) for star in range(start, stop)]
    columns = {key: np.array([row[key] for row in rows], dtype=np.float64) for key in _STAR_KEYS}
    index = np.arange(start, stop, dtype=np.int64)
    names = np.array([star_name(seed, star) for star in index], dtype=str)
    return Stars(index=index, object=names, **columns)


def star_name(seed: int, star: int) -> str:
    """The object name of a star: ``SYN-s<seed>-<index>``.

    Surveys of different seeds hold different stars, so the seed is part of the name:
    stars of two surveys ingested into one store never share an object name.
    """
    return f"SYN-s{seed}-{star:06d}"


_STAR_KEYS = (
    "teff",
    "logg",
    "feh",
    "vsini",
    "rv_sys",
    "ra",
    "dec",
    "vmag",
    "binary_k",
    "binary_period",
    "binary_t0",
)


def _check_range(n_stars: int, star_range: tuple[int, int] | None) -> tuple[int, int]:
    if n_stars < 0:
        raise InputError(f"n_stars must be >= 0, got {n_stars}")
    start, stop = (0, n_stars) if star_range is None else star_range
    if not 0 <= start <= stop <= n_stars:
        raise InputError(f"star_range {star_range} must lie within [0, {n_stars}]")
    return int(start), int(stop)


# --------------------------------------------------------------------------- epochs


@dataclass(frozen=True)
class Epochs:
    """Per-epoch ground truth (one entry per observation, numpy arrays).

    star: position of the epoch's star in the ``Stars`` it was drawn for; epoch: number of
    the observation within its star (0, 1, ...); mjd (d); berv (km/s, Earth towards the
    star); rv: true barycentric radial velocity (km/s); snr: per-pixel SNR of the
    continuum at 5,500 A; airmass; exptime (s); pwv: precipitable water vapour (mm);
    tilt: chromatic slope of the fibre/slit losses (natural-log flux per 1,000 A);
    defect: "" or one of ``DEFECTS``.
    """

    star: np.ndarray
    epoch: np.ndarray
    mjd: np.ndarray
    berv: np.ndarray
    rv: np.ndarray
    snr: np.ndarray
    airmass: np.ndarray
    exptime: np.ndarray
    pwv: np.ndarray
    tilt: np.ndarray
    defect: np.ndarray

    def __len__(self) -> int:
        return len(self.star)


EPOCH_COUNT_SIGMA = 1.8
"""Log-normal width of the number of epochs per star (a heavy tail, as in HARPS)."""
EPOCH_COUNT_CAP = 100
"""No star has more than this many times the mean number of epochs."""


@functools.lru_cache(maxsize=16)
def _epoch_count_cdf(mean_epochs: float) -> np.ndarray:
    """Cumulative probabilities of 1, 2, ... epochs: ceil of a log-normal with given mean."""
    if mean_epochs <= 1.0:
        return np.array([1.0])
    cap = max(2, int(round(EPOCH_COUNT_CAP * mean_epochs)))
    log_k = np.log(np.arange(1, cap + 1, dtype=np.float64))

    def pmf(mu: float) -> np.ndarray:
        cdf = ndtr((log_k - mu) / EPOCH_COUNT_SIGMA)
        cdf[-1] = 1.0
        return np.diff(cdf, prepend=0.0)

    counts = np.arange(1, cap + 1)
    low, high = -20.0, math.log(mean_epochs) + 1.0
    for _ in range(80):  # bisection on the log-normal location
        mid = 0.5 * (low + high)
        low, high = (mid, high) if pmf(mid) @ counts < mean_epochs else (low, mid)
    return np.cumsum(pmf(0.5 * (low + high)))


def _ecliptic(ra_deg: float, dec_deg: float) -> tuple[float, float]:
    """Ecliptic longitude and latitude (rad) of an equatorial position (deg)."""
    ra, dec, eps = map(math.radians, (ra_deg, dec_deg, OBLIQUITY_DEG))
    sin_beta = math.sin(dec) * math.cos(eps) - math.cos(dec) * math.sin(eps) * math.sin(ra)
    lam = math.atan2(math.sin(ra) * math.cos(eps) + math.tan(dec) * math.sin(eps), math.cos(ra))
    return lam, math.asin(sin_beta)


def _sun_longitude_deg(mjd: np.ndarray) -> np.ndarray:
    """Mean ecliptic longitude of the Sun (deg; Astronomical Almanac low-precision formula)."""
    return 280.460 + 0.9856474 * (mjd - 51544.5)


def barycentric_correction(mjd: np.ndarray, ra_deg: float, dec_deg: float) -> np.ndarray:
    """Earth's orbital velocity towards a star (km/s) on the given dates: a seasonal sinusoid.

    Circular orbit, the Sun's mean longitude, no diurnal term: |berv| <= 29.78 km/s.
    """
    lam, beta = _ecliptic(ra_deg, dec_deg)
    sun = np.radians(_sun_longitude_deg(np.asarray(mjd, dtype=np.float64)))
    return EARTH_ORBITAL_SPEED_KMS * math.cos(beta) * np.sin(sun - lam)


def _draw_dates(rng: np.random.Generator, n: int, ra: float, dec: float) -> np.ndarray:
    """MJDs clustered in observing seasons around the star's opposition to the Sun."""
    lam, _ = _ecliptic(ra, dec)
    opposition = (math.degrees(lam) + 180.0 - _sun_longitude_deg(HARPS_FIRST_MJD)) % 360.0
    first = HARPS_FIRST_MJD + opposition / 0.9856474
    years = rng.integers(0, SURVEY_YEARS, size=n)
    offsets = np.clip(rng.normal(0.0, 45.0, size=n), -110.0, 110.0) + rng.uniform(-0.2, 0.2, n)
    return np.sort(first + 365.25 * years + offsets)


def _airmass(rng: np.random.Generator, n: int, dec: float) -> np.ndarray:
    """Airmass sec(z) at a random hour angle (hours ~ N(0, 1.5)), clipped to 1.0-2.5."""
    hour_angle = np.radians(15.0 * np.clip(rng.normal(0.0, 1.5, n), -4.0, 4.0))
    lat, d = math.radians(OBSERVATORY_LATITUDE_DEG), math.radians(dec)
    cos_z = math.sin(lat) * math.sin(d) + math.cos(lat) * math.cos(d) * np.cos(hour_angle)
    return np.clip(1.0 / np.maximum(cos_z, 0.1), 1.0, 2.5)


def _draw_defects(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random(n)
    edges = np.cumsum(list(DEFECT_RATES.values()))
    codes = np.searchsorted(edges, u, side="right")
    return np.array(DEFECTS[1:] + ("",), dtype=object)[codes]


def _draw_star_epochs(
    stars: Stars, position: int, cdf: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    star = int(stars.index[position])
    rng = _star_rng(seed, star, 1)
    n = int(np.searchsorted(cdf, rng.random(), side="right")) + 1
    n = min(n, len(cdf))
    ra, dec = float(stars.ra[position]), float(stars.dec[position])
    mjd = _draw_dates(rng, n, ra, dec)
    snr = np.clip(80.0 * np.exp(rng.normal(0.0, 0.55, n)), 10.0, 400.0)
    defect = _draw_defects(rng, n)
    snr = np.where(defect == "low_flux", rng.uniform(1.5, 4.0, n), snr)
    phase = 2.0 * np.pi * (mjd - stars.binary_t0[position]) / stars.binary_period[position]
    rv = stars.rv_sys[position] + stars.binary_k[position] * np.sin(phase)
    rv = rv + rng.normal(0.0, 0.005, n)  # a few m/s of stellar jitter
    airmass = _airmass(rng, n, dec)
    exptime = 900.0 * (snr / 100.0) ** 2 * 10 ** (0.4 * (stars.vmag[position] - 8.0)) * airmass
    return {
        "star": np.full(n, position, dtype=np.int64),
        "epoch": np.arange(n, dtype=np.int64),
        "mjd": mjd,
        "berv": barycentric_correction(mjd, ra, dec),
        "rv": rv,
        "snr": snr,
        "airmass": airmass,
        "exptime": np.round(np.clip(exptime, 15.0, 3600.0), 1),
        "pwv": np.clip(PWV_REFERENCE_MM * np.exp(rng.normal(0.0, 0.6, n)), 0.3, 20.0),
        "tilt": rng.normal(0.0, 0.03, n),
        "defect": defect,
    }


def draw_epochs(stars: Stars, mean_epochs: float, seed: int) -> Epochs:
    """Draw every star's observations: counts, dates, BERV, RV, SNR, airmass, defects.

    The number of epochs per star is the ceiling of a log-normal (sigma 1.8) whose mean is
    ``mean_epochs``, capped at 100 times the mean: most stars have 1-3 epochs, a few have
    hundreds. Each star's epochs depend only on ``seed`` and its survey index.
    """
    if mean_epochs < 1.0:
        raise InputError(f"mean_epochs must be >= 1, got {mean_epochs}")
    cdf = _epoch_count_cdf(float(mean_epochs))
    parts = [_draw_star_epochs(stars, i, cdf, seed) for i in range(len(stars))]
    if not parts:
        empty = {f: np.zeros(0) for f in Epochs.__dataclass_fields__}
        empty.update(star=np.zeros(0, np.int64), epoch=np.zeros(0, np.int64))
        empty["defect"] = np.zeros(0, dtype=object)
        return Epochs(**empty)
    return Epochs(**{key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


MJD_ZERO = datetime(1858, 11, 17)
"""The date at which the Modified Julian Date is 0 (UTC)."""


def observation_timestamp(mjd: float) -> str:
    """ISO 8601 time of an MJD (days, UTC), to the millisecond: ``2004-03-12T04:23:11.123``."""
    moment = MJD_ZERO + timedelta(milliseconds=round(float(mjd) * 86_400_000))
    return moment.isoformat(timespec="milliseconds")


def observation_id(name: str, mjd: float) -> str:
    """The id (and file name stem) of one observation: star name and time of observation.

    Like the archive's ADP names, which carry a timestamp, ids of different seasons or
    surveys differ: the star name holds the seed and the date differs between epochs.
    """
    return f"{name}.{observation_timestamp(mjd)}"


def epoch_labels(stars: Stars, epochs: Epochs) -> dict[str, np.ndarray]:
    """The label columns of ``generate`` for the given epochs (1-D arrays, one per epoch):
    every factor the generator varies (star: teff, logg, feh, vsini; epoch: rv, snr, berv,
    airmass, pwv, tilt, defect), so an analysis can test each of them."""
    at = epochs.star
    names = stars.object[at]
    ids = [observation_id(name, mjd) for name, mjd in zip(names, epochs.mjd, strict=True)]
    if len(set(ids)) != len(ids):
        raise RuntimeError("two epochs of one star fell on the same millisecond")
    return {
        "id": np.array(ids, dtype=str),
        "object": names.astype(str),
        "rv": epochs.rv,
        "teff": stars.teff[at],
        "logg": stars.logg[at],
        "feh": stars.feh[at],
        "vsini": stars.vsini[at],
        "snr": epochs.snr,
        "berv": epochs.berv,
        "mjd_obs": epochs.mjd,
        "airmass": epochs.airmass,
        "pwv": epochs.pwv,
        "tilt": epochs.tilt,
        "exptime": epochs.exptime,
        "ra": stars.ra[at],
        "dec": stars.dec[at],
        "defect": epochs.defect.astype(str),
    }


# --------------------------------------------------------------------------- line physics


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


def _stage_fractions(teff: float, pe: float) -> np.ndarray:
    """Fraction of each element in stage 1 and 2 (array aligned with ``SPECIES``)."""
    out = np.empty(len(SPECIES))
    for name, element in ELEMENTS.items():
        if name == "H":
            continue
        phi1 = 10 ** _log_saha(teff, pe, element.chi1, element.u1, element.u2)
        phi2 = 10 ** _log_saha(teff, pe, element.chi2, element.u2, element.u3)
        neutral = 1.0 / (1.0 + phi1 + phi1 * phi2)
        out[_SPECIES_INDEX[(name, 1)]] = neutral
        out[_SPECIES_INDEX[(name, 2)]] = phi1 * neutral
    return out


def _continuum_opacity(teff: float, pe: float) -> float:
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


def _balmer_factor(teff: float, logg: float) -> float:
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
    fractions = _stage_fractions(SOLAR_TEFF_K, pe)
    log_eps, log_u = _species_tables()
    theta = THETA_K_EV / SOLAR_TEFF_K
    return (
        LOG_S0
        + log_eps[species]
        - 12.0
        + np.log10(wavelength / 5000.0)
        - theta * chi
        - log_u[species]
        + np.log10(fractions[species])
        - math.log10(_continuum_opacity(SOLAR_TEFF_K, pe))
    )


@functools.lru_cache(maxsize=1)
def _species_tables() -> tuple[np.ndarray, np.ndarray]:
    """log10 abundance and log10 partition function of each species in ``SPECIES``."""
    log_eps = np.array([ELEMENTS[name].log_eps for name, _ in SPECIES])
    log_u = np.array(
        [
            math.log10(ELEMENTS[name].u1 if stage == 1 else ELEMENTS[name].u2)
            for name, stage in SPECIES
        ]
    )
    return log_eps, log_u


def _forest(rng: np.random.Generator) -> LineList:
    """Pseudo-random metal lines with density ~ lambda**-3 and credible solar strengths."""
    low, high = FOREST_RANGE_A
    count = int(round(FOREST_DENSITY_5000 * 5000.0**3 / 2.0 * (low**-2 - high**-2)))
    u = rng.random(count)
    wavelength = (low**-2 - u * (low**-2 - high**-2)) ** -0.5
    keys = list(FOREST_SPECIES)
    probs = np.array(list(FOREST_SPECIES.values()))
    choice = rng.choice(len(keys), size=count, p=probs / probs.sum())
    species = np.array([_SPECIES_INDEX[keys[c]] for c in choice], dtype=np.int64)
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
    real_species = np.array([_SPECIES_INDEX[(r[0], r[1])] for r in REAL_LINES], dtype=np.int64)
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
    log_eps, log_u = _species_tables()
    fractions = _stage_fractions(teff, pe)
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
        - math.log10(_continuum_opacity(teff, pe))
    )
    strength = 10**log_s
    gamma = lines.gamma0 * (lines.wavelength / 5000.0) * 10 ** (0.4 * (logg - SOLAR_LOGG))
    gamma = gamma * (teff / SOLAR_TEFF_K) ** 0.3
    mass = np.array([ELEMENTS[name].mass for name, _ in SPECIES])[species]
    xi = microturbulence(teff, logg)
    if not metal.all():
        h = ~metal
        ratio = (_balmer_factor(teff, logg) / _balmer_factor(SOLAR_TEFF_K, SOLAR_LOGG)) ** (
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


# --------------------------------------------------------------------------- profiles


def _deposit(
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


VOIGT_CORE_WIDTHS = 12.0
"""Beyond this many Doppler widths a Voigt profile equals its Lorentzian to ~1 %."""
VOIGT_SMALL_DAMPING = 0.05
"""Below this damping parameter a = gamma / b, the Voigt function is expanded to first
order in a, H(a, u) = exp(-u^2) - 2a/sqrt(pi) (1 - 2u F(u)), F Dawson's integral
(error < 1 %); above it the exact Faddeeva form is used."""


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


LIMB_DARKENING = 0.6
"""Linear limb-darkening coefficient of the rotation profile (Gray 2005, ch. 18)."""
_ROTATION_NODES = np.polynomial.legendre.leggauss(48)


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


def _tio_transmission(wavelength: np.ndarray, teff: float) -> np.ndarray:
    """TiO band depressions (1 = none) for cool stars: sharp heads, fading to the red."""
    scale = np.clip((TIO_ONSET_K - teff) / (TIO_ONSET_K - TIO_FULL_K), 0.0, 1.0) ** 1.5
    out = np.ones_like(wavelength)
    if scale == 0.0:
        return out
    for head, depth in TIO_BANDS:
        after = wavelength >= head
        out[after] *= 1.0 - scale * depth * np.exp(-(wavelength[after] - head) / TIO_EFOLD_A)
    return out


# --------------------------------------------------------------------------- continuum


def planck(wavelength: np.ndarray, teff: float) -> np.ndarray:
    """Planck B_lambda (arbitrary units) at wavelength (A) and temperature (K)."""
    x = HC_OVER_K_AK / (np.asarray(wavelength, dtype=np.float64) * teff)
    return np.asarray(wavelength, dtype=np.float64) ** -5 / np.expm1(x)


THROUGHPUT_PEAK_A = 5600.0
THROUGHPUT_LOG_WIDTH = 0.25


def throughput(wavelength: np.ndarray) -> np.ndarray:
    """Instrument + telescope efficiency (peak 1): log-normal in wavelength, peak at 5,600 A,
    sigma 0.25 in ln(lambda): ~0.3 at 3,800 A and ~0.7 at 6,900 A, like HARPS."""
    return np.exp(
        -0.5 * (np.log(np.asarray(wavelength) / THROUGHPUT_PEAK_A) / THROUGHPUT_LOG_WIDTH) ** 2
    )


SITE_PRESSURE_RATIO = 0.76
"""Surface pressure at La Silla (2,400 m) over sea level: scales Rayleigh scattering."""


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


# --------------------------------------------------------------------------- tellurics


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


# --------------------------------------------------------------------------- grid model


@dataclass(frozen=True, eq=False)
class _GridModel:
    """Everything about a grid that does not depend on the star or the epoch."""

    grid: Grid
    step: float  # fine velocity step, km/s
    log_start: float  # ln(lambda / A) of fine sample 0
    n_fine: int
    sigma_instrument: float  # km/s
    lines: LineList
    pixel_position: np.ndarray  # fine sample of each native pixel at zero velocity
    throughput: np.ndarray  # relative to its value at SNR_REFERENCE_A
    extinction: np.ndarray  # mag per airmass, minus the value at SNR_REFERENCE_A
    tilt_axis: np.ndarray  # (lambda - SNR_REFERENCE_A) / 1000 A
    telluric_pixels: np.ndarray  # native pixels that can hold a telluric line
    tau_o2: np.ndarray  # effective zenith optical depth on the fine (topocentric) axis
    tau_h2o: np.ndarray  # the same for water at PWV_REFERENCE_MM
    gap: np.ndarray  # bool: native pixels inside a detector gap

    @property
    def log_step(self) -> float:
        return self.step / SPEED_OF_LIGHT_KMS

    @property
    def fine_wavelength(self) -> np.ndarray:
        return np.exp(self.log_start + self.log_step * np.arange(self.n_fine))


def _telluric_depths(log_start: float, step: float, n: int, sigma: float) -> dict[str, np.ndarray]:
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
        tau = _deposit(
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


@functools.lru_cache(maxsize=4)
def _grid_model(grid: Grid) -> _GridModel:
    fwhm = SPEED_OF_LIGHT_KMS / grid.resolving_power
    step = min(fwhm / 5.0, MAX_FINE_STEP_KMS)
    log_step = step / SPEED_OF_LIGHT_KMS
    margin = FINE_MARGIN_KMS / SPEED_OF_LIGHT_KMS
    log_start = math.log(grid.start) - margin
    n_fine = int(math.ceil((math.log(grid.stop) + margin - log_start) / log_step)) + 1
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    wavelength = grid.native_wavelength
    wing = MAX_WING_KMS / SPEED_OF_LIGHT_KMS
    lines = line_list().select(
        math.exp(log_start - wing), math.exp(log_start + n_fine * log_step + wing)
    )
    tau = _telluric_depths(log_start, step, n_fine, sigma)
    # Native pixels within reach (|berv| <= MAX_ABS_BERV_KMS) of any telluric absorption.
    reach = int(math.ceil(MAX_ABS_BERV_KMS / step)) + 2
    absorbing = (
        np.convolve((tau["O2"] + 10 * tau["H2O"]) > 1e-6, np.ones(2 * reach + 1), "same") > 0
    )
    position = (np.log(wavelength) - log_start) / log_step
    gap = np.zeros(grid.n_native, dtype=bool)
    for low, high in grid.gaps:
        gap |= (wavelength >= low) & (wavelength <= high)
    return _GridModel(
        grid=grid,
        step=step,
        log_start=log_start,
        n_fine=n_fine,
        sigma_instrument=sigma,
        lines=lines,
        pixel_position=position,
        throughput=throughput(wavelength) / throughput(np.array(SNR_REFERENCE_A)),
        extinction=extinction_mag(wavelength) - extinction_mag(np.array(SNR_REFERENCE_A)),
        tilt_axis=(wavelength - SNR_REFERENCE_A) / 1000.0,
        telluric_pixels=np.flatnonzero(absorbing[np.round(position).astype(np.intp)]),
        tau_o2=tau["O2"],
        tau_h2o=tau["H2O"],
        gap=gap,
    )


# --------------------------------------------------------------------------- rendering


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


def _rest_frame_spectrum(
    model: _GridModel, teff: float, logg: float, feh: float, vsini: float
) -> np.ndarray:
    """Normalised rest-frame stellar spectrum on the model's fine log-lambda axis, after
    rotation, macroturbulence and instrumental broadening (1 = continuum)."""
    strength, doppler, gamma = line_strengths(model.lines, teff, logg, feh)
    doppler = np.maximum(doppler, model.step)  # the fine axis must sample every core
    keep = strength / (math.sqrt(math.pi) * doppler) > 1e-4
    centre = (np.log(model.lines.wavelength[keep]) - model.log_start) / model.log_step
    tau = _deposit(model.n_fine, centre, strength[keep], doppler[keep], gamma[keep], model.step)
    residual = 1.0 + D_MAX * np.expm1(-tau)
    if teff < TIO_ONSET_K:
        residual *= _tio_transmission(model.fine_wavelength, teff)
    sigma = math.hypot(model.sigma_instrument, macroturbulence(teff, logg) / math.sqrt(2.0))
    kernel = broadening_kernel(vsini, sigma, model.step)
    return 1.0 - oaconvolve(1.0 - residual, kernel, mode="same")


def rest_frame_spectrum(
    grid: Grid | str, teff: float, logg: float, feh: float, vsini: float
) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless normalised stellar spectrum at rest (a template), broadened by rotation
    (vsini, km/s), macroturbulence and the grid's instrument: (wavelength in A on a fine
    uniform log-lambda axis covering the grid, normalised flux)."""
    model = _grid_model(_as_grid(grid))
    return model.fine_wavelength, _rest_frame_spectrum(model, teff, logg, feh, vsini)


def _continuum(model: _GridModel, teff: float) -> np.ndarray:
    """Planck x throughput on the native pixels, 1 at SNR_REFERENCE_A."""
    wavelength = model.grid.native_wavelength
    return planck(wavelength, teff) / planck(np.array(SNR_REFERENCE_A), teff) * model.throughput


def _observe(
    model: _GridModel,
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


def _as_grid(grid: Grid | str) -> Grid:
    return named_grid(grid) if isinstance(grid, str) else grid


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
    model = _grid_model(_as_grid(grid))
    rest = _rest_frame_spectrum(model, teff, logg, feh, vsini) if lines else None
    epoch = {"rv": rv, "berv": berv, "airmass": airmass, "pwv": pwv, "tilt": tilt, "snr": snr}
    epoch["defect"] = defect
    rng = np.random.default_rng(seed) if noise else None
    return _observe(model, rest, _continuum(model, teff), epoch, rng).astype(np.float32)


# --------------------------------------------------------------------------- survey


@dataclass(frozen=True)
class SyntheticBatch:
    """A batch of spectra: flux (n, grid.n_native) float32 in ADU on the grid's native
    wavelengths (NaN only for all_nan defects) and per-spectrum label arrays."""

    flux: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.flux)


def default_batch_size(grid: Grid) -> int:
    """Spectra per batch: at most 256 and at most MAX_BATCH_BYTES of float32 flux."""
    return int(max(1, min(MAX_BATCH_SPECTRA, MAX_BATCH_BYTES // (4 * grid.n_native))))


_EPOCH_KEYS = ("rv", "berv", "airmass", "pwv", "tilt", "snr", "defect")


def generate(
    n_stars: int,
    mean_epochs: float,
    grid: Grid | str,
    seed: int,
    star_range: tuple[int, int] | None = None,
    *,
    noise: bool = True,
    batch_size: int | None = None,
) -> Iterator[SyntheticBatch]:
    """Yield the spectra of a synthetic survey (of stars ``star_range`` if given) in batches.

    Deterministic for ``seed``; the spectra of stars a..b-1 are identical whether they are
    generated alone (``star_range=(a, b)``) or as part of the whole survey. Each star's
    rest-frame spectrum is computed once and observed at each of its epochs.
    """
    grid = _as_grid(grid)
    size = batch_size or default_batch_size(grid)
    if size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    stars = draw_stars(n_stars, seed, star_range)
    epochs = draw_epochs(stars, mean_epochs, seed)
    labels = epoch_labels(stars, epochs)
    model = _grid_model(grid)
    current, rest, continuum = -1, None, None
    for start in range(0, len(epochs), size):
        stop = min(start + size, len(epochs))
        flux = np.empty((stop - start, grid.n_native), dtype=np.float32)
        for row in range(start, stop):
            position = int(epochs.star[row])
            if position != current:
                current = position
                params = (stars.teff, stars.logg, stars.feh, stars.vsini)
                rest = _rest_frame_spectrum(model, *(float(p[position]) for p in params))
                continuum = _continuum(model, float(stars.teff[position]))
            epoch = {key: getattr(epochs, key)[row] for key in _EPOCH_KEYS}
            rng = None
            if noise:
                rng = _star_rng(seed, int(stars.index[position]), 2, int(epochs.epoch[row]))
            flux[row - start] = _observe(model, rest, continuum, epoch, rng)
        yield SyntheticBatch(flux, {key: value[start:stop] for key, value in labels.items()})
