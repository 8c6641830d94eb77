"""The one place that defines specray's Parquet columns, their types and units.

A spectrum store (``<store>/shards/*.parquet``) has one row per spectrum:

================  ===========================  ============================================
column            type                         meaning (unit)
================  ===========================  ============================================
id                string                       file name without ``.fits`` (unique)
object            string                       target name (OBJECT keyword)
source            string                       input URI the row came from
flux              fixed_shape_tensor<float16>  flux / median, on the padded grid (1)
mask              fixed_shape_tensor<uint8>    1 = use the pixel, 0 = padding/gap/non-finite
norm              double                       the masked median that divided flux (ADU)
ra, dec           double                       pointing (deg)
mjd_obs           double                       start of exposure (MJD, d)
exptime           double                       exposure time (s)
airmass           double                       mean airmass
berv              double                       barycentric correction (km/s)
targ_rv           double                       RV the observer entered for the target (km/s)
snr               double                       signal-to-noise per pixel from the header
rv, teff, logg,   double                       labels: radial velocity (km/s), effective
feh, vsini                                     temperature (K), surface gravity (dex),
                                               [Fe/H] (dex), projected rotation (km/s)
<extra labels>    double                       further columns of a ``--labels`` table
================  ===========================  ============================================

Missing values are NaN. The Parquet file metadata carries the grid (``specray.grid``, the
JSON of :class:`specray.spectra.grid.Grid`) so every later stage knows the wavelength of
every pixel, and the schema version (``specray.schema``).

Flux dtype: float16. Normalised flux is of order 1, where float16 has a relative
rounding error of at most 2**-11 (4.9e-4). Measured on the real HARPS files
(``benchmarks/ingest.py``): r.m.s. relative error 2.1-2.5e-4 against photon noise 1/SNR =
4.2e-2, i.e. 0.004% of the noise variance; even at SNR 300 it would add only ~0.6%. It
halves the bytes of every read, which is what limits training throughput.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from specray.spectra.grid import Grid

SCHEMA_VERSION = "1"
GRID_KEY = b"specray.grid"
VERSION_KEY = b"specray.schema"

FLUX_DTYPE = np.float16
MASK_DTYPE = np.uint8
FLUX_MAX = float(np.finfo(FLUX_DTYPE).max)

IDENTITY_COLUMNS = ("id", "object", "source")
META_COLUMNS = ("ra", "dec", "mjd_obs", "exptime", "airmass", "berv", "targ_rv", "snr")
LABEL_COLUMNS = ("rv", "teff", "logg", "feh", "vsini")
PER_EPOCH_COLUMNS = ("rv",) + META_COLUMNS
"""Columns whose value differs between epochs of one object (the star moves, the sky and
the exposure change); a labels table joined by ``object`` must not fill them."""

UNITS = {
    "flux": "normalised",
    "norm": "ADU",
    "ra": "deg",
    "dec": "deg",
    "mjd_obs": "d",
    "exptime": "s",
    "airmass": "",
    "berv": "km/s",
    "targ_rv": "km/s",
    "snr": "",
    "rv": "km/s",
    "teff": "K",
    "logg": "dex",
    "feh": "dex",
    "vsini": "km/s",
}


def tensor_type(dtype: np.dtype, length: int) -> pa.FixedShapeTensorType:
    return pa.fixed_shape_tensor(pa.from_numpy_dtype(np.dtype(dtype)), [length])


def store_schema(grid: Grid, extra_labels: tuple[str, ...] = ()) -> pa.Schema:
    """The Arrow schema of a spectrum shard on ``grid``, with the grid in its metadata."""
    fields = [pa.field(name, pa.string()) for name in IDENTITY_COLUMNS]
    fields += [
        pa.field("flux", tensor_type(FLUX_DTYPE, grid.length)),
        pa.field("mask", tensor_type(MASK_DTYPE, grid.length)),
        pa.field("norm", pa.float64()),
    ]
    numeric = META_COLUMNS + LABEL_COLUMNS + tuple(extra_labels)
    fields += [pa.field(name, pa.float64()) for name in numeric]
    metadata = {GRID_KEY: grid.to_json().encode(), VERSION_KEY: SCHEMA_VERSION.encode()}
    return pa.schema(fields, metadata=metadata)


def numeric_columns(schema: pa.Schema) -> list[str]:
    """Metadata and label columns of a store schema (everything but ids and tensors)."""
    skip = set(IDENTITY_COLUMNS) | {"flux", "mask", "norm"}
    return [name for name in schema.names if name not in skip]


def extra_label_columns(schema: pa.Schema) -> tuple[str, ...]:
    known = set(IDENTITY_COLUMNS) | {"flux", "mask", "norm"} | set(META_COLUMNS)
    return tuple(name for name in schema.names if name not in known | set(LABEL_COLUMNS))


def tensor_array(values: np.ndarray, dtype: np.dtype) -> pa.FixedShapeTensorArray:
    """Rows of a 2-D array as a fixed_shape_tensor column (one row per spectrum)."""
    values = np.ascontiguousarray(values, dtype=dtype)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {values.shape}")
    return pa.FixedShapeTensorArray.from_numpy_ndarray(values)


def _table(columns: dict[str, object], schema: pa.Schema, tensors: dict[str, np.dtype]) -> pa.Table:
    """Arrow table in ``schema`` from numpy columns: ``tensors`` name the (n, L) columns and
    their dtypes, strings are stringified, absent numeric columns become NaN."""
    n = len(columns["id"])
    arrays = []
    for field in schema:
        name = field.name
        if name in tensors:
            arrays.append(tensor_array(np.asarray(columns[name]), tensors[name]))
        elif pa.types.is_string(field.type):
            arrays.append(pa.array([str(value) for value in columns[name]], pa.string()))
        else:
            values = columns.get(name)
            values = np.full(n, np.nan) if values is None else np.asarray(values, np.float64)
            arrays.append(pa.array(values, pa.float64()))
    return pa.Table.from_arrays(arrays, schema=schema)


def spectra_table(columns: dict[str, object], schema: pa.Schema) -> pa.Table:
    """Build a shard table from numpy columns; absent numeric columns become NaN.

    ``columns['flux']`` is (n, L) float (normalised), ``columns['mask']`` (n, L) 0/1.
    """
    return _table(columns, schema, {"flux": FLUX_DTYPE, "mask": MASK_DTYPE})


def grid_from_schema(schema: pa.Schema) -> Grid:
    """The grid recorded in a shard's metadata."""
    metadata = schema.metadata or {}
    if GRID_KEY not in metadata:
        raise ValueError("not a specray shard: no grid in the Parquet metadata")
    return Grid.from_json(metadata[GRID_KEY])


