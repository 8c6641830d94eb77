"""The records of a store: ``store.json`` and the lines of ``manifest.jsonl`` and
``quarantine.jsonl`` (:class:`specray.records.Record` s).

One writer each (:func:`specray.data.store.write_descriptor`, :meth:`Store.commit
<specray.data.store.Store.commit>`) and one reader (:func:`specray.data.store.open_store`);
ingest, the shard sink, compaction and ``specray migrate`` make and change entries only
through these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from specray.records import Record, omitted


@dataclass(frozen=True, kw_only=True)
class StoreDescriptor(Record):
    """``store.json``: what every shard of the store shares."""

    INDENT = 2

    created: str
    """When the store was created (UTC, ISO 8601)."""
    format_version: int
    """The shards' encoding (specray.schema store formats; changed only by `specray migrate`)."""
    grid: dict
    """The wavelength grid every spectrum is on (:class:`specray.spectra.grid.Grid`)."""
    extra_labels: list[str] = field(default_factory=list)
    """Label columns beyond specray's own, from the labels table of the first ingest."""
    text_labels: list[str] | None = omitted()
    """The extra labels that hold text (categorical, e.g. spectral types); the others are
    float64."""
    preprocessing: dict | None = omitted()
    """How spectra were prepared (:meth:`specray.data.ingest.Preprocessing.record`)."""

    @classmethod
    def upgrade(cls, values: dict) -> dict:
        """Format 1 stores wrote ``"schema_version": "1"`` (a string) for their store format
        and no ``format_version``: that is format 1 in this layout."""
        if isinstance(values.get("schema_version"), str):
            values.pop("schema_version")
            values.setdefault("format_version", 1)
        return values


@dataclass(frozen=True, kw_only=True)
class QuarantineEntry(Record):
    """One line of ``quarantine.jsonl``: an input that was rejected, and why."""

    source: str
    """The input file's URI."""
    id: str
    """The spectrum id its name gives."""
    reason: str
    """Why it was rejected (names the file)."""
    at: str | None = omitted()
    """When (UTC, ISO 8601); set when the run commits."""
    transient: bool = omitted(False)
    """The failure was I/O, not content: the input is read again next run."""


@dataclass(frozen=True, kw_only=True)
class ManifestEntry(Record):
    """One line of ``manifest.jsonl``: what became of one input file."""

    source: str
    """The input file's URI (normalised, specray.storage.normalize)."""
    size: int | None = omitted()
    """Its size in bytes when it was read."""
    version: str | None = omitted()
    """Its change marker when it was read (mtime or ETag)."""
    id: str
    """The spectrum id."""
    object: str | None = omitted()
    """The observed object."""
    status: Literal["ingested", "quarantined", "superseded"]
    """"ingested" (its row is in ``shard``), "quarantined" (see ``reason``) or "superseded"
    (a changed file's old row, replaced by a later entry)."""
    shard: str | None = omitted()
    """The shard file (under ``shards/``) that holds its row."""
    at: str | None = omitted()
    """When it was recorded (UTC, ISO 8601)."""
    reason: str | None = omitted()
    """Why it was quarantined."""
    transient: bool = omitted(False)
    """It was quarantined for an I/O error: read again next run."""
    superseded_at: str | None = omitted()
    """When its row was replaced by a changed file's."""

    @property
    def ingested(self) -> bool:
        """Its row is in the store."""
        return self.status == "ingested"
