"""Reading a store with Ray Data: the committed shards, split by object, with balancing weights.

Validation split: a star is in validation when a stable hash of its object name falls
below ``val_fraction``, so no star is on both sides and the split is the same in every
process and on every run (Python's ``hash`` is salted per process; CRC-32 is not).

Balancing: the published training sampled each spectrum with probability proportional
to 1 / (spectra of its object) (method.md section 2). A sampler needs random access; the
streaming equivalent is to weight each spectrum's loss by ``N / (K * n_object)`` (N
spectra, K objects), which has the same expectation as that sampler, keeps every spectrum
in every epoch, and averages to 1 over the data set so the loss scale is unchanged.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from specray import schema, storage
from specray.data.shard_source import ShardSource
from specray.data.store import SHARDS_DIR, Store, StoreError

TRAIN_COLUMNS = ["flux", "mask", "object"]


def is_validation(objects: np.ndarray, val_fraction: float) -> np.ndarray:
    """Boolean per row: is this object's star in the validation split?"""
    threshold = int(val_fraction * 2**32)
    return np.array([zlib.crc32(str(obj).encode()) < threshold for obj in objects], dtype=bool)


def object_counts(store: Store) -> Counter:
    """Spectra per object, from the ``object`` column alone (a cheap column read)."""
    counts: Counter = Counter()
    for shard in store.shard_uris():
        counts.update(storage.read_parquet(shard, columns=["object"])["object"].to_pylist())
    return counts


def split_sizes(counts: Counter, val_fraction: float) -> tuple[int, int]:
    """(training, validation) spectra in the split of a store with these :func:`object_counts`."""
    objects = np.array(list(counts), dtype=object)
    in_validation = is_validation(objects, val_fraction) if counts else []
    n_val = sum(counts[obj] for obj, val in zip(objects, in_validation, strict=True) if val)
    return sum(counts.values()) - n_val, n_val


def balancing_weights(counts: Counter) -> dict[str, float]:
    """Per-object loss weight N / (K * n_object); mean 1 over all spectra."""
    total, n_objects = sum(counts.values()), len(counts)
    return {obj: total / (n_objects * n) for obj, n in counts.items()}


