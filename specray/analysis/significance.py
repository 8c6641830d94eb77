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

The permutation and half-sample work fans out as Ray tasks (one per chunk of
``chunk_size`` permutations, or chunk_size/8 half-samples, per label); the prepared
latents and labels go into the object store once. Progress is logged at INFO level
(logger ``specray.analysis.significance``) as tasks complete. Everything else here is
plain NumPy and needs no Ray.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
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
from specray.progress import Progress

FDR_METHODS = ("bh", "by", "none")
_PERM_STREAM = 0
_HALF_STREAM = 1


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


def _stream_key(name: str) -> int:
    """A stable 32-bit key for a label name (same on every machine and Python run)."""
    return zlib.crc32(name.encode("utf-8"))


def _generator(seed: int, stream: int, label_key: int, index: int) -> np.random.Generator:
    """Independent generator for permutation/half-sample ``index`` of one label."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, label_key, index)))


def _permuted_columns(
    ty: FloatArray, seed: int, label_key: int, start: int, stop: int
) -> FloatArray:
    """Columns ty[perm_b] for b in [start, stop): shape (n, stop - start)."""
    out = np.empty((ty.size, stop - start))
    for col, b in enumerate(range(start, stop)):
        out[:, col] = ty[_generator(seed, _PERM_STREAM, label_key, b).permutation(ty.size)]
    return out


def _observed(est: Estimator, tx: FloatArray, ty: FloatArray) -> FloatArray:
    """MI of every prepared node column with one prepared label: shape (D,)."""
    return est.estimate_many(tx, ty[:, None])[:, 0]


def _exceedances(
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


def _half_samples(
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
        rows = _generator(seed, _HALF_STREAM, label_key, r).choice(n, n // 2, replace=False)
        tx = est.prepare_columns(raw_x[rows])
        out[:, col] = _observed(est, tx, est.prepare(raw_y[rows]))
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
    i_obs = _observed(est, tx, ty)
    exceed = _exceedances(est, tx, ty, i_obs, seed, 0, 0, int(permutations))
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
    full = float(_observed(est, est.prepare(xa)[:, None], est.prepare(ya))[0])
    half = _half_samples(est, xa[:, None], ya, seed, 0, 0, int(resamples))[0]
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
    cols = _as_nodes(nodes, mat.shape[1])
    est = make_estimator(method, **options)
    if mat.shape[0] < est.min_samples:
        raise InputError(f"need at least {est.min_samples} samples, got {mat.shape[0]}")
    prepared = est.prepare_columns(mat[:, cols])
    out = np.full((len(cols), len(cols)), np.nan)
    for a in range(len(cols)):
        for b in range(a + 1, len(cols)):
            out[a, b] = out[b, a] = est.estimate(prepared[:, a], prepared[:, b])
    return out


# ------------------------------------------------------------- the Ray fan-out


@functools.cache
def _remote(fn: Callable[..., Any]) -> Any:
    """``fn`` as a Ray remote function (built once per process)."""
    import ray

    return ray.remote(num_cpus=1)(fn)


def _as_nodes(nodes: Sequence[int] | None, n_nodes: int) -> list[int]:
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


def _as_labels(labels: Mapping[str, ArrayLike], n: int, min_samples: int) -> dict[str, FloatArray]:
    """Validated labels: 1-D, length n, at least ``min_samples`` finite values each."""
    if not labels:
        raise InputError("labels is empty")
    out = {}
    for name, values in labels.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n,):
            raise InputError(f"label {name!r} has shape {arr.shape}, expected ({n},)")
        if np.count_nonzero(np.isfinite(arr)) < min_samples:
            raise InputError(f"label {name!r} has fewer than {min_samples} finite values")
        out[str(name)] = arr
    return out


def _chunks(total: int, size: int, offset: int = 0) -> list[tuple[int, int]]:
    """[start, stop) ranges covering range(offset, offset + total) in pieces of ``size``."""
    end = offset + total
    return [(s, min(s + size, end)) for s in range(offset, end, size)]


def _wait_all(refs: list[Any], what: str) -> list[Any]:
    """ray.get in submission order, showing the tasks done as they finish (specray.progress)."""
    import ray

    pending = list(refs)
    with Progress(what, len(refs), "tasks") as shown:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            shown.advance(len(ready))
    return ray.get(refs)


def significance_table(
    latents: ArrayLike,
    labels: Mapping[str, ArrayLike],
    nodes: Sequence[int] | None = None,
    method: str = DEFAULT_METHOD,
    permutations: int | None = None,
    seed: int = 0,
    chunk_size: int = 128,
    ci_resamples: int = 100,
    ci_level: float = 0.95,
    alpha: float = 0.05,
    fdr: str = "bh",
    **options: Any,
) -> list[dict[str, Any]]:
    """MI, interval, permutation p-value and FDR decision for every (node, label) pair.

    ``latents`` (n, D) are the encoder means, one row per object; ``labels`` maps a name
    to an (n,) array, NaN where unknown (those rows are left out for that label only).
    ``permutations=None`` chooses a B that resolves the corrected threshold (see module
    docstring); ``options`` go to the estimator (e.g. ``k=5`` or ``bins=40``).

    Returns one dict per pair, labels in the given order and nodes within each label:
    ``node, label, estimator, n, mi, ci [low, high], p_value, at_floor (no permutation
    reached the observed MI: p is 1/(B+1), the floor), p_adjusted, significant,
    permutations, resolvable``. MI in nats. Runs on Ray (started if needed).
    """
    mat = as_matrix(latents)
    cols = _as_nodes(nodes, mat.shape[1])
    if method != "histogram":
        options = {"seed": seed, **options}  # tie-breaking follows the table's seed
    est = make_estimator(method, **options)
    min_rows = 2 * est.min_samples if ci_resamples > 0 else est.min_samples
    label_arrays = _as_labels(labels, mat.shape[0], min_rows)
    n_tests = len(cols) * len(label_arrays)
    n_perm, resolvable = choose_permutations(permutations, n_tests, alpha, fdr)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    if ci_resamples == 1 or ci_resamples < 0:
        raise InputError(f"ci_resamples must be 0 (no interval) or >= 2, got {ci_resamples}")
    if not 0 < ci_level < 1:
        raise InputError(f"ci_level must be in (0, 1), got {ci_level}")
    from specray.runtime import ensure_ray

    ensure_ray()
    results = _run_tasks(est, mat[:, cols], label_arrays, n_perm, seed, chunk_size, ci_resamples)
    return _rows(est, cols, label_arrays, results, n_perm, resolvable, ci_level, alpha, fdr)


def _run_tasks(
    est: Estimator,
    raw: FloatArray,
    labels: dict[str, FloatArray],
    n_perm: int,
    seed: int,
    chunk_size: int,
    ci_resamples: int,
) -> dict[str, dict[str, Any]]:
    """Submit observed, permutation and half-sample tasks for every label; gather them."""
    import ray

    prepared_nodes: dict[bytes, Any] = {}  # one prepared copy per distinct missing-row mask
    observed, plan = {}, {}
    for name, y in labels.items():
        valid = np.isfinite(y)
        key = valid.tobytes()
        if key not in prepared_nodes:
            prepared_nodes[key] = ray.put(est.prepare_columns(raw[valid]))
        tx_ref, ty_ref = prepared_nodes[key], ray.put(est.prepare(y[valid]))
        observed[name] = _remote(_observed).remote(est, tx_ref, ty_ref)
        plan[name] = (valid, tx_ref, ty_ref)
    i_obs = dict(zip(observed, _wait_all(list(observed.values()), "observed MI"), strict=True))

    perm_refs, half_refs = [], []
    raw_ref = ray.put(raw)
    for name, (valid, tx_ref, ty_ref) in plan.items():
        lk = _stream_key(name)
        for start, stop in _chunks(n_perm, chunk_size):
            task = _remote(_exceedances).remote(
                est, tx_ref, ty_ref, i_obs[name], seed, lk, start, stop
            )
            perm_refs.append((name, task))
        if ci_resamples > 0:
            rows = raw_ref if valid.all() else ray.put(raw[valid])
            y_valid = ray.put(labels[name][valid])
            half_chunk = max(1, chunk_size // 8)
            for start, stop in _chunks(ci_resamples, half_chunk):
                task = _remote(_half_samples).remote(est, rows, y_valid, seed, lk, start, stop)
                half_refs.append((name, task))
    perm_out = _wait_all([t for _, t in perm_refs], "permutation null")
    half_out = _wait_all([t for _, t in half_refs], "half-sample intervals")
    return _collect(labels, i_obs, perm_refs, perm_out, half_refs, half_out)


def _collect(
    labels: Mapping[str, FloatArray],
    i_obs: Mapping[str, FloatArray],
    perm_refs: list[tuple[str, Any]],
    perm_out: list[NDArray[np.int64]],
    half_refs: list[tuple[str, Any]],
    half_out: list[FloatArray],
) -> dict[str, dict[str, Any]]:
    """Sum exceedance counts and stack half-sample estimates per label."""
    res: dict[str, dict[str, Any]] = {
        name: {"mi": i_obs[name], "exceed": 0, "half": [], "n": int(np.isfinite(y).sum())}
        for name, y in labels.items()
    }
    for (name, _), counts in zip(perm_refs, perm_out, strict=True):
        res[name]["exceed"] = res[name]["exceed"] + counts
    for (name, _), values in zip(half_refs, half_out, strict=True):
        res[name]["half"].append(values)
    return res


def _rows(
    est: Estimator,
    cols: list[int],
    labels: Mapping[str, FloatArray],
    res: dict[str, dict[str, Any]],
    n_perm: int,
    resolvable: bool,
    ci_level: float,
    alpha: float,
    fdr: str,
) -> list[dict[str, Any]]:
    """Assemble the result rows and apply the FDR correction over all of them."""
    rows = []
    for name in labels:
        r = res[name]
        half = np.concatenate(r["half"], axis=1) if r["half"] else None
        for d, node in enumerate(cols):
            mi = float(r["mi"][d])
            ci = recentred_interval(mi, half[d], ci_level) if half is not None else (np.nan,) * 2
            exceed = int(r["exceed"][d])
            p = float(pvalue_from_exceedances(exceed, n_perm))
            rows.append(
                {
                    "node": node,
                    "label": name,
                    "estimator": est.describe(),
                    "n": r["n"],
                    "mi": mi,
                    "ci": [float(ci[0]), float(ci[1])],
                    "p_value": p,
                    "at_floor": exceed == 0,
                    "permutations": n_perm,
                    "resolvable": resolvable,
                }
            )
    adjusted = adjust_pvalues([row["p_value"] for row in rows], fdr)
    for row, q in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = float(q)
        row["significant"] = bool(q <= alpha)
    return rows
