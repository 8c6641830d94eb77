"""The one place that defines specray's Parquet columns, their types and units.

A spectrum store (``<store>/shards/*.parquet``) has one row per spectrum:

================  ===========================  ============================================
column            type (format 2)              meaning (unit)
================  ===========================  ============================================
id                string                       file name without ``.fits`` (unique)
object            string                       target name (OBJECT keyword)
source            string                       input URI the row came from
flux              fixed_size_binary[2 L]       flux / median, on the padded grid (1):
                                               L float16 values, little-endian
mask              fixed_size_binary[ceil(L/8)] 1 = use the pixel, 0 = padding/gap/non-finite:
                                               L bits, ``np.packbits`` order (first pixel
                                               in the highest bit)
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
every pixel, and the format version (``specray.schema``); the flux and mask fields carry
their dtype, shape and packing in their field metadata (``specray.dtype``,
``specray.shape``, ``specray.packing``).

Reading a format-2 shard with plain pyarrow + numpy (``L`` is the grid length)::

    t = pq.read_table("part-....parquet", columns=["flux", "mask"])
    flux = np.frombuffer(b"".join(t["flux"].to_pylist()), "<f2").reshape(t.num_rows, -1)
    mask = np.unpackbits(np.frombuffer(b"".join(t["mask"].to_pylist()), np.uint8)
                         .reshape(t.num_rows, -1), axis=1, count=flux.shape[1])

(:func:`decode_flux` and :func:`decode_mask` do the same without copying row by row.)

Format versions (``format_version`` in ``store.json``; ``specray migrate`` rewrites a
format-1 store to format 2, and every reader here reads both):

* 1: ``flux`` fixed_shape_tensor<float16>[L] and ``mask`` fixed_shape_tensor<uint8>[L],
  zstd with dictionary encoding. A list column carries definition levels and, with the
  dictionary, a lookup for every one of the L values: decoding ran at ~10-160 spectra/s
  per core.
* 2: the same values as one fixed-width binary value per row, zstd, no dictionary, no
  statistics; the mask bit-packed. Decoding is Parquet's page decompression plus a
  zero-copy view (flux) and ``np.unpackbits`` (mask): >= 10x faster per core than format
  1 at fewer bytes per spectrum (benchmarks/encodings.py, benchmarks/RESULTS.md).

Scale: a fixed-width binary column has no offsets buffer, so no 32-bit offset can
overflow however many spectra a chunk holds (row ``i`` starts at byte ``i * 2 L``, an
int64 in Arrow); :func:`decode_flux` indexes with numpy (int64) too.

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

from specray.errors import InputError, SpecrayError
from specray.spectra.grid import Grid

SCHEMA_VERSION = "1"
"""Version of the latent-table layout (``specray.schema`` in a latent table's metadata)."""
FORMAT_VERSION = 2
"""The store format new stores are written in (see the module docstring)."""
FORMATS = (1, 2)
GRID_KEY = b"specray.grid"
VERSION_KEY = b"specray.schema"
DTYPE_KEY = b"specray.dtype"
SHAPE_KEY = b"specray.shape"
PACKING_KEY = b"specray.packing"

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
    "pwv": "mm",
    "tilt": "ln flux / 1000 A",
}


def tensor_type(dtype: np.dtype, length: int) -> pa.FixedShapeTensorType:
    return pa.fixed_shape_tensor(pa.from_numpy_dtype(np.dtype(dtype)), [length])


class FormatError(SpecrayError, ValueError):
    """A store or shard in a format this version of specray cannot read or write."""


def check_format(version: int, where: str) -> int:
    """``version`` as an int if specray knows it; FormatError naming ``where`` if not."""
    if version not in FORMATS:
        raise FormatError(
            f"{where}: store format {version!r} is not one of {list(FORMATS)}; "
            "a newer specray wrote it"
        )
    return int(version)


