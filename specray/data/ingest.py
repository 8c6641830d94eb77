"""Ingest: FITS files (local folder or s3:// prefix) -> Parquet shards in a store.

Three Ray Data stages: a list of new input files -> ``map_batches`` reading and
preprocessing each file onto the grid -> :class:`~specray.data.shards.ShardSink` writing
shards. Files already in the manifest (same URI, size and version) are skipped; bad files
are quarantined with a reason and the rest lands; the run reports the counts.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import pyarrow as pa
import ray

from specray import schema, storage
from specray.config import IngestConfig
from specray.data.labels import load_labels
from specray.data.records import ManifestEntry, QuarantineEntry
from specray.data.shards import (
    DEFAULT_SHARD_BYTES,
    Compaction,
    ShardSink,
    compact_shards,
    staged_schema,
)
from specray.data.store import Store, now, writing_store
from specray.progress import Progress, report
from specray.runtime import ensure_ray
from specray.spectra.fits import FITS_SUFFIXES, SpectrumFileError, read_spectrum, spectrum_id
from specray.spectra.grid import (
    DEFAULT_MIN_SNR,
    DegenerateSpectrum,
    Grid,
    PreparedSpectrum,
    named_grid,
    prepare,
)

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """Counts of one ingest run, and where things went.

    ``reasons`` counts this run's quarantined inputs by reason class (``reason_class``);
    ``stored`` is the number of spectra in the store after the run; ``labelled`` is how
    many of this run's ingested spectra found a row in the labels table (None: no table).
    """

    ingested: int
    skipped: int
    quarantined: int
    shards: list[str]
    orphans_removed: int = 0
    replaced: int = 0
    retried: int = 0
    still_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    stored: int | None = None
    labelled: int | None = None

    @property
    def failed(self) -> bool:
        """Nothing was ingested and the store holds nothing: the run achieved nothing."""
        return self.ingested == 0 and not self.stored

    def failure(self) -> str:
        """One line for a failed run: what happened to the inputs."""
        counts = ", ".join(f"{n} {why}" for why, n in self._reasons_by_count())
        detail = f" ({self.quarantined} quarantined: {counts})" if counts else ""
        return f"nothing was ingested and the store holds no spectra{detail}"

    def _reasons_by_count(self) -> list[tuple[str, int]]:
        return sorted(self.reasons.items(), key=lambda item: -item[1])

    def _counts(self) -> str:
        parts = [f"ingested {self.ingested}"]
        if self.replaced:
            parts.append(f"of which {self.replaced} replace changed files")
        if self.retried:
            parts.append(f"{self.retried} earlier failure(s) retried")
        parts.append(f"skipped {self.skipped} already present")
        parts.append(f"quarantined {self.quarantined}")
        if self.still_quarantined:
            parts.append(f"{self.still_quarantined} unchanged file(s) still quarantined")
        return ", ".join(parts) + f"; {len(self.shards)} new shard(s)"

    def summary(self) -> str:
        lines = [self._counts()]
        if self.reasons:
            counts = self._reasons_by_count()
            lines.append("quarantined for: " + "; ".join(f"{n} {why}" for why, n in counts))
        if self.labelled is not None and self.ingested:
            lines.append(f"labels: {self.labelled} of {self.ingested} spectra found a label row")
        dominant = self.dominant_reason()
        if dominant:
            why, n = dominant
            hint = option_for(why)
            lines.append(
                f"most inputs were quarantined ({self.quarantined} of "
                f"{self.quarantined + self.ingested}), {n} for '{why}'"
                + (f": {hint}" if hint else "; see quarantine.jsonl in the store")
            )
        return "\n".join(lines)

    def dominant_reason(self) -> tuple[str, int] | None:
        """The reason behind most quarantines when more than half of the inputs were."""
        processed = self.ingested + self.quarantined
        if not self.reasons or 2 * self.quarantined <= processed:
            return None
        why, n = max(self.reasons.items(), key=lambda item: item[1])
        return (why, n) if 2 * n > self.quarantined else None


MEDIAN_HINT = (
    "--min-median is in the input's units (50 suits HARPS raw counts); leave it out "
    "(the default) for normalised or flux-calibrated spectra"
)
GRID_HINT = "choose a --grid that covers the spectra's wavelength range"
REASON_CLASSES = (
    (r"median flux \S+ <= 0\b", "median flux <= 0", None),
    (r"median flux \S+ <= (\S+) \(--min-median\)", "median flux <= {0}", MEDIAN_HINT),
    (
        r"SNR estimate \S+ < (\S+)",
        "SNR estimate < {0}",
        "lower --min-snr (0 turns the cut off) if these spectra are usable",
    ),
    (r"covers only", "covers too little of the grid", GRID_HINT + ", or lower --min-coverage"),
    (r"no finite flux on grid (\S+)", "no finite flux on grid {0}", GRID_HINT),
    (r"mean flux \S+ <= 0", "mean flux <= 0", None),
    (r"constant flux", "constant flux", None),
    (r"already in the store from another file", "id already in the store", None),
    (r"changed since it was ingested", "changed since it was ingested", None),
    (r"beyond float16 range", "flux beyond float16 range", None),
)
"""(pattern in a quarantine reason, its class, the option that changes it or None)."""


def option_for(reason: str) -> str | None:
    """The option that changes a reason class (from ``reason_class``), if there is one."""
    for _, template, hint in REASON_CLASSES:
        fixed = template.split("{")[0]
        if reason == template or ("{" in template and reason.startswith(fixed)):
            return hint
    return None


def reason_class(record: QuarantineEntry) -> str:
    """A quarantine record's reason without file names and numbers, to count reasons."""
    reason = record.reason
    for pattern, label, _ in REASON_CLASSES:
        match = re.search(pattern, reason)
        if match:
            return label.format(*match.groups())
    source = record.source
    for name in (source, posixpath.basename(source)):
        if name:
            reason = reason.replace(f"{name}: ", "").replace(name, "")
    return re.sub(r"\d+(\.\d+)?", "N", reason).strip() or "unknown"


