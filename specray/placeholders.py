"""Catalogue placeholder values: the one rule shared by ingest (labels tables) and analysis.

Catalogues write "no value" as all-nines numbers (99, -99.9, 9999, 99999, ...). Such a
value is treated as missing only when it lies more than ``FAR_SIGMAS`` robust standard
deviations (1.4826 x MAD) from the median of the column's other values: an [Fe/H] of 9999
goes, a real Teff of 9999 K or an RV of +99 km/s among other RVs stays.
"""

from __future__ import annotations

import numpy as np

SENTINEL_MAGNITUDES = np.array(
    [10.0**digits - 10.0**-decimals for digits in range(2, 10) for decimals in (0, 1, 2)]
)
"""99, 99.9, 99.99, 999, 999.9, ..., 999999999.99: magnitudes of the all-nines placeholders."""
FAR_SIGMAS = 10.0
"""A placeholder-looking value is missing only this many robust sigmas from the median."""
RTOL = 1e-6
"""Relative tolerance of the match: float32 copies (-99.9 -> -99.9000015) still match."""


def is_sentinel(values: np.ndarray) -> np.ndarray:
    """True where a finite value's magnitude is all nines (99, 99.9, 9999, ...), either sign."""
    magnitude = np.abs(np.asarray(values, dtype=np.float64))[:, None]
    return np.isclose(magnitude, SENTINEL_MAGNITUDES[None, :], rtol=RTOL, atol=0).any(axis=1)


def placeholders(values: np.ndarray) -> np.ndarray:
    """True where a value is a numeric placeholder: all nines and far from the other values."""
    values = np.asarray(values, dtype=np.float64)
    candidate = np.isfinite(values) & is_sentinel(np.nan_to_num(values))
    others = values[np.isfinite(values) & ~candidate]
    if others.size == 0:
        return candidate
    centre = float(np.median(others))
    sigma = 1.4826 * float(np.median(np.abs(others - centre)))
    return candidate & (np.abs(values - centre) > FAR_SIGMAS * sigma)
