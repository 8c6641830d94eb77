"""The model side of the analysis: encode a store into a latent table, decode traversals.

``encode_store(store, run, out)`` is Ray Data batch inference: the store's shards are read
(``id``, ``object``, ``flux`` and every label/metadata column), ``map_batches`` sends them
to a pool of encoder actors, each of which loads the checkpoint ONCE and returns the
encoder's ``mu`` and ``logvar`` (eval mode, no sampling; a GPU each when the cluster has
GPUs), and the flux is dropped inside the actor so it never reaches the driver.

The result is ONE Parquet file, ``OUT/latents.parquet`` (schema in
:func:`specray.schema.latent_schema`), collected on the driver with ``iter_batches`` and
written with pyarrow in one atomic step (temporary name + rename locally; a single upload
on S3). Why one file on the driver and not per-block parts: the table is small (2 x D
float32 plus ~15 float64 per spectrum, ~1.2 kB at D = 128, ~330 MB for the 270,000
HARPS spectra), the analysis needs all of it in memory anyway, and one file sorted by
``id`` is reproducible (block order in Ray Data is not) and trivially atomic.

The checkpoint used is pinned on the driver (the latest one of the run at start-up), so
every actor encodes with the same weights even if training goes on meanwhile; its grid
must equal the store's grid (:class:`GridMismatchError` otherwise, naming both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from specray import schema, storage
from specray.data.reader import data_fingerprint, read_store
from specray.data.store import open_store
from specray.errors import InputError, SpecrayError
from specray.model.checkpoint import checkpoint_grid, load_trained_model
from specray.progress import Progress
from specray.spectra.grid import Grid

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
MAX_CPU_ACTORS = 4
TRAVERSAL_OFFSETS = (-2.0, -1.0, 0.0, 1.0, 2.0)
"""Steps of a latent traversal, in standard deviations of the node over the data set."""


class GridMismatchError(SpecrayError, ValueError):
    """The model was trained on another wavelength grid than the store's."""


def describe_grid(grid: Grid) -> str:
    """``name (n pixels, start-stop A, step s A)``: enough to tell two grids apart."""
    return (
        f"{grid.name} ({grid.n_native} pixels, {grid.start:g}-{grid.stop:g} A, "
        f"step {grid.step:g} A, padded to {grid.length})"
    )


def check_grid(model_grid: Grid, store_grid: Grid, run_uri: str, store_uri: str) -> None:
    """Raise :class:`GridMismatchError` naming both grids unless they are equal."""
    if model_grid != store_grid:
        raise GridMismatchError(
            f"grid mismatch: the model {run_uri} was trained on grid "
            f"{describe_grid(model_grid)}, but the store {store_uri} is on grid "
            f"{describe_grid(store_grid)}; encode with a model trained on the store's grid"
        )


def latents_uri(out_uri: str) -> str:
    """``out_uri`` itself when it names a ``.parquet`` file, else ``out_uri/latents.parquet``."""
    return (
        out_uri if str(out_uri).endswith(".parquet") else storage.join(out_uri, schema.LATENT_FILE)
    )


class _Encoder:
    """Ray Data actor: loads the checkpoint once, then maps flux batches to (mu, logvar)."""

    def __init__(self, checkpoint: str, use_gpu: bool) -> None:
        self.model = load_trained_model(checkpoint).model
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flux = np.asarray(batch.pop("flux"), dtype=np.float32)
        x = torch.from_numpy(flux).unsqueeze(1).to(self.device)
        with torch.inference_mode():
            mu, logvar = self.model.encode(x)
        batch["mu"] = mu.float().cpu().numpy()
        batch["logvar"] = logvar.float().cpu().numpy()
        return batch


