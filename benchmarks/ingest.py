"""Ingest cost per spectrum at the full ``harps`` grid, against a bare astropy read.

Inputs: N copies of the two real HARPS fixture files (ADP and DRS s1d, ~313k pixels each)
under distinct names. Ray is started first and a 2-file warm-up ingest is run (reported
separately), so the timed ingest is the steady-state cost. The baseline, timed in the
same run, is ``astropy.io.fits.open`` + reading every data array of the same files (two
passes, one before and one after the ingest, averaged, to even out machine load).

Also reported:

* a time breakdown: the first 20 files run stage by stage in one process without Ray
  (read, resample, encode, write; :func:`stage_breakdown`), in ms per spectrum;
* bytes per spectrum in the store (zstd Parquet, float16 flux + uint8 mask) against raw
  float32 on the grid (327,680 x 4 bytes) and against the gzipped input file. Measured on
  the warm-up store of the two distinct files: the N-copies store holds identical rows,
  which compress better than real data would (reported too, for completeness);
* float16 rounding: for each ingested real spectrum, the r.m.s. over unmasked pixels of
  (float16 stored - float32 normalised) / float32 normalised, against the photon-noise
  level 1/SNR (header SNR), and their ratio.

    .venv/bin/python benchmarks/ingest.py --quick     # 2 x 20 files
    .venv/bin/python benchmarks/ingest.py             # 2 x 100 files
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    HARPS_FLOAT32_BYTES,
    Timer,
    copy_fixtures,
    finish,
    parse_args,
    plain_read,
    progress,
    ratio,
    start_ray,
    timed,
    workdir,
)


def bare_read(path: Path) -> int:
    """Open with astropy and read every data array; returns the number of values read."""
    from astropy.io import fits

    values = 0
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            data = hdu.data
            if data is None:
                continue
            names = getattr(data, "names", None)
            arrays = [np.asarray(data[name]) for name in names] if names else [np.asarray(data)]
            values += sum(array.size for array in arrays)
    return values


def float16_error(store) -> list[dict]:
    """Per stored spectrum: float16 rounding error against the float32 normalised flux
    (recomputed from the source file with specray's own prepare) and 1/SNR."""
    from specray.data.ingest import Preprocessing
    from specray.spectra.fits import read_spectrum
    from specray.spectra.grid import prepare

    stored = plain_read(store, ["id", "source", "flux", "mask", "snr"])
    prep = Preprocessing()
    rows = []
    for i, source in enumerate(stored["source"]):
        raw = read_spectrum(source)
        exact = prepare(
            raw.wavelength,
            raw.flux,
            store.grid,
            min_median=prep.min_median,
            min_coverage=prep.min_coverage,
            min_snr=prep.min_snr,
        )
        f16 = stored["flux"][i].astype(np.float64)
        f32 = exact.flux.astype(np.float64)
        use = stored["mask"][i].astype(bool) & (f32 != 0)
        relative = (f16[use] - f32[use]) / f32[use]
        rms_relative = float(np.sqrt(np.mean(relative**2)))
        photon = 1.0 / float(stored["snr"][i])
        rows.append(
            {
                "id": str(stored["id"][i]),
                "pixels": int(use.sum()),
                "float16_rms_relative_error": rms_relative,
                "float16_max_relative_error": float(np.max(np.abs(relative))),
                "float16_rms_abs_error_normalised": float(np.sqrt(np.mean((f16 - f32)[use] ** 2))),
                "photon_noise_relative": photon,
                "float16_to_photon_noise": rms_relative / photon,
                "stored_equals_float16_of_prepared": bool(
                    np.array_equal(stored["flux"][i], exact.flux.astype(np.float16))
                ),
            }
        )
    return rows


BREAKDOWN_FILES = 20
"""Files timed stage by stage (single process, no Ray) for the breakdown."""


def stage_breakdown(paths: list[Path], folder: Path) -> dict[str, float]:
    """Seconds per spectrum of each ingest stage, run in this process on ``paths`` the way
    a Ray ingest task runs them: read (``read_spectrum``: open, gunzip, parse FITS),
    resample (``prepared_row``: normalise, put on the harps grid, mask, SNR cut), encode
    (``stage_table``: the staged Arrow table, float16 flux and bit-packed mask) and write
    (``write_shard``: Parquet with zstd, atomic write)."""
    from specray import schema
    from specray.data.ingest import Preprocessing, prepared_row, stage_table
    from specray.data.shards import write_shard
    from specray.spectra.fits import read_spectrum
    from specray.spectra.grid import named_grid

    grid, prep = named_grid("harps"), Preprocessing()
    store_schema = schema.store_schema(grid)
    seconds = dict.fromkeys(("read", "resample", "encode", "write"), 0.0)
    rows = []
    for path in paths:
        with Timer() as read, open(path, "rb") as handle:
            raw = read_spectrum(handle, name=path.name)
        with Timer() as resample:
            row = prepared_row(raw.id, raw.object, raw.wavelength, raw.flux, {}, grid, prep)
        seconds["read"] += read.seconds
        seconds["resample"] += resample.seconds
        rows.append({**row, "source": str(path)})
    with Timer() as encode:
        table = stage_table(rows, store_schema, grid)
    with Timer() as write:
        write_shard(
            str(folder), table.select(store_schema.names), store_schema, "breakdown.parquet"
        )
    seconds["encode"], seconds["write"] = encode.seconds, write.seconds
    return {stage: total / len(paths) for stage, total in seconds.items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    copies = 20 if args.quick else 100
    from specray.data.ingest import ingest
    from specray.data.reader import store_bytes
    from specray.data.store import open_store

    with workdir(args.keep, "ingest") as tmp:
        inputs = copy_fixtures(tmp / "in", copies)
        n_files = len(inputs)
        input_bytes = sum(path.stat().st_size for path in inputs) / n_files
        progress(f"{n_files} input files ({copies} copies of 2 real HARPS files) in {tmp}")
        ray_seconds = start_ray()

        copy_fixtures(tmp / "warm", 1)
        warm_seconds, warm = timed(ingest, str(tmp / "warm"), str(tmp / "warm-store"), "harps")
        progress(f"warm-up ingest of 2 distinct files: {warm_seconds:.1f} s ({warm.summary()})")

        with Timer() as before:
            for path in inputs:
                bare_read(path)
        progress(f"bare astropy read, pass 1: {before.seconds / n_files * 1e3:.1f} ms/spectrum")

        with Timer() as run:
            report = ingest(str(tmp / "in"), str(tmp / "store"), grid="harps")
        progress(f"ingest: {run.seconds:.1f} s, {report.summary()}")
        if report.ingested != n_files:
            raise RuntimeError(f"expected {n_files} spectra ingested: {report.summary()}")

        with Timer() as after:
            for path in inputs:
                bare_read(path)
        progress(f"bare astropy read, pass 2: {after.seconds / n_files * 1e3:.1f} ms/spectrum")

        bare = 0.5 * (before.seconds + after.seconds) / n_files
        per_spectrum = run.seconds / n_files
        progress(f"ingest {per_spectrum * 1e3:.1f} ms/spectrum vs bare read {bare * 1e3:.1f}")

        breakdown = stage_breakdown(inputs[:BREAKDOWN_FILES], tmp / "breakdown")
        progress(
            "stages in one process (ms/spectrum, first "
            f"{BREAKDOWN_FILES} files): "
            + ", ".join(f"{stage} {value * 1e3:.1f}" for stage, value in breakdown.items())
            + f"; sum {sum(breakdown.values()) * 1e3:.1f}"
        )

        warm_store = open_store(str(tmp / "warm-store"))
        distinct_bytes = store_bytes(warm_store) / warm_store.n_spectra()
        copies_bytes = store_bytes(open_store(str(tmp / "store"))) / n_files
        progress(
            f"store bytes/spectrum: {distinct_bytes / 1e3:.0f} kB (2 distinct files), "
            f"{copies_bytes / 1e3:.0f} kB (identical copies); raw float32 "
            f"{HARPS_FLOAT32_BYTES / 1e3:.0f} kB; input file {input_bytes / 1e3:.0f} kB"
        )

        errors = float16_error(warm_store)
        for row in errors:
            progress(
                f"float16 {row['id']}: rms relative {row['float16_rms_relative_error']:.2e}, "
                f"photon noise 1/SNR {row['photon_noise_relative']:.2e}, "
                f"ratio {row['float16_to_photon_noise']:.4f}"
            )
        worst = max(errors, key=lambda row: row["float16_to_photon_noise"])

    finish(
        {
            "benchmark": "ingest",
            "ratio": ratio(per_spectrum, bare),
            "baseline": "astropy fits.open + read all data arrays of the same files, same run",
            "grid": "harps",
            "pixels": HARPS_FLOAT32_BYTES // 4,
            "spectra": n_files,
            "ingest_seconds_per_spectrum": per_spectrum,
            "bare_read_seconds_per_spectrum": bare,
            "ingest_spectra_per_second": 1 / per_spectrum,
            "ingest_seconds": run.seconds,
            "stage_seconds_per_spectrum_one_process": breakdown,
            "ray_start_seconds": ray_seconds,
            "warmup_ingest_seconds_2_files": warm_seconds,
            "store_bytes_per_spectrum": distinct_bytes,
            "store_bytes_per_spectrum_identical_copies": copies_bytes,
            "raw_float32_bytes_per_spectrum": HARPS_FLOAT32_BYTES,
            "input_file_bytes_per_spectrum": input_bytes,
            "store_vs_raw_float32": distinct_bytes / HARPS_FLOAT32_BYTES,
            "store_vs_input_file": distinct_bytes / input_bytes,
            "float16_rms_relative_error": worst["float16_rms_relative_error"],
            "photon_noise_relative": worst["photon_noise_relative"],
            "float16_to_photon_noise_ratio": worst["float16_to_photon_noise"],
            "float16_per_spectrum": errors,
        }
    )


if __name__ == "__main__":
    main()
