"""The honest baseline: does the latent space know more than PCA of the same spectra?

Plain NumPy/scikit-learn; the pass over a store that feeds these functions is in
:mod:`specray.analysis.baseline_store`.

PCA at equal dimension
    As many principal components as there are live (informative) nodes, fitted with
    scikit-learn's ``IncrementalPCA`` (with oversampling, see :class:`StreamingPCA`) on the
    same selected spectra, batch by batch, so memory is a few batches of spectra plus the
    components, whatever the number of spectra.

Masked pixels
    PCA needs a value at every pixel. Masked pixels (padding, CCD gaps, non-finite input)
    are set to ``FILL_VALUE`` = 1, the continuum of a spectrum divided by its median: a
    masked pixel then looks like featureless continuum, adds no variance of its own, and
    cannot pull a component. Reconstruction errors are measured on unmasked pixels only.

Recovery of a label
    k-nearest-neighbour regression (``N_NEIGHBOURS`` = 10, each feature scaled to zero
    mean and unit variance first) scored by R^2 on held-out spectra, ``N_FOLDS`` = 5
    shuffled folds. The same folds serve the live nodes, the PCs and both together, so the
    three scores are paired. The interval is the range (min, max) of the five fold scores.
    k-NN rather than a linear fit, because a latent node may track a label non-linearly
    and still hold all of its information.

Reconstruction relative to the noise
    Masked L1 per valid pixel, ``mean |reconstruction - flux|``, divided by the mean
    absolute value of the noise, ``sqrt(2/pi) / snr`` for Gaussian noise of standard
    deviation ``1/snr`` on flux normalised to ~1. A reconstruction that recovers the
    noiseless spectrum exactly then scores 1; above 1 it misses signal, below 1 it fits
    noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import IncrementalPCA
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from specray.analysis.mi import MIN_SAMPLES, mutual_information
from specray.errors import InputError

FILL_VALUE = 1.0
"""Flux given to masked pixels before PCA: the continuum of median-normalised flux."""
N_FOLDS = 5
N_NEIGHBOURS = 10
MI_METHOD = "ksg"
NOISE_MEAN_ABS = float(np.sqrt(2.0 / np.pi))
"""E|e| / sigma for Gaussian noise e: the L1 a perfect reconstruction leaves, per sigma."""


def fill_masked(flux: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float64 flux with masked pixels (mask 0) set to ``FILL_VALUE``."""
    flux = np.asarray(flux, dtype=np.float64)
    return np.where(np.asarray(mask) > 0, flux, FILL_VALUE)


