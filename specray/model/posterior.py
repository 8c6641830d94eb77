"""Which latent nodes are alive (method.md 5a): statistics of the encoder's posterior.

Plain NumPy, below both training (its ``active_nodes`` metric) and the analysis.

Two criteria, reported side by side:

* Information (the default): a node is alive when the spread of its posterior means is
  large compared with the posterior width. Treating the sampled code as ``z = mu +
  sigma * eps``, a node whose ``mu`` varies with variance ``Var(mu)`` over the data and
  whose posterior variance is ``E[sigma^2]`` on average passes at most
  ``0.5 ln(1 + Var(mu) / E[sigma^2])`` nats about the spectrum to the decoder (the
  capacity of a Gaussian channel with that signal and noise power; exact when ``mu`` is
  Gaussian and ``sigma`` constant). The threshold is 0.1 nat
  (:data:`DEFAULT_INFORMATION_THRESHOLD`): the spread of ``mu`` must reach about half the
  posterior width (Var(mu)/E[sigma^2] >= e^0.2 - 1 = 0.22). This criterion is scale-free:
  a node that was never squeezed by the KL term (posterior width still ~1) but whose
  ``mu`` wanders by 0.05 carries ~0.001 nat and is not counted, which the absolute MAD
  threshold below cannot tell.
* MAD (the paper's): following the authors' final code, the median absolute deviation
  of ``mu`` about its median, UNscaled (no 1.4826 factor), above 0.02. Collapsed nodes in
  the published model spread by ~0.005, informative ones over 0.03-0.7.

The mean KL divergence per node to the prior (in nats) is reported too: collapsed nodes
sit near 0, and each live node pays for what it carries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from specray.errors import InputError


def as_matrix(a: ArrayLike, name: str = "latents") -> NDArray[np.float64]:
    """Return ``a`` as a finite 2-D float64 array (rows = spectra, columns = nodes)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_samples, n_nodes), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains non-finite values")
    return arr


DEFAULT_THRESHOLD = 0.02
"""The paper's threshold on the unscaled MAD of mu."""
DEFAULT_INFORMATION_THRESHOLD = 0.1
"""Nats of :func:`node_information` above which a node counts as alive (see above)."""


def median_absolute_deviation(mu: ArrayLike) -> NDArray[np.float64]:
    """Per node: median(|mu - median(mu)|) over spectra, unscaled; shape (D,)."""
    mat = as_matrix(mu, "mu")
    return np.median(np.abs(mat - np.median(mat, axis=0)), axis=0)


def node_dispersion(mu: ArrayLike, threshold: float = DEFAULT_THRESHOLD) -> dict[str, NDArray[Any]]:
    """``{"mad": (D,) unscaled MAD of mu, "informative": (D,) bool, mad > threshold}``."""
    if threshold < 0:
        raise InputError(f"threshold must be >= 0, got {threshold}")
    mad = median_absolute_deviation(mu)
    return {"mad": mad, "informative": mad > threshold}


def informative_nodes(mu: ArrayLike, threshold: float = DEFAULT_THRESHOLD) -> NDArray[np.intp]:
    """Indices (ascending) of nodes whose unscaled MAD of mu exceeds ``threshold``."""
    return np.flatnonzero(node_dispersion(mu, threshold)["informative"])


def _posterior(mu: ArrayLike, logvar: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``mu`` and ``logvar`` as finite 2-D arrays of one shape (spectra x nodes)."""
    m, lv = as_matrix(mu, "mu"), as_matrix(logvar, "logvar")
    if m.shape != lv.shape:
        raise InputError(f"mu {m.shape} and logvar {lv.shape} must have the same shape")
    return m, lv


def mean_kl_per_node(mu: ArrayLike, logvar: ArrayLike) -> NDArray[np.float64]:
    """Mean over spectra of KL(N(mu, exp(logvar)) || N(0, 1)) per node, in nats; shape (D,).

    Collapsed nodes sit near 0; each informative node pays for what it carries.
    """
    m, lv = _posterior(mu, logvar)
    return 0.5 * np.mean(m * m + np.exp(lv) - 1.0 - lv, axis=0)


def node_information(mu: ArrayLike, logvar: ArrayLike) -> NDArray[np.float64]:
    """Per node ``0.5 ln(1 + Var(mu) / E[exp(logvar)])`` over spectra, in nats; shape (D,).

    Var is the population variance of mu across spectra, E the mean posterior variance;
    see the module docstring for why this measures what a node passes to the decoder.
    """
    m, lv = _posterior(mu, logvar)
    return 0.5 * np.log1p(m.var(axis=0) / np.exp(lv).mean(axis=0))


def live_nodes(
    mu: ArrayLike, logvar: ArrayLike, threshold: float = DEFAULT_INFORMATION_THRESHOLD
) -> NDArray[np.intp]:
    """Indices (ascending) of nodes whose :func:`node_information` exceeds ``threshold`` nats."""
    if threshold < 0:
        raise InputError(f"threshold must be >= 0 nat, got {threshold}")
    return np.flatnonzero(node_information(mu, logvar) > threshold)
