"""The stars of a survey: population mixture, stellar parameters, systemic velocity,
binarity, sky position, brightness and names; deterministic per seed and star."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from specray.errors import InputError

HARPS_FIRST_MJD = 52_940.0
"""First night of the synthetic campaign (Nov 2003, the start of HARPS operations)."""

POPULATION = {"fgk": 0.66, "cool": 0.13, "hot": 0.08, "giant": 0.13}
"""Fraction of each component of the population (HARPS targets are mostly FGK dwarfs)."""

# Main-sequence logg against Teff (K): a smooth approximation to dwarf sequences such as
# Pecaut & Mamajek 2013 (ApJS 208, 9), from M2 V to A0 V.
_MS_TEFF_K = np.array([3400.0, 4000.0, 5000.0, 5800.0, 6500.0, 7500.0, 10000.0])
_MS_LOGG = np.array([4.85, 4.70, 4.58, 4.44, 4.28, 4.15, 4.10])

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


@dataclass(frozen=True)
class Stars:
    """Per-star ground truth (one entry per star, numpy arrays).

    index: position of the star in the survey; object: name (``SYN-s<seed>-000123``, see
    ``star_name``); teff (K); logg (dex, cgs); feh ([Fe/H], dex); vsini (km/s); rv_sys:
    systemic barycentric radial velocity (km/s); ra, dec (deg); vmag (V magnitude);
    binary_k: velocity semi-amplitude (km/s, 0 for single stars); binary_period (d);
    binary_t0 (MJD of zero phase).
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


def star_rng(seed: int, star: int, stream: int, *extra: int) -> np.random.Generator:
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
    rng = star_rng(seed, star, 0)
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


def _check_range(n_stars: int, star_range: tuple[int, int] | None) -> tuple[int, int]:
    if n_stars < 0:
        raise InputError(f"n_stars must be >= 0, got {n_stars}")
    start, stop = (0, n_stars) if star_range is None else star_range
    if not 0 <= start <= stop <= n_stars:
        raise InputError(f"star_range {star_range} must lie within [0, {n_stars}]")
    return int(start), int(stop)
