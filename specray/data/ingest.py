"""Ingest: FITS files (local folder or s3:// prefix) -> Parquet shards in a store.

Three Ray Data stages: a list of new input files -> ``map_batches`` reading and
preprocessing each file onto the grid -> :class:`~specray.data.shards.ShardSink` writing
shards. Files already in the manifest (same URI, size and version) are skipped; bad files
are quarantined with a reason and the rest lands; the run reports the counts.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import ray

from specray import schema, storage
from specray.data.shards import DEFAULT_SHARD_BYTES, ShardSink, staged_schema
from specray.data.store import Store, now, open_or_create_store
from specray.runtime import ensure_ray
from specray.spectra.fits import SpectrumFileError, read_spectrum, spectrum_id
from specray.spectra.grid import DegenerateSpectrum, Grid, named_grid, prepare

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts")


@dataclass
class IngestReport:
    """Counts of one ingest run, and where things went."""

    ingested: int
    skipped: int
    quarantined: int
    shards: list[str]
    orphans_removed: int = 0

    def summary(self) -> str:
        return (
            f"ingested {self.ingested}, skipped {self.skipped} already present, "
            f"quarantined {self.quarantined}; {len(self.shards)} new shard(s)"
        )


@dataclass(frozen=True)
class Preprocessing:
    """How each spectrum is put on the grid (see specray.spectra.grid.prepare)."""

    min_median: float = 50.0
    min_coverage: float = 0.5


@dataclass(frozen=True)
class LabelTable:
    """Label values keyed by spectrum ``id`` or by ``object``, as a plain dict for tasks."""

    key: str
    columns: tuple[str, ...]
    values: Mapping[str, dict]

    def lookup(self, identifier: str, obj: str) -> dict:
        return dict(self.values.get(identifier if self.key == "id" else obj, {}))

    @property
    def extra_labels(self) -> tuple[str, ...]:
        known = set(schema.META_COLUMNS) | set(schema.LABEL_COLUMNS)
        return tuple(column for column in self.columns if column not in known)


def load_labels(uri: str) -> LabelTable:
    """Read a CSV or Parquet labels table; numeric columns other than the key become labels."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise storage.StorageError(f"{uri}: labels table not found")
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle) if path.endswith(".parquet") else pacsv.read_csv(handle)
    key = "id" if "id" in table.column_names else "object"
    if key not in table.column_names:
        raise ValueError(f"{uri}: a labels table needs an 'id' or an 'object' column")
    numeric = [
        name
        for name in table.column_names
        if name not in ("id", "object")
        and (pa.types.is_integer(table[name].type) or pa.types.is_floating(table[name].type))
    ]
    ignored = sorted(set(table.column_names) - set(numeric) - {"id", "object"})
    if ignored:
        log.info("labels %s: ignoring non-numeric columns %s", uri, ignored)
    keys = [str(value) for value in table[key].to_pylist()]
    columns = {
        name: table[name].cast(pa.float64()).to_numpy(zero_copy_only=False) for name in numeric
    }
    values = {k: {name: float(columns[name][i]) for name in numeric} for i, k in enumerate(keys)}
    return LabelTable(key, tuple(numeric), values)


def stage_table(rows: list[dict], store_schema: pa.Schema, grid: Grid) -> pa.Table:
    """Rows (good: with flux, mask, norm, meta; bad: with ``error``) as one staged table."""
    zeros = np.zeros((len(rows), grid.length), dtype=np.float32)
    columns: dict[str, object] = {
        "flux": zeros.copy(),
        "mask": zeros.astype(np.uint8),
    }
    for i, row in enumerate(rows):
        if row.get("error") is None:
            columns["flux"][i] = row["flux"]
            columns["mask"][i] = row["mask"]
    for name in store_schema.names:
        if name not in ("flux", "mask"):
            default = "" if pa.types.is_string(store_schema.field(name).type) else np.nan
            columns[name] = [row.get(name, default) for row in rows]
    table = schema.spectra_table(columns, store_schema)
    bookkeeping = {
        "error": pa.array([row.get("error") for row in rows], pa.string()),
        "size": pa.array([row.get("size", 0) for row in rows], pa.int64()),
        "version": pa.array([str(row.get("version", "")) for row in rows], pa.string()),
    }
    for name, array in bookkeeping.items():
        table = table.append_column(name, array)
    return table.cast(staged_schema(store_schema))


def prepared_row(
    identifier: str,
    obj: str,
    wavelength: np.ndarray,
    flux: np.ndarray,
    values: dict,
    grid: Grid,
    preprocessing: Preprocessing,
) -> dict:
    """One spectrum prepared on the grid as a staged row; ``error`` set if it is rejected."""
    row = {**values, "id": identifier, "object": obj}
    try:
        prepared = prepare(
            wavelength, flux, grid, preprocessing.min_median, preprocessing.min_coverage
        )
    except (DegenerateSpectrum, ValueError) as exc:
        return {**row, "error": f"{type(exc).__name__}: {exc}"}
    peak = float(np.max(np.abs(prepared.flux)))
    if peak > schema.FLUX_MAX:
        return {**row, "error": f"normalised flux reaches {peak:.3g}, beyond float16 range"}
    return {**row, "flux": prepared.flux, "mask": prepared.mask, "norm": prepared.median}