@dataclass(frozen=True)
class PCABasis:
    """The first k principal components of a set of spectra (rows of ``components``)."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n_samples: int

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """(n, k) scores of (filled) spectra."""
        return (np.asarray(rows, np.float64) - self.mean) @ self.components.T

    def inverse_transform(self, scores: np.ndarray) -> np.ndarray:
        """(n, pixels) reconstructions from (n, k) scores."""
        return np.asarray(scores, np.float64) @ self.components + self.mean


class StreamingPCA:
    """The first ``n_components`` PCs of spectra fed batch by batch, whatever the batch sizes.

    scikit-learn's ``IncrementalPCA`` keeps only as many directions as it fits, and
    truncating after every batch loses variance when the spectrum of eigenvalues decays
    slowly (measured on the toy Doppler spectra: cosines down to 0.96 between the third
    incremental and full-batch component at 64 rows per batch). So it fits ``oversample``
    = 10 extra components, as randomised SVD does, and keeps the first ``n_components``:
    on the same data every cosine is then 1.0000 and the variances agree to 1e-4.

    ``partial_fit`` needs at least as many rows as components, so rows are buffered into
    chunks of ``chunk_rows`` (at least twice the fitted components). One full chunk is held
    back until the next arrives, so that a short last chunk can be merged into it instead
    of being dropped: at most two chunks are in memory. Data that never fills two chunks
    gets an exact one-shot fit.
    """

    def __init__(self, n_components: int, chunk_rows: int = 256, oversample: int = 10) -> None:
        if n_components < 1:
            raise InputError(f"n_components must be >= 1, got {n_components}")
        self.n_components = int(n_components)
        self.n_fitted = self.n_components + max(int(oversample), 0)
        self.chunk_rows = max(int(chunk_rows), 2 * self.n_fitted)
        self.model: IncrementalPCA | None = None
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._held: np.ndarray | None = None
        self.n_seen = 0

    def add(self, rows: np.ndarray) -> None:
        """Take a (n, pixels) batch of (already filled) spectra."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2:
            raise InputError(f"spectra must be 2-D (n, pixels), got shape {rows.shape}")
        if rows.shape[0] == 0:
            return
        self._buffer.append(rows)
        self._buffered += rows.shape[0]
        self.n_seen += rows.shape[0]
        if self._buffered >= self.chunk_rows:
            chunk = np.concatenate(self._buffer)
            self._buffer, self._buffered = [], 0
            if self._held is not None:
                self._fit(self._held)
            self._held = chunk

    def _fit(self, chunk: np.ndarray) -> None:
        if self.model is None:
            fitted = min(self.n_fitted, chunk.shape[0], chunk.shape[1])
            self.model = IncrementalPCA(n_components=fitted)
        self.model.partial_fit(chunk)

    def finish(self) -> PCABasis:
        """Fit what is left and return the first ``n_components`` PCs."""
        if self.n_seen < self.n_components:
            raise InputError(
                f"PCA with {self.n_components} components needs at least that many spectra, "
                f"got {self.n_seen}"
            )
        chunks = [c for c in (self._held, *self._buffer) if c is not None]
        if (
            self.model is None
            or len(chunks) > 1
            and sum(c.shape[0] for c in chunks[1:]) < self.model.n_components
        ):  # everything is still in memory: one exact fit
            chunks = [np.concatenate(chunks)]
        elif len(chunks) > 1:
            chunks = [chunks[0], np.concatenate(chunks[1:])]
        for chunk in chunks:
            self._fit(chunk)
        self._buffer, self._buffered, self._held = [], 0, None
        k, model = self.n_components, self.model
        return PCABasis(
            mean=model.mean_.copy(),
            components=model.components_[:k].copy(),
            explained_variance=model.explained_variance_[:k].copy(),
            explained_variance_ratio=model.explained_variance_ratio_[:k].copy(),
            n_samples=int(model.n_samples_seen_),
        )


