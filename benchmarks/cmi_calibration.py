"""Calibration of the conditional permutation test of specray.analysis.attribution.

Not a speed benchmark: under H0 (node = g(Teff) + noise, mass = f(Teff) + noise, so node
and mass are independent given Teff) it repeats the local-permutation test of
I(node; mass | Teff) and prints, as its last line, the rejection rates at 0.05 and 0.1
(nominal: 0.05 and 0.1) and the mean observed and null estimates in nats.

    .venv/bin/python benchmarks/cmi_calibration.py --replicates 30 --permutations 99
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from specray.analysis.attribution import Problem, _neighbour_table, local_permutation
from specray.analysis.mi import normal_scores


def one_replicate(
    rng: np.random.Generator, n: int, permutations: int
) -> tuple[float, float, float]:
    """(p-value, observed CMI, mean null CMI) for one H0 data set."""
    teff = rng.uniform(3500, 7000, n)
    mass = 0.3 + (teff - 3500) / 3500 + rng.normal(0, 0.12, n)
    node = (teff - 5250) / 1000 + rng.normal(0, 0.3, n)
    z = normal_scores(teff)[:, None]
    problem = Problem(normal_scores(node)[:, None], normal_scores(mass), False, z, None, 5)
    observed = problem.estimate()
    table = _neighbour_table(problem, 5)
    null = np.array(
        [problem.estimate(problem.y[local_permutation(table, n, rng)]) for _ in range(permutations)]
    )
    return (1 + np.count_nonzero(null >= observed)) / (1 + permutations), observed, null.mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=30)
    parser.add_argument("--permutations", type=int, default=99)
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    out = np.array([one_replicate(rng, args.n, args.permutations) for _ in range(args.replicates)])
    print(
        json.dumps(
            {
                "replicates": args.replicates,
                "reject_at_0.05": float(np.mean(out[:, 0] <= 0.05)),
                "reject_at_0.1": float(np.mean(out[:, 0] <= 0.1)),
                "mean_observed_nat": float(out[:, 1].mean()),
                "mean_null_nat": float(out[:, 2].mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
