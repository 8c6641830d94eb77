"""Training on Ray Train (V2): a TorchTrainer over the store's training and validation splits.

``train(store, run, config)`` writes checkpoints (``RUN/checkpoint_*``) and
``RUN/metrics.jsonl``. Re-running with the same RUN resumes from the latest checkpoint
(Ray Train restores its checkpoint manager from RUN) and says so; a worker that crashes is
restarted from the last checkpoint up to ``train.max_failures`` times.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass

from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from specray import storage
from specray.config import Config
from specray.data.reader import data_fingerprint, training_datasets
from specray.runtime import ensure_ray
from specray.spectra.grid import Grid
from specray.train.checkpoint import CheckpointError, latest_checkpoint
from specray.train.loop import METRICS_FILE, train_loop_per_worker

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    run: str
    checkpoint: str
    history: list[dict]

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def summary(self) -> str:
        final = self.final
        return (
            f"trained {final.get('epoch', 0)} epochs ({final.get('step', 0)} steps): "
            f"val_loss {final.get('val_loss', float('nan')):.5f}, "
            f"active_nodes {final.get('active_nodes', 0)}; checkpoint {self.checkpoint}"
        )


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
        callbacks=callbacks,
        **options,
    )


def _check_resume(run_uri: str, grid: Grid, config: Config) -> None:
    """Say whether this run resumes; refuse a checkpoint made for another grid."""
    try:
        checkpoint = latest_checkpoint(run_uri)
    except CheckpointError:
        return
    meta = json.loads(storage.read_text(storage.join(checkpoint, "meta.json")))
    if Grid.from_json(json.dumps(meta["grid"])) != grid:
        raise CheckpointError(
            f"{run_uri}: its checkpoints were trained on grid {meta['grid']['name']} "
            f"({meta['grid']['n_native']} pixels), but the store is on {grid.name}; "
            "use a new RUN"
        )
    log.info(
        "%s: resuming from the latest checkpoint (epoch %d, step %d) towards %d epochs",
        run_uri, meta["epoch"], meta["step"], config.train.epochs,
    )  # fmt: skip


def read_history(run_uri: str) -> list[dict]:
    """The per-epoch metrics of a run (RUN/metrics.jsonl)."""
    return storage.read_jsonl(storage.join(run_uri, METRICS_FILE))


def build_trainer(store_uri: str, run_uri: str, config: Config, callbacks=None) -> TorchTrainer:
    """A TorchTrainer for this store, run folder and configuration (not yet fitted)."""
    train_ds, val_ds, store = training_datasets(
        store_uri,
        config.train.val_fraction,
        config.train.balance_objects,
        config.train.materialize_below_mb,
    )
    _check_resume(run_uri, store.grid, config)
    meta = {
        "config": config.to_dict(),
        "grid": json.loads(store.grid.to_json()),
        "data_fingerprint": data_fingerprint(store),
        "store": store_uri,
        "n_spectra": store.n_spectra(),
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.to_dict(),
            "grid": store.grid.to_json(),
            "run": run_uri,
            "meta": meta,
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


def train(store_uri: str, run_uri: str, config: Config) -> TrainSummary:
    """Train (or resume training) a model on the store; return the outcome."""
    ensure_ray()
    result = build_trainer(store_uri, run_uri, config).fit()
    if result.error:
        raise result.error
    return TrainSummary(run_uri, latest_checkpoint(run_uri), read_history(run_uri))