def _read_and_prepare(
    uri: str, size: int, version: str, fmt: str, grid: Grid, prep: Preprocessing, labels
) -> dict:
    name = posixpath.basename(uri)
    bookkeeping = {"source": uri, "size": size, "version": version}
    fs, path = storage.filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            raw = read_spectrum(handle, format=fmt, name=name)
    except (SpectrumFileError, OSError) as exc:
        return {**bookkeeping, "id": spectrum_id(name), "error": str(exc)}
    values = {key: value for key, value in raw.meta.items() if key in schema.META_COLUMNS}
    if labels is not None:
        values.update(labels.lookup(raw.id, raw.object))
    row = prepared_row(raw.id, raw.object, raw.wavelength, raw.flux, values, grid, prep)
    if row.get("error"):
        row["error"] = f"{name}: {row['error']}"
    return {**row, **bookkeeping}


def prepare_files(batch: dict, fmt: str, grid: Grid, prep: Preprocessing, labels, store_schema):
    """Ray Data stage: a batch of file entries -> a staged table of prepared spectra."""
    rows = [
        _read_and_prepare(uri, int(size), str(version), fmt, grid, prep, labels)
        for uri, size, version in zip(batch["uri"], batch["size"], batch["version"], strict=True)
    ]
    return stage_table(rows, store_schema, grid)


def rows_per_batch(grid: Grid, batch_bytes: int = 32 * 2**20) -> int:
    """Spectra per Ray Data batch so a batch holds about ``batch_bytes`` of float32 flux."""
    return int(np.clip(batch_bytes // (4 * grid.length), 1, 256))


def write_staged(dataset: ray.data.Dataset, store: Store, shard_bytes: int) -> ShardSink:
    """Run the sink over a staged dataset; the caller commits ``sink.result``."""
    sink = ShardSink(store.uri, store.schema, shard_bytes)
    dataset.write_datasink(sink)
    return sink


def _triage(entries: list[storage.FileEntry], store: Store) -> tuple[list, int, list[dict]]:
    """Split inputs into new ones, a count already present, and immediate rejections."""
    known = store.known_sources()
    taken_ids = store.ingested_ids()
    new, skipped, rejected = [], 0, []
    for entry in entries:
        previous = known.get(entry.uri)
        unchanged = previous and (previous.get("size"), str(previous.get("version"))) == (
            entry.size,
            entry.version,
        )
        identifier = spectrum_id(posixpath.basename(entry.uri))
        if unchanged:
            skipped += 1
        elif previous and previous.get("status") == "ingested":
            reason = (
                f"{entry.uri}: changed since it was ingested into {previous['shard']} "
                "(size or version differ); remove its rows from the store to re-ingest"
            )
            rejected.append({"source": entry.uri, "id": identifier, "reason": reason})
        elif identifier in taken_ids:
            reason = f"{entry.uri}: id {identifier} is already in the store from another file"
            rejected.append({"source": entry.uri, "id": identifier, "reason": reason})
        else:
            taken_ids.add(identifier)
            new.append(entry)
    return new, skipped, rejected


def commit_run(store: Store, sink: ShardSink | None, rejected: list[dict], entries) -> None:
    """Record what a run wrote and rejected (quarantined inputs are skipped next time)."""
    versions = {entry.uri: entry for entry in entries}
    quarantine = list(rejected) + (sink.result.quarantine if sink else [])
    quarantined_manifest = []
    for record in quarantine:
        entry = versions.get(record["source"])
        size, version = (entry.size, entry.version) if entry else (None, None)
        quarantined_manifest.append(
            {**record, "size": size, "version": version, "status": "quarantined"}
        )
    stamped = [{**record, "at": record.get("at") or now()} for record in quarantine]
    store.commit((sink.result.manifest if sink else []) + quarantined_manifest, stamped)


def ingest(
    input_uri: str,
    store_uri: str,
    grid: str | Grid = "demo",
    labels: str | None = None,
    fmt: str = "auto",
    preprocessing: Preprocessing = Preprocessing(),
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> IngestReport:
    """Ingest every new FITS file under ``input_uri`` into the store at ``store_uri``."""
    grid = named_grid(grid) if isinstance(grid, str) else grid
    label_table = load_labels(labels) if labels else None
    extra = label_table.extra_labels if label_table else ()
    store = open_or_create_store(store_uri, grid, extra)
    orphans = store.remove_orphan_shards()
    entries = storage.list_files(input_uri, FITS_SUFFIXES)
    new, skipped, rejected = _triage(entries, store)
    log.info(
        "%s: %d FITS files, %d new, %d already present", input_uri, len(entries), len(new), skipped
    )
    sink = None
    if new:
        ensure_ray()
        items = [{"uri": e.uri, "size": e.size, "version": e.version} for e in new]
        staged = ray.data.from_items(items).map_batches(
            prepare_files,
            batch_size=rows_per_batch(grid),
            batch_format="numpy",
            fn_kwargs={
                "fmt": fmt,
                "grid": grid,
                "prep": preprocessing,
                "labels": label_table,
                "store_schema": store.schema,
            },
        )
        sink = write_staged(staged, store, shard_bytes)
    commit_run(store, sink, rejected, entries)
    quarantined = len(rejected) + (len(sink.result.quarantine) if sink else 0)
    report = IngestReport(
        ingested=len(sink.result.manifest) if sink else 0,
        skipped=skipped,
        quarantined=quarantined,
        shards=sink.result.shards if sink else [],
        orphans_removed=len(orphans),
    )
    log.info("%s", report.summary())
    return report
