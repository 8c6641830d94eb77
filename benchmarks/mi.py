"""The significance analysis of a 128-node latent space, against per-pair scikit-learn calls.

Data: a planted latent table, n spectra (one per object) x 128 nodes, 4 labels (rv, teff,
logg, feh): z11 tracks teff, z124 tracks rv (anti-symmetric, as published), z19, z58, z85,
z99 are alive but label-free, the other 122 nodes collapsed (N(0, 0.005)).

specray path (timed, Ray start-up excluded): ``specray.analysis.nodes.assess_nodes``,
exactly what ``specray analyze`` runs for steps 2-4 with the default configuration except
that half-sampling intervals are timed separately (the baseline computes none):

* dispersion (MAD) -> the informative set;
* copula screen of ALL 128 x 4 pairs, with the permutation count that resolves BH at
  alpha 0.05 over 512 tests (B = 10,239), as Ray tasks;
* KSG (k = 3, normal scores) for every informative node x label pair with B permutations
  (2,000, the default; 500 with --quick), as Ray tasks; BH over those pairs.

Baseline: the obvious way to get a permutation p-value for EVERY node-label pair:
``sklearn.feature_selection.mutual_info_regression(x, y, n_neighbors=3)`` called once per
pair per permutation (1 + B_all calls per pair, B_all = 10,239 so that BH over the 512
pairs can be resolved at all), on one core. It would take days, so it is measured on a
subset of calls (pairs x permutations of the same data) and extrapolated linearly:
``baseline = per-call time x 512 x (1 + B_all)``. The output says so.

So ``ratio`` = specray time / baseline time mostly measures doing far less work (a
vectorised copula screen for all pairs, KSG only where the dispersion says a node is
alive) on all cores. ``per_estimate_ratio`` compares like with like: one specray KSG
estimate against one scikit-learn call on the same pairs, in this process. Also printed:
an estimate of the half-sampling interval cost per pair (100 half-samples, one core).

    .venv/bin/python benchmarks/mi.py --quick     # n = 2,000, B = 500 (about a minute)
    .venv/bin/python benchmarks/mi.py             # n = 10,000, B = 2,000 (many minutes)
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Timer, finish, parse_args, progress, ratio, start_ray  # noqa: E402

NODES = 128
LABELS = ("rv", "teff", "logg", "feh")
TEFF_NODE, RV_NODE = 11, 124
ALIVE = (19, 58, 85, 99)


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    labels = {
        "rv": rng.uniform(-60, 60, n),
        "teff": rng.uniform(3_000, 10_000, n),
        "logg": rng.normal(4.3, 0.4, n),
        "feh": rng.normal(0.0, 0.3, n),
    }
    mu = rng.normal(0.0, 0.005, (n, NODES))
    mu[:, TEFF_NODE] = 2.4 - 4.4 * (labels["teff"] - 3_000) / 7_000 + rng.normal(0, 0.3, n)
    rv = labels["rv"]
    mu[:, RV_NODE] = -rv / 14 * np.exp(-((rv / 45) ** 2)) + rng.normal(0, 0.3, n)
    mu[:, list(ALIVE)] = rng.normal(0.0, 0.5, (n, len(ALIVE)))
    return mu, labels


def per_call(mu, labels, calls: int, estimate, seed: int = 0) -> float:
    """Seconds per ``estimate(x, y)`` on one pair with a permuted label, in this process."""
    rng = np.random.default_rng(seed)
    nodes = rng.choice(NODES, size=calls)
    names = rng.choice(LABELS, size=calls)
    estimate(mu[:, 0], labels[LABELS[0]])  # warm-up: imports and first-call costs untimed
    with Timer() as timer:
        for node, name in zip(nodes, names, strict=True):
            estimate(mu[:, node], labels[name][rng.permutation(labels[name].size)])
    return timer.seconds / calls


def sklearn_mi(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.feature_selection import mutual_info_regression

    return mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0, n_jobs=1)[0]


def specray_ksg(x: np.ndarray, y: np.ndarray) -> float:
    from specray.analysis.mi import mutual_information

    return mutual_information(x, y, "ksg", k=3)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n, perms, calls = (2_000, 500, 40) if args.quick else (10_000, 2_000, 40)

    from specray.analysis.nodes import assess_nodes
    from specray.analysis.significance import half_sample_ci, min_resolvable_permutations
    from specray.config import AnalysisConfig

    mu, labels = planted(n)
    b_all = min_resolvable_permutations(NODES * len(LABELS), 0.05, "bh")
    start_ray()
    cfg = AnalysisConfig(labels=list(LABELS), permutations=perms, ci_resamples=0)

    progress(f"specray: dispersion + copula screen (B={b_all}) + KSG (B={perms}), n={n}")
    notes: list[str] = []
    with Timer() as total:
        tests = assess_nodes(mu, labels, cfg, notes)
    screen_hits = sum(p["significant"] for p in tests.screen["pairs"])
    found = sorted((r["node"], r["label"]) for r in tests.rows if r["significant"])
    progress(
        f"specray: {total.seconds:.1f} s; informative {tests.informative}; "
        f"significant {found}; screen hits {screen_hits}"
    )
    with Timer() as ci:
        for node, name in ((TEFF_NODE, "teff"), (RV_NODE, "rv")):
            half_sample_ci(mu[:, node], labels[name], "ksg", resamples=20, seed=0)
    ci_per_pair = ci.seconds / 2 * (100 / 20)

    progress(f"baseline: {calls} mutual_info_regression calls at n={n}, one core")
    call = per_call(mu, labels, calls, sklearn_mi)
    total_calls = NODES * len(LABELS) * (1 + b_all)
    baseline = call * total_calls
    progress(f"baseline: {call * 1e3:.1f} ms/call x {total_calls:,} calls = {baseline:,.0f} s")
    ksg_call = per_call(mu, labels, calls, specray_ksg)
    progress(f"one specray KSG estimate on the same pairs, same core: {ksg_call * 1e3:.1f} ms")

    finish(
        {
            "ratio": ratio(total.seconds, baseline),
            "baseline": (
                f"sklearn mutual_info_regression per pair per permutation, one core, "
                f"{NODES}x{len(LABELS)} pairs x (1 + {b_all}) calls; EXTRAPOLATED from "
                f"{calls} timed calls"
            ),
            "n": n,
            "nodes": NODES,
            "labels": len(LABELS),
            "specray_s": total.seconds,
            "specray_informative": tests.informative,
            "specray_significant_pairs": [f"z{node}-{name}" for node, name in found],
            "specray_ksg_permutations": perms,
            "specray_screen_permutations": b_all,
            "specray_ci_estimate_s_per_pair_100_halfsamples_one_core": ci_per_pair,
            "baseline_s_extrapolated": baseline,
            "baseline_s_per_call": call,
            "specray_ksg_s_per_estimate_one_core": ksg_call,
            "per_estimate_ratio": ratio(ksg_call, call),
            "baseline_calls": total_calls,
            "planted_recovered": found == [(TEFF_NODE, "teff"), (RV_NODE, "rv")],
        }
    )


if __name__ == "__main__":
    main()
