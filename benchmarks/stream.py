"""Spectra per second delivered as torch batches by the Ray Data reader of a store, against
a plain single-process pyarrow read of the same shards.

Ray path: ``specray.data.reader.read_store(store, ["flux", "mask"])
.iter_torch_batches(batch_size=32)``. Baseline, same run, same shards: ``pq.read_table``
per shard + ``specray.schema.decode_flux``/``decode_mask``, then ``torch.from_numpy`` on
32-row slices. Stores: one built by ingesting copies of the two real HARPS files at the
``harps`` grid (327,680 pixels), and a synthetic store on the ``demo`` grid (16,384
pixels). The first Ray pass (read tasks starting) is reported separately; then Ray and
plain passes alternate and the fastest pass of each is compared (load from other
processes only ever slows a pass down; the median is reported too). Without ``--quick``, one more
Ray pass with the training loop's local shuffle buffer (256 rows) is reported as an extra.

    .venv/bin/python benchmarks/stream.py --quick     # 100 harps spectra, 512 demo
    .venv/bin/python benchmarks/stream.py             # 500 harps spectra, 2048 demo
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    copy_fixtures,
    finish,
    parse_args,
    plain_read,
    progress,
    ratio,
    start_ray,
    timed,
    workdir,
    write_demo_store,
)

BATCH = 32
COLUMNS = ["flux", "mask"]
SHUFFLE_BUFFER = 256  # specray.config.TrainConfig.shuffle_buffer


def ray_pass(store, shuffle_buffer: int | None = None) -> tuple[int, str, float]:
    """Stream the store once through Ray Data as torch batches; (spectra, batch dtypes,
    seconds to the first batch). ``shuffle_buffer``: a local shuffle buffer of that many
    rows, as training uses."""
    from specray.data.reader import read_store

    started = time.perf_counter()
    n, kinds, first = 0, "", float("nan")
    batches = read_store(store, COLUMNS).iter_torch_batches(
        batch_size=BATCH, local_shuffle_buffer_size=shuffle_buffer
    )
    for batch in batches:
        if n == 0:
            first = time.perf_counter() - started
        n += batch["flux"].shape[0]
        kinds = f"flux {batch['flux'].dtype} {tuple(batch['flux'].shape[1:])}, mask {batch['mask'].dtype}"
    return n, kinds, first


def plain_pass(store) -> tuple[int, str, float]:
    """Read every shard with pyarrow in this process and cut it into torch batches."""
    import torch

    data = plain_read(store, COLUMNS)
    n = 0
    for start in range(0, len(data["flux"]), BATCH):
        flux = torch.from_numpy(data["flux"][start : start + BATCH])
        torch.from_numpy(data["mask"][start : start + BATCH])
        n += flux.shape[0]
    return n, f"flux {flux.dtype}", float("nan")


def compare(name: str, store, passes: int, shuffle_pass: bool) -> dict:
    """Spectra per second of both paths on one store (fastest of ``passes`` each)."""
    first_seconds, (n, kinds, _) = timed(ray_pass, store)
    progress(f"{name}: first Ray pass {n / first_seconds:.0f} spectra/s ({n} spectra; {kinds})")
    ray_rates, plain_rates, to_first = [], [], []
    for k in range(passes):
        seconds, (m, _, _) = timed(plain_pass, store)
        plain_rates.append(m / seconds)
        seconds, (r, _, first) = timed(ray_pass, store)
        ray_rates.append(r / seconds)
        to_first.append(first)
        if (m, r) != (n, n):
            raise RuntimeError(f"{name}: passes delivered {m} and {r} spectra, expected {n}")
        progress(
            f"{name}: pass {k + 1}: Ray Data {ray_rates[-1]:.0f} spectra/s "
            f"({first:.1f} s of {seconds:.1f} s before the first batch), "
            f"plain pyarrow {plain_rates[-1]:.0f} spectra/s"
        )
    ray_rate, plain_rate = max(ray_rates), max(plain_rates)
    pixels = store.grid.length
    shuffled = float("nan")
    if shuffle_pass:
        seconds, *_ = timed(ray_pass, store, SHUFFLE_BUFFER)
        shuffled = n / seconds
        progress(
            f"{name}: Ray Data with local_shuffle_buffer_size={SHUFFLE_BUFFER} (as in "
            f"training): {shuffled:.0f} spectra/s (one pass)"
        )
    return {
        "ray_shuffle_buffer_spectra_per_second": shuffled,
        "spectra": n,
        "pixels": pixels,
        "ray_spectra_per_second": ray_rate,
        "plain_spectra_per_second": plain_rate,
        "ray_median_spectra_per_second": statistics.median(ray_rates),
        "plain_median_spectra_per_second": statistics.median(plain_rates),
        "ray_first_pass_spectra_per_second": n / first_seconds,
        "ray_seconds_to_first_batch": statistics.median(to_first),
        "ray_flux_megabytes_per_second_float16": ray_rate * pixels * 2 / 1e6,
        "ratio": ratio(ray_rate, plain_rate),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    copies, demo_n, passes = (50, 512, 2) if args.quick else (250, 2048, 3)
    shuffle_pass = not args.quick
    from specray.data.ingest import ingest
    from specray.data.store import open_store

    with workdir(args.keep, "stream") as tmp:
        copy_fixtures(tmp / "in", copies)
        start_ray()
        seconds, report = timed(ingest, str(tmp / "in"), str(tmp / "harps-store"), "harps")
        progress(f"built the harps store in {seconds:.1f} s: {report.summary()}")
        harps = compare("harps", open_store(str(tmp / "harps-store")), passes, shuffle_pass)

        seconds, demo_store = timed(write_demo_store, str(tmp / "demo-store"), demo_n)
        progress(f"built the demo store ({demo_n} synthetic spectra) in {seconds:.1f} s")
        demo = compare("demo", demo_store, passes, shuffle_pass)

    finish(
        {
            "benchmark": "stream",
            "ratio": harps["ratio"],
            "baseline": "single-process pq.read_table per shard + decode_flux/decode_mask + "
            "torch.from_numpy per 32 rows, same shards, same run",
            "batch_size": BATCH,
            "columns": COLUMNS,
            "spectra_per_second": harps["ray_spectra_per_second"],
            "baseline_spectra_per_second": harps["plain_spectra_per_second"],
            "harps": harps,
            "demo": demo,
            "demo_ratio": demo["ratio"],
        }
    )


if __name__ == "__main__":
    main()
