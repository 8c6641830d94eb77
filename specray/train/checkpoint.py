"""Training checkpoints: what they hold, how they are written, and finding the latest.

A checkpoint is a folder with ``model.pt`` (torch: model and optimiser state) and
``meta.json`` (epoch, step, the full configuration, the model architecture, the grid, the
data fingerprint, and the metrics history). Ray Train stores the folders under
``RUN/checkpoint_*``; a re-run with the same RUN resumes from the latest one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

import torch

from specray import storage
from specray.errors import SpecrayError
from specray.model import SpectrumVAE, build_model
from specray.spectra.grid import Grid

MODEL_FILE = "model.pt"
META_FILE = "meta.json"


class CheckpointError(SpecrayError, ValueError):
    """No usable checkpoint: the message names the run and the problem."""


@dataclass
class TrainingState:
    """Where training stands; what a checkpoint restores besides the weights."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)


def write_checkpoint(
    folder: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    meta: dict,
) -> None:
    """Write ``model.pt`` and ``meta.json`` into a local ``folder``."""
    torch.save(
        {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
        os.path.join(folder, MODEL_FILE),
    )
    record = {**meta, "epoch": state.epoch, "step": state.step, "history": state.history}
    with open(os.path.join(folder, META_FILE), "w") as handle:
        json.dump(record, handle)


def read_checkpoint(folder: str) -> tuple[dict, dict]:
    """(torch payload, meta) from a local checkpoint folder."""
    payload = torch.load(os.path.join(folder, MODEL_FILE), map_location="cpu", weights_only=True)
    with open(os.path.join(folder, META_FILE)) as handle:
        return payload, json.load(handle)


def latest_checkpoint(run_uri: str) -> str:
    """URI of the checkpoint folder in ``run_uri`` with the most optimiser steps."""
    fs, path = storage.filesystem(run_uri)
    if not fs.exists(path):
        raise CheckpointError(f"{run_uri}: no such run (train one with `specray train`)")
    best, best_step = None, -1
    for folder in fs.ls(path, detail=False):
        if not os.path.basename(folder.rstrip("/")).startswith("checkpoint_"):
            continue
        meta_path = f"{folder.rstrip('/')}/{META_FILE}"
        if not fs.exists(meta_path):
            continue  # an upload that never finished
        step = json.loads(fs.cat_file(meta_path))["step"]
        if step > best_step:
            best, best_step = storage.to_uri(fs, folder.rstrip("/")), step
    if best is None:
        raise CheckpointError(f"{run_uri}: holds no checkpoint yet")
    return best


def load_trained_model(run_or_checkpoint: str) -> tuple[SpectrumVAE, dict]:
    """The model of the latest checkpoint of a run (or of one checkpoint folder), in eval mode."""
    if not storage.exists(storage.join(run_or_checkpoint, META_FILE)):
        run_or_checkpoint = latest_checkpoint(run_or_checkpoint)
    fs, path = storage.filesystem(run_or_checkpoint)
    with tempfile.TemporaryDirectory() as local:
        for name in (MODEL_FILE, META_FILE):
            fs.get(f"{path}/{name}", os.path.join(local, name))
        payload, meta = read_checkpoint(local)
    model = build_model(**meta["architecture"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta["checkpoint"] = run_or_checkpoint
    return model, meta


def checkpoint_grid(meta: dict) -> Grid:
    return Grid.from_json(json.dumps(meta["grid"]))
