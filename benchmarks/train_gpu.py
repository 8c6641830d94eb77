"""GPU training throughput of the ``paper`` preset at full length (327,680 pixels): the model
alone against the full Ray Train path. Needs a CUDA GPU (written for one H100).

Model alone: ``build_model("paper")`` on the GPU, synthetic batches already on the device
(flux ~1, full mask, unit weights), batch 32, bf16 autocast, the loop's exact step
(forward, masked-L1 + KL loss in float32, backward, Adam); warm-up steps excluded; peak
GPU memory from ``torch.cuda.max_memory_allocated``. Ray path, same run:
``specray.train.trainer.train`` with 1 GPU worker (``train.use_gpu=true``, bf16) on a
``harps``-grid store ingested from copies of the two real HARPS files; samples per second
over the steady-state epochs (after the first) from the run's metrics, which include the
validation pass over 10% of the spectra. ratio = Ray path / model alone.

    .venv/bin/python benchmarks/train_gpu.py --quick   # 20 steps; 2 x 160 files, 3 epochs
    .venv/bin/python benchmarks/train_gpu.py           # 100 steps; 2 x 500 files, 3 epochs

Without a GPU it prints why and a JSON line with ``"skipped"`` (exit status 0).
``--smoke-cpu`` runs the same code on CPU with the small ``demo`` preset and a tiny store,
only to check the script itself.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    Timer,
    copy_fixtures,
    finish,
    parse_args,
    progress,
    ratio,
    start_ray,
    timed,
    train_step,
    workdir,
)

BASELINE = "model alone: synthetic batches on the device, same preset/batch/bf16/step, same run"


def options(parser) -> None:
    parser.add_argument(
        "--smoke-cpu",
        action="store_true",
        help="check the script on CPU (demo preset, tiny sizes); not a measurement",
    )
    parser.add_argument(
        "--cpus-per-worker", type=float, default=None, help="train.cpus_per_worker (default 1)"
    )


def model_alone(config, length: int, batch: int, steps: int, warmup: int, device) -> dict:
    """Samples per second and peak memory of training steps on synthetic device tensors."""
    import torch

    from specray.model import build_model

    torch.manual_seed(config.train.seed)
    model = build_model(config.model.preset, input_length=length).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    flux = 1.0 + 0.05 * torch.randn(batch, 1, length, device=device)
    mask = torch.ones(batch, 1, length, dtype=torch.uint8, device=device)
    weight = torch.ones(batch, device=device)
    cuda = device.type == "cuda"
    for k in range(warmup):
        train_step(model, optimizer, flux, mask, weight, config, k, device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with Timer() as run:
        for k in range(steps):
            train_step(model, optimizer, flux, mask, weight, config, warmup + k, device)
        if cuda:
            torch.cuda.synchronize()
    result = {
        "samples_per_second": steps * batch / run.seconds,
        "seconds_per_step": run.seconds / steps,
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    del model, optimizer, flux, mask, weight
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], options)
    import torch

    smoke = args.smoke_cpu
    if not smoke and not torch.cuda.is_available():
        message = (
            "train_gpu.py needs a CUDA GPU (written for one H100) and torch.cuda.is_available() "
            f"is False here (torch {torch.__version__}); nothing was measured. "
            "Run it on a GPU machine, or use --smoke-cpu to check the script on CPU."
        )
        print(message, file=sys.stderr, flush=True)
        finish({"benchmark": "train_gpu", "skipped": message, "ratio": None, "baseline": BASELINE})
        return

    from specray.config import load_config
    from specray.data.ingest import ingest
    from specray.spectra.grid import named_grid
    from specray.train.trainer import train

    if smoke:
        preset, batch, steps, warmup, copies, epochs = "demo", 4, 3, 1, 8, 2
    elif args.quick:
        preset, batch, steps, warmup, copies, epochs = "paper", 32, 20, 5, 160, 3
    else:
        preset, batch, steps, warmup, copies, epochs = "paper", 32, 100, 10, 500, 3
    overrides = [
        f"model.preset={preset}",
        f"train.batch_size={batch}",
        f"train.epochs={epochs}",
        f"train.use_gpu={'false' if smoke else 'true'}",
        "train.bf16=true",
        "train.log_every=100000",
    ]
    if args.cpus_per_worker:
        overrides.append(f"train.cpus_per_worker={args.cpus_per_worker}")
    config = load_config(overrides=overrides)
    length = named_grid("harps").length
    device = torch.device("cpu" if smoke else "cuda")
    name = "CPU (smoke test)" if smoke else torch.cuda.get_device_name(0)
    progress(f"device {name}; preset {preset}, {length} pixels, batch {batch}, bf16")

    alone = model_alone(config, length, batch, steps, warmup, device)
    peak = alone["peak_gpu_memory_bytes"]
    progress(
        f"model alone: {alone['samples_per_second']:.1f} samples/s "
        f"({alone['seconds_per_step'] * 1e3:.0f} ms/step, {alone['parameters']:,} parameters"
        + (f", peak {peak / 2**30:.2f} GiB)" if peak else ")")
    )

    with workdir(args.keep, "train-gpu") as tmp:
        copy_fixtures(tmp / "in", copies)
        start_ray()
        seconds, report = timed(ingest, str(tmp / "in"), str(tmp / "store"), "harps")
        progress(f"harps store in {seconds:.1f} s: {report.summary()}")
        fit_seconds, summary = timed(train, str(tmp / "store"), str(tmp / "run"), config)
        history = summary.history
        steps_per_epoch = history[0].step
        epoch_seconds = [entry.seconds for entry in history]
        steady = epoch_seconds[1:] or epoch_seconds
        ray_rate = steps_per_epoch * batch * len(steady) / sum(steady)
        end_to_end = steps_per_epoch * batch * len(history) / fit_seconds
        progress(
            f"Ray path: {ray_rate:.1f} samples/s steady ({steps_per_epoch} steps/epoch, "
            f"epochs {epoch_seconds} s), {end_to_end:.1f} end to end ({fit_seconds:.1f} s fit)"
        )

    finish(
        {
            "benchmark": "train_gpu",
            "ratio": ratio(ray_rate, alone["samples_per_second"]),
            "baseline": BASELINE,
            "device": name,
            "smoke_test_not_a_measurement": smoke,
            "preset": preset,
            "pixels": length,
            "batch_size": batch,
            "bf16": True,
            "model_alone_samples_per_second": alone["samples_per_second"],
            "model_alone_seconds_per_step": alone["seconds_per_step"],
            "model_parameters": alone["parameters"],
            "peak_gpu_memory_bytes": peak,
            "peak_gpu_memory_gib": peak / 2**30 if peak else None,
            "ray_samples_per_second": ray_rate,
            "ray_samples_per_second_end_to_end": end_to_end,
            "ray_fit_seconds": fit_seconds,
            "ray_epoch_seconds": epoch_seconds,
            "ray_steps_per_epoch": steps_per_epoch,
            "spectra": report.ingested,
        }
    )


if __name__ == "__main__":
    main()
