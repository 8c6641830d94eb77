"""The records of scheduled retraining (:class:`specray.records.Record` s): the active-run
pointer ``RUN/active_run.json``, each cycle's ``comparison.json`` and the lines of
``ANALYSIS/history.jsonl``. Written and read only by :mod:`specray.workflows.retrain`.
"""

from __future__ import annotations

from dataclasses import dataclass

from specray.records import Record


@dataclass(frozen=True)
class ActiveRun(Record):
    """``RUN/active_run.json``: the run folder retraining continues (a from-scratch run
    started by a retrain, ``RUN/scratch-<time>``); without the file, RUN itself."""

    run: str
    """The active run folder."""


@dataclass(frozen=True, kw_only=True)
class Comparison(Record):
    """``comparison.json``: one analysis against the previous one."""

    INDENT = 2

    labels: dict[str, dict]
    """{label: {node_before, node_now, mi_before, mi_now}}: the node each label's attribution
    names (null: none), now and last time, with its MI in nats (rounded to 4 places)."""
    new_anomalies: list[str]
    """Ids among this analysis's top anomalies that were not among the previous one's."""


@dataclass(frozen=True, kw_only=True)
class RetrainEntry(Comparison):
    """One line of ``ANALYSIS/history.jsonl``: a retrain cycle and its comparison."""

    at: str
    """When the cycle ran (UTC, ``YYYYmmddTHHMMSSZ``)."""
    ingested: int
    """New spectra it ingested."""
    run: str
    """The run it trained."""
    analysis: str
    """The folder of its analysis."""
    from_scratch: bool
    """It trained a new run instead of fine-tuning."""
