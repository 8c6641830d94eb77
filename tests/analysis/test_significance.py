"""Permutation p-values, FDR control, half-sampling intervals and the Ray fan-out."""

import warnings

import numpy as np
import pytest
from scipy import stats

from specray.analysis.mi import mutual_information
from specray.analysis.significance import (
    UnresolvedPermutationWarning,
    adjust_pvalues,
    choose_permutations,
    format_pvalue,
    half_sample_ci,
    is_resolvable,
    min_resolvable_permutations,
    pairwise_node_mi,
    permutation_pvalue,
    permutation_test,
    recentred_interval,
)
from specray.analysis.significance_table import significance_table
from specray.model.posterior import informative_nodes


def planted_latents(n: int = 2_000, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """16 nodes: 0 tracks teff (monotone), 1 tracks rv (anti-symmetric, back to 0 at large
    |rv|), 2-4 alive but label-free, 5-15 collapsed at N(0, 0.005)."""
    rng = np.random.default_rng(seed)
    labels = {
        "teff": rng.uniform(3_000, 10_000, n),
        "rv": rng.uniform(-150, 150, n),
        "feh": rng.normal(0.0, 0.3, n),
    }
    latents = rng.normal(0.0, 0.005, (n, 16))
    latents[:, 0] = 2.4 - 4.4 * (labels["teff"] - 3_000) / 7_000 + rng.normal(0, 0.3, n)
    rv = labels["rv"]
    latents[:, 1] = -rv / 30 * np.exp(-((rv / 100) ** 2)) + rng.normal(0, 0.3, n)
    latents[:, 2:5] = rng.normal(0.0, 0.5, (n, 3))
    return latents, labels


# ------------------------------------------------------------------ p-values and FDR


def test_permutation_pvalue_formula():
    assert permutation_pvalue(1.0, [0.0, 2.0, 1.0]) == pytest.approx(3 / 4)
    assert permutation_pvalue(5.0, np.zeros(99)) == pytest.approx(1 / 100)
    p = permutation_pvalue([1.0, 0.0], [[0.0, 0.5], [1.0, 1.0]])
    assert p == pytest.approx([1 / 3, 1.0])
    with pytest.raises(ValueError, match="does not match"):
        permutation_pvalue([1.0, 2.0], np.zeros(5))


@pytest.mark.parametrize("method", ["bh", "by"])
def test_adjust_pvalues_matches_scipy(method):
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 1e-3, 20), [0.01, 0.01, 0.5]])
    rng.shuffle(p)
    assert adjust_pvalues(p, method) == pytest.approx(
        stats.false_discovery_control(p, method=method)
    )
    grid = p[:200].reshape(20, 10)
    assert adjust_pvalues(grid, method) == pytest.approx(
        stats.false_discovery_control(grid.ravel(), method=method).reshape(20, 10)
    )


def test_adjust_pvalues_edge_cases():
    assert adjust_pvalues([0.2, 0.01], "none") == pytest.approx([0.2, 0.01])
    assert adjust_pvalues([]).size == 0
    with pytest.raises(ValueError, match="within"):
        adjust_pvalues([0.5, 1.5])
    with pytest.raises(ValueError, match="unknown FDR"):
        adjust_pvalues([0.5], "holm")


@pytest.mark.parametrize("n_tests", [1, 10, 32, 512])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize("fdr", ["bh", "by"])
def test_min_resolvable_permutations_is_the_smallest_that_works(n_tests, alpha, fdr):
    b = min_resolvable_permutations(n_tests, alpha, fdr)
    for permutations, ok in ((b, True), (b - 1, False)):
        p = np.full(n_tests, 1.0)
        p[0] = 1 / (permutations + 1)  # the best a permutation test can report
        assert bool(adjust_pvalues(p, fdr)[0] <= alpha) is ok
    assert is_resolvable(b, n_tests, alpha, fdr) and not is_resolvable(b - 1, n_tests, alpha, fdr)


def test_min_resolvable_permutations_values():
    assert min_resolvable_permutations(32, 0.05) == 639
    assert min_resolvable_permutations(512, 0.05) == 10_239


