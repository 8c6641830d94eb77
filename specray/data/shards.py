"""The Ray Data write stage shared by ingest and the synthetic survey: rows to shards.

Upstream stages emit Arrow tables in the store schema plus three bookkeeping columns:
``error`` (null for a good row, else the reason to quarantine it), ``size`` and
``version`` (the input file's size in bytes and mtime/ETag, for the manifest) and
``transient`` (the failure was I/O, not content: the input is retried next run). The sink
writes the good rows to shards of about ``target_bytes`` each, atomically, and returns
the manifest and quarantine records; the driver commits them (see specray.data.store).
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from specray import schema, storage
from specray.data.records import ManifestEntry, QuarantineEntry
from specray.data.store import SHARDS_DIR, Store, now

log = logging.getLogger(__name__)

BOOKKEEPING = pa.schema(
    [
        pa.field("error", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("version", pa.string()),
        pa.field("transient", pa.bool_()),
    ]
)
DEFAULT_SHARD_BYTES = 128 * 2**20
ROW_GROUP_BYTES = 32 * 2**20


def staged_schema(store_schema: pa.Schema) -> pa.Schema:
    """The schema of rows between the prepare stage and the sink."""
    return pa.schema(list(store_schema) + list(BOOKKEEPING), metadata=store_schema.metadata)


@dataclass
class SinkResult:
    """What the write tasks produced, gathered on the driver."""

    manifest: list[ManifestEntry] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)


QUARANTINE_COLUMNS = {"source": "source", "id": "id", "reason": "error", "transient": "transient"}
"""QuarantineEntry field -> staged column, for rejected rows."""
MANIFEST_COLUMNS = {name: name for name in ("source", "size", "version", "id", "object")}
"""ManifestEntry field -> staged column, for rows written to a shard."""


def _rows(table: pa.Table, columns: dict[str, str]) -> list[dict]:
    """The staged rows as dicts of record fields (``columns``: field -> column)."""
    return table.select(list(columns.values())).rename_columns(list(columns)).to_pylist()


def _quarantined(table: pa.Table) -> list[QuarantineEntry]:
    """The quarantine records of staged rows that carry an ``error``."""
    stamp = now()
    return [QuarantineEntry(**row, at=stamp) for row in _rows(table, QUARANTINE_COLUMNS)]


def _ingested(table: pa.Table, shard: str) -> list[ManifestEntry]:
    """The manifest entries of good staged rows written to ``shard``."""
    stamp = now()
    return [
        ManifestEntry(**row, status="ingested", shard=shard, at=stamp)
        for row in _rows(table, MANIFEST_COLUMNS)
    ]


class ShardSink(Datasink):
    """Writes good rows to ``<store>/shards/part-<run>-<n>.parquet``; collects the rest."""

    def __init__(self, store_uri: str, store_schema: pa.Schema, target_bytes: int):
        self.store_uri = store_uri
        self.store_schema = store_schema
        self.target_bytes = target_bytes
        self.run_id = uuid.uuid4().hex[:12]
        self.result = SinkResult()

    @property
    def min_bytes_per_write(self) -> int:
        return self.target_bytes

    def write(self, blocks: Iterable, ctx) -> SinkResult:
        result = SinkResult()
        pending: list[pa.Table] = []
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            bad = table.filter(pc.is_valid(table["error"]))
            result.quarantine += _quarantined(bad)
            good = table.filter(pc.is_null(table["error"]))
            if good.num_rows:
                pending.append(good)
            if sum(t.nbytes for t in pending) >= self.target_bytes:
                self._flush(pending, ctx.task_idx, result)
                pending = []
        if pending:
            self._flush(pending, ctx.task_idx, result)
        return result

    def _flush(self, tables: list[pa.Table], task_idx: int, result: SinkResult) -> None:
        table = pa.concat_tables(tables)
        name = f"part-{self.run_id}-{task_idx:05d}-{len(result.shards):03d}.parquet"
        size = write_shard(
            self.store_uri, table.select(self.store_schema.names), self.store_schema, name
        )
        result.shards.append(name)
        result.manifest += _ingested(table, name)
        log.info("wrote shard %s (%d spectra, %.1f MB)", name, table.num_rows, size / 1e6)

    def on_write_complete(self, write_result) -> None:
        for part in write_result.write_returns:
            self.result.manifest += part.manifest
            self.result.quarantine += part.quarantine
            self.result.shards += part.shards


SPECTRUM_COLUMNS = ("flux", "mask")


def parquet_options(store_schema: pa.Schema) -> dict:
    """Writer options of a shard in the store's format: zstd everywhere; in format 2 the
    spectrum columns go without dictionary (each value is unique) and without statistics
    (min/max of a 655 kB value is useless), which is what makes them decode at memory speed
    (benchmarks/encodings.py)."""
    if schema.shard_format(store_schema) == 1:
        return {"compression": "zstd"}
    scalar = [name for name in store_schema.names if name not in SPECTRUM_COLUMNS]
    return {"compression": "zstd", "use_dictionary": scalar, "write_statistics": scalar}


def write_shard(store_uri: str, rows: pa.Table, store_schema: pa.Schema, name: str) -> int:
    """Write ``rows`` as ``<store>/shards/<name>`` atomically; return its size in bytes."""
    rows = rows.cast(store_schema)
    bytes_per_row = max(1, rows.nbytes // max(1, rows.num_rows))
    buffer = io.BytesIO()
    pq.write_table(
        rows,
        buffer,
        row_group_size=max(1, ROW_GROUP_BYTES // bytes_per_row),
        **parquet_options(store_schema),
    )
    storage.atomic_write_bytes(storage.join(store_uri, SHARDS_DIR, name), buffer.getvalue())
    return buffer.tell()


def add_native_spectra(
    store: Store,
    ids: list[str],
    objects: np.ndarray,
    flux: np.ndarray,
    labels: dict[str, np.ndarray],
    prefix: str,
    shards: int = 2,
) -> None:
    """Write spectra already sampled on the store grid's native pixels, (n, n_native) flux
    with their ids, objects and label columns, as ``shards`` shards and commit them: for
    tests and benchmarks that need a store of known content without the ingest pipeline.
    Every pixel is valid, the normalisation is 1 and the SNR 100."""
    grid = store.grid
    padded = np.stack([grid.pad(row.astype(np.float32)) for row in flux])
    masks = np.tile(grid.mask, (len(ids), 1))
    manifest = []
    for number, rows in enumerate(np.array_split(np.arange(len(ids)), shards)):
        columns = {
            "id": [ids[i] for i in rows],
            "object": objects[rows],
            "source": [ids[i] for i in rows],
            "flux": padded[rows],
            "mask": masks[rows],
            "norm": np.ones(rows.size),
            "snr": np.full(rows.size, 100.0),
            **{name: values[rows] for name, values in labels.items()},
        }
        name = f"part-{prefix}-{number:05d}.parquet"
        write_shard(store.uri, schema.spectra_table(columns, store.schema), store.schema, name)
        stamp = now()
        manifest += [
            ManifestEntry(source=i, id=i, status="ingested", shard=name, at=stamp)
            for i in columns["id"]
        ]
    store.commit(manifest, [])


@dataclass
class Compaction:
    """Old rows of re-ingested inputs taken out of their shards.

    ``superseded``: sources whose old rows go; ``moved``: old shard name -> the shard that
    holds its surviving rows ("" when none survive). Applied to the manifest in the same
    atomic commit as the new rows; the old shards are removed only after that commit (a
    run killed in between leaves them as orphans, which the next run removes).
    """

    superseded: set[str] = field(default_factory=set)
    moved: dict[str, str] = field(default_factory=dict)

    def apply(self, manifest: list[ManifestEntry]) -> None:
        """Point ``manifest``'s entries (in place) at the shards that now hold their rows."""
        stamp = now()
        for number, entry in enumerate(manifest):
            if not entry.ingested or entry.shard not in self.moved:
                continue
            if entry.source in self.superseded:
                manifest[number] = replace(entry, status="superseded", superseded_at=stamp)
            else:
                manifest[number] = replace(entry, shard=self.moved[entry.shard])

    def remove_old_shards(self, store: Store) -> None:
        for name in self.moved:
            storage.remove(store.path(SHARDS_DIR, name))


def compact_shards(store: Store, sources: set[str], run_id: str) -> Compaction:
    """Rewrite each shard holding rows of ``sources`` without them (a new file per shard)."""
    compaction = Compaction(superseded=set(sources))
    if not sources:
        return compaction
    shards = sorted({e.shard for e in store.manifest if e.ingested and e.source in sources})
    for number, name in enumerate(shards):
        table = storage.read_parquet(store.path(SHARDS_DIR, name))
        keep = table.filter(pc.invert(pc.is_in(table["source"], pa.array(sorted(sources)))))
        survivor = ""
        if keep.num_rows:
            survivor = f"part-{run_id}-compacted-{number:03d}.parquet"
            write_shard(store.uri, keep, store.schema, survivor)
        compaction.moved[name] = survivor
        log.info("%s: %d old row(s) replaced", name, table.num_rows - keep.num_rows)
    return compaction
