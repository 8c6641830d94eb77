"""The record of a Ray Tune search: ``DIR/tune.json`` (a :class:`specray.records.Record`).

Written once per search by :func:`specray.train.tune.write_results`, read by
:func:`specray.train.tune.read_results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from specray.records import Record


@dataclass(frozen=True, kw_only=True)
class TuneResults(Record):
    """``tune.json``: the search's settings, every trial and the one recommended."""

    INDENT = 2
    NEWLINE = True

    metric: Literal["val_loss", "val_recon"]
    """What the search minimised (``tune.metric``)."""
    units: str
    """The units of the losses (all in "mean" normalisation units, so trials compare)."""
    max_epochs: int
    """Epochs a trial runs unless ASHA stops it (``train.epochs``)."""
    prefer_fewest_nodes_within: float | None
    """The tolerance of the fewest-nodes preference (``tune.prefer_fewest_nodes_within``)."""
    search_space: dict
    """{latent_dims, beta: [min, max], normalisations, searcher}."""
    trials: list[dict]
    """One row per trial: {trial_id, config: {latent_dim, beta, normalisation}, val_loss,
    val_recon, val_loss_reported, active_nodes, epochs, steps, status, stopped_at_epoch,
    run, checkpoint, error}, by trial id."""
    best: dict | None
    """The recommended trial's row, or null when no trial finished with a loss."""
