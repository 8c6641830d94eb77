"""Joint and conditional MI, label kinds and the naming rule, against known truth."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, stats

from specray.analysis.attribution import (
    AttributionSettings,
    Problem,
    _neighbour_table,
    attribute,
    local_permutation,
    sequential_pvalue,
)
from specray.analysis.cmi import (
    LabelKindError,
    category_codes,
    conditional_mi,
    detect_kind,
    discrete_mi,
    prepare_label,
    resolve_kind,
)
from specray.analysis.mi import normal_scores
from specray.analysis.significance import min_resolvable_permutations

FAST = AttributionSettings(permutations=99, ci_resamples=16, chunk_size=256)
"""Enough permutations to resolve BH over the 2 tests of the small cases (needs 39)."""


def mixture_mi(means, sd, weights):
    """I(class; x) for x | class ~ N(mean_c, sd): H(x) by quadrature minus H(x | class)."""
    means, weights = np.asarray(means, float), np.asarray(weights, float)

    def pdf(v):
        return float(np.sum(weights * stats.norm.pdf(v, means, sd)))

    lo, hi = means.min() - 10 * sd, means.max() + 10 * sd
    points = list(means)
    h_x = integrate.quad(lambda v: -pdf(v) * np.log(pdf(v)), lo, hi, points=points, limit=500)[0]
    return h_x - 0.5 * np.log(2 * np.pi * np.e * sd**2)


@pytest.mark.parametrize("n_classes", [4, 7, 15])
def test_discrete_label_mi_matches_numerical_truth(n_classes):
    rng = np.random.default_rng(n_classes)
    means = np.linspace(0.0, 4.0, n_classes) ** 1.3
    weights = rng.dirichlet(np.full(n_classes, 5.0))
    classes = rng.choice(n_classes, size=3000, p=weights)
    x = rng.normal(means[classes], 0.6)
    truth = mixture_mi(means, 0.6, weights)
    label = 3.5 + 0.5 * classes  # a discrete numeric label, e.g. logg on a 0.5 dex grid
    assert detect_kind(label) == "discrete"
    estimate = discrete_mi(prepare_label(label, "discrete"), normal_scores(x), k=5)
    assert estimate == pytest.approx(truth, abs=0.04)
    # the same classes written as text (categorical) give the same codes and estimate
    text = np.array([f"K{c}V" for c in classes], dtype=object)
    codes, categories = category_codes(text)
    assert detect_kind(text) == "categorical" and len(categories) == len(np.unique(classes))
    assert discrete_mi(codes, normal_scores(x), k=5) == pytest.approx(estimate, abs=1e-12)


def test_conditional_and_joint_mi_of_gaussians():
    rng = np.random.default_rng(3)
    n = 2000
    z = rng.normal(size=n)
    x = z + rng.normal(size=n)
    y = x + z + rng.normal(size=n)  # given z, y = x + noise with Var(x | z) = 1: rho^2 = 1/2
    s = [normal_scores(v) for v in (x, y, z)]
    assert conditional_mi(s[0], s[1], s[2]) == pytest.approx(0.5 * np.log(2), abs=0.04)
    w = z + rng.normal(size=n)  # x and w are dependent, but independent given z
    assert conditional_mi(s[0], normal_scores(w), s[2]) == pytest.approx(0.0, abs=0.02)
    x2 = rng.normal(size=n)
    joint = x2 + z + rng.normal(size=n)  # I(joint; (x2, z)) = 0.5 ln(3)
    both = np.column_stack([normal_scores(x2), s[2]])
    assert conditional_mi(both, normal_scores(joint)) == pytest.approx(0.5 * np.log(3), abs=0.05)


def test_tied_continuous_label_keeps_its_information():
    """Teff rounded to a coarse grid: many exact ties, broken reproducibly at random."""
    rng = np.random.default_rng(4)
    rho, n = 0.8, 2000
    a = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
    teff = 5500 + 800 * a[:, 1]
    rounded = np.round(teff / 50) * 50  # ~100 distinct values, each seen ~20 times
    assert np.unique(rounded).size < n / 10
    assert detect_kind(rounded) == "continuous"
    label = prepare_label(rounded, "continuous", seed=7)
    assert np.unique(label).size == n  # no ties left
    estimate = conditional_mi(normal_scores(a[:, 0]), label)
    assert estimate == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.05)
    assert conditional_mi(normal_scores(a[:, 0]), prepare_label(rounded, "continuous", 7)) == (
        estimate
    )


def test_label_kind_detection_and_overrides():
    rng = np.random.default_rng(5)
    assert detect_kind(rng.normal(size=300)) == "continuous"
    assert detect_kind(rng.integers(0, 6, 300).astype(float)) == "discrete"
    assert detect_kind(rng.integers(0, 30, 300).astype(float)) == "continuous"
    assert detect_kind(np.array(["G2V", "K0III", None], dtype=object)) == "categorical"
    assert resolve_kind("n_planets", rng.normal(size=300), "discrete", 20) == "discrete"
    with pytest.raises(LabelKindError, match="'sptype' holds text"):
        resolve_kind("sptype", np.array(["G2V", "M1V"]), "continuous", 20)
    with pytest.raises(LabelKindError, match="unknown kind 'ordinal'"):
        resolve_kind("x", np.zeros(3), "ordinal", 20)
    codes, cats = category_codes(np.array(["b", None, "a", "", "b"], dtype=object))
    assert cats == ["a", "b"]
    np.testing.assert_array_equal(codes, [1, np.nan, 0, np.nan, 1])


def test_local_permutation_shuffles_among_neighbours_and_within_strata():
    rng = np.random.default_rng(6)
    n = 200
    z = np.sort(rng.normal(size=n))[:, None]
    strata = (np.arange(n) % 2).astype(np.int64)
    problem = Problem(np.zeros((n, 1)), np.arange(n, dtype=float), False, z, strata, 5)
    perm = local_permutation(_neighbour_table(problem, 5), n, rng)
    assert np.all(strata[perm] == strata)  # never across a discrete conditioning value
    assert np.unique(perm).size > 0.8 * n  # mostly a permutation (repeats only when stuck)
    assert np.mean(perm != np.arange(n)) > 0.5
    assert np.max(np.abs(z[perm, 0] - z[:, 0])) < 1.0  # close in Z
    plain = Problem(np.zeros((n, 1)), np.arange(n, dtype=float), False, np.empty((n, 0)), None, 5)
    assert sorted(local_permutation(_neighbour_table(plain, 5), n, rng)) == list(range(n))


@pytest.fixture(scope="module")
def planted():
    """z0 = f(teff); mass rides on teff; z1 = g(rv); z2 mixes feh and rv."""
    rng = np.random.default_rng(1)
    n = 250
    teff = rng.uniform(3500, 7000, n)
    mass = 0.3 + (teff - 3500) / 3500 + rng.normal(0, 0.12, n)
    feh = rng.normal(0, 0.3, n)
    rv = rng.uniform(-50, 50, n)
    mu = rng.normal(0, 1, (n, 4))
    mu[:, 0] = (teff - 5250) / 1000 + rng.normal(0, 0.3, n)
    mu[:, 1] = rv / 30 + rng.normal(0, 0.2, n)
    mu[:, 2] = feh / 0.3 + rv / 30 + rng.normal(0, 0.3, n)
    labels = {"teff": teff, "mass": mass, "feh": feh, "rv": rv}
    kinds = dict.fromkeys(labels, "continuous")
    need = min_resolvable_permutations(3 * 4)  # the fewest that resolve BH: keeps it fast
    settings = replace(FAST, permutations=need)
    return attribute(mu, labels, [0, 1, 2], kinds, settings=settings, parallel=False)


def test_conditional_mi_names_teff_not_the_correlated_mass(planted):
    assert planted["label_nodes"]["teff"]["node"] == 0
    assert planted["label_nodes"]["mass"] is None
    verdict = planted["labels"]["mass"]["verdict"]
    assert verdict["status"] == "explained_by" and verdict["by"] == "teff"
    node0 = planted["nodes"][0]
    assert node0["best_label"] == "teff" and node0["status"] == "exclusive"
    assert "mass" in node0["related_labels"]  # marginally mass IS related...
    rival = next(r for r in node0["rivals"] if r["label"] == "mass")
    assert rival["value"] < 0.1  # ...but adds nothing (above the floor) given teff
    assert planted["label_nodes"]["teff"]["cmi_ci"][0] >= 0.1


def test_node_mixing_two_labels_is_reported_mixed(planted):
    assert planted["nodes"][2]["status"] == "mixed"
    assert {planted["nodes"][2]["best_label"], *planted["nodes"][2]["mixed_with"]} == {"feh", "rv"}
    assert planted["label_nodes"]["feh"] is None
    assert planted["labels"]["feh"]["verdict"]["status"] == "mixed"
    assert planted["label_nodes"]["rv"]["node"] == 1  # the clean rv node is still named


def test_attribution_numbers_are_consistent(planted):
    teff = planted["nodes"][0]
    assert teff["fraction_explained"] == pytest.approx(1 - np.exp(-2 * teff["mi"]))
    perms = planted["permutations"]
    assert perms["resolvable"] and perms["used"] >= perms["needed"]
    rows = planted["labels"]["teff"]["nodes"]
    assert all(r["mi_ci"][0] <= max(r["mi"], 0.0) <= r["mi_ci"][1] for r in rows)


def test_discrete_and_categorical_labels_are_attributed():
    rng = np.random.default_rng(8)
    n = 300
    sptype = rng.integers(0, 5, n)  # five spectral classes
    text = np.array(["OBAFG"[c] for c in sptype], dtype=object)
    codes, _ = category_codes(text)
    mu = rng.normal(0, 1, (n, 2))
    mu[:, 0] = sptype + rng.normal(0, 0.4, n)
    labels = {"sptype": codes}
    out = attribute(mu, labels, [0, 1], {"sptype": "categorical"}, settings=FAST, parallel=False)
    assert out["label_nodes"]["sptype"]["node"] == 0
    assert out["nodes"][1]["status"] == "unexplained"
    assert out["nodes"][1]["fraction_explained"] is None


def test_conditioning_on_a_nuisance_label_removes_a_spurious_link():
    """The node reads airmass; teff correlates with airmass (an observing-strategy effect)."""
    rng = np.random.default_rng(9)
    n = 300
    airmass = rng.uniform(1.0, 2.0, n)
    teff = 5000 + 1500 * (airmass - 1.5) + rng.normal(0, 200, n)
    mu = rng.normal(0, 1, (n, 2))
    mu[:, 0] = 3 * airmass + rng.normal(0, 0.2, n)
    labels = {"teff": teff, "airmass": airmass}
    kinds = dict.fromkeys(labels, "continuous")
    plain = attribute(mu, {"teff": teff}, [0, 1], kinds, settings=FAST, parallel=False)
    assert plain["labels"]["teff"]["nodes"][0]["mi_significant"]
    given = attribute(mu, labels, [0, 1], kinds, ["airmass"], settings=FAST, parallel=False)
    assert "airmass" not in given["labels"] and given["condition"] == ["airmass"]
    assert not given["labels"]["teff"]["nodes"][0]["mi_significant"]
    assert given["label_nodes"]["teff"] is None


@pytest.mark.usefixtures("ray_session")
def test_ray_fan_out_gives_the_serial_numbers():
    rng = np.random.default_rng(10)
    mu = rng.normal(0, 1, (120, 2))
    y = mu[:, 0] + mu[:, 1] + rng.normal(0, 0.5, 120)
    settings = AttributionSettings(ci_resamples=8, chunk_size=64)
    args = (mu, {"y": y}, [0, 1], {"y": "continuous"})
    serial = attribute(*args, settings=settings, parallel=False)
    fanned = attribute(*args, settings=settings, parallel=True)
    assert serial == fanned


def test_sequential_pvalue_stops_at_the_hth_exceedance_and_is_valid_under_h0():
    flags = np.zeros(500, bool)
    flags[[3, 10, 40]] = True
    assert sequential_pvalue(flags, 3) == (3 / 41, 41)  # stopped after 41 permutations
    assert sequential_pvalue(flags, 4) == ((1 + 3) / (1 + 500), 500)  # never got there
    assert sequential_pvalue(flags, 0) == ((1 + 3) / (1 + 500), 500)  # 0: no stopping
    # Under H0 the observed value is one more draw from the null: each permutation exceeds
    # it with probability U ~ Uniform(0, 1). A valid p-value has P(p <= a) <= a.
    rng = np.random.default_rng(12)
    u = rng.uniform(size=4000)
    p = np.array([sequential_pvalue(rng.uniform(size=400) <= q, 10)[0] for q in u])
    for a in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(p <= a) <= a + 3 * np.sqrt(a * (1 - a) / u.size)
    assert np.mean(p <= 0.05) > 0.03  # and not needlessly conservative


def test_wide_latent_space_conditions_on_the_strongest_few_and_stops_null_tests_early():
    """16 live nodes all weakly tied to teff (a model that has not disentangled)."""
    rng = np.random.default_rng(13)
    n = 300
    teff = rng.normal(0, 1, n)
    mu = 0.35 * teff[:, None] + rng.normal(0, 1, (n, 16))
    mu[:, 5] = teff + rng.normal(0, 0.3, n)
    settings = AttributionSettings(ci_resamples=16, chunk_size=64, max_condition=3)
    out = attribute(mu, {"teff": teff}, range(16), {"teff": "continuous"}, settings=settings,
                    parallel=False)  # fmt: skip
    rows = {r["node"]: r for r in out["labels"]["teff"]["nodes"]}
    by_mi = sorted(rows, key=lambda j: -rows[j]["mi"])
    assert rows[5]["conditioned_on"] == by_mi[1:4]  # the three strongest others
    related = [j for j in by_mi if rows[j]["mi_significant"]]
    for j in related[1:]:
        assert rows[j]["conditioned_on"] == [i for i in related if i != j][:3]
    assert len(out["labels"]["teff"]["joint"]["nodes"]) == 4
    assert out["label_nodes"]["teff"]["node"] == 5
    used = out["permutations"]["used"]
    named = rows[5]
    assert named["cmi_significant"] and named["mi_at_floor"]  # drew all B, none exceeded
    nulls = [j for j in rows if j != 5 and not rows[j]["cmi_significant"]]
    assert nulls  # the weak nodes add nothing given node 5 ...
    stopped = [rows[j]["cmi_p_value"] for j in nulls]
    assert min(stopped) > 10 / used  # ... and their tests stopped early (p = 10 / l > 10 / B)