def test_pvalues_at_the_floor_print_as_a_bound():
    assert format_pvalue(1 / 1000, at_floor=True) == "< 0.001"
    assert format_pvalue(0.0018, at_floor=True) == "< 0.0018"
    assert format_pvalue(0.0123, at_floor=False) == "0.0123"
    assert format_pvalue(None) == "-" and format_pvalue(float("nan")) == "-"


def test_choose_permutations_auto_and_warning():
    assert choose_permutations(None, 10) == (999, True)
    assert choose_permutations(None, 512) == (10_239, True)
    with pytest.warns(UnresolvedPermutationWarning, match="B >= 199"):
        assert choose_permutations(99, 10) == (99, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_permutations(199, 10) == (199, True)


# ------------------------------------------------------- null calibration (no Ray)


def test_pvalues_are_uniform_under_independence_copula():
    rng = np.random.default_rng(1)
    pvals = np.array(
        [
            permutation_test(rng.normal(size=100), rng.normal(size=100), "copula", 199, seed=s)[1]
            for s in range(200)
        ]
    )
    # P(p <= 0.05) = 10/200 exactly under the null: count ~ Binomial(200, 0.05), sd 3.1
    assert 1 <= np.count_nonzero(pvals <= 0.05) <= 21
    assert stats.kstest(pvals, "uniform").pvalue > 1e-3


def test_pvalues_are_uniform_under_independence_ksg():
    rng = np.random.default_rng(2)
    pvals = np.array(
        [
            permutation_test(rng.normal(size=60), rng.exponential(size=60), "ksg", 99, seed=s)[1]
            for s in range(100)
        ]
    )
    assert np.count_nonzero(pvals <= 0.05) <= 13  # mean 5, sd 2.2
    assert stats.kstest(pvals, "uniform").pvalue > 1e-3


def test_permutation_test_detects_dependence():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    mi, p = permutation_test(x, x**2 + 0.5 * rng.normal(size=300), "ksg", 199)
    assert p == pytest.approx(1 / 200) and mi > 0.2


# ---------------------------------------------------------------- intervals


def test_recentred_interval_shape():
    half = np.array([0.9, 1.0, 1.1, 1.0, 0.95, 1.05])
    lo, hi = recentred_interval(0.5, half, level=0.9)
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert recentred_interval(0.01, half, level=0.9)[0] == 0.0  # floored at 0
    with pytest.raises(ValueError):
        recentred_interval(0.5, [1.0])


def test_half_sample_spread_matches_sampling_spread():
    """The claim behind recentred_interval: no sqrt(2) rescaling is needed."""
    rho, n = 0.6, 1_000
    rng = np.random.default_rng(4)
    full = []
    for _ in range(300):
        x = rng.normal(size=n)
        full.append(mutual_information(x, rho * x + 0.8 * rng.normal(size=n), "copula"))
    widths = []
    for s in range(10):
        x = rng.normal(size=n)
        lo, hi = half_sample_ci(x, rho * x + 0.8 * rng.normal(size=n), "copula", 400, seed=s)
        widths.append(hi - lo)
    expected_width = 2 * 1.96 * np.std(full)
    assert np.median(widths) == pytest.approx(expected_width, rel=0.25)


def test_half_sample_ci_covers_truth_ksg():
    rng = np.random.default_rng(5)
    x = rng.normal(size=3_000)
    y = 0.6 * x + 0.8 * rng.normal(size=3_000)
    lo, hi = half_sample_ci(x, y, "ksg", resamples=40, seed=1)
    assert lo < -0.5 * np.log(1 - 0.36) < hi
    assert hi - lo < 0.15


# ------------------------------------------------------------- independence


def test_pairwise_node_mi():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(2_000, 3))
    z[:, 2] = z[:, 0] + 0.5 * rng.normal(size=2_000)
    for method in ("ksg", "copula"):
        m = pairwise_node_mi(z, method=method)
        assert m.shape == (3, 3) and np.all(np.isnan(np.diag(m)))
        assert np.allclose(m, m.T, equal_nan=True)
        assert abs(m[0, 1]) < 0.03 and m[0, 2] > 0.5
    assert pairwise_node_mi(z, nodes=[2, 0]).shape == (2, 2)


