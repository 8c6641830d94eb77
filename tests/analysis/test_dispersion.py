"""Informative nodes by dispersion, KL per node, isolation-forest anomaly scores."""

import numpy as np
import pytest

from specray.analysis.dispersion import (
    informative_nodes,
    isolation_forest_scores,
    mean_kl_per_node,
    median_absolute_deviation,
    node_dispersion,
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
