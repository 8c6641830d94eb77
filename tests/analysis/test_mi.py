"""Mutual-information estimators against analytic truth (method.md section 7)."""

import time

import numpy as np
import pytest

from specray.analysis.mi import (
    DEFAULT_BINNINGS,
    Estimator,
    _strict_neighbour_counts,
    corrected_histogram_mi_table,
    histogram_mi_table,
    indicator_map,
    make_estimator,
    max_histogram_bins,
    mutual_information,
    rank_transform,
)


def gaussian_pair(rho: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bivariate standard normal sample with correlation rho."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return x, y


def gaussian_mi(rho: float) -> float:
    return -0.5 * np.log(1 - rho**2)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
@pytest.mark.parametrize(
    ("method", "options"),
    [("ksg", {}), ("ksg", {"copula": False}), ("ksg", {"k": 5}), ("copula", {})],
)
def test_bivariate_gaussian_matches_analytic(rho, method, options):
    # ennemi-style tolerance: absolute 0.02 nat at n = 20,000 (KSG sd there ~0.005).
    x, y = gaussian_pair(rho, 20_000, seed=int(rho * 10))
    assert mutual_information(x, y, method, **options) == pytest.approx(gaussian_mi(rho), abs=0.02)


def test_bivariate_gaussian_sklearn_tolerance():
    # scikit-learn's own check: rtol 0.1 at n = 1,000, for a strongly dependent pair.
    x, y = gaussian_pair(0.9, 1_000, seed=3)
    assert mutual_information(x, y) == pytest.approx(gaussian_mi(0.9), rel=0.1)


def test_analytic_value_at_rho_06():
    assert gaussian_mi(0.6) == pytest.approx(0.223, abs=5e-4)


@pytest.mark.parametrize(("method", "tol"), [("ksg", 0.02), ("copula", 1e-3)])
def test_independent_is_near_zero(method, tol):
    x, y = gaussian_pair(0.0, 20_000, seed=7)
    assert abs(mutual_information(x, y, method)) < tol


def test_ksg_clip_floors_at_zero():
    x, y = gaussian_pair(0.0, 2_000, seed=1)
    raw = [mutual_information(x, np.roll(y, s)) for s in range(1, 8)]
    assert min(raw) < 0  # unclipped KSG does go negative on independent data
    assert all(mutual_information(x, np.roll(y, s), clip=True) >= 0 for s in range(1, 8))


@pytest.mark.parametrize("method", ["ksg", "copula"])
def test_exact_invariance_under_monotone_transforms(method):
    x, y = gaussian_pair(0.6, 3_000, seed=2)
    base = mutual_information(x, y, method)
    assert mutual_information(np.exp(x), y**3, method) == base
    assert mutual_information(-x, -(y**3), method) == base


def test_raw_ksg_is_affine_invariant_and_roughly_monotone_invariant():
    x, y = gaussian_pair(0.6, 5_000, seed=4)
    base = mutual_information(x, y, copula=False)
    assert mutual_information(3 * x + 5, 0.1 * y - 2, copula=False) == pytest.approx(base, abs=1e-3)
    assert mutual_information(np.exp(x), y, copula=False) == pytest.approx(base, abs=0.05)


@pytest.mark.parametrize(
    ("method", "options"),
    [("ksg", {}), ("ksg", {"copula": False}), ("copula", {}), ("histogram", {})],
)
def test_symmetry(method, options):
    x, y = gaussian_pair(0.5, 2_000, seed=5)
    y = np.exp(y)
    assert mutual_information(x, y, method, **options) == pytest.approx(
        mutual_information(y, x, method, **options), rel=1e-12
    )


def test_histogram_is_biased_upward_for_independent_data():
    # method.md: about 0.26 nat at 40 bins and n = 2,000 for independent data.
    x, y = gaussian_pair(0.0, 2_000, seed=6)
    hist = mutual_information(x, y, "histogram", bins=40)
    assert 0.15 < hist < 0.4
    assert hist > mutual_information(x, y) + 0.1
    table = histogram_mi_table(np.column_stack((x, y)), y[::-1].copy(), binnings=(5, 20, 80))
    assert np.all(np.diff(table[:, 0]) > 0)  # more bins, more bias


def test_histogram_matches_numpy_histogram2d():
    x, y = gaussian_pair(0.7, 3_000, seed=8)
    joint, _, _ = np.histogram2d(x, y, bins=20)
    p = joint / joint.sum()
    outer = p.sum(axis=1, keepdims=True) @ p.sum(axis=0, keepdims=True)
    nz = p > 0
    expected = np.sum(p[nz] * np.log(p[nz] / outer[nz]))
    assert mutual_information(x, y, "histogram", bins=20) == pytest.approx(expected, rel=1e-9)


def test_histogram_table_and_indicator_map():
    rng = np.random.default_rng(9)
    label = rng.standard_normal(2_000)
    latents = np.column_stack(
        [rng.standard_normal(2_000), label + 0.3 * rng.standard_normal(2_000), label.copy()]
    )
    table = histogram_mi_table(latents, label)
    assert table.shape == (len(DEFAULT_BINNINGS), 3)
    heat = indicator_map(table)
    assert np.allclose(heat.max(axis=1), 1.0)
    assert np.all(heat[:, 2] == 1.0)  # I(label; label) = H(binned label) bounds every node
    assert np.all(heat[:, 0] < heat[:, 1])
    assert np.array_equal(indicator_map(np.zeros((2, 3))), np.zeros((2, 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrected_indicator_map_at_n_300(seed):
    """One node depends on the label (MI 0.5 ln 5 = 0.80 nat), seven do not. The raw map
    lets independent nodes reach ~1.0 at 80-160 bins; the corrected one keeps the
    dependent node at 1.0 in every row it draws and the others well below, and leaves out
    the binnings finer than sqrt(2n) = 24 bins."""
    rng = np.random.default_rng(seed)
    n = 300
    label = rng.standard_normal(n)
    latents = rng.standard_normal((n, 8))
    latents[:, 3] = label + 0.5 * rng.standard_normal(n)
    raw = indicator_map(histogram_mi_table(latents, label))
    assert np.delete(raw, 3, axis=1)[-1].max() > 0.9  # the defect being fixed
    corrected = indicator_map(corrected_histogram_mi_table(latents, label, seed=seed))
    drawn = np.array(DEFAULT_BINNINGS) <= max_histogram_bins(n)
    assert max_histogram_bins(n) == 24 and drawn.tolist() == [True] * 3 + [False] * 3
    assert np.isnan(corrected[~drawn]).all()
    assert np.all(corrected[drawn, 3] == 1.0)
    assert np.delete(corrected[drawn], 3, axis=1).max() < 0.3


def test_null_correction_removes_the_histogram_bias():
    """Independent data at n = 2,000, 20 bins: raw plug-in MI ~(bins-1)^2/(2n) = 0.09 nat;
    after subtracting the permutation-null mean, about 0."""
    rng = np.random.default_rng(12)
    latents, label = rng.standard_normal((2_000, 6)), rng.standard_normal(2_000)
    raw = histogram_mi_table(latents, label, binnings=(20,))[0]
    corrected = corrected_histogram_mi_table(latents, label, binnings=(20,))[0]
    assert raw.mean() == pytest.approx(19**2 / 4_000, rel=0.25)
    assert corrected.mean() < 0.01
    with pytest.raises(ValueError, match="permutations"):
        corrected_histogram_mi_table(latents, label, permutations=0)


def test_ties_are_broken_reproducibly():
    rng = np.random.default_rng(10)
    x = np.round(rng.standard_normal(500), 1)  # heavy ties
    r1, r2 = rank_transform(x, seed=1), rank_transform(x.copy(), seed=1)
    assert np.array_equal(r1, r2)
    assert np.array_equal(np.sort(r1), np.arange(500.0))
    assert np.all(np.diff(x[np.argsort(r1)]) >= 0)  # ranks respect the order of values
    y = x + rng.standard_normal(500)
    assert mutual_information(x, y) == mutual_information(x, y)
    assert mutual_information(x, y) > 0.3


def test_raw_ksg_rejects_duplicate_points():
    x = np.repeat(np.arange(5.0), 20)
    with pytest.raises(ValueError, match="coincide"):
        mutual_information(x, x.copy(), copula=False)


@pytest.mark.parametrize("method", ["ksg", "copula", "histogram"])
def test_estimate_many_matches_single_estimates(method):
    rng = np.random.default_rng(11)
    est = make_estimator(method)
    tx = est.prepare_columns(rng.standard_normal((300, 3)))
    ty = est.prepare_columns(rng.standard_normal((300, 2)))
    many = est.estimate_many(tx, ty)
    single = [[est.estimate(tx[:, d], ty[:, b]) for b in range(2)] for d in range(3)]
    assert many == pytest.approx(np.array(single), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.ones(20), np.ones(21), "same length"),
        (np.r_[np.nan, np.ones(19)], np.ones(20), "non-finite"),
        (np.ones(5), np.ones(5), "at least"),
        (np.ones((20, 2, 2)), np.ones(20), "1-D"),  # a node matrix is 2-D at most
        (np.ones(20), np.ones((20, 2)), "1-D"),  # one label at a time
        (np.ones((20, 2)), np.ones(21), "same length"),
    ],
)
def test_input_validation(x, y, match):
    with pytest.raises(ValueError, match=match):
        mutual_information(x, y)


def test_option_validation():
    x, y = gaussian_pair(0.5, 100)
    with pytest.raises(ValueError, match="unknown MI method"):
        mutual_information(x, y, "gmm")
    with pytest.raises(TypeError, match="do not apply"):
        mutual_information(x, y, "copula", bins=10)
    with pytest.raises(ValueError, match="k must"):
        mutual_information(x, y, k=0)
    with pytest.raises(ValueError, match="bins"):
        Estimator(method="histogram", bins=1)


def test_ksg_is_fast_at_ten_thousand():
    x, y = gaussian_pair(0.6, 10_000, seed=12)
    mutual_information(x, y)  # warm-up
    start = time.perf_counter()
    mutual_information(x, y)
    assert time.perf_counter() - start < 0.5  # ~20 ms measured; generous for slow CI


@pytest.mark.parametrize("options", [{}, {"copula": False}])
@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_ksg_small_sample_bias(options, rho):
    # Mean of 40 estimates at n = 1,000 (sd of the mean ~0.004; measured bias <= 0.011).
    # Integer-rank lattices (tied distances) or rounded-in boundary points: 0.02-0.05 nat.
    est = [mutual_information(*gaussian_pair(rho, 1_000, seed=s), **options) for s in range(40)]
    assert np.mean(est) == pytest.approx(gaussian_mi(rho), abs=0.015)


def test_strict_neighbour_counts_match_brute_force():
    rng = np.random.default_rng(13)
    for scale, offset in [(1.0, 0.0), (1e-3, 0.0), (1e3, 1e6), (1.0, 1e6)]:
        v = rng.standard_normal(400) * scale + offset
        partner = (np.arange(400) + rng.integers(1, 400, 400)) % 400  # never the point itself
        eps = np.abs(v - v[partner])  # radii that land exactly on data points
        brute = (np.abs(v[None, :] - v[:, None]) < eps[:, None]).sum(axis=1) - 1
        assert np.array_equal(_strict_neighbour_counts(v, eps), brute)
