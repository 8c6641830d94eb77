"""Training checkpoints: what they hold, how they are written, and finding the newest intact one.

A checkpoint is a folder with ``model.pt`` (torch: model and optimiser state) and
``meta.json`` (a :class:`~specray.model.records.CheckpointMeta`: epoch, step, the full
configuration, the model architecture, the grid, the data fingerprint, and the metrics
history). Ray Train stores the folders under
``RUN/checkpoint_*``; a re-run with the same RUN resumes from the newest one.

A checkpoint can be damaged (a disk filled up, a copy was cut short, a file was edited).
Readers never stop at a damaged checkpoint when an intact earlier one exists: they skip it
with a WARNING naming the file and the problem. Training goes further and moves it aside to
``RUN/corrupt-<name>`` (nothing is deleted), so Ray Train never restores it; see
:func:`newest_intact_checkpoint`. ``model.pt`` is always read with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from specray import storage
from specray.errors import SpecrayError
from specray.model.records import CheckpointMeta, EpochMetrics
from specray.model.vae import SpectrumVAE, build_model
from specray.records import RecordError
from specray.spectra.grid import Grid

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
META_FILE = "meta.json"
CHECKPOINT_PREFIX = "checkpoint_"
CORRUPT_PREFIX = "corrupt-"


class CheckpointError(SpecrayError, ValueError):
    """No usable checkpoint: the message names the run or file and the problem."""


@dataclass
class TrainingState:
    """Where training stands; what a checkpoint restores besides the weights."""

    epoch: int = 0
    step: int = 0
    history: list[EpochMetrics] = field(default_factory=list)


def write_checkpoint(
    folder: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    meta: CheckpointMeta,
) -> None:
    """Write ``model.pt`` and ``meta.json`` (``meta`` at ``state``) into a local ``folder``."""
    torch.save(
        {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
        os.path.join(folder, MODEL_FILE),
    )
    record = dataclasses.replace(
        meta, epoch=state.epoch, step=state.step, history=list(state.history)
    )
    with open(os.path.join(folder, META_FILE), "w") as handle:
        handle.write(record.to_json())


def parse_meta(text: bytes | str, source: str) -> CheckpointMeta:
    """The record of a meta.json (``source`` names it in errors): the one place it is parsed.

    A damaged or mistyped file is a CheckpointError (readers skip it); one written by a
    newer specray is refused as such (:class:`specray.records.NewerRecordError`).
    """
    try:
        return CheckpointMeta.from_json(text, source)
    except (storage.StorageError, RecordError) as problem:
        raise CheckpointError(str(problem)) from None


def read_meta(checkpoint_uri: str) -> CheckpointMeta:
    """The meta.json of a checkpoint folder (local path or URI)."""
    uri = storage.join(checkpoint_uri, META_FILE)
    if not storage.exists(uri):
        raise CheckpointError(f"{uri}: missing (a checkpoint whose upload never finished?)")
    return parse_meta(storage.read_bytes(uri), uri)


def _torch_problem(exc: Exception) -> str:
    """What is wrong with a model.pt, without torch's advice to load it unsafely."""
    if isinstance(exc, EOFError):
        return "empty or cut short"
    if isinstance(exc, OSError):
        return f"damaged or unreadable ({exc.strerror or type(exc).__name__})"
    if isinstance(exc, pickle.UnpicklingError):
        return "holds something other than tensors, or is damaged (read as weights only)"
    first = str(exc).split(". ")[0].strip()
    if not first or "weights_only" in first:
        return f"not readable by torch ({type(exc).__name__})"
    return f"damaged ({first.removeprefix('PytorchStreamReader ')})"


def read_model_file(path: str, source: str | None = None) -> dict:
    """The torch payload of a local model.pt, as weights only; ``source`` names it in errors."""
    source = source or path
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        raise CheckpointError(f"{source}: {_torch_problem(exc)}") from None
    if not isinstance(payload, dict) or not {"state_dict", "optimizer"} <= set(payload):
        raise CheckpointError(f"{source}: not a specray checkpoint (no state_dict and optimizer)")
    return payload


def read_checkpoint(folder: str, source: str | None = None) -> tuple[dict, CheckpointMeta]:
    """(torch payload, meta) from a local checkpoint folder; ``source`` names it in errors."""
    source = source or folder
    files = {name: os.path.join(folder, name) for name in (META_FILE, MODEL_FILE)}
    for name, path in files.items():
        if not os.path.exists(path):
            raise CheckpointError(f"{source}/{name}: missing")
    with open(files[META_FILE], "rb") as handle:
        meta = parse_meta(handle.read(), f"{source}/{META_FILE}")
    return read_model_file(files[MODEL_FILE], f"{source}/{MODEL_FILE}"), meta


def load_checkpoint(checkpoint_uri: str) -> tuple[dict, CheckpointMeta]:
    """(torch payload, meta) of a checkpoint folder anywhere (local path, file://, s3://)."""
    if not storage.is_remote(checkpoint_uri):
        return read_checkpoint(storage.filesystem(checkpoint_uri)[1], checkpoint_uri)
    fs, path = storage.filesystem(checkpoint_uri)
    with tempfile.TemporaryDirectory() as local:
        for name in (MODEL_FILE, META_FILE):
            if fs.exists(f"{path}/{name}"):
                fs.get(f"{path}/{name}", os.path.join(local, name))
        return read_checkpoint(local, checkpoint_uri)