@dataclass(frozen=True)
class Preprocessing:
    """How each spectrum is put on the grid (see specray.spectra.grid.prepare).

    ``min_snr``: least DER_SNR estimate per pixel (None or 0: no cut). ``min_median``: an
    absolute cut in the input's flux units (None: none; 50 for HARPS raw counts).
    ``min_coverage``: least fraction of the grid's usable pixels a spectrum covers. The
    settings are recorded in the store's ``store.json`` (``record``).
    """

    min_snr: float | None = DEFAULT_MIN_SNR
    min_median: float | None = None
    min_coverage: float = 0.5

    def record(self) -> dict:
        """The settings as a JSON-able dict (what store.json keeps)."""
        return {"normalisation": "masked median", **asdict(self)}

    def apply(self, wavelength: np.ndarray, flux: np.ndarray, grid: Grid) -> PreparedSpectrum:
        """One spectrum (wavelength in Angstrom, flux in any unit) on ``grid`` under these
        settings; :class:`DegenerateSpectrum` when the rules reject it."""
        return prepare(
            wavelength,
            flux,
            grid,
            min_median=self.min_median,
            min_coverage=self.min_coverage,
            min_snr=self.min_snr,
        )

    @classmethod
    def from_settings(cls, settings: IngestConfig) -> Preprocessing:
        """The quarantine rules of the ``ingest`` configuration section."""
        return cls(settings.min_snr, settings.min_median, settings.min_coverage)

    @classmethod
    def from_record(cls, record: dict | None) -> Preprocessing:
        """The settings :meth:`record` wrote (defaults for a store that recorded none)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (record or {}).items() if k in names})


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
            text = pa.types.is_string(store_schema.field(name).type)
            default = ("" if name in schema.IDENTITY_COLUMNS else None) if text else np.nan
            columns[name] = [row.get(name, default) for row in rows]
    table = schema.spectra_table(columns, store_schema)
    bookkeeping = {
        "error": pa.array([row.get("error") for row in rows], pa.string()),
        "size": pa.array([row.get("size", 0) for row in rows], pa.int64()),
        "version": pa.array([str(row.get("version", "")) for row in rows], pa.string()),
        "transient": pa.array([bool(row.get("transient")) for row in rows], pa.bool_()),
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
        prepared = preprocessing.apply(wavelength, flux, grid)
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
    except SpectrumFileError as exc:
        return {**bookkeeping, "id": spectrum_id(name), "error": str(exc)}
    except OSError as exc:  # unreadable now (permissions, network): retried next run
        error = f"{uri}: cannot be read: {exc}"
        return {**bookkeeping, "id": spectrum_id(name), "error": error, "transient": True}
    values = {key: value for key, value in raw.meta.items() if key in schema.META_COLUMNS}
    if labels is not None:
        values.update(labels.lookup(raw.id, raw.object))
    row = prepared_row(raw.id, raw.object, raw.wavelength, raw.flux, values, grid, prep)
    if row.get("error"):
        row["error"] = f"{name}: {row['error']}"
    return {**row, **bookkeeping}


def prepare_files(
    batch: dict, fmt: str, grid: Grid, prep: Preprocessing, labels, store_schema, tally=None
) -> pa.Table:
    """Ray Data stage: a batch of file entries -> a staged table of prepared spectra
    (each file counted on ``tally``, specray.progress, as it is read)."""
    rows = []
    for uri, size, version in zip(batch["uri"], batch["size"], batch["version"], strict=True):
        rows.append(_read_and_prepare(uri, int(size), str(version), fmt, grid, prep, labels))
        report(tally, 1)
    return stage_table(rows, store_schema, grid)


def rows_per_batch(grid: Grid, batch_bytes: int = 32 * 2**20) -> int:
    """Spectra per Ray Data batch so a batch holds about ``batch_bytes`` of float32 flux."""
    return int(np.clip(batch_bytes // (4 * grid.length), 1, 256))


def write_staged(dataset: ray.data.Dataset, store: Store, shard_bytes: int) -> ShardSink:
    """Run the sink over a staged dataset; the caller commits ``sink.result``."""
    sink = ShardSink(store.uri, store.schema, shard_bytes)
    dataset.write_datasink(sink)
    return sink


@dataclass
class IngestPlan:
    """What a run does with each input file, decided against the manifest."""

    new: list[storage.FileEntry] = field(default_factory=list)
    replaced: list[storage.FileEntry] = field(default_factory=list)
    retried: int = 0
    skipped: int = 0
    still_quarantined: int = 0
    rejected: list[QuarantineEntry] = field(default_factory=list)

    @property
    def to_read(self) -> list[storage.FileEntry]:
        return self.new + self.replaced


def _unchanged(previous: ManifestEntry | None, entry: storage.FileEntry) -> bool:
    """The input has the size and version (mtime or ETag) its manifest entry recorded."""
    if previous is None:
        return False
    return (previous.size, str(previous.version)) == (entry.size, entry.version)


def _retry_quarantined(previous: ManifestEntry, entry: storage.FileEntry) -> bool:
    """A quarantined input is read again when it changed or its failure was transient (I/O)."""
    return not _unchanged(previous, entry) or previous.transient


def plan_ingest(entries: list[storage.FileEntry], store: Store) -> IngestPlan:
    """Sort inputs into new, changed since ingested, unchanged, and id clashes.

    A file changed since it was ingested is read again and replaces its old row; a file
    quarantined for an I/O error (e.g. permission denied) or changed since is retried; an
    unchanged file quarantined for its content stays quarantined and is counted as such.
    """
    latest = store.known_sources()
    ingested = {e.source: e for e in store.manifest if e.ingested}
    taken_ids = {e.id: e.source for e in ingested.values()}
    plan = IngestPlan()
    for entry in entries:
        previous = latest.get(entry.uri)
        identifier = spectrum_id(posixpath.basename(entry.uri))
        unchanged = _unchanged(previous, entry)
        owner = taken_ids.get(identifier)
        if unchanged and previous.ingested:
            plan.skipped += 1
        elif (
            previous
            and previous.status == "quarantined"
            and not _retry_quarantined(previous, entry)
        ):
            plan.still_quarantined += 1
        elif owner is not None and owner != entry.uri:
            reason = f"{entry.uri}: id {identifier} is already in the store from {owner}"
            plan.rejected.append(QuarantineEntry(source=entry.uri, id=identifier, reason=reason))
        else:
            plan.retried += previous is not None and previous.status == "quarantined"
            (plan.replaced if entry.uri in ingested else plan.new).append(entry)
            taken_ids[identifier] = entry.uri
    return plan


def quarantined_entry(record: QuarantineEntry, entry: storage.FileEntry | None) -> ManifestEntry:
    """The manifest entry of a rejected input (``entry``: its listing, for size and version)."""
    return ManifestEntry(
        source=record.source,
        size=entry.size if entry else None,
        version=entry.version if entry else None,
        id=record.id,
        status="quarantined",
        at=record.at,
        reason=record.reason,
        transient=record.transient,
    )


def commit_run(
    store: Store,
    sink: ShardSink | None,
    rejected: list[QuarantineEntry],
    entries,
    compaction: Compaction | None = None,
) -> None:
    """Record what a run wrote, replaced and rejected, in one atomic manifest commit."""
    versions = {entry.uri: entry for entry in entries}
    quarantine = list(rejected) + (sink.result.quarantine if sink else [])
    quarantined_manifest = [
        quarantined_entry(record, versions.get(record.source)) for record in quarantine
    ]
    stamped = [replace(record, at=record.at or now()) for record in quarantine]
    if compaction is not None:
        compaction.apply(store.manifest)
    store.commit((sink.result.manifest if sink else []) + quarantined_manifest, stamped)
    if compaction is not None:
        compaction.remove_old_shards(store)


def list_inputs(input_uri: str) -> list[storage.FileEntry]:
    """The FITS files under ``input_uri``; StorageError when there is no such folder or
    it holds none (checked before the store is touched, so a typo creates nothing)."""
    entries = storage.list_files(input_uri, FITS_SUFFIXES)
    if not entries:
        raise storage.StorageError(
            f"{input_uri}: no FITS files here (looked for {', '.join(FITS_SUFFIXES)}, recursively)"
        )
    return entries


def _prepare_dataset(
    entries, grid: Grid, fmt: str, prep: Preprocessing, labels, store_schema, tally=None
):
    """The Ray Data pipeline that reads and prepares ``entries`` into staged rows."""
    items = [{"uri": e.uri, "size": e.size, "version": e.version} for e in entries]
    return ray.data.from_items(items).map_batches(
        prepare_files,
        batch_size=rows_per_batch(grid),
        batch_format="numpy",
        fn_kwargs={
            "fmt": fmt,
            "grid": grid,
            "prep": prep,
            "labels": labels,
            "store_schema": store_schema,
            "tally": tally,
        },
    )


def ingest(
    input_uri: str,
    store_uri: str,
    grid: str | Grid = "demo",
    labels: str | None = None,
    fmt: str = "auto",
    preprocessing: Preprocessing = Preprocessing(),
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    wait_s: float = float("inf"),
    labels_key: str | None = None,
) -> IngestReport:
    """Ingest every new or changed FITS file under ``input_uri`` into the store at ``store_uri``.

    The store's write lock is held from reading the manifest to committing it; a second
    ingest into the same store waits for it (up to ``wait_s`` seconds) and then adds
    only what the first did not. ``labels_key`` ("id", "object" or None: id when the table
    has one) is how the labels table joins (specray.data.labels).
    """
    input_uri, store_uri = storage.normalize(input_uri), storage.normalize(store_uri)
    grid = named_grid(grid) if isinstance(grid, str) else grid
    label_table = load_labels(labels, labels_key) if labels else None
    extra = label_table.extra_labels if label_table else ()
    text = label_table.text_columns if label_table else ()
    entries = list_inputs(input_uri)
    with writing_store(
        store_uri, grid, extra, "an ingest", wait_s, preprocessing.record(), text_labels=text
    ) as store:
        orphans = store.remove_orphan_shards()
        plan = plan_ingest(entries, store)
        log.info(
            "%s: %d FITS files: %d new, %d changed since ingested, %d already present",
            input_uri, len(entries), len(plan.new), len(plan.replaced), plan.skipped,
        )  # fmt: skip
        sink = compaction = None
        if plan.to_read:
            ensure_ray()
            with Progress("ingest", len(plan.to_read), "files", remote=True) as shown:
                staged = _prepare_dataset(
                    plan.to_read, grid, fmt, preprocessing, label_table, store.schema, shown.tally
                )
                sink = write_staged(staged, store, shard_bytes)
            replaced = {e.uri for e in plan.replaced} & {r.source for r in sink.result.manifest}
            compaction = compact_shards(store, replaced, sink.run_id)
        commit_run(store, sink, plan.rejected, entries, compaction)
    quarantine = list(plan.rejected) + (sink.result.quarantine if sink else [])
    ingested = sink.result.manifest if sink else []
    report = IngestReport(
        ingested=len(ingested),
        skipped=plan.skipped,
        quarantined=len(quarantine),
        shards=sink.result.shards if sink else [],
        orphans_removed=len(orphans),
        replaced=len(compaction.superseded) if compaction else 0,
        retried=plan.retried,
        still_quarantined=plan.still_quarantined,
        reasons=dict(Counter(reason_class(record) for record in quarantine)),
        stored=store.n_spectra(),
        labelled=label_table.report_matches(ingested) if label_table else None,
    )
    log.info("%s", report.summary())
    return report
