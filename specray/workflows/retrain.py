"""Scheduled retraining: ingest what is new, fine-tune, re-analyse, compare with last time.

``retrain(raw, store, run, analysis)``:

1. Takes a lock (``RUN/.retrain.lock``, see specray.locks: ``flock`` locally, a
   conditional put with a heartbeat on S3), so two schedulers firing at once cannot both
   write; the second says so and exits 0. A crashed holder's lock is released (locally) or
   goes stale and is taken over (S3).
2. Ingests only new raw files (the store's manifest).
3. With nothing new and an analysis already made for the current checkpoint, says so and
   stops. Otherwise fine-tunes: the run resumes from its latest checkpoint for
   ``train.finetune_epochs`` more epochs. From scratch (``from_scratch=True``, or when the
   checkpoint's grid does not match the store) a new run folder ``RUN/scratch-<time>``
   is trained and becomes the active run.
4. Re-analyses into ``ANALYSIS/<time>/`` and compares with the previous analysis: which
   label each node tracks now and before, MI changes, new anomalies. The comparison goes
   into ``comparison.json``, into that report, and one line per retrain into
   ``ANALYSIS/history.jsonl``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from specray import storage
from specray.analysis.records import AnalysisRecord, read_analysis
from specray.analysis.report import render_comparison
from specray.config import Config, apply
from specray.data.ingest import Preprocessing, ingest
from specray.data.store import STORE_FILE, Store, open_store
from specray.locks import LockHeld, exclusive_lock
from specray.model.checkpoint import CheckpointError, checkpoint_grid, newest_intact_checkpoint
from specray.records import read_lines, write_lines
from specray.spectra.grid import named_grid
from specray.workflows.records import ActiveRun, Comparison, RetrainEntry

log = logging.getLogger(__name__)

LOCK_FILE = ".retrain.lock"
HISTORY_FILE = "history.jsonl"
ACTIVE_RUN_FILE = "active_run.json"
COMPARISON_FILE = "comparison.json"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class RetrainSummary:
    status: str
    ingested: int = 0
    run: str = ""
    analysis: str = ""
    comparison: Comparison | None = None

    def summary(self) -> str:
        if self.status != "retrained" or self.comparison is None:
            return f"retrain: {self.status}"
        lines = [f"retrain: ingested {self.ingested} new spectra; run {self.run}"]
        for label, change in self.comparison.labels.items():
            before = _named_node(change["node_before"], change["mi_before"])
            now = _named_node(change["node_now"], change["mi_now"])
            lines.append(f"  {label}: {before} -> {now}")
        new = self.comparison.new_anomalies
        shown = ", ".join(new[:SHOWN_ANOMALIES]) + (", ..." if len(new) > SHOWN_ANOMALIES else "")
        lines.append(f"  new anomalies: {len(new)}{': ' + shown if new else ''}")
        lines.append(f"  report: {storage.join(self.analysis, 'report.html')}")
        return "\n".join(lines)


SHOWN_ANOMALIES = 5
"""New anomalies named in the summary; all of them are in comparison.json."""


def _named_node(node: int | None, mi: float | None) -> str:
    return "no named node" if node is None else f"node {node} ({mi:.2f} nats)"


def _top_anomaly_ids(analysis: AnalysisRecord | None) -> list[str]:
    if analysis is None or analysis.anomalies is None:
        return []
    return [row["id"] for row in analysis.anomalies.get("top", [])]


def compare_analyses(before: AnalysisRecord | None, now: AnalysisRecord) -> Comparison:
    """Label -> node now and before, with MI in nats; anomalies new since last time."""
    old_nodes = before.label_nodes if before else {}
    new_nodes = now.label_nodes
    labels = {}
    for label in sorted(set(old_nodes) | set(new_nodes)):
        old, new = old_nodes.get(label), new_nodes.get(label)
        labels[label] = {
            "node_before": old["node"] if old else None,
            "node_now": new["node"] if new else None,
            "mi_before": round(old["mi"], 4) if old else None,
            "mi_now": round(new["mi"], 4) if new else None,
        }
    seen = set(_top_anomaly_ids(before))
    new = [i for i in _top_anomaly_ids(now) if i not in seen]
    return Comparison(labels=labels, new_anomalies=new)


def _active_run(run: str) -> str:
    pointer = storage.join(run, ACTIVE_RUN_FILE)
    return ActiveRun.read(pointer).run if storage.exists(pointer) else run


def _training_config(active_run: str, store_grid, overrides: dict, from_scratch: bool):
    """(config, run to train, whether it starts from scratch)."""
    try:
        found = newest_intact_checkpoint(active_run)
    except CheckpointError:  # no such run yet
        found = None
    if found is None:
        config = Config()
        apply(config, overrides)
        return config, active_run, True
    meta = found[1]
    config = Config.from_dict(meta.config)
    apply(config, overrides)
    if from_scratch or checkpoint_grid(meta) != store_grid:
        return config, None, True
    config.train.epochs = meta.epoch + config.train.finetune_epochs
    return config, active_run, False


def _preprocessing(store: Store | None, overrides: dict) -> Preprocessing:
    """How new files are prepared: as the store's were (a HARPS store cut at 50 ADU stays
    so), or by the ``ingest`` settings for a new store."""
    if store is not None:
        return Preprocessing.from_record(store.preprocessing)
    settings = Config()
    apply(settings, overrides)
    return Preprocessing.from_settings(settings.ingest)


def _append_report(report_uri: str, comparison: Comparison, previous: str | None) -> None:
    if not storage.exists(report_uri):
        return
    section = render_comparison(comparison.to_dict(), previous)
    html = storage.read_text(report_uri)
    storage.atomic_write_text(report_uri, html.replace("</body>", section + "</body>", 1))


def retrain(
    raw: str,
    store: str,
    run: str,
    analysis: str | None = None,
    overrides: dict | None = None,
    grid: str = "demo",
    labels: str | None = None,
    from_scratch: bool = False,
) -> RetrainSummary:
    """One scheduled retraining cycle; see the module docstring."""
    raw, store, run = (storage.normalize(uri) for uri in (raw, store, run))
    analysis = None if analysis is None else storage.normalize(analysis)
    from specray.analysis.analyze import analyze

    analysis = analysis or storage.join(run, "analysis")
    try:
        with exclusive_lock(storage.join(run, LOCK_FILE), purpose="a retrain"):
            existing = (
                open_store(store) if storage.exists(storage.join(store, STORE_FILE)) else None
            )
            store_grid = existing.grid if existing else named_grid(grid)
            preprocessing = _preprocessing(existing, overrides or {})
            report = ingest(raw, store, grid=store_grid, labels=labels, preprocessing=preprocessing)
            history = read_lines(RetrainEntry, storage.join(analysis, HISTORY_FILE))
            active = _active_run(run)
            config, target, scratch = _training_config(
                active, store_grid, overrides or {}, from_scratch
            )
            if report.ingested == 0 and history and not scratch and not from_scratch:
                return RetrainSummary("nothing new: no new spectra since the last retrain")
            if target is None:
                target = storage.join(run, f"scratch-{_stamp()}")
                ActiveRun(target).write(storage.join(run, ACTIVE_RUN_FILE))
            from specray.train.trainer import train

            log.info(
                "retrain: %s %s", "training from scratch" if scratch else "fine-tuning", target
            )
            train(store, target, config)
            out = storage.join(analysis, _stamp())
            analyze(out, config, data=store, model=target)
            previous = history[-1].analysis if history else None
            before = read_analysis(previous) if previous else None
            comparison = compare_analyses(before, read_analysis(out))
            comparison.write(storage.join(out, COMPARISON_FILE))
            _append_report(storage.join(out, "report.html"), comparison, previous)
            entry = RetrainEntry(
                labels=comparison.labels, new_anomalies=comparison.new_anomalies, at=_stamp(),
                ingested=report.ingested, run=target, analysis=out, from_scratch=scratch,
            )  # fmt: skip
            write_lines(storage.join(analysis, HISTORY_FILE), [*history, entry])
            return RetrainSummary("retrained", report.ingested, target, out, comparison)
    except LockHeld as exc:
        return RetrainSummary(f"skipped, {exc}")
