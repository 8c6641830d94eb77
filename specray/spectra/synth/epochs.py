"""The observations of each star: how many, when, barycentric correction, radial velocity,
SNR, airmass, exposure time, water vapour, tilt and, rarely, a defect."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from specray.errors import InputError
from specray.spectra.synth.stars import HARPS_FIRST_MJD, Stars, star_rng
from specray.spectra.synth.tellurics import PWV_REFERENCE_MM

OBSERVATORY_LATITUDE_DEG = -29.2584
"""Latitude of La Silla (ESO 3.6 m, HARPS), degrees."""
EARTH_ORBITAL_SPEED_KMS = 29.78
OBLIQUITY_DEG = 23.439
SURVEY_YEARS = 17

DEFECTS = ("", "low_flux", "negative", "all_nan")
DEFECT_RATES = {"low_flux": 0.008, "negative": 0.006, "all_nan": 0.006}
"""Per-epoch probability of each defect (about 2 % in all)."""

EPOCH_COUNT_SIGMA = 1.8
"""Log-normal width of the number of epochs per star (a heavy tail, as in HARPS)."""
EPOCH_COUNT_CAP = 100
"""No star has more than this many times the mean number of epochs."""


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
    rng = star_rng(seed, star, 1)
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
