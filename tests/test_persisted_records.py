"""Every JSON file specray persists, through its record: round trips, files written before
records were versioned, files from a newer specray, damaged and mistyped files, and the
generated analysis.json documentation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from specray import storage
from specray.analysis.records import AnalysisRecord, schema_document
from specray.data.records import ManifestEntry, QuarantineEntry, StoreDescriptor
from specray.locks import LockRecord
from specray.model.records import CheckpointMeta, EpochMetrics
from specray.records import NewerRecordError, Record, RecordError, read_lines, write_lines
from specray.train.records import TuneResults
from specray.workflows.records import ActiveRun, Comparison, RetrainEntry
from tests.helpers import analysis_record

REPO = Path(__file__).resolve().parents[1]
GRID = {"name": "demo", "start": 5000.0, "stop": 5100.0, "step": 0.1, "n_native": 1000}
EPOCH = EpochMetrics(
    epoch=1, step=10, train_loss=0.5, recon=0.4, kl=2.0, data_wait_s=0.1, step_s=1.5,
    samples_per_s=None, val_loss=0.6, val_recon=0.5, val_kl=2.1, active_nodes=3, seconds=1.7,
)  # fmt: skip
TRIAL = {"trial_id": "a", "config": {"latent_dim": 8, "beta": 0.1}, "val_loss": 0.3}

SAMPLES: list[tuple[Record, str, object]] = [
    (LockRecord(token="t", purpose="an ingest", host="h", pid=7, since=1.0, heartbeat=2.5),
     "pid", "7"),
    (EPOCH, "active_nodes", 2.5),
    (CheckpointMeta(config={"loss": {"beta": 0.3}}, grid=GRID, data_fingerprint="abc",
                    store="/s", n_spectra=4, preprocessing=None, architecture={"latent_dim": 8},
                    epoch=1, step=10, history=[EPOCH]),
     "epoch", "1"),
    (StoreDescriptor(created="2026-01-01T00:00:00+00:00", format_version=2, grid=GRID,
                     extra_labels=["vsini"], preprocessing={"min_snr": 5.0}),
     "extra_labels", "vsini"),
    (ManifestEntry(source="/raw/a.fits", size=10, version="1.5", id="a", object="HD 1",
                   status="ingested", shard="part-1.parquet", at="2026-01-01T00:00:00+00:00"),
     "status", "lost"),
    (QuarantineEntry(source="/raw/b.fits", id="b", reason="b.fits: unreadable", at="now",
                     transient=True),
     "reason", None),
    (TuneResults(metric="val_loss", units="mean", max_epochs=3, prefer_fewest_nodes_within=None,
                 search_space={"latent_dims": [8]}, trials=[TRIAL], best=TRIAL),
     "max_epochs", None),
    (analysis_record(labels=["rv"], label_nodes={"rv": None}), "labels", "rv"),
    (ActiveRun("/run/scratch-1"), "run", 3),
    (Comparison(labels={"rv": {"node_before": 1, "node_now": 2}}, new_anomalies=["x"]),
     "new_anomalies", "x"),
    (RetrainEntry(labels={}, new_anomalies=[], at="20260101T000000Z", ingested=2, run="/run",
                  analysis="/run/analysis/1", from_scratch=False),
     "from_scratch", "no"),
]  # fmt: skip
IDS = [type(sample).__name__ for sample, _, _ in SAMPLES]


def without_versions(value):
    """``value`` as a file written before versioning holds it: no schema_version anywhere."""
    if isinstance(value, dict):
        return {k: without_versions(v) for k, v in value.items() if k != "schema_version"}
    if isinstance(value, list):
        return [without_versions(item) for item in value]
    return value


@pytest.mark.parametrize(("sample", "field", "wrong"), SAMPLES, ids=IDS)
def test_each_record_round_trips_through_its_file(tmp_path, sample, field, wrong):
    uri = str(tmp_path / "record.json")
    sample.write(uri)
    assert type(sample).read(uri) == sample
    assert json.loads((tmp_path / "record.json").read_text())["schema_version"] == 1
    write_lines(uri + "l", [sample, sample])
    assert read_lines(type(sample), uri + "l") == [sample, sample]


@pytest.mark.parametrize(("sample", "field", "wrong"), SAMPLES, ids=IDS)
def test_a_file_without_schema_version_still_reads(sample, field, wrong):
    old = without_versions(sample.to_dict())
    assert "schema_version" not in json.dumps(old)
    assert type(sample).from_dict(old, "old.json") == sample


@pytest.mark.parametrize(("sample", "field", "wrong"), SAMPLES, ids=IDS)
def test_a_newer_schema_version_is_refused_naming_the_file(sample, field, wrong):
    newer = {**sample.to_dict(), "schema_version": sample.SCHEMA_VERSION + 1}
    with pytest.raises(NewerRecordError, match=r"^new\.json: schema_version 2 is newer.*upgrade"):
        type(sample).from_dict(newer, "new.json")


@pytest.mark.parametrize(("sample", "field", "wrong"), SAMPLES, ids=IDS)
def test_a_wrong_typed_or_damaged_file_names_the_file_and_the_field(tmp_path, sample, field, wrong):
    uri = str(tmp_path / "record.json")
    storage.atomic_write_text(uri, json.dumps({**sample.to_dict(), field: wrong}))
    with pytest.raises(RecordError, match=rf"^{uri}: damaged, field '{field}': expected"):
        type(sample).read(uri)
    storage.atomic_write_text(uri, sample.to_json()[:-5])
    with pytest.raises(storage.StorageError, match=rf"^{uri}: damaged, not valid JSON"):
        type(sample).read(uri)


OLD_FILES = [
    # (record, a file exactly as the writers before records wrote it)
    (StoreDescriptor, {"created": "2026-01-01T00:00:00+00:00", "format_version": 2, "grid": GRID,
                       "extra_labels": [], "preprocessing": {"normalisation": "masked median"}}),
    (StoreDescriptor, {"created": "2026-01-01T00:00:00+00:00", "format_version": 1, "grid": GRID,
                       "extra_labels": []}),
    (ManifestEntry, {"source": "/raw/a.fits", "size": 5, "version": "1.0", "id": "a",
                     "object": "A", "status": "superseded", "shard": "p.parquet", "at": "t",
                     "superseded_at": "u"}),
    (ManifestEntry, {"source": "s", "id": "s", "status": "ingested", "shard": "p", "at": "t"}),
    (ManifestEntry, {"source": "/raw/b.fits", "id": "b", "reason": "id b is already in the "
                     "store", "size": 5, "version": "1.0", "status": "quarantined"}),
    (ManifestEntry, {"source": "/raw/c.fits", "id": "c", "reason": "c.fits: cannot be read",
                     "at": "t", "transient": True, "size": 5, "version": "2.0",
                     "status": "quarantined"}),
    (QuarantineEntry, {"source": "/raw/c.fits", "id": "c", "reason": "r", "at": "t"}),
    (LockRecord, {"token": "t", "purpose": "a retrain", "host": "h", "pid": 1, "since": 1.5,
                  "heartbeat": 2.5}),
    (EpochMetrics, {**EPOCH.as_metrics(), "val_loss": float("nan"), "samples_per_s": 12.5}),
    (ActiveRun, {"run": "/run/scratch-20260101T000000Z"}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "old"), OLD_FILES, ids=[k.__name__ for k, _ in OLD_FILES])
def test_files_of_the_old_writers_read_and_write_back_the_same_keys(kind, old):
    record = kind.from_json(json.dumps(old), "old.json")
    rewritten = json.loads(record.to_json())
    assert rewritten.pop("schema_version") == 1
    assert json.dumps(rewritten, sort_keys=True) == json.dumps(old, sort_keys=True)


def test_a_format_1_store_json_reads_with_its_old_schema_version_string():
    old = {"schema_version": "1", "grid": GRID, "extra_labels": [], "created": "t"}
    descriptor = StoreDescriptor.from_dict(old, "store.json")
    assert descriptor.format_version == 1
    assert json.loads(descriptor.to_json())["schema_version"] == 1


def test_analysis_json_documentation_is_generated_from_the_record():
    document = REPO / "docs" / "analysis-json.md"
    assert document.read_text() == schema_document(), (
        "docs/analysis-json.md disagrees with AnalysisRecord: regenerate it with "
        "python -m specray.analysis.records > docs/analysis-json.md"
    )
    for field in dataclasses.fields(AnalysisRecord):
        assert f"| `{field.name}` |" in document.read_text()


def test_files_from_before_later_fields_still_read(tmp_path):
    """A run's metrics and an analysis written before fields were added (a scheduled
    retrain reads the previous analysis; a resumed run its history)."""
    from specray.analysis.records import AnalysisRecord
    from specray.workflows.retrain import compare_analyses

    old_epoch = {"epoch": 1, "step": 28, "train_loss": 0.2, "recon": 0.2, "kl": 0.0,
                 "val_loss": 0.21, "active_nodes": 32}  # fmt: skip
    epoch = EpochMetrics.from_json(json.dumps(old_epoch), "run/metrics.jsonl")
    assert epoch.val_loss == 0.21 and epoch.data_wait_s is None and epoch.val_recon is None
    old_analysis = {"schema": "specray.analysis/1", "created": "2026-11-20T10:00:00Z",
                    "n_spectra": 1091, "latent_dim": 32, "informative_nodes": [3, 25],
                    "label_nodes": {"rv": {"node": 25, "mi": 0.94}, "teff": None}}  # fmt: skip
    before = AnalysisRecord.from_json(json.dumps(old_analysis), "analysis.json")
    assert before.attribution is None and before.anomalies is None
    assert compare_analyses(before, before).labels["rv"]["node_now"] == 25
