"""Labels tables (CSV or Parquet) joined to spectra at ingest, with rules that cannot join wrongly.

Rules, decided here once (README "Labels"):

- **Key.** A column named ``id`` (any case: ``ID``, ``Id``) joins by spectrum id, the file
  name without its FITS suffix (a key written with the suffix is accepted). Without an id
  column, a column ``object`` (any case) joins by target name, and the run logs a WARNING.
  ``key="object"`` (``ingest --labels-key object``) asks for the object join explicitly;
  ``key="id"`` insists on ids.
- **Per-epoch columns in an object join.** An object has several epochs and one table row,
  so the columns that change between epochs (``schema.PER_EPOCH_COLUMNS``: rv and the
  header metadata) are never filled from an object join: the WARNING names them, they stay
  missing (or keep the file header's value), and a per-object value is kept by naming its
  column differently (e.g. ``rv_sys``, an extra label). Every other column is per object.
- **Duplicate keys** are an error naming the file, the key column and the first duplicated
  keys, unless the duplicated rows are identical: those are dropped with a WARNING.
- **Cells.** Text placeholders (``PLACEHOLDER_TEXT``: "", NA, N/A, nan, null, -, --, ?, ...)
  are missing. Non-finite numbers are missing. A numeric placeholder (``is_sentinel``: a
  value whose magnitude is all nines, 99, 99.9, 999, 9999, 99999, ..., either sign) is
  missing when it lies more than ``FAR_SIGMAS`` robust standard deviations (1.4826 MAD)
  from the median of the column's other values, so a real Teff of 9999 K stays and an
  [Fe/H] of 9999 does not. A column of numbers with a few other cells keeps its numbers;
  the other cells become missing. Each of these logs a WARNING with counts.
- **Text columns.** A column whose cells are mostly text (e.g. spectral types "G2V") is a
  categorical extra label: each cell's stripped text, placeholders missing. A schema
  column (``teff``, ...) must be numeric, so a text one is ignored with a WARNING.
- **Columns** whose lower-case name is a schema column (``Teff``, ``RV``) map onto it;
  the others become extra labels. Every problem message names the file.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from specray import schema, storage
from specray.data.records import ManifestEntry
from specray.errors import SpecrayError
from specray.placeholders import placeholders
from specray.spectra.fits import spectrum_id

log = logging.getLogger(__name__)

KEYS = ("id", "object")
RESERVED = frozenset(schema.IDENTITY_COLUMNS) | {"flux", "mask", "norm"}
PLACEHOLDER_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a"})
EXAMPLES = 3


class LabelsError(SpecrayError, ValueError):
    """A labels table that cannot be joined: the message names the file and the problem."""


@dataclass(frozen=True)
class LabelTable:
    """Label values keyed by spectrum ``id`` or by ``object``, as a plain dict for tasks:
    floats (NaN missing), and for the ``text_columns`` strings (None missing)."""

    key: str
    columns: tuple[str, ...]
    values: Mapping[str, dict]
    uri: str = ""
    text_columns: tuple[str, ...] = ()

    def lookup(self, identifier: str, obj: str) -> dict:
        """The row's known values: a missing cell never erases a value from the file header."""
        row = self.values.get(self._key_of(identifier, obj), {})
        return {name: value for name, value in row.items() if not _is_missing(value)}

    def _key_of(self, identifier: str, obj: str) -> str:
        return str(identifier) if self.key == "id" else str(obj).strip()

    @property
    def extra_labels(self) -> tuple[str, ...]:
        """The label columns beyond the store schema's own (numeric and text)."""
        known = set(schema.META_COLUMNS) | set(schema.LABEL_COLUMNS)
        return tuple(column for column in self.columns if column not in known)

    def count_matches(self, records: Iterable[ManifestEntry]) -> tuple[int, int]:
        """(spectra that found a label row, spectra) among manifest ``records``."""
        keys = [self._key_of(r.id, r.object or "") for r in records]
        return sum(key in self.values for key in keys), len(keys)

    def report_matches(self, records: list[ManifestEntry]) -> int:
        """Log how many ingested spectra found a label row (WARNING when none did)."""
        matched, total = self.count_matches(records)
        if total and not matched:
            seen = [self._key_of(r.id, r.object or "") for r in records]
            log.warning(
                "labels %s: 0 of %s spectra found a label row (joined by %s); keys look like "
                "%s vs %ss like %s",
                self.uri,
                f"{total:,}",
                self.key,
                _examples(self.values),
                self.key,
                _examples(seen),
            )
        elif total:
            log.info("labels %s: %d of %d spectra found a label row", self.uri, matched, total)
        return matched


