"""k-NN estimators of joint and conditional mutual information, and label kinds. Nats.

Three estimators, all max-norm k-nearest-neighbour estimators on continuous variables that
have been replaced by their normal scores (:func:`specray.analysis.mi.normal_scores`; MI
is invariant under a monotone map of each variable, and normal scores have no ties):

:func:`conditional_mi`
    Frenzel & Pompe (Phys. Rev. Lett. 99, 204101, 2007): ``I(X; Y | Z) = psi(k) -
    < psi(n_xz + 1) + psi(n_yz + 1) - psi(n_z + 1) >``, with ``eps_i`` the distance to the
    k-th neighbour in the joint (X, Y, Z) space and ``n_.`` the points strictly closer
    than ``eps_i`` in each subspace. With an empty Z, ``n_z + 1 = n`` and this is KSG
    algorithm 1 (Kraskov et al. 2004) for multivariate X and Y, so the joint MI of a label
    with several nodes is the same function.

:func:`discrete_mi`
    Ross (PLoS ONE 9, e87357, 2014) for a discrete Y and a continuous (possibly
    multivariate) X: ``I = psi(N) - <psi(N_y)> + <psi(k)> - <psi(m)>``, with ``d_i`` the
    distance to the k-th neighbour among points of the same class, ``N_y`` the class size
    and ``m_i`` the points of any class within ``d_i`` (the k-th neighbour included).
    Classes with one member carry no within-class distance and are left out; ``k`` is
    lowered to ``N_y - 1`` for smaller classes. A discrete Y given a continuous Z uses the
    chain rule, ``I(X; Y | Z) = I(Y; X, Z) - I(Y; Z)``.

Discrete conditioning variables are handled exactly: ``I(X; Y | Z, S) = sum_s p(s) I(X; Y |
Z, S = s)`` over the strata s (:func:`stratified_cmi`).

Label kinds (:func:`detect_kind`): ``categorical`` (strings, e.g. spectral types),
``discrete`` (numbers with few distinct values, at most ``max_values`` and at most half
the number of values) and ``continuous``. Ties in a continuous label (e.g. Teff rounded to
10 K) are broken at random by :func:`~specray.analysis.mi.normal_scores`, with a generator
seeded from ``seed`` and the label's bytes: a reproducible jitter smaller than the rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.special import digamma

from specray.analysis.mi import ksg_from_prepared, normal_scores
from specray.errors import InputError, SpecrayError

KINDS = ("continuous", "discrete", "categorical")
DEFAULT_MAX_DISCRETE_VALUES = 20

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class LabelKindError(SpecrayError, ValueError):
    """A label kind that is unknown or does not fit the label's values."""


# ------------------------------------------------------------------ label kinds


def is_text(values: ArrayLike) -> bool:
    """Whether ``values`` are strings (or objects), i.e. a categorical label."""
    return np.asarray(values).dtype.kind in "OUS"


def category_codes(values: ArrayLike) -> tuple[FloatArray, list[str]]:
    """Text values as float codes 0..C-1 (NaN for None, NaN or empty text) and the categories."""
    arr = np.asarray(values, dtype=object)
    present = np.array([v is not None and v == v and str(v).strip() != "" for v in arr], bool)
    text = np.array([str(v).strip() for v in arr[present]], dtype=str)
    categories, codes = np.unique(text, return_inverse=True)
    out = np.full(arr.size, np.nan)
    out[present] = codes
    return out, [str(c) for c in categories]


def detect_kind(values: ArrayLike, max_values: int = DEFAULT_MAX_DISCRETE_VALUES) -> str:
    """``categorical`` for text, ``discrete`` for few distinct numbers, else ``continuous``."""
    if is_text(values):
        return "categorical"
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    distinct = np.unique(finite).size
    return "discrete" if distinct <= max_values and 2 * distinct <= finite.size else "continuous"


def resolve_kind(name: str, values: ArrayLike, override: str | None, max_values: int) -> str:
    """The detected kind of label ``name``, or ``override`` after checking that it fits."""
    detected = detect_kind(values, max_values)
    if override is None:
        return detected
    if override not in KINDS:
        raise LabelKindError(f"label {name!r}: unknown kind {override!r}; choose from {KINDS}")
    if detected == "categorical" and override == "continuous":
        raise LabelKindError(f"label {name!r} holds text; it cannot be analysed as continuous")
    return override


def prepare_label(values: ArrayLike, kind: str, seed: int = 0) -> FloatArray:
    """Finite label values ready for the estimators: normal scores or class codes 0..C-1."""
    arr = np.asarray(values, dtype=np.float64)
    if kind == "continuous":
        return normal_scores(arr, seed)
    return np.unique(arr, return_inverse=True)[1].astype(np.float64)


# ------------------------------------------------------------------ k-NN counts


