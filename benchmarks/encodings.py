"""Candidate Parquet encodings of the flux and mask columns: bytes per spectrum and decode
speed per core (one thread), chosen by measurement for store format v2.

Spectra: the two real HARPS fixtures prepared on the ``harps`` grid (327,680 pixels), each
repeated with independent multiplicative noise of 1/SNR (SNR drawn from 20-100, as in the
archive) so no two rows are identical (identical copies compress unrealistically well).
Each candidate writes one Parquet file in memory with ``ROWS`` spectra (row groups of
~32 MiB, as the shard writer does) and is read back ``REPEATS`` times with
``pq.read_table(use_threads=False)`` plus the decode to (n, L) float16 flux and (n, L)
uint8 mask numpy arrays, i.e. what training receives; the fastest read counts. The
``memcpy`` row is numpy copying the same float16 + uint8 bytes: the memory-speed limit.

    .venv/bin/python benchmarks/encodings.py --quick    # 60 spectra, 3 reads
    .venv/bin/python benchmarks/encodings.py            # 120 spectra, 5 reads
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import FIXTURES, Timer, finish, parse_args, progress  # noqa: E402

ROW_GROUP_BYTES = 32 * 2**20


def real_spectra(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(flux (n, L) float16, mask (n, L) uint8) on the harps grid from the real fixtures."""
    from specray.spectra.fits import read_spectrum
    from specray.spectra.grid import named_grid, prepare

    grid = named_grid("harps")
    prepared = []
    for path in FIXTURES:
        raw = read_spectrum(str(path))
        prepared.append(prepare(raw.wavelength, raw.flux, grid))
    rng = np.random.default_rng(seed)
    flux = np.empty((n, grid.length), np.float16)
    mask = np.empty((n, grid.length), np.uint8)
    for i in range(n):
        base = prepared[i % len(prepared)]
        noise = rng.normal(0.0, 1.0 / rng.uniform(20, 100), grid.length)
        flux[i] = (base.flux * (1 + noise)).astype(np.float16) * base.mask
        mask[i] = base.mask
    return flux, mask


# ------------------------------------------------------------------ column builders


def tensor(values: np.ndarray) -> pa.Array:
    return pa.FixedShapeTensorArray.from_numpy_ndarray(values)


def binary(values: np.ndarray) -> pa.Array:
    """One binary value of the row's raw bytes per row (int32 offsets)."""
    data = pa.py_buffer(np.ascontiguousarray(values))
    width = values.shape[1] * values.itemsize
    offsets = pa.py_buffer(np.arange(values.shape[0] + 1, dtype=np.int32) * width)
    return pa.Array.from_buffers(pa.binary(), values.shape[0], [None, offsets, data])


def fixed_binary(values: np.ndarray) -> pa.Array:
    """One fixed_size_binary value of the row's raw bytes per row (no offsets)."""
    width = values.shape[1] * values.itemsize
    data = pa.py_buffer(np.ascontiguousarray(values))
    return pa.Array.from_buffers(pa.binary(width), values.shape[0], [None, data])


def packed(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool), axis=1)


# ------------------------------------------------------------------ decoders


def decode_tensor(column: pa.ChunkedArray) -> np.ndarray:
    return column.combine_chunks().to_numpy_ndarray()