def load_labels(uri: str, key: str | None = None) -> LabelTable:
    """Read a CSV or Parquet labels table under the rules of this module.

    ``key`` is "id", "object" or None (id if the table has an id column, else object).
    """
    table = _read_table(uri)
    names = _canonical_names(uri, table.column_names)
    key = _choose_key(uri, names, key)
    keys = _keys(table.column(names[key]), key)
    columns = {}
    for canonical, original in names.items():
        if canonical in KEYS:
            continue
        if canonical in RESERVED:
            log.warning("labels %s: column %r is reserved by the store; ignored", uri, original)
            continue
        parsed = _label_column(uri, original, canonical, table.column(original).to_pylist())
        if parsed is not None:
            columns[canonical] = parsed
    if key == "object":
        columns = _drop_per_epoch(uri, columns, names)
    return _table_of(uri, key, keys, columns)


def _read_table(uri: str) -> pa.Table:
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise storage.StorageError(f"{uri}: labels table not found")
    try:
        with fs.open(path, "rb") as handle:
            if path.endswith(".parquet"):
                return pq.read_table(handle)
            return _read_csv_as_text(handle.read())
    except pa.ArrowInvalid as exc:
        raise LabelsError(f"{uri}: cannot read the labels table: {exc}") from None


def _read_csv_as_text(data: bytes) -> pa.Table:
    """Every CSV column as strings, so ids keep leading zeros (``000123`` is not 123) and
    every cell is parsed by the one rule of ``_parse_cell``."""
    names = pacsv.open_csv(pa.BufferReader(data)).schema.names
    text = pacsv.ConvertOptions(column_types={name: pa.string() for name in names})
    return pacsv.read_csv(pa.BufferReader(data), convert_options=text)


def _canonical_names(uri: str, names: list[str]) -> dict[str, str]:
    """{canonical name: name in the file}; schema names (and id, object) match any case."""
    known = set(KEYS) | set(schema.META_COLUMNS) | set(schema.LABEL_COLUMNS) | RESERVED
    canonical: dict[str, str] = {}
    for name in names:
        lowered = name.strip().lower()
        target = lowered if lowered in known else name.strip()
        if target in canonical:
            raise LabelsError(
                f"{uri}: columns {canonical[target]!r} and {name!r} both mean {target!r}"
            )
        canonical[target] = name
    return canonical


def _choose_key(uri: str, names: dict[str, str], key: str | None) -> str:
    if key not in (None, *KEYS):
        raise LabelsError(f"{uri}: labels key must be 'id' or 'object', not {key!r}")
    wanted = key or ("id" if "id" in names else "object")
    if wanted not in names:
        raise LabelsError(
            f"{uri}: a labels table needs an 'id' (or 'object') column to join on; "
            f"it has {sorted(names.values())}"
        )
    if key is None and wanted == "object":
        log.warning(
            "labels %s: no 'id' column, so labels are joined by 'object': every column is "
            "taken as one value per object, for all of its epochs",
            uri,
        )
    return wanted


def _keys(column: pa.ChunkedArray, key: str) -> list[str]:
    keys = ["" if value is None else str(value).strip() for value in column.to_pylist()]
    return [spectrum_id(k) if key == "id" and k else k for k in keys]


def _parse_cell(cell) -> tuple[float, bool]:
    """(value, is a number or a placeholder); unparseable text gives (nan, False)."""
    if cell is None:
        return math.nan, True
    if isinstance(cell, bool):
        return math.nan, False
    if isinstance(cell, int | float):
        return float(cell), True
    text = str(cell).strip()
    if text.lower() in PLACEHOLDER_TEXT:
        return math.nan, True
    try:
        return float(text), True
    except ValueError:
        return math.nan, False


def _label_column(uri: str, name: str, canonical: str, cells: list) -> np.ndarray | list | None:
    """The column as float64 with missing values NaN; a text column of an extra label as
    stripped strings with missing values None; None (logged) when it is no label."""
    parsed = [_parse_cell(cell) for cell in cells]
    values = np.array([value for value, _ in parsed], dtype=np.float64)
    text_rows = [row for row, (_, ok) in enumerate(parsed) if not ok]
    numbers = len(cells) - len(text_rows) - sum(_is_blank(cell) for cell in cells)
    if numbers == 0 and not text_rows:
        log.info("labels %s: column %r holds no values; ignored", uri, name)
        return None
    if text_rows and len(text_rows) >= numbers:
        return _text_column(uri, name, canonical, cells, len(text_rows))
    if text_rows:
        log.warning(
            "labels %s: column %r: %d cell(s) are not numbers (%s, row %s) and are treated "
            "as missing",
            uri,
            name,
            len(text_rows),
            _examples(cells[row] for row in text_rows),
            _examples(row + 1 for row in text_rows),
        )
    return _without_placeholders(uri, name, values)


