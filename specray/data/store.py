"""A spectrum store: Parquet shards plus the records that say what is in them.

Layout of ``<store>``::

    store.json          grid, extra label columns, format_version (the shards' encoding,
                        specray.schema; 1 if absent; changed only by `specray migrate`),
                        preprocessing settings (a StoreDescriptor, specray.data.records)
    shards/*.parquet    the spectra (columns in specray.schema)
    manifest.jsonl      one ManifestEntry per input: source URI, size, version (mtime or
                        ETag), id, status ("ingested" with its shard, or "quarantined")
    quarantine.jsonl    one QuarantineEntry per rejected input, with the reason

The manifest is the source of truth: a shard is part of the store only once the manifest
lists it. A run that dies after writing shards but before committing the manifest leaves
orphan shards, which the next run removes before it starts (so nothing is counted twice).
Manifest and quarantine are rewritten whole and atomically at the end of each run. Writers
hold ``.write.lock`` (specray.locks) from reading the manifest to committing it, so
concurrent ingests into one store queue up instead of overwriting each other's records.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from specray import schema, storage
from specray.data.records import ManifestEntry, QuarantineEntry, StoreDescriptor
from specray.errors import SpecrayError
from specray.locks import Lock, exclusive_lock
from specray.records import read_lines, write_lines
from specray.spectra.grid import Grid

log = logging.getLogger(__name__)

STORE_FILE = "store.json"
MANIFEST_FILE = "manifest.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"
SHARDS_DIR = "shards"
LOCK_FILE = ".write.lock"


class StoreError(SpecrayError, ValueError):
    """A store that cannot be used as asked: the message names the store and the problem."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Store:
    """An opened store: its grid, label columns and records."""

    uri: str
    grid: Grid
    extra_labels: tuple[str, ...] = ()
    """Label columns beyond the schema's own; those in ``text_labels`` hold text."""
    text_labels: tuple[str, ...] = ()
    manifest: list[ManifestEntry] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    lock: Lock | None = None
    preprocessing: dict | None = None
    """How spectra were prepared (specray.data.ingest.Preprocessing.record); None if unrecorded."""
    format_version: int = schema.FORMAT_VERSION

    @property
    def schema(self) -> pa.Schema:
        """The schema new shards of this store are written in (its format version)."""
        return self.schema_for(self.format_version)

    def schema_for(self, version: int) -> pa.Schema:
        """The schema of this store's shards in store format ``version``."""
        return schema.store_schema(self.grid, self.extra_labels, version, self.text_labels)

    def path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    def shard_uris(self) -> list[str]:
        """URIs of the committed shards, in the order they were written."""
        names = dict.fromkeys(entry.shard for entry in self.manifest if entry.ingested)
        return [self.path(SHARDS_DIR, name) for name in names]

    def ingested_ids(self) -> set[str]:
        return {entry.id for entry in self.manifest if entry.ingested}

    def n_spectra(self) -> int:
        return sum(1 for entry in self.manifest if entry.ingested)

    def known_sources(self) -> dict[str, ManifestEntry]:
        """The latest manifest entry of every source URI."""
        return {entry.source: entry for entry in self.manifest}

    def shard_names(self) -> set[str]:
        """File names of the committed shards."""
        return {entry.shard for entry in self.manifest if entry.ingested}

    def remove_orphan_shards(self, keep: set[str] = frozenset()) -> list[str]:
        """Delete shards that no manifest entry lists (left by a run that died), except the
        file names in ``keep`` (work a resumed run reuses).

        Only safe while holding the store's write lock (:func:`writing_store`): another
        writer's shards are orphans until it commits. Shards are matched by file name, so
        the spelling of the store's location cannot make a committed shard look orphaned.
        """
        fs, path = storage.filesystem(self.path(SHARDS_DIR))
        if not fs.exists(path):
            return []
        committed = self.shard_names() | set(keep)
        orphans = [
            storage.to_uri(fs, name)
            for name in fs.ls(path, detail=False)
            if name.endswith(".parquet") and posixpath.basename(name) not in committed
        ]
        for orphan in orphans:
            log.warning("removing orphan shard %s (its run never committed)", orphan)
            storage.remove(orphan)
        return orphans

    def commit(
        self, new_manifest: list[ManifestEntry], new_quarantine: list[QuarantineEntry]
    ) -> None:
        """Append records and rewrite the manifest and quarantine atomically.

        Under :func:`writing_store` the lock is checked first, so a writer that lost its
        lock (an S3 takeover) commits nothing.
        """
        if self.lock is not None:
            self.lock.check()
        self.manifest.extend(new_manifest)
        self.quarantine.extend(new_quarantine)
        write_lines(self.path(QUARANTINE_FILE), self.quarantine)
        write_lines(self.path(MANIFEST_FILE), self.manifest)