def tensor_column_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_shape_tensor column as one (n, L) ndarray."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy_ndarray()


# ------------------------------------------------------------------ latent tables
#
# A latent table (``<out>/latents.parquet``, written by ``specray analyze --data --model``
# or by hand for ``--latents``) has one row per spectrum:
#
# ================  ===========================  ==========================================
# column            type                         meaning
# ================  ===========================  ==========================================
# id                string                       spectrum id (as in the store)
# object            string                       target name: one-per-object selection
# mu                fixed_shape_tensor<float32>  encoder mean, shape [latent_dim]
# logvar            fixed_shape_tensor<float32>  encoder log-variance, shape [latent_dim]
# <labels, meta>    double                       rv, teff, ..., snr, extra labels (NaN =
#                                                unknown), units as in ``UNITS``
# ================  ===========================  ==========================================
#
# File metadata: ``specray.latents`` (JSON: latent_dim, and where the latents came from:
# checkpoint, store, epoch, step, data fingerprint), the grid (``specray.grid``) when the
# latents came from a store, and the schema version. ``logvar`` may be absent from a
# hand-made table (the KL per node is then not reported).

LATENT_KEY = b"specray.latents"
LATENT_FILE = "latents.parquet"
LATENT_DTYPE = np.float32


def latent_schema(
    latent_dim: int,
    label_names: tuple[str, ...] | list[str],
    grid: Grid | None = None,
    provenance: dict | None = None,
    logvar: bool = True,
) -> pa.Schema:
    """The Arrow schema of a latent table with ``latent_dim`` nodes.

    ``label_names`` are the float64 label and metadata columns carried along (e.g. rv,
    teff, snr). ``grid`` and ``provenance`` (JSON-able) go into the file metadata.
    """
    if int(latent_dim) != latent_dim or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    reserved = {"id", "object", "mu", "logvar"}
    clash = sorted(reserved & set(label_names))
    if clash:
        raise ValueError(f"label columns {clash} clash with the latent table's own columns")
    fields = [pa.field("id", pa.string()), pa.field("object", pa.string())]
    fields.append(pa.field("mu", tensor_type(LATENT_DTYPE, int(latent_dim))))
    if logvar:
        fields.append(pa.field("logvar", tensor_type(LATENT_DTYPE, int(latent_dim))))
    fields += [pa.field(str(name), pa.float64()) for name in label_names]
    info = {"latent_dim": int(latent_dim), **(provenance or {})}
    metadata = {LATENT_KEY: json.dumps(info).encode(), VERSION_KEY: SCHEMA_VERSION.encode()}
    if grid is not None:
        metadata[GRID_KEY] = grid.to_json().encode()
    return pa.schema(fields, metadata=metadata)


def latent_table(columns: dict[str, object], schema: pa.Schema) -> pa.Table:
    """Build a latent table from numpy columns (``mu``/``logvar`` (n, D)); absent labels -> NaN."""
    return _table(columns, schema, {"mu": LATENT_DTYPE, "logvar": LATENT_DTYPE})


def latent_info(schema: pa.Schema) -> dict:
    """The ``specray.latents`` metadata of a latent table ({} for a table without it)."""
    metadata = schema.metadata or {}
    return json.loads(metadata[LATENT_KEY]) if LATENT_KEY in metadata else {}