def flux_field(length: int, version: int = FORMAT_VERSION) -> pa.Field:
    """The ``flux`` column of a store in format ``version``: L float16 values per row."""
    if version == 1:
        return pa.field("flux", tensor_type(FLUX_DTYPE, length))
    metadata = {DTYPE_KEY: b"<f2", SHAPE_KEY: json.dumps([length]).encode()}
    return pa.field("flux", pa.binary(2 * length), metadata=metadata)


def mask_field(length: int, version: int = FORMAT_VERSION) -> pa.Field:
    """The ``mask`` column of a store in format ``version``: L 0/1 flags per row."""
    if version == 1:
        return pa.field("mask", tensor_type(MASK_DTYPE, length))
    metadata = {
        DTYPE_KEY: b"|u1",
        SHAPE_KEY: json.dumps([length]).encode(),
        PACKING_KEY: b"packbits",
    }
    return pa.field("mask", pa.binary(packed_width(length)), metadata=metadata)


def packed_width(length: int) -> int:
    """Bytes of ``length`` bit-packed flags."""
    return (length + 7) // 8


def store_schema(
    grid: Grid,
    extra_labels: tuple[str, ...] = (),
    version: int = FORMAT_VERSION,
    text_labels: tuple[str, ...] = (),
) -> pa.Schema:
    """The Arrow schema of a spectrum shard on ``grid`` in store format ``version``, with
    the grid and the format version in its metadata. Extra labels are float64, those in
    ``text_labels`` (categorical) strings."""
    version = check_format(version, f"grid {grid.name}")
    fields = [pa.field(name, pa.string()) for name in IDENTITY_COLUMNS]
    fields += [
        flux_field(grid.length, version),
        mask_field(grid.length, version),
        pa.field("norm", pa.float64()),
    ]
    fields += [pa.field(name, pa.float64()) for name in META_COLUMNS + LABEL_COLUMNS]
    fields += [
        pa.field(name, pa.string() if name in text_labels else pa.float64())
        for name in extra_labels
    ]
    metadata = {GRID_KEY: grid.to_json().encode(), VERSION_KEY: str(version).encode()}
    return pa.schema(fields, metadata=metadata)


def shard_format(shard_schema: pa.Schema) -> int:
    """The store format of a shard, from its column types (format 1 shards also say "1")."""
    return 2 if pa.types.is_fixed_size_binary(shard_schema.field("flux").type) else 1


def label_and_meta_columns(schema: pa.Schema) -> list[str]:
    """Metadata and label columns of a store schema (everything but ids and tensors; text
    labels included)."""
    skip = set(IDENTITY_COLUMNS) | {"flux", "mask", "norm"}
    return [name for name in schema.names if name not in skip]


def extra_label_columns(schema: pa.Schema) -> tuple[str, ...]:
    known = set(IDENTITY_COLUMNS) | {"flux", "mask", "norm"} | set(META_COLUMNS)
    return tuple(name for name in schema.names if name not in known | set(LABEL_COLUMNS))


def tensor_array(values: np.ndarray, dtype: np.dtype) -> pa.FixedShapeTensorArray:
    """Rows of a 2-D array as a fixed_shape_tensor column (one row per spectrum)."""
    values = np.ascontiguousarray(values, dtype=dtype)
    if values.ndim != 2:
        raise InputError(f"expected a 2-D array of rows, got shape {values.shape}")
    return pa.FixedShapeTensorArray.from_numpy_ndarray(values)


