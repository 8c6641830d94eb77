"""``specray migrate STORE``: rewrite a store's shards in the current store format.

Under the store's write lock (so no ingest interleaves), each committed shard in an older
format is rewritten as ``<name>.v<N>.parquet`` (written to a temporary name and renamed,
so it is either absent or complete), then the manifest is pointed at the new shards in
one atomic rewrite, then ``store.json`` records the new format, and only then are the old
shards removed. Readers never see a store that mixes formats: until the manifest commit
they read the old shards, after it the new ones (every reader decodes both formats, so
the moment between the manifest and ``store.json`` is harmless too).

Killed at any point, a rerun finishes the job: new shards already written are checked
(row count and format, from their footers) and reused, anything else is redone; orphans
of other killed writers are removed as an ingest would. A store already in the current
format is left alone, so a second run does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.parquet as pq

from specray import schema, storage
from specray.data.shards import write_shard
from specray.data.store import SHARDS_DIR, Store, open_store, write_descriptor, writing_store

log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    """What one run did: shards rewritten now, shards reused from a killed run, spectra
    in the migrated shards, and old shards removed."""

    store: str
    version: int
    rewritten: int = 0
    reused: int = 0
    spectra: int = 0
    removed: int = 0

    def summary(self) -> str:
        if not (self.rewritten or self.reused or self.removed):
            return f"{self.store}: already in store format {self.version}; nothing to do"
        return (
            f"{self.store}: now in store format {self.version}: {self.rewritten} shard(s) "
            f"rewritten, {self.reused} reused from an interrupted run, {self.spectra} spectra, "
            f"{self.removed} old shard(s) removed"
        )


def migrated_name(shard: str, version: int = schema.FORMAT_VERSION) -> str:
    """The file name of ``shard`` rewritten in store format ``version``."""
    return f"{shard.removesuffix('.parquet')}.v{version}.parquet"


def _footer(store: Store, name: str) -> pq.FileMetaData:
    return storage.read_parquet_footer(store.path(SHARDS_DIR, name))


def _already_written(store: Store, name: str, rows: int, version: int) -> bool:
    """Is ``name`` a complete shard of ``rows`` rows in ``version`` (from a killed run)?"""
    if not storage.exists(store.path(SHARDS_DIR, name)):
        return False
    footer = _footer(store, name)
    return (
        footer.num_rows == rows and schema.shard_format(footer.schema.to_arrow_schema()) == version
    )


def recode(table: pa.Table, target: pa.Schema, length: int) -> pa.Table:
    """``table`` (a shard of any format) with flux and mask encoded as in ``target``."""
    version = schema.shard_format(target)
    encoded = {
        "flux": schema.encode_flux(schema.decode_flux(table["flux"]), version),
        "mask": schema.encode_mask(schema.decode_mask(table["mask"], length), version),
    }
    for name, array in encoded.items():
        table = table.set_column(table.column_names.index(name), target.field(name), array)
    return table


def _rewrite(store: Store, old: str, new: str, target: pa.Schema) -> int:
    table = storage.read_parquet(store.path(SHARDS_DIR, old))
    write_shard(store.uri, recode(table, target, store.grid.length), target, new)
    return table.num_rows


def _pending(store: Store, version: int) -> dict[str, str]:
    """Committed shards not yet in ``version`` -> their new names, in manifest order."""
    if store.format_version == version:
        return {}
    names = dict.fromkeys(e.shard for e in store.manifest if e.ingested)
    suffix = migrated_name("", version)
    return {name: migrated_name(name, version) for name in names if not name.endswith(suffix)}


def _point_manifest_at(store: Store, renamed: dict[str, str]) -> None:
    store.manifest = [
        replace(entry, shard=renamed[entry.shard])
        if entry.ingested and entry.shard in renamed
        else entry
        for entry in store.manifest
    ]
    store.commit([], [])


def migrate(
    store_uri: str, version: int = schema.FORMAT_VERSION, wait_s: float = float("inf")
) -> MigrationReport:
    """Rewrite the store at ``store_uri`` in store format ``version`` (see the module
    docstring); safe to rerun after a kill and to run twice at once."""
    version = schema.check_format(version, store_uri)
    found = open_store(store_uri)
    report = MigrationReport(found.uri, version)
    with writing_store(
        found.uri, found.grid, found.extra_labels, "a migration", wait_s,
        text_labels=found.text_labels,
    ) as store:  # fmt: skip
        renamed = _pending(store, version)
        report.removed = len(store.remove_orphan_shards(keep=set(renamed.values())))
        target = store.schema_for(version)
        for number, (old, new) in enumerate(renamed.items(), start=1):
            rows = _footer(store, old).num_rows
            if _already_written(store, new, rows, version):
                report.reused += 1
            else:
                _rewrite(store, old, new, target)
                report.rewritten += 1
            report.spectra += rows
            log.info("shard %d/%d: %s -> %s (%d spectra)", number, len(renamed), old, new, rows)
        if store.format_version != version:
            _point_manifest_at(store, renamed)
            store.format_version = version
            write_descriptor(store)
        for old in renamed:
            storage.remove(store.path(SHARDS_DIR, old))
        report.removed += len(renamed)
    return report
