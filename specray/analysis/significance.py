"""Is latent node j informative about label Y?  Permutation p-values, FDR, intervals.

The recipe (method.md, section 5c):

* p-value from a permutation null: shuffle the label, re-estimate, and use
  ``p = (1 + #{I_perm >= I_obs}) / (1 + B)`` (never 0, valid at any B).
* Correct over all (node, label) pairs with Benjamini-Hochberg (``fdr="bh"``), or with
  Benjamini-Yekutieli (``"by"``) when the tests may be dependent in arbitrary ways.
* B must be able to resolve the corrected threshold: the smallest possible p-value is
  1/(B+1), and with m tests BH can only call it significant if m/(B+1) <= alpha, so
  B >= m/alpha - 1 (times sum_{i<=m} 1/i for BY). :func:`significance_table` picks such a B
  itself when ``permutations=None``; an explicit B that is too small is kept (you asked for
  it) but raises :class:`UnresolvedPermutationWarning` and marks every row
  ``resolvable=False``, because "nothing significant" then says nothing.
* Confidence intervals by half-sampling WITHOUT replacement (k-NN estimators break under
  resampling with replacement: duplicated rows look like perfect dependence). See
  :func:`recentred_interval` for why the half-sample spread needs no rescaling and why the
  interval is re-centred on the full-sample estimate.

Randomness: permutation b of label L uses its own generator, seeded from
``SeedSequence(seed, spawn_key=(0, crc32(L), b))`` (half-sample r: ``(1, crc32(L), r)``). So
results depend only on ``seed``: not on the chunk size, the number of workers or the
cluster. The same permutation of a label is used for every node, which makes p-values of
one label positively dependent across nodes (fine for BH under PRDS; BY needs no
assumption).

Everything here is plain NumPy and needs no Ray; :mod:`specray.analysis.significance_table`
fans the same computations out as Ray tasks over a whole latent table.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from specray.analysis.mi import (
    DEFAULT_METHOD,
    Estimator,
    FloatArray,
    as_matrix,
    check_pair,
    make_estimator,
)
from specray.errors import InputError

FDR_METHODS = ("bh", "by", "none")
PERM_STREAM = 0
HALF_STREAM = 1


class UnresolvedPermutationWarning(UserWarning):
    """Too few permutations for any p-value to pass the multiple-testing threshold."""


# --------------------------------------------------------------------------- p-values


def permutation_pvalue(i_obs: ArrayLike, i_perm: ArrayLike) -> float | FloatArray:
    """``(1 + #{I_perm >= I_obs}) / (1 + B)``.

    ``i_obs`` scalar with ``i_perm`` shape (B,) gives a float; ``i_obs`` shape (m,) with
    ``i_perm`` shape (m, B) gives an array of m p-values.
    """
    obs = np.asarray(i_obs, dtype=np.float64)
    perm = np.asarray(i_perm, dtype=np.float64)
    if perm.ndim != obs.ndim + 1 or perm.shape[:-1] != obs.shape:
        raise InputError(f"i_perm shape {perm.shape} does not match i_obs shape {obs.shape}")
    exceed = np.count_nonzero(perm >= obs[..., None], axis=-1)
    p = pvalue_from_exceedances(exceed, perm.shape[-1])
    return float(p) if p.ndim == 0 else p


def pvalue_from_exceedances(exceed: ArrayLike, permutations: int) -> FloatArray:
    """``(1 + exceed) / (1 + B)`` from counts of permuted MI >= observed MI out of B."""
    return (1.0 + np.asarray(exceed, dtype=np.float64)) / (1.0 + permutations)


def format_pvalue(p: float | None, at_floor: bool = False, digits: int = 3) -> str:
    """A p-value as text; ``"< x"`` when it sits at the permutation floor.

    When no permutation reached the observed MI, ``p = 1/(B+1)`` only says the true p-value
    is below what B permutations can show; the same holds for the adjusted value computed
    from it. Printing it as a plain number would claim a precision the test does not have.
    """
    if p is None or not np.isfinite(p):
        return "-"
    text = f"{p:.{digits}g}"
    return f"< {text}" if at_floor else text


def adjust_pvalues(p: ArrayLike, method: str = "bh") -> FloatArray:
    """Benjamini-Hochberg (``"bh"``) or Benjamini-Yekutieli (``"by"``) adjusted p-values
    over all entries (any shape), by ``scipy.stats.false_discovery_control``; ``"none"``
    returns the p-values unchanged."""
    from scipy.stats import false_discovery_control

    arr = np.asarray(p, dtype=np.float64)
    if method not in FDR_METHODS:
        raise InputError(f"unknown FDR method {method!r}; choose from {FDR_METHODS}")
    if arr.size and (np.any(~np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1):
        raise InputError("p-values must be finite and within [0, 1]")
    if method == "none" or arr.size == 0:
        return arr.copy()
    adjusted = false_discovery_control(arr.ravel(), method=method)
    return np.asarray(adjusted, dtype=np.float64).reshape(arr.shape)


def _fdr_factor(n_tests: int, fdr: str) -> float:
    """How much the smallest p-value is inflated: m (BH), m * H_m (BY), 1 (none)."""
    if fdr not in FDR_METHODS:
        raise InputError(f"unknown FDR method {fdr!r}; choose from {FDR_METHODS}")
    if n_tests < 1:
        raise InputError(f"n_tests must be >= 1, got {n_tests}")
    if fdr == "bh":
        return float(n_tests)
    if fdr == "by":
        return n_tests * float(np.sum(1.0 / np.arange(1, n_tests + 1)))
    return 1.0


def min_resolvable_permutations(n_tests: int, alpha: float = 0.05, fdr: str = "bh") -> int:
    """Smallest B for which the best possible p-value, 1/(B+1), survives the correction.

    BH: B >= n_tests/alpha - 1; BY: B >= n_tests * H(n_tests)/alpha - 1; none: 1/alpha - 1.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    need = _fdr_factor(n_tests, fdr) / alpha
    return max(1, math.ceil(need * (1 - 1e-12)) - 1)


def is_resolvable(permutations: int, n_tests: int, alpha: float = 0.05, fdr: str = "bh") -> bool:
    """Whether ``permutations`` can resolve the corrected threshold (see above)."""
    return permutations >= min_resolvable_permutations(n_tests, alpha, fdr)


def choose_permutations(
    permutations: int | None, n_tests: int, alpha: float = 0.05, fdr: str = "bh"
) -> tuple[int, bool]:
    """Return (B, resolvable). ``None`` -> max(999, the minimum resolvable B).

    An explicit B below the minimum is kept but warns with
    :class:`UnresolvedPermutationWarning`.
    """
    need = min_resolvable_permutations(n_tests, alpha, fdr)
    if permutations is None:
        return max(999, need), True
    if int(permutations) != permutations or permutations < 1:
        raise InputError(f"permutations must be a positive integer, got {permutations!r}")
    if permutations < need:
        warnings.warn(
            f"B={permutations} permutations cannot resolve {n_tests} tests at "
            f"alpha={alpha} with {fdr.upper()}: the smallest p-value 1/(B+1) would still "
            f"fail the correction. Use B >= {need}; results are flagged resolvable=False.",
            UnresolvedPermutationWarning,
            stacklevel=3,
        )
        return int(permutations), False
    return int(permutations), True


# ------------------------------------------------------------------ building blocks


def label_stream_key(name: str) -> int:
    """A stable 32-bit key for a label name (same on every machine and Python run)."""
    return zlib.crc32(name.encode("utf-8"))


def permutation_generator(
    seed: int, stream: int, label_key: int, index: int
) -> np.random.Generator:
    """Independent generator for permutation/half-sample ``index`` of one label."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, label_key, index)))


def _permuted_columns(
    ty: FloatArray, seed: int, label_key: int, start: int, stop: int
) -> FloatArray:
    """Columns ty[perm_b] for b in [start, stop): shape (n, stop - start)."""
    out = np.empty((ty.size, stop - start))
    for col, b in enumerate(range(start, stop)):
        out[:, col] = ty[
            permutation_generator(seed, PERM_STREAM, label_key, b).permutation(ty.size)
        ]
    return out


def observed_mi(est: Estimator, tx: FloatArray, ty: FloatArray) -> FloatArray:
    """MI of every prepared node column with one prepared label: shape (D,)."""
    return est.estimate_many(tx, ty[:, None])[:, 0]


def count_exceedances(
    est: Estimator,
    tx: FloatArray,
    ty: FloatArray,
    i_obs: FloatArray,
    seed: int,
    label_key: int,
    start: int,
    stop: int,
) -> NDArray[np.int64]:
    """#{b in [start, stop): I(node, permuted label) >= I_obs} for every node: shape (D,)."""
    null = est.estimate_many(tx, _permuted_columns(ty, seed, label_key, start, stop))
    return np.count_nonzero(null >= i_obs[:, None], axis=1).astype(np.int64)


def half_sample_mi(
    est: Estimator,
    raw_x: FloatArray,
    raw_y: FloatArray,
    seed: int,
    label_key: int,
    start: int,
    stop: int,
) -> FloatArray:
    """MI of every node on half-samples r in [start, stop): shape (D, stop - start)."""
    n = raw_y.size
    out = np.empty((raw_x.shape[1], stop - start))
    for col, r in enumerate(range(start, stop)):
        rows = permutation_generator(seed, HALF_STREAM, label_key, r).choice(
            n, n // 2, replace=False
        )
        tx = est.prepare_columns(raw_x[rows])
        out[:, col] = observed_mi(est, tx, est.prepare(raw_y[rows]))
    return out


def recentred_interval(
    full_estimate: float, half_estimates: ArrayLike, level: float = 0.95
) -> tuple[float, float]:
    """Confidence interval from half-sample estimates, re-centred on the full-sample value.

    Why no rescaling: half-samples without replacement are the delete-d jackknife with
    d = n/2, whose variance factor (n - d)/d is exactly 1; the spread of half-sample
    estimates around their centre already estimates the spread of the full-sample
    estimate (for root-n estimators). Why re-centre: MI estimators are biased by an
    amount that depends on n (histogram strongly, KSG mildly), so the half-sample values
    sit around a different centre. The interval is ``full + quantiles of (half -
    median(half))`` at (1 - level)/2 and (1 + level)/2, both ends floored at 0 (true MI
    is never negative; KSG estimates can be). The bias of the full-sample estimate itself
    is not corrected.
    """
    half = np.asarray(half_estimates, dtype=np.float64)
    if half.ndim != 1 or half.size < 2:
        raise InputError("need at least 2 half-sample estimates")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    dev = half - np.median(half)
    lo, hi = np.quantile(dev, [(1 - level) / 2, (1 + level) / 2])
    return max(0.0, full_estimate + float(lo)), max(0.0, full_estimate + float(hi))


def as_nodes(nodes: Sequence[int] | None, n_nodes: int) -> list[int]:
    """Validated list of node indices (all nodes when None)."""
    if nodes is None:
        return list(range(n_nodes))
    out = [int(j) for j in nodes]
    if not out:
        raise InputError("nodes is empty")
    if len(set(out)) != len(out):
        raise InputError("nodes contains duplicates")
    bad = [j for j in out if not 0 <= j < n_nodes]
    if bad:
        raise InputError(f"node indices {bad} out of range for {n_nodes} nodes")
    return out


# ------------------------------------------------------------ single pair, no Ray


def permutation_test(
    x: ArrayLike,
    y: ArrayLike,
    method: str = DEFAULT_METHOD,
    permutations: int = 999,
    seed: int = 0,
    **options: Any,
) -> tuple[float, float]:
    """(MI in nats, permutation p-value) for one pair, computed locally (no Ray)."""
    est = make_estimator(method, **options)
    xa, ya = check_pair(x, y, est.min_samples)
    tx, ty = est.prepare(xa)[:, None], est.prepare(ya)
    i_obs = observed_mi(est, tx, ty)
    exceed = count_exceedances(est, tx, ty, i_obs, seed, 0, 0, int(permutations))
    return float(i_obs[0]), float(pvalue_from_exceedances(exceed[0], permutations))


def half_sample_ci(
    x: ArrayLike,
    y: ArrayLike,
    method: str = DEFAULT_METHOD,
    resamples: int = 100,
    level: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> tuple[float, float]:
    """Half-sampling confidence interval for one pair (see :func:`recentred_interval`)."""
    est = make_estimator(method, **options)
    xa, ya = check_pair(x, y, 2 * est.min_samples)
    full = float(observed_mi(est, est.prepare(xa)[:, None], est.prepare(ya))[0])
    half = half_sample_mi(est, xa[:, None], ya, seed, 0, 0, int(resamples))[0]
    return recentred_interval(full, half, level)


def pairwise_node_mi(
    latents: ArrayLike,
    nodes: Sequence[int] | None = None,
    method: str = DEFAULT_METHOD,
    **options: Any,
) -> FloatArray:
    """Symmetric matrix of MI (nats) between pairs of nodes; the diagonal is NaN.

    Small off-diagonal values back the claim that informative nodes carry separate
    factors (method.md 5d). Computed locally; meant for the handful of informative nodes.
    """
    mat = as_matrix(latents)
    cols = as_nodes(nodes, mat.shape[1])
    est = make_estimator(method, **options)
    if mat.shape[0] < est.min_samples:
        raise InputError(f"need at least {est.min_samples} samples, got {mat.shape[0]}")
    prepared = est.prepare_columns(mat[:, cols])
    out = np.full((len(cols), len(cols)), np.nan)
    for a in range(len(cols)):
        for b in range(a + 1, len(cols)):
            out[a, b] = out[b, a] = est.estimate(prepared[:, a], prepared[:, b])
    return out
