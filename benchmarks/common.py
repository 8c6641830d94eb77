"""Shared helpers for the benchmarks: arguments, timing, progress lines, fixtures, result line.

Every benchmark measures a specray path and a plain baseline in the same run and prints,
as its LAST stdout line, one JSON object with ``ratio`` (specray path / baseline) and
``baseline`` (what the baseline was), plus the measured numbers with units in the key
names. Timings on a shared machine are noisy; the ratio is the number to compare.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
FIXTURES = (
    DATA / "ADP.2014-09-16T11:04:45.123.fits.gz",
    DATA / "HARPS.2010-09-18T23:42:36.178_s1d_A.fits.gz",
)
HARPS_FLOAT32_BYTES = 327_680 * 4
"""One spectrum on the harps grid as raw float32 (the reference for bytes per spectrum)."""

_STARTED = time.perf_counter()


def parse_args(description: str, configure: Callable | None = None) -> argparse.Namespace:
    """``--quick`` (about a minute), ``--keep`` (keep the temp folder); ``configure(parser)``
    may add benchmark-specific options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    if configure is not None:
        configure(parser)
    return parser.parse_args()


def progress(message: str) -> None:
    """A progress line on stdout, with seconds since the script started."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", flush=True)


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    with Timer() as timer:
        result = fn(*args, **kwargs)
    return timer.seconds, result


@contextmanager
def workdir(keep: bool, prefix: str) -> Iterator[Path]:
    """A temporary folder, removed at the end unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix=f"specray-bench-{prefix}-"))
    try:
        yield folder
    finally:
        if keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def copy_fixtures(folder: Path, copies: int, first: int = 0) -> list[Path]:
    """``copies`` copies of each real HARPS fixture file under distinct names (so distinct
    spectrum ids; numbered from ``first``), in ``folder``; hard links where the
    filesystem allows."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(first, first + copies):
        for fixture in FIXTURES:
            target = folder / f"c{k:04d}-{fixture.name}"
            try:
                os.link(fixture, target)
            except OSError:
                shutil.copyfile(fixture, target)
            paths.append(target)
    return paths


def start_ray(num_cpus: int = 4) -> float:
    """Start a local Ray the way specray does (ensure_ray); returns the seconds it took.

    Ray Data progress bars are switched off so progress lines stay readable.
    """
    import ray

    from specray.runtime import ensure_ray

    seconds, _ = timed(ensure_ray, num_cpus=num_cpus)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    progress(f"Ray started in {seconds:.1f} s (excluded from the timings)")
    return seconds


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")


def _clean(value):
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value):
            return None
        return float(f"{value:.4g}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def finish(result: dict) -> None:
    """Shut Ray down (so no worker log lands after it), then print the JSON result line."""
    if "ratio" not in result or "baseline" not in result:
        raise ValueError("a benchmark result needs 'ratio' and 'baseline'")
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass
    sys.stderr.flush()
    print(json.dumps(_clean(result)), flush=True)


# ------------------------------------------------------------------ a demo-grid store


DEMO_LINES_A = (4861.3, 5167.3, 5172.7, 5183.6, 5889.95, 5895.92, 6562.8)
"""H-beta, Mg b triplet, Na D, H-alpha: the lines the demo grid was chosen to cover."""


def demo_spectra(n: int, grid, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(flux (n, n_native) float32 ~1 with Doppler-shifted absorption lines and 1% noise,
    rv km/s), in the style of tests/helpers.py but on any grid."""
    from specray.spectra.grid import SPEED_OF_LIGHT_KMS

    rng = np.random.default_rng(seed)
    wave = grid.native_wavelength
    rv = rng.uniform(-150, 150, n)
    depth = rng.uniform(0.1, 0.8, n)
    flux = np.ones((n, wave.size))
    for centre in DEMO_LINES_A:
        shifted = centre * (1 + rv / SPEED_OF_LIGHT_KMS)
        flux -= depth[:, None] * np.exp(-0.5 * ((wave[None] - shifted[:, None]) / 0.6) ** 2)
    flux += rng.normal(0, 0.01, flux.shape)
    return flux.astype(np.float32), rv


