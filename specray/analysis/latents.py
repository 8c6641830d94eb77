"""A latent table in memory: the encoder's mu (and logvar) per spectrum, with its labels.

:func:`read_latents` reads the Parquet file that :mod:`specray.analysis.encode` writes
(:func:`specray.schema.latent_schema`), or a hand-made one with at least ``mu``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from specray import schema, storage
from specray.analysis.cmi import category_codes
from specray.errors import InputError
from specray.spectra.grid import Grid


@dataclass
class LatentTable:
    """A latent table in memory: one row per spectrum."""

    uri: str
    ids: np.ndarray
    objects: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray | None
    columns: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)
    grid: Grid | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.mu.shape[1])

    def __len__(self) -> int:
        return int(self.mu.shape[0])


def _tensor(column) -> np.ndarray:
    try:
        return schema.tensor_column_to_numpy(column).astype(np.float64)
    except (AttributeError, TypeError):  # a list column from a hand-made table
        return np.asarray(column.to_pylist(), dtype=np.float64)


def read_latents(uri: str) -> LatentTable:
    """Read a latent table (see :func:`specray.schema.latent_schema`).

    Needs ``mu`` (D floats per row). ``id`` and ``object`` default to the row number,
    ``logvar`` may be absent; every other numeric column is kept as a label/meta column,
    and every text column as a categorical label (codes; the categories in
    ``info["categories"]``).
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no such latent table")
    table = storage.read_parquet(uri)
    if "mu" not in table.column_names:
        raise InputError(f"{uri}: not a latent table: no 'mu' column (has {table.column_names})")
    mu = _tensor(table["mu"])
    if mu.ndim != 2 or mu.shape[0] != table.num_rows or not np.all(np.isfinite(mu)):
        raise InputError(f"{uri}: 'mu' must be finite with D values per row, got {mu.shape}")
    logvar = _tensor(table["logvar"]) if "logvar" in table.column_names else None
    if logvar is not None and logvar.shape != mu.shape:
        raise InputError(f"{uri}: 'logvar' {logvar.shape} does not match 'mu' {mu.shape}")
    rows = np.arange(table.num_rows).astype(str)
    ids = np.asarray(table["id"].to_pylist(), dtype=str) if "id" in table.column_names else rows
    objects = (
        np.asarray(table["object"].to_pylist(), dtype=str)
        if "object" in table.column_names
        else ids
    )
    columns = {
        name: table[name].to_numpy().astype(np.float64)
        for name in table.column_names
        if name not in ("id", "object", "mu", "logvar")
        and (pa.types.is_floating(table.schema.field(name).type)
             or pa.types.is_integer(table.schema.field(name).type))
    }  # fmt: skip
    text = [name for name in table.column_names
            if name not in ("id", "object") and pa.types.is_string(table.schema.field(name).type)]  # fmt: skip
    categories = {}
    for name in text:  # categorical labels (e.g. spectral types) as codes 0..C-1, NaN missing
        columns[name], categories[name] = category_codes(table[name].to_pylist())
    metadata = table.schema.metadata or {}
    grid = schema.grid_from_schema(table.schema) if schema.GRID_KEY in metadata else None
    info = schema.latent_info(table.schema)
    info["categories"] = categories
    if "object" not in table.column_names:
        info["no_object_column"] = True
    return LatentTable(uri, ids, objects, mu, logvar, columns, info, grid)
