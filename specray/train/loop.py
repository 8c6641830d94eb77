"""The per-worker training loop that Ray Train runs (one copy per worker, DDP between them).

Each epoch: stream this worker's share of the training spectra as torch batches, take
Adam steps on the masked-L1 + warmed-up KL loss, then evaluate the whole validation set
(every worker sees all of it, so the numbers agree), count the active latent nodes, and
report. Rank 0 attaches a checkpoint every ``checkpoint_every`` epochs and at the end, and
rewrites ``RUN/metrics.jsonl`` from the history, so a resumed run never repeats an epoch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import ray.train
import ray.train.torch
import torch

from specray import storage
from specray.config import Config
from specray.errors import SpecrayError
from specray.model import build_model, kl_weight, vae_loss
from specray.model.checkpoint import (
    TrainingState,
    load_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from specray.model.posterior import informative_nodes
from specray.model.records import CheckpointMeta, EpochMetrics
from specray.progress import report
from specray.records import write_lines
from specray.spectra.grid import Grid

log = logging.getLogger("specray.train")

METRICS_FILE = "metrics.jsonl"
CRASH_MARKER = ".crash-injected"


class TrainingSetupError(SpecrayError, ValueError):
    """Data or configuration that cannot train (retrying cannot help): says what to change."""


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _restore(model, optimizer, rank: int, resume_from: str | None) -> TrainingState:
    """Resume from Ray's latest checkpoint of this run, else from ``resume_from``.

    Ray hands over the checkpoint of its snapshot, or one reported since this fit began
    (after a worker crash); ``resume_from`` is the newest intact checkpoint the driver
    chose before the fit, for when Ray has none (its snapshot was set aside).
    """
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            payload, meta = read_checkpoint(folder, checkpoint.path)
    elif resume_from:
        payload, meta = load_checkpoint(resume_from)
    else:
        return TrainingState()
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["optimizer"])
    if rank == 0:
        log.info("resuming from checkpoint: epoch %d, step %d", meta.epoch, meta.step)
    return TrainingState(meta.epoch, meta.step, list(meta.history))


def _batches(shard, batch_size: int, device, shuffle_buffer: int, seed: int):
    for batch in shard.iter_torch_batches(
        batch_size=batch_size,
        drop_last=True,  # equal step counts on every rank, or DDP deadlocks
        local_shuffle_buffer_size=shuffle_buffer or None,
        local_shuffle_seed=seed,
        device=device,
    ):
        flux = batch["flux"].float().unsqueeze(1)
        yield flux, unpack_mask(batch["mask"], flux.shape[-1]).unsqueeze(1), batch["weight"]


MASK_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
"""The bit of each of a packed byte's 8 pixels, most significant first (np.packbits)."""


def unpack_mask(packed: torch.Tensor, length: int) -> torch.Tensor:
    """A bit-packed mask batch, (n, ceil(L / 8)) uint8 (:func:`specray.schema.packed_mask_rows`),
    as (n, ``length``) uint8 0/1 on the batch's own device: the training datasets carry the
    mask packed and it is unpacked where it is used, on the GPU when there is one."""
    bits = packed.unsqueeze(-1).bitwise_and(MASK_BITS.to(packed.device)).ne(0)
    return bits.flatten(-2)[..., :length].to(torch.uint8)


def _maybe_crash(config: Config, run_uri: str, epoch: int, step_in_epoch: int) -> None:
    """Fault injection for recovery tests: the last worker dies once, mid-epoch."""
    target = config.train.crash_once_at_epoch
    context = ray.train.get_context()
    if target is None or epoch != target or step_in_epoch != 1:
        return
    if context.get_world_rank() != context.get_world_size() - 1:
        return
    marker = storage.join(run_uri, CRASH_MARKER)
    if storage.exists(marker):
        return
    storage.atomic_write_text(marker, f"crashed at epoch {epoch}\n")
    raise RuntimeError(f"injected crash at epoch {epoch} (train.crash_once_at_epoch)")