def actor_count(requested: int, use_gpu: bool) -> int:
    import ray

    if requested > 0:
        return int(requested)
    resources = ray.cluster_resources()
    if use_gpu:
        return max(1, int(resources.get("GPU", 1)))
    return max(1, min(MAX_CPU_ACTORS, int(resources.get("CPU", 2)) // 2))


def encode_store(
    store_uri: str,
    run_uri: str,
    out_uri: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actors: int = 0,
) -> str:
    """Encode every committed spectrum of a store; return the latent table's URI.

    ``run_uri`` is a training run (its latest checkpoint) or one checkpoint folder;
    ``out_uri`` a folder (the table goes to ``out_uri/latents.parquet``) or a ``.parquet``
    path. ``actors=0`` picks one actor per GPU, or up to half the CPUs (at most 4).
    """
    import ray

    from specray.runtime import ensure_ray

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    store = open_store(store_uri)
    model, meta, checkpoint = load_trained_model(run_uri)
    check_grid(checkpoint_grid(meta), store.grid, run_uri, store_uri)
    latent_dim = int(model.arch.latent_dim)
    del model  # the actors load their own copies
    carried = schema.label_and_meta_columns(store.schema)

    ensure_ray()
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    n_actors = actor_count(actors, use_gpu)
    log.info(
        "encoding %s with %s: %d actor(s)%s, batch %d",
        store_uri, checkpoint, n_actors, " on GPU" if use_gpu else "", batch_size,
    )  # fmt: skip
    dataset = read_store(store, ["id", "object", "flux", *carried]).map_batches(
        _Encoder,
        fn_constructor_kwargs={"checkpoint": checkpoint, "use_gpu": use_gpu},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors),
        num_cpus=1,
        num_gpus=1 if use_gpu else 0,
    )
    parts: dict[str, list[np.ndarray]] = {}
    with Progress("encode", store.n_spectra(), "spectra") as shown:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for name, values in batch.items():
                parts.setdefault(name, []).append(np.asarray(values))
            shown.advance(len(batch["id"]))
    if not parts:
        raise InputError(f"{store_uri}: the store holds no spectra to encode")
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    order = np.argsort(columns["id"].astype(str), kind="stable")
    columns = {name: values[order] for name, values in columns.items()}

    provenance = {
        "checkpoint": checkpoint,
        "run": run_uri,
        "store": store_uri,
        "epoch": meta.epoch,
        "step": meta.step,
        "data_fingerprint": data_fingerprint(store),
        "trained_on": meta.data_fingerprint,
    }
    table_schema = schema.latent_schema(
        latent_dim, carried, store.grid, provenance, text_labels=store.text_labels
    )
    table = schema.latent_table(columns, table_schema)
    uri = latents_uri(out_uri)
    with storage.atomic_open(uri) as handle:
        pq.write_table(table, handle)
    log.info("wrote %d latent rows to %s", table.num_rows, uri)
    return uri


def decode_traversals(
    model: torch.nn.Module,
    reference: np.ndarray,
    nodes: Sequence[int],
    sigma: Sequence[float],
    offsets: Sequence[float] = TRAVERSAL_OFFSETS,
) -> np.ndarray:
    """Decoded spectra while one node moves around a reference latent vector.

    For each node j (with spread ``sigma[j]`` over the data set), decode ``reference`` with
    node j set to ``reference[j] + offset * sigma[j]`` for every offset, the other nodes
    held. Returns float32 of shape (len(nodes), len(offsets), L) on the padded grid.
    """
    ref = np.asarray(reference, dtype=np.float32)
    if ref.ndim != 1:
        raise InputError(f"reference must be one latent vector, got shape {ref.shape}")
    if len(nodes) != len(sigma):
        raise InputError("need one sigma per node")
    steps = np.asarray(offsets, dtype=np.float32)
    z = np.repeat(ref[None, None, :], len(nodes), axis=0).repeat(steps.size, axis=1)
    for i, (node, spread) in enumerate(zip(nodes, sigma, strict=True)):
        z[i, :, node] = ref[node] + steps * np.float32(spread)
    model.eval()
    with torch.inference_mode():  # one node at a time bounds memory at full HARPS length
        decoded = [model.decode(torch.from_numpy(batch)).float().numpy() for batch in z]
    return np.stack(decoded)[:, :, 0, :]
