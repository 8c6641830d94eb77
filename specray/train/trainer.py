"""Training on Ray Train (V2): a TorchTrainer over the store's training and validation splits.

``train(store, run, config)`` writes checkpoints (``RUN/checkpoint_*``) and
``RUN/metrics.jsonl``. Re-running with the same RUN resumes from the newest intact
checkpoint and says so; a worker that crashes is restarted from the last checkpoint up to
``train.max_failures`` times.

Errors that a retry cannot fix never reach Ray's retries. :func:`preflight` checks, before
Ray starts, everything that can be checked without it: the architecture, the batch size
against the training spectra per worker, and the run's checkpoints (damaged ones are moved
to ``RUN/corrupt-<name>``, a checkpoint for another grid or network is refused). A
:class:`~specray.errors.SpecrayError` raised inside the loop all the same is passed
through :class:`StopOnUserError`, which Ray does not retry.

How Ray Train V2 picks the checkpoint it restores: its checkpoint manager reloads
``RUN/checkpoint_manager_snapshot.json`` (written after every reported checkpoint) and
hands the snapshot's latest checkpoint to ``ray.train.get_checkpoint()``; a snapshot that
names a folder which no longer exists stops the run. So when the snapshot would restore
anything but the newest intact checkpoint (it names one moved aside, or is unreadable), it
is moved to ``RUN/stale-checkpoint_manager_snapshot.json`` and the loop resumes from the
checkpoint that :func:`preflight` chose (``resume_from`` in the loop's configuration).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections import Counter
from dataclasses import dataclass

from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback
from ray.train.v2.api.exceptions import ControllerError

from specray import storage
from specray.config import Config
from specray.data.reader import data_fingerprint, object_counts, split_sizes, training_datasets
from specray.data.store import Store, open_store
from specray.errors import SpecrayError
from specray.model import resolve_config
from specray.model.checkpoint import (
    CheckpointError,
    checkpoint_grid,
    latest_checkpoint,
    move_aside,
    newest_intact_checkpoint,
)
from specray.model.records import CheckpointMeta, EpochMetrics
from specray.progress import Progress
from specray.records import read_lines
from specray.runtime import ensure_ray
from specray.spectra.grid import Grid
from specray.train.loop import METRICS_FILE, TrainingSetupError, train_loop_per_worker

log = logging.getLogger(__name__)

RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
"""Ray Train V2's checkpoint manager state in RUN (ray.train.v2._internal.constants)."""
STALE_PREFIX = "stale-"
PADDING_WARNING = 1.25
"""Warn when the network pads the grid by more than this factor (wasted computation)."""