class _EpochClock:
    """Where an epoch's time went: waiting for batches (the data path) or in steps."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.waiting = 0.0

    def timed(self, batches):
        """``batches``, adding the time each took to arrive to ``waiting``."""
        iterator = iter(batches)
        while True:
            asked = time.monotonic()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.waiting += time.monotonic() - asked
            yield item

    def summary(self, samples: int) -> dict:
        """data_wait_s, step_s (seconds) and samples_per_s (this worker's training rate)."""
        total = time.monotonic() - self.started
        return {
            "data_wait_s": round(self.waiting, 3),
            "step_s": round(total - self.waiting, 3),
            "samples_per_s": round(samples / total, 2) if total > 0 else None,
        }


def _train_epoch(
    model, optimizer, shard, config: Config, state, device, run_uri, tally=None
) -> dict:
    model.train()
    totals = np.zeros(3)
    batches = 0
    seed = config.train.seed + state.epoch
    clock = _EpochClock()
    for flux, mask, weight in clock.timed(
        _batches(shard, config.train.batch_size, device, config.train.shuffle_buffer, seed)
    ):
        _maybe_crash(config, run_uri, state.epoch, batches)
        w = kl_weight(
            state.step, config.loss.warmup_start, config.loss.warmup_end, config.loss.beta
        )
        with _autocast(device, config.train.bf16):
            recon, mu, logvar = model(flux)
        terms = vae_loss(
            recon.float(), flux, mask, mu.float(), logvar.float(), w,
            config.loss.normalisation, weight,
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        state.step += 1
        batches += 1
        totals += [terms.total.item(), terms.recon.item(), terms.kl.item()]
        if batches % config.train.log_every == 0 and ray.train.get_context().get_world_rank() == 0:
            log.info("epoch %d step %d loss %.5f", state.epoch + 1, state.step, totals[0] / batches)
            report(tally, done=state.step, epoch=state.epoch + 1, loss=totals[0] / batches)
    if batches == 0:
        raise TrainingSetupError(
            f"no full training batch on this worker: too few spectra for batch size "
            f"{config.train.batch_size}; use a smaller --set train.batch_size"
        )
    metrics = dict(zip(("train_loss", "recon", "kl"), totals / batches, strict=True))
    return metrics | clock.summary(batches * config.train.batch_size)


@torch.no_grad()
def _validate(model, shard, config: Config, state, device) -> dict:
    model.eval()
    totals, count, mus = np.zeros(3), 0, []
    w = kl_weight(state.step, config.loss.warmup_start, config.loss.warmup_end, config.loss.beta)
    for batch in shard.iter_torch_batches(batch_size=config.train.batch_size, device=device):
        flux = batch["flux"].float().unsqueeze(1)
        mask = unpack_mask(batch["mask"], flux.shape[-1]).unsqueeze(1)
        with _autocast(device, config.train.bf16):
            recon, mu, logvar = model(flux)
        terms = vae_loss(
            recon.float(), flux, mask, mu.float(), logvar.float(), w,
            config.loss.normalisation,
        )  # fmt: skip
        n = flux.shape[0]
        totals += n * np.array([terms.total.item(), terms.recon.item(), terms.kl.item()])
        count += n
        mus.append(mu.float().cpu().numpy())
    if count == 0:
        return {
            "val_loss": float("nan"),
            "val_recon": float("nan"),
            "val_kl": float("nan"),
            "active_nodes": 0,
        }
    active = informative_nodes(np.concatenate(mus), config.analysis.dispersion_threshold)
    val_loss, val_recon, val_kl = totals / count
    return {
        "val_loss": val_loss,
        "val_recon": val_recon,
        "val_kl": val_kl,
        "active_nodes": int(len(active)),
    }


def _report(
    model, optimizer, state, epoch: EpochMetrics, config: Config, meta: CheckpointMeta, last: bool
) -> None:
    rank = ray.train.get_context().get_world_rank()
    due = last or (state.epoch % config.train.checkpoint_every == 0)
    metrics = epoch.as_metrics()
    if rank != 0 or not due:
        ray.train.report(metrics)
        return
    module = model.module if hasattr(model, "module") else model
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(folder, module, optimizer, state, meta)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def epoch_line(metrics: EpochMetrics, epochs: int) -> str:
    """One line per finished epoch: losses, live nodes, time, throughput, data wait."""
    return (
        f"epoch {metrics.epoch}/{epochs} step {metrics.step} train_loss "
        f"{metrics.train_loss:.5f} val_loss {metrics.val_loss:.5f} active_nodes "
        f"{metrics.active_nodes} ({metrics.seconds:.1f} s; "
        f"{metrics.samples_per_s or 0.0:.0f} spectra/s, "
        f"{metrics.data_wait_s:.1f} s waiting for data)"
    )


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point; ``loop_config`` holds the config dict, grid, run URI and the
    run's CheckpointMeta before its first epoch."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = Config.from_dict(loop_config["config"])
    grid = Grid.from_json(loop_config["grid"])
    run_uri = loop_config["run"]
    tally = loop_config.get("progress")
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.manual_seed(config.train.seed)
    model = build_model(config.model.preset, input_length=grid.length, **config.model.overrides())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    state = _restore(model, optimizer, rank, loop_config.get("resume_from"))
    meta = loop_config["meta"]
    if config.train.compile:
        model = torch.compile(model)
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    while state.epoch < config.train.epochs:
        started = time.monotonic()
        metrics = _train_epoch(model, optimizer, train_shard, config, state, device, run_uri, tally)
        metrics.update(_validate(model, val_shard, config, state, device))
        state.epoch += 1
        epoch = EpochMetrics(
            epoch=state.epoch,
            step=state.step,
            **metrics,
            seconds=round(time.monotonic() - started, 2),
        )
        state.history.append(epoch)
        if rank == 0:
            write_lines(storage.join(run_uri, METRICS_FILE), state.history)
            line = epoch_line(epoch, config.train.epochs)
            log.info("%s", line)
            report(tally, done=state.step, message=line)
        _report(model, optimizer, state, epoch, config, meta, state.epoch == config.train.epochs)
