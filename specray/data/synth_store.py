"""The synthetic survey written out: as a ready store, or as archive-like FITS files.

Stars are split into ranges, one Ray Data row per range; each range is generated
independently (the generator is deterministic per star), so the result is the same on
one core or a cluster. ``parquet`` goes through the same prepare and shard stages as real
data; ``fits`` writes ADP-format files plus ``labels.csv`` so ``specray ingest`` can be
exercised exactly as on archive files.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import ray

from specray import schema, storage
from specray.data.ingest import Preprocessing, commit_run, prepared_row, stage_table, write_staged
from specray.data.shards import DEFAULT_SHARD_BYTES
from specray.data.store import writing_store
from specray.errors import InputError
from specray.runtime import ensure_ray
from specray.spectra.fits import write_adp
from specray.spectra.grid import Grid, named_grid
from specray.spectra.synth import generate

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
STARS_PER_TASK = 16
WRITTEN = "_written"
"""Bookkeeping column of the FITS route: whether a file was (re)written this run."""
SYNTHETIC_LABELS = ("pwv", "tilt")
"""Factors only the generator knows (precipitable water vapour in mm, chromatic tilt in
ln flux per 1,000 A), stored as extra labels so an analysis can test whether a node tracks
them. ``labels.csv`` carries them too (and the injected ``defect``, a string)."""
NO_DEFECT = "clean"
"""``labels.csv``'s ``defect`` for an epoch without one: a class of its own, so the column
is text in every season (one all-blank season would otherwise drop it from a store that a
later season's defects then cannot join)."""
TABLE_COLUMNS = (
    ("id", "object") + schema.META_COLUMNS + schema.LABEL_COLUMNS + SYNTHETIC_LABELS + ("defect",)
)


def _star_ranges(n_stars: int) -> list[dict]:
    starts = range(0, n_stars, STARS_PER_TASK)
    return [{"start": s, "stop": min(s + STARS_PER_TASK, n_stars)} for s in starts]


def _staged_range(batch: dict, n_stars, mean_epochs, grid: Grid, seed, store_schema) -> pa.Table:
    rows = []
    for start, stop in zip(batch["start"], batch["stop"], strict=True):
        for chunk in generate(n_stars, mean_epochs, grid, seed, star_range=(int(start), int(stop))):
            for i, identifier in enumerate(chunk.labels["id"]):
                values = {key: column[i] for key, column in chunk.labels.items()}
                row = prepared_row(
                    str(identifier),
                    str(values["object"]),
                    grid.native_wavelength,
                    chunk.flux[i],
                    {
                        k: v
                        for k, v in values.items()
                        if k in schema.label_and_meta_columns(store_schema)
                    },
                    grid,
                    Preprocessing(),
                )
                source = f"synth:seed={seed}:{identifier}"
                rows.append({**row, "source": source, "size": 0, "version": str(seed)})
    return stage_table(rows, store_schema, grid)


def _fits_range(batch: dict, out, n_stars, mean_epochs, grid: Grid, seed) -> pa.Table:
    records = []
    for start, stop in zip(batch["start"], batch["stop"], strict=True):
        for chunk in generate(n_stars, mean_epochs, grid, seed, star_range=(int(start), int(stop))):
            for i, identifier in enumerate(chunk.labels["id"]):
                values = {key: column[i] for key, column in chunk.labels.items()}
                buffer = io.BytesIO()
                write_adp(buffer, grid.native_wavelength, chunk.flux[i], values)
                written = storage.write_if_changed(
                    storage.join(out, f"{identifier}.fits"), buffer.getvalue()
                )
                record = {name: values.get(name, np.nan) for name in TABLE_COLUMNS}
                record["defect"] = record["defect"] or NO_DEFECT
                records.append({**record, WRITTEN: written})
    return pa.Table.from_pylist(records)


def _write_labels(out: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    storage.atomic_write_bytes(storage.join(out, LABELS_FILE), buffer.getvalue())


def synthesize(
    out: str,
    n_stars: int = 300,
    mean_epochs: float = 4.0,
    grid: str | Grid = "demo",
    fmt: str = "parquet",
    seed: int = 0,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> str:
    """Generate the survey into ``out``; return a one-line summary."""
    if n_stars < 1:
        raise InputError(f"--stars must be at least 1, got {n_stars}")
    grid = named_grid(grid) if isinstance(grid, str) else grid
    ensure_ray()
    ranges = ray.data.from_items(_star_ranges(n_stars))
    common = {"n_stars": n_stars, "mean_epochs": mean_epochs, "grid": grid, "seed": seed}
    if fmt == "fits":
        tables = ranges.map_batches(_fits_range, batch_size=1, fn_kwargs={"out": out, **common})
        table = pa.concat_tables(ray.get(tables.to_arrow_refs()))
        written = pc.sum(table[WRITTEN]).as_py() or 0
        _write_labels(out, table.drop_columns([WRITTEN]).sort_by("id"))
        unchanged = (
            f" ({table.num_rows - written} already there, unchanged)"
            if written < table.num_rows
            else ""
        )
        return (
            f"wrote {written} of {table.num_rows} ADP files{unchanged} and {LABELS_FILE} to {out}"
        )
    if fmt != "parquet":
        raise InputError(f"--format must be parquet or fits, got {fmt!r}")
    with writing_store(
        out,
        grid,
        purpose="a synthetic-survey writer",
        extra_labels=SYNTHETIC_LABELS,
        preprocessing=Preprocessing().record(),
    ) as store:
        store.remove_orphan_shards()
        if store.n_spectra():
            return f"{out} already holds {store.n_spectra()} spectra; nothing generated"
        staged = ranges.map_batches(
            _staged_range, batch_size=1, fn_kwargs={"store_schema": store.schema, **common}
        )
        sink = write_staged(staged, store, shard_bytes)
        commit_run(store, sink, [], [])
    return (
        f"wrote {len(sink.result.manifest)} spectra of {n_stars} stars to {out} "
        f"({len(sink.result.shards)} shard(s)); {len(sink.result.quarantine)} quarantined"
    )