def masked_l1(reconstruction: np.ndarray, flux: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per spectrum, mean |reconstruction - flux| over its unmasked pixels (NaN if none)."""
    valid = np.asarray(mask) > 0
    error = np.abs(np.asarray(reconstruction, np.float64) - np.asarray(flux, np.float64))
    count = valid.sum(axis=1)
    total = np.where(valid, error, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def noise_mean_abs(snr: np.ndarray) -> np.ndarray:
    """Mean |noise| per pixel of median-normalised flux at signal-to-noise ``snr``."""
    snr = np.asarray(snr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(snr > 0, NOISE_MEAN_ABS / snr, np.nan)


def pca_l1(
    pca: IncrementalPCA, flux: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, k), masked L1 of the k-component reconstruction (n,)) of a batch."""
    filled = fill_masked(flux, mask)
    scores = pca.transform(filled)
    return scores, masked_l1(pca.inverse_transform(scores), flux, mask)


def reconstruction_summary(l1: np.ndarray, snr: np.ndarray) -> dict:
    """Median masked L1 and median L1 / noise (1 = noise-limited) over the spectra."""
    l1 = np.asarray(l1, dtype=np.float64)
    ratio = l1 / noise_mean_abs(snr)
    finite = np.isfinite(ratio)
    return {
        "median_l1": float(np.nanmedian(l1)) if np.any(np.isfinite(l1)) else None,
        "median_l1_over_noise": float(np.median(ratio[finite])) if finite.any() else None,
        "quartiles_l1_over_noise": (
            [float(q) for q in np.percentile(ratio[finite], [25, 75])] if finite.any() else None
        ),
        "n": int(finite.sum()),
    }


# ------------------------------------------------------------------ label recovery


def recovery_score(
    features: np.ndarray, values: np.ndarray, seed: int = 0, folds: int = N_FOLDS
) -> dict:
    """Cross-validated k-NN R^2 of ``values`` from ``features`` (n, m): mean, fold range."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise InputError(f"features {x.shape} do not match {y.size} label values")
    if y.size < 2 * folds:
        raise InputError(f"{folds}-fold cross-validation needs >= {2 * folds} values, got {y.size}")
    train_size = y.size - int(np.ceil(y.size / folds))
    regressor = make_pipeline(
        StandardScaler(), KNeighborsRegressor(n_neighbors=min(N_NEIGHBOURS, train_size))
    )
    splits = KFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(regressor, x, y, cv=splits, scoring="r2")
    return {"r2": float(scores.mean()), "interval": [float(scores.min()), float(scores.max())],
            "folds": [float(s) for s in scores]}  # fmt: skip


def best_mi(features: np.ndarray, values: np.ndarray, seed: int = 0) -> tuple[int, float]:
    """(column, MI in nats) of the column of ``features`` most informative about ``values``."""
    mi = [
        mutual_information(features[:, j], values, method=MI_METHOD, seed=seed)
        for j in range(features.shape[1])
    ]
    best = int(np.argmax(mi))
    return best, float(mi[best])


def compare_labels(
    latents: np.ndarray,
    nodes: Sequence[int],
    pcs: np.ndarray,
    labels: Mapping[str, np.ndarray],
    seed: int = 0,
) -> dict[str, dict]:
    """Per label: recovery by the live nodes, the PCs, both; the best node and PC by MI.

    ``latents`` (n, k) are the live nodes ``nodes`` of the same n spectra as ``pcs``
    (n, k); each label has n values, NaN where excluded (those rows are left out).
    """
    latents, pcs = np.asarray(latents, np.float64), np.asarray(pcs, np.float64)
    if latents.shape[0] != pcs.shape[0]:
        raise InputError(f"{latents.shape[0]} latent rows but {pcs.shape[0]} PCA rows")
    out = {}
    for name, values in labels.items():
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values)
        y = values[keep]
        if y.size < max(2 * N_FOLDS, MIN_SAMPLES):
            continue
        z, p = latents[keep], pcs[keep]
        node, node_mi = best_mi(z, y, seed)
        pc, pc_mi = best_mi(p, y, seed)
        out[name] = {
            "n": int(y.size),
            "latents": recovery_score(z, y, seed),
            "pca": recovery_score(p, y, seed),
            "both": recovery_score(np.hstack([z, p]), y, seed),
            "best_node": {"node": int(nodes[node]), "mi": node_mi},
            "best_pc": {"pc": pc + 1, "mi": pc_mi},
        }
    return out


def summary_line(record: dict | None) -> str | None:
    """``latents vs PCA (k=3, k-NN R^2): teff 0.95 / 0.95, ...; L1/noise 1.10 / 1.30``."""
    if not record:
        return None
    scores = ", ".join(
        f"{name} {entry['latents']['r2']:.2f} / {entry['pca']['r2']:.2f}"
        for name, entry in record["labels"].items()
    )
    line = f"latents vs PCA (k={record['n_components']}, k-NN R^2): {scores or 'no label'}"
    model, pca = record["reconstruction"]["model"], record["reconstruction"]["pca"]
    if model and model["median_l1_over_noise"] is not None and pca["median_l1_over_noise"]:
        line += (
            f"; reconstruction L1/noise {model['median_l1_over_noise']:.2f} / "
            f"{pca['median_l1_over_noise']:.2f}"
        )
    return line
