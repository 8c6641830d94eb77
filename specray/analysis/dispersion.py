"""Which latent nodes are alive (method.md 5a), and which spectra are odd.

A beta-VAE pushes most nodes to the prior: their mean ``mu`` is then ~0 for every spectrum
(spread ~0.005 in the published model), while informative nodes spread over 0.03-0.7.
The dispersion of ``mu`` across the data set separates the two. Following the authors'
final code we use the median absolute deviation about the median, UNscaled (no 1.4826
factor), with threshold 0.02. The mean KL divergence per node to the prior (in nats) is a
second, model-internal view of the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from specray.analysis.mi import as_matrix

DEFAULT_THRESHOLD = 0.02


def median_absolute_deviation(mu: ArrayLike) -> NDArray[np.float64]:
    """Per node: median(|mu - median(mu)|) over spectra, unscaled; shape (D,)."""
    mat = as_matrix(mu, "mu")
    return np.median(np.abs(mat - np.median(mat, axis=0)), axis=0)


def node_dispersion(mu: ArrayLike, threshold: float = DEFAULT_THRESHOLD) -> dict[str, NDArray[Any]]:
    """``{"mad": (D,) unscaled MAD of mu, "informative": (D,) bool, mad > threshold}``."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    mad = median_absolute_deviation(mu)
    return {"mad": mad, "informative": mad > threshold}


def informative_nodes(mu: ArrayLike, threshold: float = DEFAULT_THRESHOLD) -> NDArray[np.intp]:
    """Indices (ascending) of nodes whose unscaled MAD of mu exceeds ``threshold``."""
    return np.flatnonzero(node_dispersion(mu, threshold)["informative"])


def mean_kl_per_node(mu: ArrayLike, logvar: ArrayLike) -> NDArray[np.float64]:
    """Mean over spectra of KL(N(mu, exp(logvar)) || N(0, 1)) per node, in nats; shape (D,).

    Collapsed nodes sit near 0; each informative node pays for what it carries.
    """
    m, lv = as_matrix(mu, "mu"), as_matrix(logvar, "logvar")
    if m.shape != lv.shape:
        raise ValueError(f"mu {m.shape} and logvar {lv.shape} must have the same shape")
    return 0.5 * np.mean(m * m + np.exp(lv) - 1.0 - lv, axis=0)


def isolation_forest_scores(
    latents_informative: ArrayLike, seed: int = 0, **kwargs: Any
) -> NDArray[np.float64]:
    """Anomaly score per spectrum from an isolation forest on the informative nodes.

    Returns ``-IsolationForest.score_samples``: the score of Liu et al. (2008), in (0, 1];
    HIGHER = MORE ANOMALOUS (about 0.5 for ordinary points, near 1 for isolated ones).
    ``kwargs`` go to :class:`sklearn.ensemble.IsolationForest` (e.g. ``n_estimators``).
    """
    from sklearn.ensemble import IsolationForest

    mat = as_matrix(latents_informative, "latents_informative")
    if mat.shape[0] < 2:
        raise ValueError("need at least 2 spectra for an isolation forest")
    forest = IsolationForest(random_state=seed, **kwargs).fit(mat)
    return -forest.score_samples(mat)