def _columns(a: ArrayLike | None, n: int) -> FloatArray:
    """``a`` as an (n, d) float array; None or a 0-column array gives shape (n, 0)."""
    if a is None:
        return np.empty((n, 0))
    arr = np.asarray(a, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


def _kth_distance(points: FloatArray, k: int) -> FloatArray:
    """Max-norm distance from each point to its k-th nearest other point."""
    dist = cKDTree(points).query(points, k=[k + 1], p=np.inf)[0][:, 0]
    if np.any(dist == 0):
        raise InputError(
            "k-NN estimators need distinct points, but more than k samples coincide; "
            "prepare continuous variables with normal scores (ties broken at random)"
        )
    return dist


def _count_within(points: FloatArray, radius: FloatArray, strict: bool) -> IntArray:
    """Other points within ``radius`` of each point (max-norm); ``strict``: closer than it."""
    if points.shape[1] == 0:
        return np.full(points.shape[0], points.shape[0] - 1, dtype=np.int64)
    r = np.nextafter(radius, 0.0) if strict else radius
    found = cKDTree(points).query_ball_point(points, r, p=np.inf, return_length=True)
    return np.asarray(found, dtype=np.int64) - 1


# ------------------------------------------------------------------ estimators


def conditional_mi(x: ArrayLike, y: ArrayLike, z: ArrayLike | None = None, k: int = 5) -> float:
    """Frenzel-Pompe I(X; Y | Z) in nats for continuous, prepared X, Y, Z (rows = samples).

    ``z=None`` gives the KSG estimate of I(X; Y) for multivariate X and Y.
    """
    xa = _columns(x, len(x))
    n = xa.shape[0]
    ya, za = _columns(y, n), _columns(z, n)
    if n < k + 2:
        raise InputError(f"need at least {k + 2} samples, got {n}")
    if za.shape[1] == 0 and xa.shape[1] == 1 and ya.shape[1] == 1:
        return ksg_from_prepared(xa[:, 0], ya[:, 0], k)  # the same estimate, counted faster
    eps = _kth_distance(np.hstack((xa, ya, za)), k)
    n_xz = _count_within(np.hstack((xa, za)), eps, strict=True)
    n_yz = _count_within(np.hstack((ya, za)), eps, strict=True)
    n_z = _count_within(za, eps, strict=True)
    terms = digamma(n_xz + 1) + digamma(n_yz + 1) - digamma(n_z + 1)
    return float(digamma(k) - terms.mean())


def discrete_mi(codes: ArrayLike, x: ArrayLike, k: int = 5) -> float:
    """Ross's I(Y; X) in nats for class codes Y and continuous, prepared X (n,) or (n, d)."""
    y = np.asarray(codes)
    xa = _columns(x, y.size)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    if np.count_nonzero(keep) < k + 2:
        raise InputError("need at least k + 2 samples in classes with two or more members")
    y, xa, inverse = y[keep], xa[keep], inverse[keep]
    class_size = counts[inverse]
    dist = np.empty(y.size)
    k_used = np.minimum(k, class_size - 1)
    for c in np.unique(inverse):
        rows = np.flatnonzero(inverse == c)
        dist[rows] = _kth_distance(xa[rows], int(k_used[rows[0]]))
    m = _count_within(xa, dist, strict=False)
    value = digamma(y.size) - digamma(class_size).mean() + digamma(k_used).mean()
    return float(value - digamma(m).mean())


def cmi_any(
    x: FloatArray, y: FloatArray, y_discrete: bool, z: FloatArray | None = None, k: int = 5
) -> float:
    """I(X; Y | Z) for a continuous X and Z and a continuous or discrete Y (chain rule)."""
    if not y_discrete:
        return conditional_mi(x, y, z, k)
    za = _columns(z, y.size)
    with_x = discrete_mi(y, np.hstack((_columns(x, y.size), za)), k)
    return with_x - discrete_mi(y, za, k) if za.shape[1] else with_x


def stratified_cmi(
    x: FloatArray,
    y: FloatArray,
    y_discrete: bool,
    z: FloatArray | None,
    strata: IntArray | None,
    k: int = 5,
) -> float:
    """I(X; Y | Z, S) = sum_s p(s) I(X; Y | Z, S=s) over the discrete strata ``S``.

    Strata too small for the estimator (fewer than 2k + 2 samples) are left out and the
    weights renormalised over the rest; NaN when no stratum is large enough.
    """
    if strata is None:
        return cmi_any(x, y, y_discrete, z, k)
    za = _columns(z, y.size)
    total, weight = 0.0, 0
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        if rows.size < 2 * k + 2:
            continue
        total += rows.size * cmi_any(x[rows], y[rows], y_discrete, za[rows], k)
        weight += rows.size
    return total / weight if weight else float("nan")
