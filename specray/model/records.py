"""The records of a training run: a checkpoint's ``meta.json`` and ``RUN/metrics.jsonl``.

Both are :class:`specray.records.Record` s: one writer each (the training loop, through
:func:`specray.model.checkpoint.write_checkpoint` and ``write_lines``), one reader each
(:func:`specray.model.checkpoint.parse_meta`, ``specray.train.trainer.read_history``).
They live with the model because training writes them and both training and the analysis
read them (the analysis's training curves come from the checkpoint's history).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from specray.records import Record


@dataclass(frozen=True, kw_only=True)
class EpochMetrics(Record):
    """One finished epoch: one line of ``RUN/metrics.jsonl`` and of a checkpoint's history.
    Fields added after the first release default to None, so older runs still read."""

    epoch: int
    """Epochs finished (from 1)."""
    step: int
    """Optimiser steps taken so far."""
    train_loss: float
    """Mean training loss over the epoch's batches (reconstruction + weighted KL)."""
    recon: float
    """Mean training reconstruction term (masked L1)."""
    kl: float
    """Mean training KL term (unweighted)."""
    data_wait_s: float | None = None
    """Seconds the rank-0 worker waited for batches."""
    step_s: float | None = None
    """Seconds it spent in steps."""
    samples_per_s: float | None = None
    """Its training rate, spectra per second (null for an epoch of no time)."""
    val_loss: float
    """Validation loss at the epoch's last KL weight (NaN without validation spectra)."""
    val_recon: float | None = None
    """Validation reconstruction term."""
    val_kl: float | None = None
    """Validation KL term."""
    active_nodes: int
    """Latent nodes whose MAD of mu over the validation set exceeds the dispersion threshold."""
    seconds: float | None = None
    """Wall time of the epoch, validation included."""

    def as_metrics(self) -> dict:
        """The values as Ray Train reports them (no schema_version)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class CheckpointMeta(Record):
    """A checkpoint's ``meta.json``: what the weights in ``model.pt`` are, and where
    training stood when they were written."""

    config: dict
    """The full configuration of the run (:meth:`specray.config.Config.to_dict`)."""
    grid: dict
    """The wavelength grid of the store it trained on (:class:`specray.spectra.grid.Grid`)."""
    data_fingerprint: str | None = None
    """The committed shards and grid it trained on (``specray.data.reader.data_fingerprint``)."""
    store: str | None = None
    """The store it trained on."""
    n_spectra: int | None = None
    """Spectra in that store when training started."""
    preprocessing: dict | None = None
    """How the store's spectra were prepared (``store.json``'s record); null if unrecorded."""
    architecture: dict
    """The network's resolved settings (:meth:`specray.model.vae.SpectrumVAE.config`)."""
    epoch: int
    """Epochs finished when the checkpoint was written."""
    step: int
    """Optimiser steps taken."""
    history: list[EpochMetrics]
    """Every finished epoch's metrics, in order."""