def decode_bytes(column: pa.ChunkedArray, dtype, length: int) -> np.ndarray:
    """Rows of equal-width binary / fixed_size_binary values as one (n, length) array:
    a view of the Arrow data buffer when the column is one chunk."""
    parts = []
    for chunk in column.chunks:
        width = length * np.dtype(dtype).itemsize
        start = chunk.offset * width if pa.types.is_fixed_size_binary(chunk.type) else 0
        if pa.types.is_binary(chunk.type):
            start = int(np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset])
        raw = np.frombuffer(chunk.buffers()[-1], np.uint8, len(chunk) * width, start)
        parts.append(raw.view(dtype).reshape(len(chunk), length))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def decode_packed(column: pa.ChunkedArray, length: int) -> np.ndarray:
    return np.unpackbits(decode_bytes(column, np.uint8, (length + 7) // 8), axis=1, count=length)


# ------------------------------------------------------------------ candidates


def candidates(length: int) -> list[dict]:
    """name, how flux/mask are built and decoded, and the writer options."""
    zstd = {"compression": "zstd"}
    off = {"compression": "zstd", "use_dictionary": False}
    return [
        {
            "name": "v1: tensor f16 + tensor u8, zstd, dictionary on (today)",
            "flux": (tensor, decode_tensor),
            "mask": (tensor, decode_tensor),
            "options": zstd,
        },
        {
            "name": "tensor f16 + tensor u8, zstd, dictionary off",
            "flux": (tensor, decode_tensor),
            "mask": (tensor, decode_tensor),
            "options": off,
        },
        {
            "name": "tensor f16 BYTE_STREAM_SPLIT + tensor u8, zstd, dictionary off",
            "flux": (tensor, decode_tensor),
            "mask": (tensor, decode_tensor),
            "options": {**off, "column_encoding": {"flux": "BYTE_STREAM_SPLIT"}},
        },
        {
            "name": "binary f16 + binary u8, zstd",
            "flux": (binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (binary, lambda c: decode_bytes(c, np.uint8, length)),
            "options": off,
        },
        {
            "name": "binary f16 + binary u8, no compression",
            "flux": (binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (binary, lambda c: decode_bytes(c, np.uint8, length)),
            "options": {"compression": "none", "use_dictionary": False},
        },
        {
            "name": "fixed_size_binary f16 + u8, zstd",
            "flux": (fixed_binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (fixed_binary, lambda c: decode_bytes(c, np.uint8, length)),
            "options": off,
        },
        {
            "name": "fixed_size_binary f16 + packbits mask, zstd",
            "flux": (fixed_binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (lambda m: fixed_binary(packed(m)), lambda c: decode_packed(c, length)),
            "options": off,
        },
        {
            "name": "fixed_size_binary f16 + packbits mask, zstd level 1",
            "flux": (fixed_binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (lambda m: fixed_binary(packed(m)), lambda c: decode_packed(c, length)),
            "options": {**off, "compression_level": 1},
        },
        {
            "name": "fixed_size_binary f16 + packbits mask, lz4",
            "flux": (fixed_binary, lambda c: decode_bytes(c, np.float16, length)),
            "mask": (lambda m: fixed_binary(packed(m)), lambda c: decode_packed(c, length)),
            "options": {"compression": "lz4", "use_dictionary": False},
        },
    ]


def write(candidate: dict, flux: np.ndarray, mask: np.ndarray) -> bytes:
    table = pa.table({"flux": candidate["flux"][0](flux), "mask": candidate["mask"][0](mask)})
    buffer = io.BytesIO()
    per_row = max(1, table.nbytes // table.num_rows)
    pq.write_table(
        table,
        buffer,
        row_group_size=max(1, ROW_GROUP_BYTES // per_row),
        write_statistics=False,
        **candidate["options"],
    )
    return buffer.getvalue()


def read(candidate: dict, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(pa.BufferReader(data), use_threads=False)
    return candidate["flux"][1](table["flux"]), candidate["mask"][1](table["mask"])


def measure(candidate: dict, flux, mask, repeats: int) -> dict:
    data = write(candidate, flux, mask)
    best = float("inf")
    for _ in range(repeats):
        with Timer() as timer:
            got_flux, got_mask = read(candidate, data)
        best = min(best, timer.seconds)
    if not (
        np.array_equal(got_flux.view(np.uint16), flux.view(np.uint16))
        and np.array_equal(got_mask, mask)
    ):
        raise RuntimeError(f"{candidate['name']}: decoded arrays differ from the input")
    n = flux.shape[0]
    return {
        "name": candidate["name"],
        "kB_per_spectrum": len(data) / n / 1e3,
        "spectra_per_second": n / best,
        "MB_per_second": n * (flux[0].nbytes + mask[0].nbytes) / best / 1e6,
    }


def memcpy_rate(flux, mask, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        with Timer() as timer:
            flux.copy(), mask.copy()
        best = min(best, timer.seconds)
    return flux.shape[0] / best


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    rows, repeats = (60, 3) if args.quick else (120, 5)
    flux, mask = real_spectra(rows)
    progress(f"{rows} harps spectra of {flux.shape[1]} pixels prepared from the fixtures")
    results = []
    for candidate in candidates(flux.shape[1]):
        results.append(measure(candidate, flux, mask, repeats))
        progress(f"measured {results[-1]['name']}")
    limit = memcpy_rate(flux, mask, repeats)
    row_bytes = flux[0].nbytes + mask[0].nbytes
    print("\n| encoding (flux + mask) | kB / spectrum | spectra/s per core | MB/s | vs v1 |")
    print("|---|---|---|---|---|")
    v1 = results[0]["spectra_per_second"]
    for r in results:
        print(
            f"| {r['name']} | {r['kB_per_spectrum']:.0f} | {r['spectra_per_second']:,.0f} "
            f"| {r['MB_per_second']:,.0f} | {r['spectra_per_second'] / v1:.1f}x |"
        )
    print(
        f"| memcpy of the same bytes (the limit) | | {limit:,.0f} | {limit * row_bytes / 1e6:,.0f} | |\n"
    )
    chosen = next(
        r for r in results if r["name"].startswith("fixed_size_binary f16 + packbits mask, zstd")
    )
    finish(
        {
            "benchmark": "encodings",
            "ratio": chosen["spectra_per_second"] / v1,
            "baseline": "v1 (fixed_shape_tensor float16/uint8, zstd, dictionary on), same spectra",
            "chosen": chosen["name"],
            "bytes_ratio_v2_over_v1": chosen["kB_per_spectrum"] / results[0]["kB_per_spectrum"],
            "v2_kB_per_spectrum": chosen["kB_per_spectrum"],
            "v1_kB_per_spectrum": results[0]["kB_per_spectrum"],
            "spectra": rows,
            "candidates": results,
            "memcpy_spectra_per_second": limit,
        }
    )


if __name__ == "__main__":
    main()