def data_fingerprint(store: Store) -> str:
    """Identifies the data a model saw: the committed shards and the grid."""
    text = store.grid.to_json() + "\n".join(sorted(store.shard_uris()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_store(
    store: Store,
    columns: list[str],
    shuffle: bool = False,
    seed: int | None = None,
    packed_mask: bool = False,
) -> ray.data.Dataset:
    """The store's committed shards as a Ray Dataset of ``columns``.

    ``shuffle`` reads the shards in a random order, a new one on every pass; with a
    ``seed`` the sequence of orders is the same in every run. The shards are read by
    :class:`~specray.data.shard_source.ShardSource`, which starts at once (no file
    listing or footer actor, as ``ray.data.read_parquet`` has).

    ``flux`` and ``mask`` arrive as (n, L) float16 / uint8 tensor columns whatever the
    store's format (:func:`specray.schema.as_tensor_columns`), so no later stage needs to
    know it. With ``packed_mask`` the mask stays bit-packed, (n, ceil(L / 8)) uint8
    (:func:`specray.schema.packed_mask_rows`), as the training datasets carry it.
    """
    shards = store.shard_uris()
    if not shards:
        raise StoreError(f"{store.uri}: the store is empty; ingest some spectra first")
    dataset = ray.data.read_datasource(
        ShardSource(store, columns, shuffle, seed),
        override_num_blocks=len(shards),  # one task per shard, its blocks not sliced further
    )
    if {"flux", "mask"} & set(columns):
        dataset = dataset.map_batches(
            schema.as_tensor_columns,
            batch_format="pyarrow",
            batch_size=None,
            zero_copy_batch=True,
            fn_kwargs={"length": store.grid.length, "packed_mask": packed_mask},
        )
    return dataset


@dataclass(frozen=True)
class ObjectTable:
    """Each object's side of the split and loss weight, computed once per store, so a batch
    needs one vectorised lookup (``pyarrow.compute.index_in``) instead of per-row Python.

    The last entry of ``validation`` and ``weight`` is for an object the table does not
    know (none, while the store is unchanged): training side, weight 1.
    """

    objects: pa.Array
    validation: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, counts: Counter, val_fraction: float, balance: bool) -> ObjectTable:
        names = np.array(list(counts), dtype=object)
        weights = balancing_weights(counts) if balance else {}
        return cls(
            objects=pa.array(names.tolist(), pa.string()),
            validation=np.append(is_validation(names, val_fraction), False),
            weight=np.array([weights.get(n, 1.0) for n in names] + [1.0], np.float32),
        )

    def rows(self, objects: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Position of each row's object in this table (unknown objects: the last entry)."""
        index = pc.index_in(objects, value_set=self.objects)
        return pc.fill_null(index, len(self.objects)).to_numpy()


def _split_and_weigh(batch: pa.Table, table: ObjectTable, validation: bool) -> pa.Table:
    """Rows of one side of the split, ``object`` replaced by the loss ``weight`` (float32);
    Arrow keeps the tensor types even when no row remains."""
    rows = table.rows(batch["object"])
    keep = table.validation[rows] == validation
    kept = batch.filter(pa.array(keep)).drop_columns(["object"])
    return kept.append_column("weight", pa.array(table.weight[rows[keep]], pa.float32()))


def store_bytes(store: Store) -> int:
    """Bytes of the committed shards on storage."""
    fs, _ = storage.filesystem(store.uri)
    return sum(fs.size(storage.filesystem(uri)[1]) for uri in store.shard_uris())


def training_datasets(
    store: Store,
    counts: Counter,
    val_fraction: float,
    balance: bool,
    materialize_below_mb: float = 0,
    seed: int | None = None,
) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """(train, validation) datasets of ``flux``, ``mask`` (bit-packed: unpack each batch
    with :func:`specray.train.loop.unpack_mask`), ``weight`` from the store, whose spectra
    per object are ``counts`` (:func:`object_counts`, read once per run).

    Reproducible with a ``seed``: the training shards are shuffled by it and both
    datasets keep their blocks in read order (``preserve_order``), so the same seed
    gives the same batches whichever read task finishes first.

    A store smaller than ``materialize_below_mb`` is read once into Ray's object store, so
    epochs do not pay for re-reading (and re-starting the read pipeline); a larger one
    streams from storage every epoch.
    """
    table = ObjectTable.of(counts, val_fraction, balance)
    datasets = []
    for validation, shuffle in ((False, True), (True, False)):
        columns = read_store(store, TRAIN_COLUMNS, shuffle, seed, packed_mask=True)
        split = columns.map_batches(
            _split_and_weigh,
            batch_format="pyarrow",
            fn_kwargs={"table": table, "validation": validation},
        )
        split.context.execution_options.preserve_order = seed is not None
        datasets.append(split)
    if store_bytes(store) < materialize_below_mb * 2**20:
        datasets = [dataset.materialize() for dataset in datasets]
    for dataset in datasets:  # re-read every epoch: progress bars would flood the log
        dataset.context.enable_progress_bars = False
        dataset.context.print_on_execution_start = False
    return datasets[0], datasets[1]


def read_rows(store: Store, columns: list[str], ids: list[str] | None = None) -> pa.Table:
    """Rows of the committed shards, read straight from Parquet (no Ray): all of them, or
    those with the given ``ids`` in that order (an id the store lacks: :class:`StoreError`).

    ``flux`` and ``mask`` come as stored (either format); decode them with
    :func:`specray.schema.decode_flux` / :func:`~specray.schema.decode_mask`. Only shards
    holding a wanted id are opened, each in full, so it suits a notebook or a handful of
    report examples, not a whole archive (use :func:`read_store` for that).
    """
    shards = store.shard_uris()
    wanted = None
    if ids is not None:
        asked = set(ids)
        shard_of = {
            entry.id: entry.shard
            for entry in store.manifest
            if entry.ingested and entry.id in asked
        }
        missing = [name for name in ids if name not in shard_of]
        if missing:
            raise StoreError(f"{store.uri}: no ingested spectrum with id {missing[0]!r}")
        shards = [store.path(SHARDS_DIR, shard) for shard in dict.fromkeys(shard_of.values())]
        wanted = pa.array(ids, pa.string())
    read = list(dict.fromkeys(["id", *columns]))
    parts = []
    for shard in shards:
        table = storage.read_parquet(shard, columns=read)
        parts.append(table if wanted is None else table.filter(pc.is_in(table["id"], wanted)))
    if not parts:
        return store.schema.empty_table().select(read)
    table = pa.concat_tables(parts, promote_options="permissive")
    if wanted is not None:
        position = {name: row for row, name in enumerate(table["id"].to_pylist())}
        table = table.take([position[name] for name in ids])
    return table


def read_spectra(store: Store, ids: list[str], columns: tuple[str, ...] = ("snr",)) -> dict:
    """A few spectra by id, read straight from their shards (no Ray): for report examples.

    Returns ``{"id", "flux" (n, L) float32, "mask" (n, L) uint8, *columns}`` in the order of
    ``ids``; an id the store does not hold is a :class:`StoreError`.
    """
    table = read_rows(store, ["flux", "mask", *columns], ids)
    out = {name: table[name].to_numpy() for name in ("id", *columns)}
    out["flux"] = schema.decode_flux(table["flux"]).astype(np.float32)
    out["mask"] = schema.decode_mask(table["mask"], store.grid.length).astype(np.uint8)
    return out