# ------------------------------------------------------------ the Ray table


def significant_pairs(rows: list[dict]) -> set[tuple[int, str]]:
    return {(r["node"], r["label"]) for r in rows if r["significant"]}


def test_planted_latents_end_to_end(ray_session):
    latents, labels = planted_latents()
    nodes = informative_nodes(latents)
    assert nodes.tolist() == [0, 1, 2, 3, 4]
    rows = significance_table(
        latents, labels, nodes=nodes, method="ksg", permutations=299, seed=3, ci_resamples=10
    )
    assert len(rows) == 15
    assert significant_pairs(rows) == {(0, "teff"), (1, "rv")}
    for r in rows:
        assert set(r) >= {"node", "label", "estimator", "mi", "ci", "p_value", "p_adjusted"}
        assert r["resolvable"] and r["permutations"] == 299 and r["n"] == 2_000
        assert 0.0 <= r["ci"][0] <= max(r["mi"], 0.0) <= r["ci"][1]
        assert r["at_floor"] == (r["p_value"] == 1 / 300)
        if r["significant"]:
            assert r["mi"] > 0.5 and r["ci"][0] > 0.3 and r["p_value"] == pytest.approx(1 / 300)


def test_planted_latents_all_nodes_copula(ray_session):
    latents, labels = planted_latents(seed=1)
    rows = significance_table(latents, labels, method="copula", seed=0, ci_resamples=0)
    assert len(rows) == 48 and rows[0]["permutations"] == 999  # max(999, 48/0.05 - 1)
    assert {(0, "teff"), (1, "rv")} <= significant_pairs(rows)
    assert all(np.isnan(r["ci"][0]) for r in rows)


def test_table_is_reproducible_and_independent_of_chunking(ray_session):
    latents, labels = planted_latents(n=400, seed=2)
    kwargs = dict(nodes=[0, 1, 2, 5], method="copula", permutations=300, ci_resamples=20)
    a = significance_table(latents, labels, seed=11, chunk_size=64, **kwargs)
    b = significance_table(latents, labels, seed=11, chunk_size=64, **kwargs)
    c = significance_table(latents, labels, seed=11, chunk_size=37, **kwargs)
    d = significance_table(latents, labels, seed=12, chunk_size=64, **kwargs)
    assert a == b
    assert [r["p_value"] for r in a] == [r["p_value"] for r in c]
    assert [r["ci"] for r in a] == [r["ci"] for r in c]
    assert [r["p_value"] for r in a] != [r["p_value"] for r in d]


def test_table_warns_when_permutations_cannot_resolve(ray_session):
    latents, labels = planted_latents(n=300, seed=3)
    with pytest.warns(UnresolvedPermutationWarning):
        rows = significance_table(
            latents, labels, nodes=[0, 1], method="copula", permutations=20, ci_resamples=0
        )
    assert not any(r["resolvable"] for r in rows)
    assert not any(r["significant"] for r in rows)  # 6 tests: p >= 1/21 -> q >= 0.29


def test_table_drops_missing_label_rows_per_label(ray_session):
    latents, labels = planted_latents(n=500, seed=4)
    labels["teff"][:100] = np.nan
    rows = significance_table(
        latents, labels, nodes=[0], method="copula", permutations=199, ci_resamples=4
    )
    assert {r["label"]: r["n"] for r in rows} == {"teff": 400, "rv": 500, "feh": 500}
    assert rows[0]["significant"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"nodes": [99]}, ValueError, "out of range"),
        ({"nodes": []}, ValueError, "empty"),
        ({"labels": {"teff": np.ones(3)}}, ValueError, "shape"),
        ({"labels": {}}, ValueError, "empty"),
        ({"method": "gmm"}, ValueError, "unknown MI method"),
        ({"bins": 10}, TypeError, "do not apply"),
        ({"ci_resamples": 1}, ValueError, "ci_resamples"),
        ({"permutations": 0}, ValueError, "positive integer"),
    ],
)
def test_table_input_validation(kwargs, error, match):
    latents, labels = planted_latents(n=100)
    args = {"labels": labels, **kwargs}
    with pytest.raises(error, match=match):
        significance_table(latents, **args)