def open_store(uri: str) -> Store:
    """Open an existing store; StoreError if there is none at ``uri``."""
    uri = storage.normalize(uri)
    descriptor_uri = storage.join(uri, STORE_FILE)
    if not storage.exists(descriptor_uri):
        raise StoreError(f"{uri}: not a specray store (no {STORE_FILE}); run `specray ingest`")
    descriptor = StoreDescriptor.read(descriptor_uri)
    return Store(
        uri=uri,
        grid=Grid.from_json(json.dumps(descriptor.grid)),
        extra_labels=tuple(descriptor.extra_labels),
        text_labels=tuple(descriptor.text_labels or ()),
        manifest=read_lines(ManifestEntry, storage.join(uri, MANIFEST_FILE)),
        quarantine=read_lines(QuarantineEntry, storage.join(uri, QUARANTINE_FILE)),
        preprocessing=descriptor.preprocessing,
        format_version=schema.check_format(descriptor.format_version, descriptor_uri),
    )


def write_descriptor(store: Store) -> None:
    """Write ``store.json`` (grid, extra labels, format version, preprocessing) atomically;
    an existing store keeps its creation time."""
    uri = store.path(STORE_FILE)
    created = StoreDescriptor.read(uri).created if storage.exists(uri) else now()
    descriptor = StoreDescriptor(
        created=created,
        format_version=store.format_version,
        grid=json.loads(store.grid.to_json()),
        extra_labels=list(store.extra_labels),
        text_labels=list(store.text_labels) or None,
        preprocessing=store.preprocessing,
    )
    descriptor.write(uri)


def open_or_create_store(
    uri: str,
    grid: Grid,
    extra_labels: tuple[str, ...] = (),
    preprocessing: dict | None = None,
    format_version: int = schema.FORMAT_VERSION,
    text_labels: tuple[str, ...] = (),
) -> Store:
    """Open the store at ``uri``, or create it for ``grid`` in ``format_version`` (an
    existing store keeps its own format); the grid must match, and so must the
    ``extra_labels`` (a subset of the store's) and which of them hold text.

    ``preprocessing`` (JSON-able settings) is recorded in a new store; an existing store
    that recorded other settings is an error, since its spectra would mix two rules.
    """
    uri = storage.normalize(uri)
    if storage.exists(storage.join(uri, STORE_FILE)):
        store = open_store(uri)
        if store.grid != grid:
            raise StoreError(
                f"{uri}: the store is on grid {store.grid.name} ({store.grid.length} pixels), "
                f"not {grid.name} ({grid.length} pixels); use a new store for another grid"
            )
        unknown = set(extra_labels) - set(store.extra_labels)
        if unknown:
            raise StoreError(
                f"{uri}: label columns {sorted(unknown)} are not in this store "
                f"(it has {list(store.extra_labels) or 'no extra labels'}); "
                "a store keeps the label columns of the table it was created with (a column "
                "that held no values there was left out); use a new store to add label columns"
            )
        _check_text_labels(store, extra_labels, text_labels)
        _check_preprocessing(store, preprocessing)
        return store
    store = Store(
        uri=uri,
        grid=grid,
        extra_labels=tuple(extra_labels),
        text_labels=tuple(name for name in extra_labels if name in text_labels),
        preprocessing=preprocessing,
        format_version=schema.check_format(format_version, uri),
    )
    write_descriptor(store)
    return store


def _check_text_labels(
    store: Store, extra_labels: tuple[str, ...], text_labels: tuple[str, ...]
) -> None:
    """StoreError if a label column holds text where the store's holds numbers, or back."""
    for name in extra_labels:
        if (name in text_labels) != (name in store.text_labels):
            stored, given = (
                ("text", "numbers") if name in store.text_labels else ("numbers", "text")
            )
            raise StoreError(
                f"{store.uri}: label column {name!r} holds {stored} in this store but {given} "
                "in this labels table; make the column match or use a new store"
            )


def _check_preprocessing(store: Store, preprocessing: dict | None) -> None:
    """StoreError if the store recorded preprocessing settings other than ``preprocessing``."""
    if preprocessing is None or store.preprocessing is None:
        return
    wanted = json.loads(json.dumps(preprocessing))
    if wanted != store.preprocessing:
        names = sorted(set(wanted) | set(store.preprocessing))
        differ = [n for n in names if wanted.get(n) != store.preprocessing.get(n)]
        store_side = ", ".join(f"{n}={store.preprocessing.get(n)}" for n in differ)
        run_side = ", ".join(f"{n}={wanted.get(n)}" for n in differ)
        raise StoreError(
            f"{store.uri}: the store's spectra were prepared with {store_side}; this run "
            f"asks for {run_side}; ingest with the store's settings or into a new store"
        )


@contextmanager
def writing_store(
    uri: str,
    grid: Grid,
    extra_labels: tuple[str, ...] = (),
    purpose: str = "another ingest",
    wait_s: float = float("inf"),
    preprocessing: dict | None = None,
    text_labels: tuple[str, ...] = (),
) -> Iterator[Store]:
    """Open (or create) the store for writing, holding its write lock throughout.

    Two writers never interleave: the second waits for the first (up to ``wait_s``
    seconds, then LockHeld) and then reads the manifest the first committed. Only here may
    :meth:`Store.remove_orphan_shards` run: no live writer can own an orphan.
    """
    with exclusive_lock(storage.join(storage.normalize(uri), LOCK_FILE), purpose, wait_s) as lock:
        store = open_or_create_store(
            uri, grid, extra_labels, preprocessing, text_labels=text_labels
        )
        store.lock = lock
        try:
            yield store
        finally:
            store.lock = None
