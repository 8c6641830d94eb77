"""Spectra per second delivered as torch batches by the Ray Data reader of a store, against
a plain single-process pyarrow read of the same shards.

Ray path: ``specray.data.reader.read_store(store, ["flux", "mask"], packed_mask=True)
.iter_torch_batches(batch_size=32)``, the mask unpacked per batch as training does.
Baseline, same run, same shards: ``pq.read_table`` one shard at a time +
``specray.schema.decode_flux``/``decode_mask``, then ``torch.from_numpy`` on 32-row
slices. Stores: one built by ingesting copies of the two real HARPS files at the
``harps`` grid (327,680 pixels), and (``--quick`` and the default run) a synthetic store
on the ``demo`` grid (16,384 pixels).

A Ray pass reports two rates: over the whole pass, and in steady state (the spectra after
the first batch over the time after it), with the time to the first batch separately
(scheduling its read tasks; with ``ray.data.read_parquet`` it also listed the files and
started a footer-reading actor, ~10 s, before ``ShardSource`` replaced it). The
plain read has no such start: its rate is over the whole pass. The steady-state ratio
(Ray steady / plain) is the one that tells whether Ray Data keeps up once it runs; it is
meaningful only on a store of many blocks (``--large``): on a small store the first
batch arrives when nearly everything has been read. The first Ray
pass is a warm-up, and so is the first plain pass (this sandbox pays dearly for fresh
memory: a cold plain pass over 100 harps spectra spent 0.9-1.2 s reading and decoding, a
warm one 0.1 s, so a plain read without a warm-up made Ray look 2-4x better than it is);
then Ray and plain passes alternate and the fastest pass of each is
compared (load from other processes only ever slows a pass down; medians are reported
too). Peak memory (:class:`common.PeakMemory`: system memory in use above the level
before the pass, Ray's shared-memory object store included) is reported per pass.

``--large`` measures the harps store at two sizes, about 0.5 GB and then, after ingesting
as many files again, about 1.1 GB (steady state needs a store of a GB or more, issue 12),
so that whether streaming's peak memory grows with the store size shows. Its headline
ratio is the steady-state ratio on the larger store.

    .venv/bin/python benchmarks/stream.py --quick     # 100 harps spectra, 512 demo
    .venv/bin/python benchmarks/stream.py             # 500 harps spectra, 2048 demo
    .venv/bin/python benchmarks/stream.py --large     # 1,100 then 2,200 harps spectra
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    PeakMemory,
    copy_fixtures,
    finish,
    parse_args,
    plain_shards,
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
LARGE_COPIES = 550
"""Copies of each of the two HARPS fixtures per step of ``--large`` (2 x 550 spectra,
~0.54 GB of store at ~489 kB per spectrum)."""


@dataclass
class Pass:
    """One pass over a store: spectra delivered, seconds in all, seconds and spectra up to
    and including the first batch, peak memory above the start, MB."""

    spectra: int
    seconds: float
    first_batch_seconds: float
    first_batch_spectra: int
    peak_megabytes: float

    @property
    def rate(self) -> float:
        return self.spectra / self.seconds

    @property
    def steady_rate(self) -> float:
        """Spectra per second after the first batch."""
        after = self.seconds - self.first_batch_seconds
        return (self.spectra - self.first_batch_spectra) / after if after > 0 else float("nan")


def measured(batches) -> Pass:
    """Drain an iterator of torch batches (dicts with ``flux``), timing it."""
    with PeakMemory() as peak:
        started = time.perf_counter()
        n, first_seconds, first_n = 0, float("nan"), 0
        for batch in batches:
            n += batch["flux"].shape[0]
            if first_n == 0:
                first_seconds, first_n = time.perf_counter() - started, n
        seconds = time.perf_counter() - started
    return Pass(n, seconds, first_seconds, first_n, peak.megabytes)


def ray_batches(store, shuffle_buffer: int | None = None):
    """The store through Ray Data as torch batches, as training reads it: the mask travels
    bit-packed and each batch unpacks it (:func:`specray.train.loop.unpack_mask`), so
    both paths deliver the same float16 flux and uint8 mask; ``shuffle_buffer``: a local
    shuffle buffer of that many rows, as training uses."""
    from specray.data.reader import read_store
    from specray.train.loop import unpack_mask

    batches = read_store(store, COLUMNS, packed_mask=True).iter_torch_batches(
        batch_size=BATCH, local_shuffle_buffer_size=shuffle_buffer
    )
    for batch in batches:
        yield {"flux": batch["flux"], "mask": unpack_mask(batch["mask"], store.grid.length)}


def plain_batches(store):
    """Each shard read with pyarrow in this process and cut into torch batches."""
    import torch

    for shard in plain_shards(store, COLUMNS):
        for start in range(0, len(shard["flux"]), BATCH):
            yield {
                "flux": torch.from_numpy(shard["flux"][start : start + BATCH]),
                "mask": torch.from_numpy(shard["mask"][start : start + BATCH]),
            }


def compare(name: str, store, passes: int, shuffle_pass: bool) -> dict:
    """Both paths on one store: fastest of ``passes`` each, steady state and whole pass."""
    warm_up = measured(ray_batches(store))
    n = warm_up.spectra
    plain_warm_up = measured(plain_batches(store))
    progress(
        f"{name}: warm-up passes: Ray {warm_up.rate:.0f} spectra/s, plain "
        f"{plain_warm_up.rate:.0f} ({n} spectra)"
    )
    ray_passes, plain_passes = [], []
    for k in range(passes):
        plain_passes.append(measured(plain_batches(store)))
        ray_passes.append(measured(ray_batches(store)))
        if (plain_passes[-1].spectra, ray_passes[-1].spectra) != (n, n):
            raise RuntimeError(f"{name}: a pass delivered a different number of spectra")
        ray, plain = ray_passes[-1], plain_passes[-1]
        progress(
            f"{name}: pass {k + 1}: Ray Data {ray.steady_rate:.0f} spectra/s steady "
            f"({ray.rate:.0f} over the pass; first batch after {ray.first_batch_seconds:.1f} "
            f"of {ray.seconds:.1f} s; peak +{ray.peak_megabytes:.0f} MB), plain pyarrow "
            f"{plain.rate:.0f} (peak +{plain.peak_megabytes:.0f} MB)"
        )
    shuffled = float("nan")
    if shuffle_pass:
        shuffled = measured(ray_batches(store, SHUFFLE_BUFFER)).rate
        progress(
            f"{name}: Ray Data with local_shuffle_buffer_size={SHUFFLE_BUFFER} (as in "
            f"training): {shuffled:.0f} spectra/s (one pass)"
        )
    return summarise(store, ray_passes, plain_passes, warm_up, shuffled)


def summarise(store, ray_passes: list[Pass], plain_passes: list[Pass], warm_up: Pass, shuffled):
    def fastest(passes, rate):
        return max(getattr(p, rate) for p in passes)

    def median(passes, rate):
        return statistics.median(getattr(p, rate) for p in passes)

    steady = fastest(ray_passes, "steady_rate"), fastest(plain_passes, "rate")
    whole = fastest(ray_passes, "rate"), fastest(plain_passes, "rate")
    return {
        "spectra": warm_up.spectra,
        "pixels": store.grid.length,
        "store_megabytes": store_megabytes(store),
        "ray_steady_spectra_per_second": steady[0],
        "steady_ratio": ratio(*steady),
        "ray_spectra_per_second": whole[0],
        "plain_spectra_per_second": whole[1],
        "ratio": ratio(*whole),
        "ray_median_steady_spectra_per_second": median(ray_passes, "steady_rate"),
        "plain_median_spectra_per_second": median(plain_passes, "rate"),
        "ray_seconds_to_first_batch": statistics.median(p.first_batch_seconds for p in ray_passes),
        "ray_first_pass_spectra_per_second": warm_up.rate,
        "ray_peak_megabytes": max(p.peak_megabytes for p in ray_passes),
        "plain_peak_megabytes": max(p.peak_megabytes for p in plain_passes),
        "ray_flux_megabytes_per_second_float16": steady[0] * store.grid.length * 2 / 1e6,
        "ray_shuffle_buffer_spectra_per_second": shuffled,
    }


def store_megabytes(store) -> float:
    from specray.data.reader import store_bytes

    return store_bytes(store) / 1e6


def ingest_copies(tmp, first: int, copies: int):
    """Ingest ``copies`` more copies of each fixture (numbered from ``first``) into the
    harps store under ``tmp``; returns the opened store."""
    from specray.data.ingest import ingest
    from specray.data.store import open_store

    folder = tmp / f"in-{first}"
    copy_fixtures(folder, copies, first=first)
    seconds, report = timed(ingest, str(folder), str(tmp / "harps-store"), "harps")
    progress(f"ingested into the harps store in {seconds:.1f} s: {report.summary()}")
    return open_store(str(tmp / "harps-store"))


def large(tmp) -> dict:
    """The harps store at two sizes (issue 12: steady state on >= 1 GB, memory flat)."""
    sizes = {}
    for step in range(2):
        store = ingest_copies(tmp, step * LARGE_COPIES, LARGE_COPIES)
        label = f"harps {store_megabytes(store):.0f} MB"
        sizes[label] = compare(label, store, passes=2, shuffle_pass=False)
    small, big = sizes.values()
    return {
        "benchmark": "stream",
        "ratio": big["steady_ratio"],
        "baseline": "single-process pq.read_table one shard at a time + decode_flux/"
        "decode_mask + torch.from_numpy per 32 rows, same shards, same run, whole passes; "
        "Ray Data in steady state (after its first batch) on the larger store",
        "batch_size": BATCH,
        "sizes": sizes,
        "ray_peak_megabytes_larger_over_smaller": ratio(
            big["ray_peak_megabytes"], small["ray_peak_megabytes"]
        ),
        "store_megabytes_larger_over_smaller": ratio(
            big["store_megabytes"], small["store_megabytes"]
        ),
    }


def quick_or_full(tmp, quick: bool) -> dict:
    copies, demo_n, passes = (50, 512, 2) if quick else (250, 2048, 3)
    harps = compare("harps", ingest_copies(tmp, 0, copies), passes, not quick)
    seconds, demo_store = timed(write_demo_store, str(tmp / "demo-store"), demo_n)
    progress(f"built the demo store ({demo_n} synthetic spectra) in {seconds:.1f} s")
    demo = compare("demo", demo_store, passes, not quick)
    return {
        "benchmark": "stream",
        "ratio": harps["ratio"],
        "baseline": "single-process pq.read_table one shard at a time + decode_flux/"
        "decode_mask + torch.from_numpy per 32 rows, same shards, same run; whole passes",
        "batch_size": BATCH,
        "columns": COLUMNS,
        "steady_ratio": harps["steady_ratio"],
        "harps": harps,
        "demo": demo,
        "demo_ratio": demo["ratio"],
    }


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument(
            "--large", action="store_true", help="the harps store at ~0.5 and ~1.1 GB"
        ),
    )
    with workdir(args.keep, "stream") as tmp:
        start_ray()
        result = large(tmp) if args.large else quick_or_full(tmp, args.quick)
    finish(result)


if __name__ == "__main__":
    main()
