"""Which spectra are odd: an isolation forest on the live nodes' posterior means."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from specray.errors import InputError
from specray.model.posterior import as_matrix


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
        raise InputError("need at least 2 spectra for an isolation forest")
    forest = IsolationForest(random_state=seed, **kwargs).fit(mat)
    return -forest.score_samples(mat)