def checkpoint_folders(run_uri: str) -> list[str]:
    """URIs of the ``checkpoint_*`` folders of a run (CheckpointError if RUN does not exist)."""
    fs, path = storage.filesystem(run_uri)
    if not fs.exists(path):
        raise CheckpointError(f"{run_uri}: no such run (train one with `specray train`)")
    folders = []
    for entry in fs.ls(path, detail=False):
        name = os.path.basename(entry.rstrip("/"))
        if name.startswith(CHECKPOINT_PREFIX) and fs.isdir(entry):
            folders.append(storage.join(run_uri, name))
    return folders


def move_aside(uri: str, prefix: str = CORRUPT_PREFIX) -> str:
    """Move a file or folder of a run to ``RUN/<prefix><name>`` (never deleted); its new URI.

    An earlier one of that name is kept: the new one gets a ``-2``, ``-3``... suffix.
    """
    run_uri, name = os.path.split(uri.rstrip("/"))
    fs, _ = storage.filesystem(run_uri)
    target, suffix = storage.join(run_uri, f"{prefix}{name}"), 1
    while fs.exists(storage.filesystem(target)[1]):
        suffix += 1
        target = storage.join(run_uri, f"{prefix}{name}-{suffix}")
    fs.mv(storage.filesystem(uri)[1], storage.filesystem(target)[1], recursive=True)
    return target


def _set_aside(
    checkpoint_uri: str, problem: CheckpointError, move: bool, problems: list[str]
) -> None:
    problems.append(str(problem))
    if move:
        target = move_aside(checkpoint_uri)
        log.warning("%s; moved the checkpoint aside to %s", problem, target)
    else:
        log.warning("%s; skipping this checkpoint", problem)


def intact_checkpoints(
    run_uri: str, move_damaged: bool = False, problems: list[str] | None = None
) -> Iterator[tuple[str, dict, CheckpointMeta]]:
    """(URI, torch payload, meta) of each intact checkpoint of a run, most steps first.

    A checkpoint whose meta.json or model.pt is missing or damaged is skipped with a
    WARNING naming the file and the problem; with ``move_damaged`` it is also moved to
    ``RUN/corrupt-<name>`` so that nothing (Ray Train included) reads it again. The
    generator is lazy: model.pt files older than the first intact one are not read. Each
    problem met is also appended to ``problems``.
    """
    problems = [] if problems is None else problems
    run_uri = storage.normalize(run_uri)
    ranked = []
    for folder in checkpoint_folders(run_uri):
        try:
            ranked.append((read_meta(folder).step, folder))
        except CheckpointError as problem:
            _set_aside(folder, problem, move_damaged, problems)
    for _, folder in sorted(ranked, reverse=True):
        try:
            payload, meta = load_checkpoint(folder)
        except CheckpointError as problem:
            _set_aside(folder, problem, move_damaged, problems)
            continue
        yield folder, payload, meta


def newest_intact_checkpoint(
    run_uri: str, move_damaged: bool = False
) -> tuple[str, CheckpointMeta] | None:
    """(URI, meta) of the intact checkpoint with the most steps, or None when there is none."""
    for folder, _, meta in intact_checkpoints(run_uri, move_damaged):
        return folder, meta
    return None


def _no_intact_checkpoint(run_uri: str, problems: list[str]) -> CheckpointError:
    if not problems:
        return CheckpointError(f"{run_uri}: holds no checkpoint yet")
    return CheckpointError(f"no intact checkpoint in {run_uri}: {problems[0]}")


def latest_checkpoint(run_uri: str) -> str:
    """URI of the intact checkpoint in ``run_uri`` with the most optimiser steps."""
    problems: list[str] = []
    for folder, _, _ in intact_checkpoints(run_uri, problems=problems):
        return folder
    raise _no_intact_checkpoint(run_uri, problems)


def _load_newest(run_or_checkpoint: str) -> tuple[str, dict, CheckpointMeta]:
    """(URI, payload, meta): one checkpoint folder as given, or a run's newest intact one."""
    if storage.exists(storage.join(run_or_checkpoint, META_FILE)):
        return (run_or_checkpoint, *load_checkpoint(run_or_checkpoint))
    problems: list[str] = []
    for found in intact_checkpoints(run_or_checkpoint, problems=problems):
        return found
    raise _no_intact_checkpoint(run_or_checkpoint, problems)


class LoadedModel(NamedTuple):
    """A trained network in eval mode, its checkpoint's record and that checkpoint's URI."""

    model: SpectrumVAE
    meta: CheckpointMeta
    checkpoint: str


def load_trained_model(run_or_checkpoint: str) -> LoadedModel:
    """The model of one checkpoint folder, or of a run's newest intact checkpoint, in eval mode."""
    uri, payload, meta = _load_newest(run_or_checkpoint)
    try:
        model = build_model(**meta.architecture)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{uri}: weights do not fit its architecture ({first})") from None
    model.eval()
    return LoadedModel(model, meta, uri)


def checkpoint_grid(meta: CheckpointMeta) -> Grid:
    """The wavelength grid a checkpoint was trained on."""
    return Grid.from_json(json.dumps(meta.grid))