def _rows_as_binary(rows: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Each row of a C-contiguous 2-D array as one fixed-width binary value (no copy)."""
    if rows.ndim != 2:
        raise InputError(f"expected a 2-D array of rows, got shape {rows.shape}")
    width = rows.shape[1] * rows.itemsize
    return pa.Array.from_buffers(pa.binary(width), rows.shape[0], [None, pa.py_buffer(rows)])


def encode_flux(values: np.ndarray, version: int = FORMAT_VERSION) -> pa.Array:
    """(n, L) normalised flux -> the ``flux`` column of store format ``version``."""
    if version == 1:
        return tensor_array(values, FLUX_DTYPE)
    return _rows_as_binary(np.ascontiguousarray(values, dtype="<f2"))


def encode_mask(values: np.ndarray, version: int = FORMAT_VERSION) -> pa.Array:
    """(n, L) 0/1 mask -> the ``mask`` column of store format ``version``."""
    if version == 1:
        return tensor_array(values, MASK_DTYPE)
    values = np.asarray(values)
    if values.ndim != 2:
        raise InputError(f"expected a 2-D array of rows, got shape {values.shape}")
    return _rows_as_binary(np.packbits(values != 0, axis=1))


def _binary_rows(column: pa.ChunkedArray | pa.Array, dtype: str, width: int) -> np.ndarray:
    """The values of a fixed-width binary column as an (n, width) array of ``dtype``: a view
    of the Arrow buffer for a single chunk, one concatenation otherwise."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        if chunk.null_count:
            raise InputError("a spectrum column holds nulls")
        row_bytes = chunk.type.byte_width
        data = np.frombuffer(chunk.buffers()[1], np.uint8)
        rows = data[chunk.offset * row_bytes : (chunk.offset + len(chunk)) * row_bytes]
        parts.append(rows.view(dtype).reshape(len(chunk), width))
    if not parts:
        return np.empty((0, width), dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def decode_flux(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The ``flux`` column of either store format as one (n, L) float16 array (a read-only
    view of the Arrow buffer where possible; ``.astype(np.float32)`` for arithmetic)."""
    if pa.types.is_fixed_size_binary(column.type):
        return _binary_rows(column, "<f2", column.type.byte_width // 2)
    return tensor_column_to_numpy(column)


def decode_mask(column: pa.ChunkedArray | pa.Array, length: int) -> np.ndarray:
    """The ``mask`` column of either store format as one (n, ``length``) uint8 0/1 array."""
    if pa.types.is_fixed_size_binary(column.type):
        packed = _binary_rows(column, np.uint8, column.type.byte_width)
        return np.unpackbits(packed, axis=1, count=length)
    return tensor_column_to_numpy(column)


def as_tensor_columns(table: pa.Table, length: int, packed_mask: bool = False) -> pa.Table:
    """``table`` with format-2 ``flux``/``mask`` columns decoded to format 1's tensor
    columns (float16 / uint8 fixed_shape_tensor[L]), so that Ray Data hands every stage the
    same (n, L) arrays from a store of either format; format-1 columns pass unchanged.

    ``packed_mask`` keeps the mask bit-packed as :func:`packed_mask_rows` gives it, an
    (n, ceil(L / 8)) uint8 tensor column: a third fewer bytes per harps spectrum through
    Ray's object store and to the GPU (unpack with :func:`specray.train.loop.unpack_mask`).
    """
    if "flux" in table.column_names and pa.types.is_fixed_size_binary(table["flux"].type):
        table = _replace_column(table, "flux", decode_flux(table["flux"]), FLUX_DTYPE)
    if "mask" in table.column_names:
        mask = table["mask"]
        if packed_mask:
            table = _replace_column(table, "mask", packed_mask_rows(mask), MASK_DTYPE)
        elif pa.types.is_fixed_size_binary(mask.type):
            table = _replace_column(table, "mask", decode_mask(mask, length), MASK_DTYPE)
    return table


def packed_mask_rows(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The ``mask`` column of either store format as (n, ceil(L / 8)) uint8 rows of bits,
    most significant first (``np.packbits`` order; format 2 stores exactly these bytes)."""
    if pa.types.is_fixed_size_binary(column.type):
        return _binary_rows(column, np.uint8, column.type.byte_width)
    return np.packbits(tensor_column_to_numpy(column) != 0, axis=1)


def _replace_column(table: pa.Table, name: str, values: np.ndarray, dtype) -> pa.Table:
    """``table`` with column ``name`` replaced by the (n, w) ``values`` as a tensor column."""
    tensors = tensor_array(values, dtype)
    return table.set_column(table.column_names.index(name), pa.field(name, tensors.type), tensors)


def _table(columns: dict[str, object], schema: pa.Schema, tensors: dict) -> pa.Table:
    """Arrow table in ``schema`` from numpy columns: ``tensors`` map the (n, L) columns to
    their encoders (ndarray -> Arrow array); strings are stringified (None stays missing);
    absent columns become NaN or missing."""
    n = len(columns["id"])
    arrays = []
    for field in schema:
        name = field.name
        if name in tensors:
            arrays.append(tensors[name](np.asarray(columns[name])))
        elif pa.types.is_string(field.type):
            values = columns.get(name, [None] * n)
            arrays.append(pa.array([_text_or_none(value) for value in values], pa.string()))
        else:
            values = columns.get(name)
            values = np.full(n, np.nan) if values is None else np.asarray(values, np.float64)
            arrays.append(pa.array(values, pa.float64()))
    return pa.Table.from_arrays(arrays, schema=schema)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def spectra_table(columns: dict[str, object], schema: pa.Schema) -> pa.Table:
    """Build a shard table from numpy columns; absent numeric columns become NaN.

    ``columns['flux']`` is (n, L) float (normalised), ``columns['mask']`` (n, L) 0/1; they
    are encoded in the format of ``schema`` (see :func:`store_schema`).
    """
    version = shard_format(schema)
    encoders = {
        "flux": lambda values: encode_flux(values, version),
        "mask": lambda values: encode_mask(values, version),
    }
    return _table(columns, schema, encoders)


def grid_from_schema(schema: pa.Schema) -> Grid:
    """The grid recorded in a shard's metadata."""
    metadata = schema.metadata or {}
    if GRID_KEY not in metadata:
        raise FormatError("not a specray shard: no grid in the Parquet metadata")
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
    text_labels: tuple[str, ...] = (),
) -> pa.Schema:
    """The Arrow schema of a latent table with ``latent_dim`` nodes.

    ``label_names`` are the label and metadata columns carried along (e.g. rv, teff, snr):
    float64, or strings for those in ``text_labels`` (categorical). ``grid`` and
    ``provenance`` (JSON-able) go into the file metadata.
    """
    if int(latent_dim) != latent_dim or latent_dim < 1:
        raise InputError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    reserved = {"id", "object", "mu", "logvar"}
    clash = sorted(reserved & set(label_names))
    if clash:
        raise InputError(f"label columns {clash} clash with the latent table's own columns")
    fields = [pa.field("id", pa.string()), pa.field("object", pa.string())]
    fields.append(pa.field("mu", tensor_type(LATENT_DTYPE, int(latent_dim))))
    if logvar:
        fields.append(pa.field("logvar", tensor_type(LATENT_DTYPE, int(latent_dim))))
    fields += [
        pa.field(str(name), pa.string() if name in text_labels else pa.float64())
        for name in label_names
    ]
    info = {"latent_dim": int(latent_dim), **(provenance or {})}
    metadata = {LATENT_KEY: json.dumps(info).encode(), VERSION_KEY: SCHEMA_VERSION.encode()}
    if grid is not None:
        metadata[GRID_KEY] = grid.to_json().encode()
    return pa.schema(fields, metadata=metadata)


def latent_table(columns: dict[str, object], schema: pa.Schema) -> pa.Table:
    """Build a latent table from numpy columns (``mu``/``logvar`` (n, D)); absent labels -> NaN."""
    encoder = lambda values: tensor_array(values, LATENT_DTYPE)  # noqa: E731
    return _table(columns, schema, {"mu": encoder, "logvar": encoder})


def latent_info(schema: pa.Schema) -> dict:
    """The ``specray.latents`` metadata of a latent table ({} for a table without it)."""
    metadata = schema.metadata or {}
    return json.loads(metadata[LATENT_KEY]) if LATENT_KEY in metadata else {}
