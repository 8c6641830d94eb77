"""The significance of every (node, label) pair at once, fanned out as Ray tasks.

:func:`significance_table` applies the recipe of :mod:`specray.analysis.significance`
(permutation p-values, FDR, half-sample intervals) to a whole latent table: one task per
chunk of ``chunk_size`` permutations, or ``chunk_size / 8`` half-samples, per label; the
prepared latents and labels go into Ray's object store once. Progress is logged as tasks
complete. Results depend only on ``seed`` (see the randomness note there), not on the
chunk size, the number of workers or the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from specray.analysis.mi import DEFAULT_METHOD, Estimator, FloatArray, as_matrix, make_estimator
from specray.analysis.significance import (
    adjust_pvalues,
    as_nodes,
    choose_permutations,
    count_exceedances,
    half_sample_mi,
    label_stream_key,
    observed_mi,
    pvalue_from_exceedances,
    recentred_interval,
)
from specray.analysis.tasks import chunks, remote, wait_all
from specray.errors import InputError


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
    cols = as_nodes(nodes, mat.shape[1])
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
        observed[name] = remote(observed_mi).remote(est, tx_ref, ty_ref)
        plan[name] = (valid, tx_ref, ty_ref)
    i_obs = dict(zip(observed, wait_all(list(observed.values()), "observed MI"), strict=True))

    perm_refs, half_refs = [], []
    raw_ref = ray.put(raw)
    for name, (valid, tx_ref, ty_ref) in plan.items():
        lk = label_stream_key(name)
        for start, stop in chunks(n_perm, chunk_size):
            task = remote(count_exceedances).remote(
                est, tx_ref, ty_ref, i_obs[name], seed, lk, start, stop
            )
            perm_refs.append((name, task))
        if ci_resamples > 0:
            rows = raw_ref if valid.all() else ray.put(raw[valid])
            y_valid = ray.put(labels[name][valid])
            half_chunk = max(1, chunk_size // 8)
            for start, stop in chunks(ci_resamples, half_chunk):
                task = remote(half_sample_mi).remote(est, rows, y_valid, seed, lk, start, stop)
                half_refs.append((name, task))
    perm_out = wait_all([t for _, t in perm_refs], "permutation null")
    half_out = wait_all([t for _, t in half_refs], "half-sample intervals")
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
