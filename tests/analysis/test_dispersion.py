"""Informative nodes by dispersion, KL per node, isolation-forest anomaly scores."""

import numpy as np
import pytest

from specray.analysis.anomalies import isolation_forest_scores
from specray.analysis.mi import mutual_information
from specray.model.posterior import (
    informative_nodes,
    live_nodes,
    mean_kl_per_node,
    median_absolute_deviation,
    node_dispersion,
    node_information,
)


def latents(n: int = 2_000, seed: int = 0) -> np.ndarray:
    """5 live nodes (spread 0.5), 11 collapsed at N(0, 0.005), as in the published model."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 0.005, (n, 16))
    z[:, [1, 4, 7, 11, 15]] = rng.normal(0.0, 0.5, (n, 5))
    return z


def test_mad_is_unscaled_about_the_median():
    mu = np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0], [10.0, 3.0]])
    # column 0: median 3, |dev| = 2, 1, 1, 7 -> median 1.5
    assert median_absolute_deviation(mu).tolist() == [1.5, 0.0]


def test_informative_set_is_exactly_the_live_nodes():
    z = latents()
    out = node_dispersion(z)
    assert out["mad"].shape == (16,)
    assert np.all(out["mad"][~out["informative"]] < 0.005)
    assert informative_nodes(z).tolist() == [1, 4, 7, 11, 15]
    assert informative_nodes(z, threshold=1.0).size == 0
    with pytest.raises(ValueError):
        node_dispersion(np.ones(5))


def test_mean_kl_per_node():
    mu = np.array([[0.0, 1.0], [0.0, -1.0]])
    logvar = np.array([[0.0, 0.0], [0.0, 0.0]])
    assert mean_kl_per_node(mu, logvar) == pytest.approx([0.0, 0.5])
    # KL(N(0, e^2) || N(0, 1)) = 0.5 (e^2 - 1 - 2)
    assert mean_kl_per_node([[0.0]], [[2.0]]) == pytest.approx([0.5 * (np.e**2 - 3)])
    with pytest.raises(ValueError, match="same shape"):
        mean_kl_per_node(mu, logvar[:, :1])


def test_isolation_forest_flags_planted_outliers():
    z = latents(n=1_000)[:, [1, 4, 7, 11, 15]]
    z[:3] = 4.0  # far outside the 0.5-wide cloud
    scores = isolation_forest_scores(z, seed=1)
    assert scores.shape == (1_000,) and np.all((scores > 0) & (scores <= 1))
    assert set(np.argsort(scores)[-3:]) == {0, 1, 2}  # higher = more anomalous
    assert np.array_equal(scores, isolation_forest_scores(z, seed=1))


def planted_posteriors(n: int = 1_000) -> tuple[np.ndarray, np.ndarray]:
    """Four nodes with known Var(mu) and E[sigma^2]; mu = +-a alternately (Var = a^2, MAD = a).

    z0: a = 0.5, sigma^2 = 0.01 (alive by both criteria, 0.5 ln 26 nat);
    z1: a = 0.05, sigma^2 = 1 (MAD 0.05 > 0.02, yet only 0.5 ln 1.0025 nat: never squeezed);
    z2: a = 0.005, sigma^2 = 1 (collapsed by both);
    z3: a = 0.3, sigma^2 = 0.04 for half the spectra and 0.16 for the other half
        (E[sigma^2] = 0.1: 0.5 ln 1.9 nat).
    """
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    mu = sign[:, None] * np.array([0.5, 0.05, 0.005, 0.3])
    var = np.tile([0.01, 1.0, 1.0, 0.04], (n, 1))
    var[np.arange(n) // (n // 2) == 1, 3] = 0.16  # order of halves independent of sign
    return mu, np.log(var)


def test_node_information_on_planted_posterior_variances():
    mu, logvar = planted_posteriors()
    expected = 0.5 * np.log1p([0.25 / 0.01, 0.0025 / 1.0, 0.000025 / 1.0, 0.09 / 0.1])
    assert node_information(mu, logvar) == pytest.approx(expected, rel=1e-12)
    assert live_nodes(mu, logvar).tolist() == [0, 3]  # default 0.1 nat
    assert informative_nodes(mu).tolist() == [0, 1, 3]  # the paper's MAD >= 0.02 keeps z1
    assert live_nodes(mu, logvar, threshold=0.5 * np.log(1.9) + 1e-9).tolist() == [0]
    with pytest.raises(ValueError, match=">= 0 nat"):
        live_nodes(mu, logvar, threshold=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        node_information(mu, logvar[:, :2])


def test_node_information_is_the_gaussian_channel_capacity():
    """With Gaussian mu and z = mu + sigma * eps, I(mu; z) = 0.5 ln(1 + Var(mu)/sigma^2):
    the KSG estimate from samples of z agrees with node_information."""
    rng = np.random.default_rng(4)
    n, sigma = 4_000, 0.3
    mu = rng.normal(0.0, 0.6, (n, 1))
    z = mu[:, 0] + sigma * rng.normal(size=n)
    info = node_information(mu, np.full((n, 1), 2 * np.log(sigma)))[0]
    assert info == pytest.approx(0.5 * np.log1p(0.36 / 0.09), rel=0.02)
    assert mutual_information(mu[:, 0], z) == pytest.approx(info, abs=0.05)