def _text_column(uri: str, name: str, canonical: str, cells: list, n_text: int) -> list | None:
    """A mostly-text column as a categorical label (None for a schema column, which is numeric)."""
    examples = _examples(dict.fromkeys(str(cell).strip() for cell in cells if not _is_blank(cell)))
    if canonical in schema.META_COLUMNS or canonical in schema.LABEL_COLUMNS:
        log.warning(
            "labels %s: column %r is text (%d of %d cells, e.g. %s), but %r is a numeric "
            "column of the store; ignored",
            uri, name, n_text, len(cells), examples, canonical,
        )  # fmt: skip
        return None
    text = [None if _is_blank(cell) else str(cell).strip() for cell in cells]
    log.info(
        "labels %s: column %r is text: a categorical label of %d categories (e.g. %s)",
        uri, name, len({t for t in text if t is not None}), examples,
    )  # fmt: skip
    return text


def _is_blank(cell) -> bool:
    return cell is None or str(cell).strip().lower() in PLACEHOLDER_TEXT


def _is_missing(value) -> bool:
    """A missing label value: None (text) or NaN (number)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _without_placeholders(uri: str, name: str, values: np.ndarray) -> np.ndarray:
    nonfinite = np.isinf(values)
    sentinels = placeholders(values)
    if sentinels.any():
        counts = Counter(float(value) for value in values[sentinels])
        log.warning(
            "labels %s: column %r: %d placeholder value(s) treated as missing (%s)",
            uri,
            name,
            int(sentinels.sum()),
            ", ".join(f"{value:g} x{count}" for value, count in counts.most_common()),
        )
    if nonfinite.any():
        log.warning(
            "labels %s: column %r: %d non-finite value(s) treated as missing",
            uri,
            name,
            int(nonfinite.sum()),
        )
    return np.where(sentinels | nonfinite, np.nan, values)


def _drop_per_epoch(uri: str, columns: dict, names: dict[str, str]) -> dict:
    per_epoch = [name for name in columns if name in schema.PER_EPOCH_COLUMNS]
    if per_epoch:
        log.warning(
            "labels %s: joined by object, so the per-epoch column(s) %s are NOT joined "
            "(one row per object would give every epoch the same value); add an 'id' "
            "column to join them, or rename a per-object value (e.g. rv -> rv_sys)",
            uri,
            [names[name] for name in per_epoch],
        )
    return {name: values for name, values in columns.items() if name not in per_epoch}


def _table_of(
    uri: str, key: str, keys: list[str], columns: dict[str, np.ndarray | list]
) -> LabelTable:
    names = tuple(columns)
    text_columns = tuple(name for name in names if isinstance(columns[name], list))
    cells = [[None if _is_missing(v) else v for v in list(columns[n])] for n in names]
    matrix = list(zip(*cells, strict=True)) if names else [()] * len(keys)  # rows, None missing
    blank = [row for row, k in enumerate(keys) if not k]
    if blank:
        log.warning("labels %s: %d row(s) without a %s are ignored", uri, len(blank), key)
    rows: dict[str, int] = {}
    conflicting, identical = [], 0
    for row, k in enumerate(keys):
        if not k:
            continue
        if k not in rows:
            rows[k] = row
        elif matrix[rows[k]] == matrix[row]:
            identical += 1
        else:
            conflicting.append(k)
    if conflicting:
        raise LabelsError(
            f"{uri}: {len(set(conflicting))} {key} value(s) appear in more than one row with "
            f"different labels, e.g. {_examples(dict.fromkeys(conflicting))}; keep one row per {key}"
        )
    if identical:
        log.warning("labels %s: %d duplicated identical row(s) dropped", uri, identical)
    values = {k: _row_values(names, text_columns, matrix[r]) for k, r in rows.items()}
    return LabelTable(key, names, values, uri, text_columns)


def _row_values(names: tuple[str, ...], text_columns: tuple[str, ...], row: tuple) -> dict:
    """One table row as label values: floats (NaN missing) and, for text columns, str or None."""
    return {
        name: value if name in text_columns else (math.nan if value is None else float(value))
        for name, value in zip(names, row, strict=True)
    }


def _examples(items: Iterable) -> str:
    shown = []
    for item in items:
        shown.append(repr(item))
        if len(shown) == EXAMPLES:
            break
    return ", ".join(shown)