def write_demo_store(uri: str, n_spectra: int, per_object: int = 3, seed: int = 0, shards: int = 2):
    """A store on the ``demo`` grid (16,384 pixels) of synthetic toy spectra, written the
    way the ingest sink writes shards (zstd, ~32 MiB row groups); returns the store."""
    from specray.data.shards import add_native_spectra
    from specray.data.store import open_or_create_store
    from specray.spectra.grid import named_grid

    grid = named_grid("demo")
    store = open_or_create_store(uri, grid)
    flux, rv = demo_spectra(n_spectra, grid, seed)
    objects = np.array([f"TOY-{i // per_object:05d}" for i in range(n_spectra)])
    ids = [f"{obj}-e{i % per_object}" for i, obj in enumerate(objects)]
    add_native_spectra(store, ids, objects, flux, {"rv": rv}, "bench", shards)
    return store


def plain_shards(store, columns: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """The store's committed shards read one at a time in this process with pyarrow alone
    (no Ray): ``pq.read_table`` per shard, tensor columns to (n, L) ndarrays, others to
    numpy; one dict of arrays per shard."""
    import pyarrow.parquet as pq

    from specray import schema, storage

    for uri in store.shard_uris():
        fs, path = storage.arrow_filesystem(uri)
        table = pq.read_table(path, columns=columns, filesystem=fs)
        arrays = {}
        for name in columns:
            column = table[name]
            if name == "flux":
                arrays[name] = schema.decode_flux(column)
            elif name == "mask":
                arrays[name] = schema.decode_mask(column, store.grid.length)
            else:
                arrays[name] = column.to_numpy(zero_copy_only=False)
        yield arrays


def plain_read(store, columns: list[str]) -> dict[str, np.ndarray]:
    """The whole store as :func:`plain_shards` reads it, concatenated."""
    shards = list(plain_shards(store, columns))
    return {name: np.concatenate([shard[name] for shard in shards]) for name in columns}


class PeakMemory:
    """``with PeakMemory() as peak: ...``; then ``peak.megabytes``: the highest system
    memory in use during the block above its level at the start, MB (10^6 bytes).

    "In use" is MemTotal - MemAvailable from /proc/meminfo (Linux): every process's
    private memory and shared memory, which is where Ray's object store lives, but not
    the page cache. Sampled every ``interval`` seconds in a thread; on a quiet machine
    it is the memory the block needs.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.megabytes = float("nan")

    @staticmethod
    def in_use_bytes() -> int:
        fields = {}
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
        return fields["MemTotal"] - fields["MemAvailable"]

    def __enter__(self) -> PeakMemory:
        import threading

        self._start = self._peak = self.in_use_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self.in_use_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.in_use_bytes())
        self.megabytes = (self._peak - self._start) / 1e6


# ------------------------------------------------------------------ one training step


def autocast(device, bf16: bool):
    """bf16 autocast on CUDA when asked (as specray.train.loop does); nothing elsewhere."""
    from contextlib import nullcontext

    import torch

    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_step(model, optimizer, flux, mask, weight, config, step: int, device) -> float:
    """One optimiser step exactly as specray.train.loop takes it: forward (under autocast),
    masked-L1 + warmed-up KL loss in float32, backward, Adam. Returns the loss (a sync)."""
    from specray.model import kl_weight, vae_loss

    w = kl_weight(step, config.loss.warmup_start, config.loss.warmup_end, config.loss.beta)
    with autocast(device, config.train.bf16):
        recon, mu, logvar = model(flux)
    terms = vae_loss(
        recon.float(), flux, mask, mu.float(), logvar.float(), w, config.loss.normalisation, weight
    )
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    optimizer.step()
    return terms.total.item()
