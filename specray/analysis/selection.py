"""Which spectra enter the latent-space analysis (method.md sections 2 and 5).

The paper: drop rows with a missing label, 5-sigma clip each label, analyse one spectrum
per object. Order used here, and why:

1. drop rows with a NaN (or inf) in any requested label;
2. keep one spectrum per object: the highest-SNR one among the rows left (so an object
   whose best spectrum lacks a per-spectrum label such as airmass is not lost), or a
   random one (``rng=``), see :func:`resample_by_object`;
3. sigma-clip each label on that one-per-object set: the mean and standard deviation are
   then per object, not dominated by stars with hundreds of spectra.

Clipping is a single pass by default (``iterations=1``): the paper says only "5-sigma clip
each label", and at 5 sigma a second pass rarely changes anything. A pass computes the
mean and standard deviation of every label on the rows kept so far, then removes every
row that lies more than ``sigma`` standard deviations from the mean in ANY label. Pass a
larger ``iterations`` to repeat until nothing changes (at most that many passes).

Works on plain NumPy columns (a mapping of name -> array); no pandas needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.intp]


def _column(table: Mapping[str, ArrayLike], name: str, n: int | None, what: str) -> np.ndarray:
    """Fetch a column, with a clear error if it is missing or has the wrong length."""
    if name not in table:
        raise KeyError(f"{what} column {name!r} not in table (columns: {sorted(table)})")
    col = np.asarray(table[name])
    if col.ndim != 1 or (n is not None and col.size != n):
        raise ValueError(f"column {name!r} has shape {col.shape}, expected ({n},)")
    return col


def _group_first(objects: ArrayLike, keys: Sequence[np.ndarray]) -> IntArray:
    """Per object, the row that sorts first by ``keys`` (primary key first); sorted indices."""
    obj = np.asarray(objects)
    if obj.ndim != 1:
        raise ValueError(f"objects must be 1-D, got shape {obj.shape}")
    if obj.size == 0:
        return np.empty(0, dtype=np.intp)
    _, group = np.unique(obj, return_inverse=True)
    order = np.lexsort((*reversed(keys), group))
    first = np.ones(order.size, dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    return np.sort(order[first])


def best_per_object(objects: ArrayLike, snr: ArrayLike) -> IntArray:
    """Index of the highest-SNR row of every object (NaN SNR counts as lowest; ties: first)."""
    s = np.asarray(snr, dtype=np.float64)
    if s.shape != np.shape(objects):
        raise ValueError("objects and snr must have the same shape")
    neg = np.where(np.isnan(s), np.inf, -s)
    return _group_first(objects, [neg, np.arange(s.size)])


def resample_by_object(
    objects: ArrayLike, rng: np.random.Generator | int | None = None
) -> IntArray:
    """Index of one uniformly random row of every object (sorted).

    Repeating the analysis over several such draws shows how much the choice of spectrum
    matters (repeated spectra of one star would otherwise inflate MI).
    """
    gen = np.random.default_rng(rng)
    return _group_first(objects, [gen.random(np.shape(objects)[0])])


def sigma_clip_mask(
    values: Sequence[ArrayLike], keep: NDArray[np.bool_], sigma: float, iterations: int = 1
) -> NDArray[np.bool_]:
    """``keep`` with rows more than ``sigma`` std from the mean of any column removed.

    Statistics come from the rows still kept at the start of each pass; at most
    ``iterations`` passes, stopping early when a pass removes nothing.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    keep = keep.copy()
    cols = [np.asarray(v, dtype=np.float64) for v in values]
    for _ in range(iterations):
        if keep.sum() < 2:
            break
        new = keep.copy()
        for col in cols:
            mean, std = col[keep].mean(), col[keep].std()
            new &= np.abs(col - mean) <= sigma * std
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def select_for_analysis(
    table: Mapping[str, ArrayLike],
    labels: Sequence[str],
    sigma: float | None = 5.0,
    one_per_object: bool = True,
    snr_column: str = "snr",
    object_column: str = "object",
    iterations: int = 1,
    rng: np.random.Generator | int | None = None,
) -> IntArray:
    """Sorted row indices of ``table`` to analyse (see the module docstring for the order).

    ``table`` maps column names to equal-length 1-D arrays. ``sigma=None`` disables
    clipping. With ``one_per_object``, the highest-SNR spectrum of each object is kept,
    unless ``rng`` is given: then a random one (:func:`resample_by_object`).
    """
    if not labels:
        raise ValueError("labels is empty: name the label columns to select on")
    n = _column(table, labels[0], None, "label").size
    cols = [_column(table, name, n, "label").astype(np.float64) for name in labels]
    keep = np.all([np.isfinite(c) for c in cols], axis=0)
    if one_per_object:
        keep = _dedup(table, keep, n, snr_column, object_column, rng)
    if sigma is not None:
        keep = sigma_clip_mask(cols, keep, sigma, iterations)
    return np.flatnonzero(keep)


def _dedup(
    table: Mapping[str, ArrayLike],
    keep: NDArray[np.bool_],
    n: int,
    snr_column: str,
    object_column: str,
    rng: np.random.Generator | int | None,
) -> NDArray[np.bool_]:
    """Restrict ``keep`` to one row per object (best SNR, or random when rng is given)."""
    rows = np.flatnonzero(keep)
    objects = _column(table, object_column, n, "object")[rows]
    if rng is None:
        snr = _column(table, snr_column, n, "SNR")[rows]
        chosen = rows[best_per_object(objects, snr)]
    else:
        chosen = rows[resample_by_object(objects, rng)]
    out = np.zeros(n, dtype=bool)
    out[chosen] = True
    return out