@dataclass
class TrainSummary:
    run: str
    checkpoint: str
    history: list[EpochMetrics]

    @property
    def final(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    def summary(self) -> str:
        final = self.final
        if final is None:
            return f"trained no epoch; checkpoint {self.checkpoint}"
        return (
            f"trained {final.epoch} epochs ({final.step} steps): "
            f"val_loss {final.val_loss:.5f}, "
            f"active_nodes {final.active_nodes}; checkpoint {self.checkpoint}"
        )


@dataclass
class TrainingPlan:
    """What :func:`preflight` established: the store, the network it builds (a dict) and
    the checkpoint to resume from."""

    store: Store
    architecture: dict
    resume_from: str | None
    object_counts: Counter
    """Spectra per object (specray.data.reader.object_counts): the split and the weights."""
    steps: int
    """Optimiser steps of the whole run (:func:`planned_steps`)."""


class StopOnUserError(UserCallback):
    """Ray Train retries every worker error up to ``max_failures`` times, whatever it is.

    A :class:`SpecrayError` (bad data, configuration or checkpoint) fails the same way every
    time. Raised again from this controller callback it becomes a ``ControllerError``, which
    Ray's failure policy does not retry; :func:`train` unwraps it. Worker crashes and any
    other exception keep their retries.
    """

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        for error in worker_exceptions.values():
            user_error = _user_error(error)
            if user_error is not None:
                raise user_error


def _user_error(error: BaseException | None) -> SpecrayError | None:
    """The SpecrayError in an exception or what it wraps (Ray keeps the worker's as _base_exc)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SpecrayError):
            return error
        seen.add(id(error))
        error = getattr(error, "_base_exc", None) or error.__cause__
    return None


def run_config(run_uri: str, config: Config, callbacks=None) -> RunConfig:
    """Ray Train storage at RUN (its parent as storage_path, its name as the run name)."""
    options = {}
    if storage.is_remote(run_uri):
        fs, path = storage.arrow_filesystem(run_uri)
        options["storage_filesystem"] = fs
    else:
        path = storage.filesystem(run_uri)[1]
    return RunConfig(
        name=posixpath.basename(path.rstrip("/")),
        storage_path=posixpath.dirname(path.rstrip("/")),
        checkpoint_config=CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
        failure_config=FailureConfig(max_failures=config.train.max_failures),
        callbacks=[StopOnUserError(), *(callbacks or [])],
        **options,
    )


def check_architecture(config: Config, grid: Grid) -> dict:
    """The network this configuration builds on ``grid`` (a dict); TrainingSetupError if none."""
    try:
        arch = resolve_config(
            config.model.preset, input_length=grid.length, **config.model.overrides()
        )
    except (TypeError, ValueError) as exc:
        raise TrainingSetupError(f"model preset {config.model.preset!r}: {exc}") from None
    if arch.padded_length > PADDING_WARNING * arch.input_length:
        log.warning(
            "model preset %r needs a multiple of %d pixels: it pads the %d pixels of grid %s "
            "to %d (%.1fx the computation)",
            config.model.preset, arch.length_multiple, grid.length, grid.name,
            arch.padded_length, arch.padded_length / arch.input_length,
        )  # fmt: skip
    return arch.to_dict()


def _largest_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def check_batch_size(store: Store, n_train: int, config: Config) -> None:
    """Every worker must get at least one full batch per epoch (batches drop the tail)."""
    workers = max(1, config.train.workers)
    per_worker = n_train // workers  # Ray's equal split
    if per_worker >= config.train.batch_size:
        return
    where = f"{store.uri}: {n_train} training spectra"
    if workers > 1:
        where += f" over {workers} workers ({per_worker} each)"
    if per_worker == 0:
        raise TrainingSetupError(
            f"{where}, batch size {config.train.batch_size}: too few to train; ingest more "
            f"spectra, use fewer workers or a smaller --set train.val_fraction"
        )
    raise TrainingSetupError(
        f"{where}, batch size {config.train.batch_size}: "
        f"use --set train.batch_size={_largest_power_of_two(per_worker)}"
    )


def check_validation_split(
    store: Store, n_train: int, n_val: int, config: Config, required: bool
) -> None:
    """An empty validation split leaves val_loss NaN: a warning for training, an error
    where the validation loss is ``required`` (a search ranks trials by it)."""
    if n_val:
        return
    problem = (
        f"{store.uri}: train.val_fraction={config.train.val_fraction:g} puts none of its "
        f"{n_train} spectra in the validation split (it takes whole stars)"
    )
    if required:
        raise TrainingSetupError(
            f"{problem}; a search ranks trials by validation loss: ingest more stars or "
            "raise --set train.val_fraction"
        )
    log.warning("%s: val_loss will be NaN", problem)


def _check_checkpoint_fits(run_uri: str, meta: CheckpointMeta, grid: Grid, arch: dict) -> None:
    """Refuse to resume a checkpoint made for another grid or another network."""
    trained_on = checkpoint_grid(meta)
    if trained_on != grid:
        raise CheckpointError(
            f"{run_uri}: its checkpoints were trained on grid {trained_on.name} "
            f"({trained_on.n_native} pixels), but the store is on {grid.name}; "
            "use a new RUN"
        )
    if meta.architecture != arch:
        raise CheckpointError(
            f"{run_uri}: its checkpoints hold the network {meta.architecture}, but this "
            f"configuration builds {arch}; use a new RUN or the run's model settings"
        )


def _snapshot_restores(run_uri: str, resume_from: str | None) -> bool:
    """Whether Ray's snapshot in RUN would restore exactly ``resume_from``."""
    uri = storage.join(run_uri, RAY_SNAPSHOT_FILE)
    try:
        snapshot = json.loads(storage.read_bytes(uri))
        latest = snapshot["latest_checkpoint_result"]
        named = [entry["checkpoint_dir_name"] for entry in snapshot["checkpoint_results"]]
    except (ValueError, KeyError, TypeError):
        return False
    wanted = os.path.basename(resume_from.rstrip("/")) if resume_from else None
    restored = latest["checkpoint_dir_name"] if latest else None
    return restored == wanted and all(storage.exists(storage.join(run_uri, n)) for n in named)


def _retire_stale_snapshot(run_uri: str, resume_from: str | None) -> None:
    if not storage.exists(storage.join(run_uri, RAY_SNAPSHOT_FILE)):
        return
    if _snapshot_restores(run_uri, resume_from):
        return
    target = move_aside(storage.join(run_uri, RAY_SNAPSHOT_FILE), STALE_PREFIX)
    log.warning(
        "%s: Ray Train's snapshot would not resume from %s; moved it aside to %s",
        run_uri, resume_from or "scratch", target,
    )  # fmt: skip


def resume_point(run_uri: str, grid: Grid, arch: dict, config: Config) -> str | None:
    """The checkpoint this run resumes from (None: from scratch), after setting damaged ones aside."""
    if not storage.exists(run_uri):
        return None
    found = newest_intact_checkpoint(run_uri, move_damaged=True)
    resume_from = found[0] if found else None
    _retire_stale_snapshot(run_uri, resume_from)
    if found is None:
        return None
    meta = found[1]
    _check_checkpoint_fits(run_uri, meta, grid, arch)
    log.info(
        "%s: resuming from %s (epoch %d, step %d) towards %d epochs",
        run_uri, resume_from, meta.epoch, meta.step, config.train.epochs,
    )  # fmt: skip
    return resume_from


def preflight(store_uri: str, run_uri: str, config: Config) -> TrainingPlan:
    """Everything that can fail without Ray, checked before Ray starts (see the module doc)."""
    store = open_store(store_uri)
    arch = check_architecture(config, store.grid)
    counts = object_counts(store)
    steps = check_training_split(store, counts, config, validation_required=False)
    resume_from = resume_point(run_uri, store.grid, arch, config)
    return TrainingPlan(store, arch, resume_from, counts, steps)


def check_training_split(
    store: Store, counts: Counter, config: Config, validation_required: bool
) -> int:
    """Check the split of the store, whose spectra per object are ``counts``, against the
    configuration (batch size, validation split, KL warm-up); return the run's optimiser
    steps."""
    n_train, n_val = split_sizes(counts, config.train.val_fraction)
    check_batch_size(store, n_train, config)
    check_validation_split(store, n_train, n_val, config, required=validation_required)
    steps = planned_steps(n_train, config)
    warn_short_warmup(steps, config)
    return steps


def read_history(run_uri: str) -> list[EpochMetrics]:
    """The per-epoch metrics of a run (RUN/metrics.jsonl)."""
    return read_lines(EpochMetrics, storage.join(run_uri, METRICS_FILE))


def build_trainer(
    store_uri: str,
    run_uri: str,
    config: Config,
    callbacks=None,
    plan: TrainingPlan | None = None,
    tally=None,
) -> TorchTrainer:
    """A TorchTrainer for this store, run folder and configuration (not yet fitted).

    ``plan`` is the outcome of :func:`preflight`; without one, the checks run here.
    ``tally`` (specray.progress) receives the rank-0 worker's steps, loss and epoch lines.
    """
    plan = plan or preflight(store_uri, run_uri, config)
    store = plan.store
    train_ds, val_ds = training_datasets(
        store,
        plan.object_counts,
        config.train.val_fraction,
        config.train.balance_objects,
        config.train.materialize_below_mb,
        config.train.seed,
    )
    meta = CheckpointMeta(
        config=config.to_dict(),
        grid=json.loads(store.grid.to_json()),
        data_fingerprint=data_fingerprint(store),
        store=store_uri,
        n_spectra=store.n_spectra(),
        preprocessing=store.preprocessing,
        architecture=plan.architecture,
        epoch=0,
        step=0,
        history=[],
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(),
            "grid": store.grid.to_json(),
            "run": run_uri,
            "meta": meta,
            "resume_from": plan.resume_from,
            "progress": tally,
        },
        scaling_config=ScalingConfig(
            num_workers=config.train.workers,
            use_gpu=config.train.use_gpu,
            resources_per_worker={"CPU": config.train.cpus_per_worker},
        ),
        run_config=run_config(run_uri, config, callbacks),
        datasets={"train": train_ds, "val": val_ds},
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


def fit(trainer: TorchTrainer):
    """``trainer.fit()``; a SpecrayError stopped by StopOnUserError is raised as itself."""
    try:
        return trainer.fit()
    except ControllerError as error:
        user_error = _user_error(error.controller_failure)
        if user_error is None:
            raise
        raise user_error from None


def train(store_uri: str, run_uri: str, config: Config) -> TrainSummary:
    """Train (or resume training) a model on the store; return the outcome."""
    store_uri, run_uri = storage.normalize(store_uri), storage.normalize(run_uri)
    plan = preflight(store_uri, run_uri, config)
    ensure_ray()
    with Progress("train", plan.steps, "steps", remote=True) as shown:
        fit(build_trainer(store_uri, run_uri, config, plan=plan, tally=shown.tally))
    return TrainSummary(run_uri, latest_checkpoint(run_uri), read_history(run_uri))


def short_warmup(steps: int, config: Config) -> str | None:
    """Why a run of ``steps`` optimiser steps ends before its KL weight reaches beta (the
    report would call the model unfit to interpret), with settings that fit; or None."""
    loss = config.loss
    if loss.beta == 0 or loss.warmup_end <= steps:
        return None
    start, end = round(0.25 * steps), round(0.5 * steps)
    return (
        f"this run has {steps:,} optimiser steps, but the KL weight rises from step "
        f"{loss.warmup_start:,} (loss.warmup_start) to reach beta at step {loss.warmup_end:,} "
        "(loss.warmup_end): the bottleneck will not be pressed to disentangle and most "
        "nodes will stay live; for a run this short, e.g. "
        f"--set loss.warmup_start={start} --set loss.warmup_end={end}"
    )


def warn_short_warmup(steps: int, config: Config) -> None:
    problem = short_warmup(steps, config)
    if problem:
        log.warning("%s", problem)


def planned_steps(n_train: int, config: Config) -> int:
    """Optimiser steps of a run over ``n_train`` training spectra: epochs x full batches
    per worker and epoch."""
    per_worker = n_train // max(1, config.train.workers)
    return config.train.epochs * max(1, per_worker // config.train.batch_size)
