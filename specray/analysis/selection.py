"""Which spectra enter the latent-space analysis (method.md sections 2 and 5).

The paper: drop rows with a missing label, 5-sigma clip each label, analyse one spectrum
per object. Order used here, and why:

1. drop rows with a missing value in any requested label: NaN, inf, or a catalogue
   placeholder (all-nines values far from the column's other values, the rule of
   :mod:`specray.placeholders` that ingest applies too; see :func:`missing_as_nan`);
2. keep one spectrum per object: the highest-SNR one among the rows left (so an object
   whose best spectrum lacks a per-spectrum label such as airmass is not lost), or a
   random one (``rng=``), see :func:`resample_by_object`;
3. sigma-clip each label on that one-per-object set: the mean and standard deviation are
   then per object, not dominated by stars with hundreds of spectra.

Clipping is robust and iterated (:func:`sigma_clip_mask`, astropy's ``sigma_clip``):
the centre is the median and the width the MAD scaled to a Gaussian sigma
(``mad_std``), repeated until nothing more is clipped. One pass on the mean and standard
deviation, as "5-sigma clip" is often read, fails exactly when it matters: 39 stars with
[Fe/H] = 9999 among 300 inflate the standard deviation to ~3,000 dex and all 39 survive.
A row is removed when it lies more than ``sigma`` widths from the centre in ANY label.

The rules work on plain NumPy columns (a mapping of name -> array); no pandas needed.
:func:`select` applies them to a latent table as ``specray analyze`` configures them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.stats import mad_std, sigma_clip
from numpy.typing import ArrayLike, NDArray

from specray.analysis.latents import LatentTable
from specray.analysis.mi import MIN_SAMPLES
from specray.config import AnalysisConfig
from specray.errors import InputError, SpecrayError
from specray.placeholders import placeholders as shared_placeholders

IntArray = NDArray[np.intp]


def _column(table: Mapping[str, ArrayLike], name: str, n: int | None, what: str) -> np.ndarray:
    """Fetch a column, with a clear error if it is missing or has the wrong length."""
    if name not in table:
        raise KeyError(f"{what} column {name!r} not in table (columns: {sorted(table)})")
    col = np.asarray(table[name])
    if col.ndim != 1 or (n is not None and col.size != n):
        raise InputError(f"column {name!r} has shape {col.shape}, expected ({n},)")
    return col


def _group_first(objects: ArrayLike, keys: Sequence[np.ndarray]) -> IntArray:
    """Per object, the row that sorts first by ``keys`` (primary key first); sorted indices."""
    obj = np.asarray(objects)
    if obj.ndim != 1:
        raise InputError(f"objects must be 1-D, got shape {obj.shape}")
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
        raise InputError("objects and snr must have the same shape")
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


def placeholder_mask(
    values: ArrayLike, placeholders: Sequence[float] | None = None
) -> NDArray[np.bool_]:
    """True where ``values`` is a catalogue placeholder.

    ``placeholders`` None: the shared rule (:func:`specray.placeholders.placeholders`:
    all nines and far from the other values); a list: exactly those values (to a relative
    1e-6, so float32 copies match), as set by ``analysis.placeholders``."""
    arr = np.asarray(values, dtype=np.float64)
    if placeholders is None:
        return shared_placeholders(arr.ravel()).reshape(arr.shape)
    out = np.zeros(arr.shape, dtype=bool)
    for value in placeholders:
        out |= np.isclose(arr, value, rtol=1e-6, atol=0.0)
    return out


def missing_as_nan(
    values: ArrayLike, placeholders: Sequence[float] | None = None
) -> tuple[NDArray[np.float64], int]:
    """A float copy of ``values`` with placeholders and infinities set to NaN, and how many
    placeholder values there were (infinities are not counted: they read as missing anyway)."""
    arr = np.array(values, dtype=np.float64)
    found = placeholder_mask(arr, placeholders)
    arr[found | np.isinf(arr)] = np.nan
    return arr, int(found.sum())


def robust_std(data: ArrayLike, axis: int | None = None) -> float | NDArray[np.float64]:
    """``mad_std`` (1.4826 x MAD, NaN ignored), or the standard deviation where the MAD is 0.

    A label with more than half its values equal (a discrete label, a rounded catalogue)
    has MAD 0; clipping on it would remove every other value.
    """
    width = mad_std(data, axis=axis, ignore_nan=True)
    return np.where(width > 0, width, np.nanstd(data, axis=axis))


def sigma_clip_mask(
    values: Sequence[ArrayLike],
    keep: NDArray[np.bool_],
    sigma: float,
    iterations: int | None = None,
) -> NDArray[np.bool_]:
    """``keep`` with rows more than ``sigma`` robust widths from the median of any column removed.

    Each column is clipped on its rows in ``keep`` with astropy's iterated ``sigma_clip``
    (centre: median; width: :func:`robust_std`), for at most ``iterations`` passes (None:
    until a pass clips nothing); a row survives only if no column clips it.
    """
    if sigma <= 0:
        raise InputError(f"sigma must be positive, got {sigma}")
    if iterations is not None and iterations < 1:
        raise InputError(f"iterations must be >= 1 (or None: until converged), got {iterations}")
    out = keep.copy()
    if keep.sum() < 2:
        return out
    for col in values:
        kept = np.asarray(col, dtype=np.float64)[keep]
        clipped = sigma_clip(
            kept, sigma=sigma, maxiters=iterations, cenfunc="median", stdfunc=robust_std,
            masked=True, axis=None,
        )  # fmt: skip
        out[np.flatnonzero(keep)[np.ma.getmaskarray(clipped)]] = False
    return out


def select_for_analysis(
    table: Mapping[str, ArrayLike],
    labels: Sequence[str],
    sigma: float | None = 5.0,
    one_per_object: bool = True,
    snr_column: str = "snr",
    object_column: str = "object",
    iterations: int | None = None,
    rng: np.random.Generator | int | None = None,
    placeholders: Sequence[float] | None = None,
) -> IntArray:
    """Sorted row indices of ``table`` to analyse (see the module docstring for the order).

    ``table`` maps column names to equal-length 1-D arrays. ``sigma=None`` disables
    clipping. With ``one_per_object``, the highest-SNR spectrum of each object is kept,
    unless ``rng`` is given: then a random one (:func:`resample_by_object`). Values in
    ``placeholders`` count as missing.
    """
    if not labels:
        raise InputError("labels is empty: name the label columns to select on")
    n = _column(table, labels[0], None, "label").size
    cols = [missing_as_nan(_column(table, name, n, "label"), placeholders)[0] for name in labels]
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


# ------------------------------------------------------------------ a latent table's selection

MIN_LABELLED = 2 * MIN_SAMPLES
"""Fewest labelled spectra for a label to be analysed (half-samples need MIN_SAMPLES)."""


@dataclass
class Selection:
    rows: np.ndarray
    labels: dict[str, np.ndarray]
    info: dict
    clipped: dict[str, np.ndarray] = field(default_factory=dict)
    """Per label, the values the sigma clip removed (for the label histograms)."""


def select(
    table: LatentTable, cfg: AnalysisConfig, notes: list[str], no_clip: Sequence[str] = ()
) -> Selection:
    """Rows to analyse and, per label, its values on them (NaN where excluded).

    Labels in ``no_clip`` (discrete and categorical ones) are not sigma-clipped."""
    usable, placeholders = [], {}
    marks = None if cfg.placeholders is None else tuple(cfg.placeholders)
    rule = (
        "all nines, far from the other values"
        if marks is None
        else ", ".join(f"{v:g}" for v in marks)
    )
    for name in dict.fromkeys(cfg.labels):
        values = table.columns.get(name)
        if values is not None:
            values, placeholders[name] = missing_as_nan(values, marks)
            table.columns[name] = values  # every later step sees placeholders as missing
            if placeholders[name]:
                notes.append(
                    f"label {name!r}: {placeholders[name]} placeholder value(s) "
                    f"({rule}) treated as missing"
                )
        if values is None:
            notes.append(f"label {name!r} is not in the latent table; skipped")
        elif not np.any(np.isfinite(values)):
            notes.append(f"label {name!r} has no values in the latent table; skipped")
        else:
            usable.append(name)
    if cfg.labels and not usable:
        raise NoUsableLabels(_no_labels_message(table, cfg.labels))
    snr = table.columns.get("snr", np.full(len(table), np.nan))
    if cfg.one_per_object and not np.any(np.isfinite(snr)):
        notes.append("no SNR values: one spectrum per object chosen by row order, not SNR")
    if not cfg.one_per_object:
        notes.append(
            "one_per_object is off: repeated spectra of one star inflate MI and make the "
            "permutation null too optimistic"
        )
    sigma = cfg.sigma_clip if cfg.sigma_clip and cfg.sigma_clip > 0 else None
    per_label_sigma = sigma
    if cfg.complete_cases and usable:
        columns = {name: table.columns[name] for name in usable}
        columns.update(snr=snr, object=table.objects)
        rows = select_for_analysis(
            columns, usable, sigma=sigma, one_per_object=cfg.one_per_object, placeholders=marks
        )
        per_label_sigma = None  # clipped jointly already
    elif cfg.one_per_object:
        rows = best_per_object(table.objects, snr)
    else:
        rows = np.arange(len(table))
    labels, per_label, clipped = {}, {}, {}
    for name in usable:
        values = table.columns[name][rows].astype(np.float64)
        finite = np.isfinite(values)
        clip = per_label_sigma is not None and name not in no_clip
        keep = sigma_clip_mask([values], finite, sigma) if clip else finite
        clipped[name] = values[finite & ~keep]
        values[~keep] = np.nan
        per_label[name] = {
            "n_placeholder": placeholders[name],
            "n_finite": int(finite.sum()),
            "n_clipped": int(finite.sum() - keep.sum()),
            "n": int(keep.sum()),
        }
        if keep.sum() < MIN_LABELLED:
            notes.append(f"label {name!r} has only {keep.sum()} values after selection; skipped")
        else:
            labels[name] = values
    info = {
        "one_per_object": cfg.one_per_object,
        "sigma_clip": sigma,
        "clip_method": "iterated median/MAD (astropy sigma_clip, mad_std)",
        "placeholders": rule,
        "complete_cases": cfg.complete_cases,
        "per_label": per_label,
    }
    return Selection(rows, labels, info, clipped)


class NoUsableLabels(SpecrayError, ValueError):
    """No requested label has a value in the data (a typo, or labels never joined)."""


def _no_labels_message(table: LatentTable, requested: list[str]) -> str:
    """Why each requested label is unusable, and which labels the data does hold."""
    problems = [
        f"{name!r} is not in the data" if name not in table.columns else f"{name!r} has no values"
        for name in dict.fromkeys(requested)
    ]
    held = [name for name, values in table.columns.items() if np.any(np.isfinite(values))]
    return (
        f"{table.uri}: no label to analyse: {'; '.join(problems)}. "
        f"Labels with values: {', '.join(held) or 'none'} (choose with --labels)"
    )
