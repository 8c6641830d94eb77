"""The PCA baseline over a store: two streaming Ray Data passes over the selected spectra.

1. Fit. The selected spectra (by ``id``) are read from the store's shards and streamed to
   the driver in batches (``iter_batches``), masked pixels filled with the continuum
   (:func:`specray.analysis.baseline.fill_masked`), and fed to
   :class:`~specray.analysis.baseline.StreamingPCA`. Memory: a few batches of spectra and
   the k components, independent of the number of spectra.
2. Score. ``map_batches`` sends the selected spectra to a pool of actors that hold the
   fitted components (and, when a model is given, the checkpoint, loaded once) and return
   per spectrum its k PC scores, the masked L1 of the k-component PCA reconstruction and
   the masked L1 of the model's reconstruction from its mean latent (eval mode, decode of
   mu). The flux is dropped inside the actors and never reaches the driver.

The statistics on the result are in :mod:`specray.analysis.baseline`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from specray.analysis.baseline import (
    N_FOLDS,
    N_NEIGHBOURS,
    StreamingPCA,
    compare_labels,
    fill_masked,
    masked_l1,
    pca_l1,
    reconstruction_summary,
)
from specray.analysis.encode import actor_count, check_grid
from specray.data.reader import read_store
from specray.data.store import StoreError, open_store
from specray.progress import Progress

log = logging.getLogger(__name__)

BATCH_SIZE = 64
READ_COLUMNS = ["id", "flux", "mask", "snr"]


@dataclass
class BaselinePass:
    """What the two passes found for the selected spectra, in the order of ``ids``."""

    ids: np.ndarray
    found: np.ndarray
    """Boolean per requested id: was it in the store?"""
    scores: np.ndarray
    pca_l1: np.ndarray
    model_l1: np.ndarray | None
    snr: np.ndarray
    explained_variance_ratio: np.ndarray


def _keep_ids(batch: pa.Table, ids: pa.Array) -> pa.Table:
    return batch.filter(pc.is_in(batch["id"], value_set=ids))


class _Scorer:
    """Ray Data actor: PC scores and reconstruction L1s of a batch of spectra."""

    def __init__(self, pca, checkpoint: str | None, use_gpu: bool) -> None:
        self.pca = pca
        self.model, self.device = None, torch.device("cpu")
        if checkpoint is not None:
            from specray.model.checkpoint import load_trained_model

            self.model = load_trained_model(checkpoint).model
            self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
            self.model.to(self.device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flux = _stack(batch.pop("flux")).astype(np.float64)
        mask = _stack(batch.pop("mask"))
        batch["scores"], batch["pca_l1"] = pca_l1(self.pca, flux, mask)
        if self.model is not None:
            x = torch.from_numpy(flux.astype(np.float32)).unsqueeze(1).to(self.device)
            with torch.inference_mode():
                mu, _ = self.model.encode(x)
                recon = self.model.decode(mu)[:, 0].float().cpu().numpy()
            batch["model_l1"] = masked_l1(recon, flux, mask)
        return batch


def _unwrap(values) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else np.asarray(values)


def fit_pca(dataset, n_components: int, batch_size: int = BATCH_SIZE, total: int | None = None):
    """Stream ``flux``/``mask`` batches of ``dataset`` (``total`` rows, for the progress
    line) into an incremental PCA."""
    stream = StreamingPCA(n_components, chunk_rows=max(batch_size, 2 * n_components))
    with Progress("PCA fit", total, "spectra") as shown:
        for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
            stream.add(fill_masked(_stack(batch["flux"]), _stack(batch["mask"])))
            shown.advance(len(batch["flux"]))
    return stream.finish()


def _stack(values) -> np.ndarray:
    array = np.asarray(values)
    return np.stack(list(values)) if array.dtype == object else array


def pca_baseline_pass(
    store_uri: str,
    ids: Sequence[str],
    n_components: int,
    model_uri: str | None = None,
    batch_size: int = BATCH_SIZE,
    actors: int = 0,
) -> BaselinePass:
    """Fit a k-component PCA on the store's spectra named ``ids``, then score them.

    With ``model_uri`` (a run or checkpoint on the store's grid), the model's masked L1
    is measured on the same spectra. Ids not in the store are flagged in ``found``.
    """
    import ray

    from specray.runtime import ensure_ray

    store = open_store(store_uri)
    checkpoint = None
    if model_uri is not None:
        from specray.model.checkpoint import checkpoint_grid, load_trained_model

        _, meta, checkpoint = load_trained_model(model_uri)
        check_grid(checkpoint_grid(meta), store.grid, model_uri, store_uri)
    ensure_ray()
    wanted = pa.array([str(i) for i in ids], pa.string())
    selected = read_store(store, READ_COLUMNS).map_batches(
        _keep_ids, batch_format="pyarrow", fn_kwargs={"ids": wanted}
    )
    log.info("PCA baseline: fitting %d components on %d spectra", n_components, len(wanted))
    pca = fit_pca(selected.select_columns(["flux", "mask"]), n_components, batch_size, len(ids))
    use_gpu = checkpoint is not None and ray.cluster_resources().get("GPU", 0) > 0
    scored = selected.map_batches(
        _Scorer,
        fn_constructor_kwargs={"pca": pca, "checkpoint": checkpoint, "use_gpu": use_gpu},
        batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actor_count(actors, use_gpu)),
        num_cpus=1, num_gpus=1 if use_gpu else 0,
    )  # fmt: skip
    parts: dict[str, list[np.ndarray]] = {}
    with Progress("PCA score", len(ids), "spectra") as shown:
        for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
            for name, values in batch.items():
                parts.setdefault(name, []).append(_unwrap(values))
            shown.advance(len(next(iter(batch.values()))))
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    return _in_order(ids, columns, pca, checkpoint is not None)


def _in_order(ids: Sequence[str], columns: dict, pca, with_model: bool) -> BaselinePass:
    """Arrange the scored rows in the order of ``ids`` (NaN rows for ids not found)."""
    requested = np.asarray([str(i) for i in ids])
    got = np.asarray(columns.get("id", np.empty(0)), dtype=str)
    position = {name: row for row, name in enumerate(got)}
    index = np.array([position.get(name, -1) for name in requested], dtype=np.intp)
    found = index >= 0

    def pick(name: str, width: int | None = None) -> np.ndarray:
        shape = (requested.size,) if width is None else (requested.size, width)
        out = np.full(shape, np.nan)
        if found.any():
            out[found] = np.asarray(columns[name], np.float64)[index[found]]
        return out

    k = pca.components.shape[0]
    return BaselinePass(
        ids=requested,
        found=found,
        scores=pick("scores", k),
        pca_l1=pick("pca_l1"),
        model_l1=pick("model_l1") if with_model else None,
        snr=pick("snr"),
        explained_variance_ratio=pca.explained_variance_ratio,
    )


METHOD = (
    "PCA of the same selected spectra with as many components as live nodes (incremental, "
    "10 oversampled components, masked pixels set to the continuum 1); recovery = k-NN "
    f"(k={N_NEIGHBOURS}) regression R^2 on standardised features, {N_FOLDS} shuffled folds "
    "shared by all three feature sets, interval = range over the folds; MI = KSG (nats); "
    "reconstruction = masked L1 per valid pixel / (sqrt(2/pi)/snr), 1 = noise-limited"
)


def pca_baseline(
    store_uri: str | None,
    ids: Sequence[str],
    latents: np.ndarray,
    nodes: Sequence[int],
    labels: dict[str, np.ndarray],
    notes: list[str],
    model_uri: str | None = None,
    seed: int = 0,
    actors: int = 0,
) -> dict | None:
    """The ``baseline`` record of ``analysis.json``: live nodes against PCA at equal k.

    ``ids`` are the selected spectra, ``latents`` their (n, k) live nodes ``nodes`` and
    ``labels`` their values (NaN where excluded). None, with a note, when there is nothing
    to compare (no live node, no store to read the spectra from).
    """
    if not nodes:
        notes.append("no informative node: no PCA baseline")
        return None
    if not store_uri:
        notes.append("no PCA baseline: the latent table names no store (analyse with --data)")
        return None
    try:
        found = pca_baseline_pass(store_uri, ids, len(nodes), model_uri, actors=actors)
    except StoreError as error:
        notes.append(f"no PCA baseline: {error}")
        return None
    if not found.found.all():
        notes.append(
            f"PCA baseline: {int((~found.found).sum())} of {len(ids)} selected spectra are "
            f"not in the store {store_uri}; compared on the rest"
        )
    keep = found.found
    kept_labels = {name: np.asarray(values)[keep] for name, values in labels.items()}
    comparison = compare_labels(
        np.asarray(latents)[keep], nodes, found.scores[keep], kept_labels, seed
    )
    reconstruction = {
        "pca": reconstruction_summary(found.pca_l1[keep], found.snr[keep]),
        "model": (
            None
            if found.model_l1 is None
            else reconstruction_summary(found.model_l1[keep], found.snr[keep])
        ),
    }
    if found.model_l1 is None:
        notes.append("PCA baseline: the model's reconstruction needs the model (--model)")
    return {
        "method": METHOD,
        "store": store_uri,
        "n_spectra": int(keep.sum()),
        "n_components": len(nodes),
        "nodes": [int(j) for j in nodes],
        "explained_variance_ratio": found.explained_variance_ratio,
        "labels": comparison,
        "reconstruction": reconstruction,
    }
