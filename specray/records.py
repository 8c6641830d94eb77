"""Typed records: every JSON file specray writes and reads back, defined once in code.

Each artefact (``store.json``, manifest and quarantine lines, a checkpoint's
``meta.json``, ``metrics.jsonl`` lines, ``tune.json``, ``analysis.json``, the retrain
history, comparison and active-run pointer, lock bodies) is a frozen dataclass deriving
from :class:`Record`, declared in the module of its concern. A record has one way to be
written (:meth:`Record.to_json`, :meth:`Record.write`, :func:`write_lines`) and one to be
read (:meth:`Record.from_json`, :meth:`Record.read`, :func:`read_lines`), and it checks
its fields' declared types whenever one is made, so a wrong value fails where it is
written, and a damaged file fails where it is read, naming the file and the field.

Versions: every record written carries ``"schema_version"`` (its class's
``SCHEMA_VERSION``). Files written before records were versioned have no such key; they
read as version 1, the same layout. A file of a version newer than the code knows is
refused with :class:`NewerRecordError` (upgrade specray); when a layout changes, the
record's :meth:`Record.upgrade` rewrites the older versions' fields into the new ones.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, Self

from specray import storage
from specray.errors import SpecrayError

VERSION_KEY = "schema_version"
UNVERSIONED = 1
"""The version of a file without ``schema_version``: written before versioning, same layout."""
OMIT = "omit_default"
"""Field metadata: leave the field out of the file while it holds its default."""

Check = Callable[[Any], str | None]
"""A type check: what is wrong with a value (a phrase), or None."""


class RecordError(SpecrayError, ValueError):
    """A record file that is damaged or holds a wrong type: the message names the file and
    the field."""


class NewerRecordError(SpecrayError, ValueError):
    """A record file written by a newer specray, in a layout this one does not know."""


class FieldTypeError(TypeError):
    """A record made in code with a value of the wrong type (a bug, not a user's error)."""


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the typed records (see the module docstring).

    Subclasses are frozen dataclasses; their fields' annotations are the file's layout
    (fields with defaults are optional; those declared with :func:`omitted` are left out
    of the file while they hold their default). Class settings: ``SCHEMA_VERSION`` (the
    layout's version), ``INDENT`` and ``NEWLINE`` (how :meth:`to_json` lays out the text)
    and ``ALLOW_NAN`` (whether NaN may be written).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    INDENT: ClassVar[int | None] = None
    NEWLINE: ClassVar[bool] = False
    ALLOW_NAN: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name, check in _checks(type(self)).items():
            problem = check(getattr(self, name))
            if problem:
                raise FieldTypeError(f"{type(self).__name__}: field {name!r}: {problem}")

    # ------------------------------------------------------------------ writing

    def to_dict(self) -> dict:
        """The record as plain JSON values, ``schema_version`` first."""
        values: dict[str, Any] = {VERSION_KEY: self.SCHEMA_VERSION}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.metadata.get(OMIT) and value == item.default:
                continue
            values[item.name] = _plain(value)
        return values

    def to_json(self) -> str:
        """The text of the record's file."""
        text = json.dumps(self.to_dict(), indent=self.INDENT, allow_nan=self.ALLOW_NAN)
        return text + "\n" if self.NEWLINE else text

    def write(self, uri: str) -> None:
        """Write the record's file at ``uri`` atomically."""
        storage.atomic_write_text(uri, self.to_json())

    # ------------------------------------------------------------------ reading

    @classmethod
    def upgrade(cls, values: dict) -> dict:
        """A file's values in the current layout; runs before the version is checked.

        The default keeps them as they are. A record whose layout changed overrides this
        to rewrite older versions (``values.get("schema_version", 1)``) or spellings older
        than versioning.
        """
        return values

    @classmethod
    def from_dict(cls, values: Any, source: str) -> Self:
        """The record in a parsed file; ``source`` names the file (and line) in errors."""
        if not isinstance(values, dict):
            raise RecordError(f"{source}: damaged, holds {_describe(values)}, not an object")
        values = cls.upgrade(dict(values))
        _check_version(cls, values.pop(VERSION_KEY, UNVERSIONED), source)
        layout = _layout(cls)
        _check_keys(layout, values, source)
        for name in layout.nested.keys() & values.keys():
            values[name] = _nested(values[name], layout.nested[name], f"{source}, {name}")
        try:
            return cls(**values)
        except FieldTypeError as problem:
            raise RecordError(f"{source}: damaged, {_field_part(problem)}") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> Self:
        """The record in a file's text; ``source`` names the file in errors."""
        return cls.from_dict(storage.parse_json(source, text), source)

    @classmethod
    def read(cls, uri: str) -> Self:
        """The record in the file at ``uri`` (StorageError if there is none)."""
        return cls.from_json(storage.read_bytes(uri), uri)


def omitted(default: Any = None) -> Any:
    """A field that is optional and left out of the file while it holds ``default`` (a
    rare key, such as a quarantine record's ``transient``)."""
    return dataclasses.field(default=default, metadata={OMIT: True})


def write_lines(uri: str, records: Iterable[Record]) -> None:
    """Rewrite a JSON-lines file of records whole, atomically (one compact record a line)."""
    text = "".join(
        json.dumps(record.to_dict(), allow_nan=record.ALLOW_NAN) + "\n" for record in records
    )
    storage.atomic_write_text(uri, text)


R = typing.TypeVar("R", bound=Record)


def read_lines(kind: type[R], uri: str) -> list[R]:
    """The records of a JSON-lines file, each checked as ``kind``; [] when there is no file.

    Errors name the file and the line (counted from 1).
    """
    if not storage.exists(uri):
        return []
    records = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if line.strip():
            records.append(kind.from_json(line, f"{uri}, line {number}"))
    return records


# ------------------------------------------------------------------ versions and keys


def _check_version(cls: type[Record], version: Any, source: str) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(f"{source}: damaged, {VERSION_KEY} must be a whole number >= 1, "
                          f"got {version!r}")  # fmt: skip
    if version > cls.SCHEMA_VERSION:
        raise NewerRecordError(
            f"{source}: {VERSION_KEY} {version} is newer than this specray reads "
            f"({cls.__name__} up to version {cls.SCHEMA_VERSION}); upgrade specray to read it"
        )


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What reading a record's file needs of its class, worked out once per class."""

    known: frozenset[str]
    required: tuple[str, ...]
    nested: dict[str, Any]
    """Field -> declared type, for the fields that can hold records."""


@functools.cache
def _layout(cls: type[Record]) -> _Layout:
    hints = _hints(cls)
    return _Layout(
        known=frozenset(hints),
        required=tuple(item.name for item in dataclasses.fields(cls) if _is_required(item)),
        nested={name: hint for name, hint in hints.items() if _holds_records(hint)},
    )


def _check_keys(layout: _Layout, values: dict, source: str) -> None:
    unknown = [name for name in values if name not in layout.known]
    if unknown:
        raise RecordError(f"{source}: damaged, unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [name for name in layout.required if name not in values]
    if missing:
        raise RecordError(f"{source}: damaged, lacks {', '.join(map(repr, missing))}")


def _field_part(problem: FieldTypeError) -> str:
    """``field 'x': ...`` of a FieldTypeError, without the class name before it."""
    return str(problem).split(": ", 1)[1]


def _nested(value: Any, hint: Any, source: str) -> Any:
    """``value`` with the dicts that the hint declares as records read as those records."""
    record = _record_type(hint)
    if record is not None and isinstance(value, dict):
        return record.from_dict(value, source)
    element = _list_of_records(hint)
    if element is not None and isinstance(value, list):
        return [_nested(item, element, f"{source}[{i}]") for i, item in enumerate(value)]
    return value


def _holds_records(hint: Any) -> bool:
    return _record_type(hint) is not None or _list_of_records(hint) is not None


@functools.cache
def _record_type(hint: Any) -> type[Record] | None:
    members = typing.get_args(hint) if _is_union(hint) else (hint,)
    found = [m for m in members if isinstance(m, type) and issubclass(m, Record)]
    return found[0] if found else None


@functools.cache
def _list_of_records(hint: Any) -> Any:
    members = typing.get_args(hint) if _is_union(hint) else (hint,)
    for member in members:
        if typing.get_origin(member) is list and _record_type(typing.get_args(member)[0]):
            return typing.get_args(member)[0]
    return None


def _plain(value: Any) -> Any:
    """A field's value as JSON values (records nested in it as dicts)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# ------------------------------------------------------------------ type checks


@functools.cache
def _hints(cls: type[Record]) -> dict[str, Any]:
    names = {item.name for item in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}


@functools.cache
def _checks(cls: type[Record]) -> dict[str, Check]:
    return {name: _check(hint) for name, hint in _hints(cls).items()}


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}" if value is not None else "null"


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


@functools.cache
def _check(hint: Any) -> Check:
    """The check of one declared type (scalars, Literal, unions, list/dict, records)."""
    if hint is Any:
        return lambda value: None
    if _is_union(hint):
        return _union_check(typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is Literal:
        return _choice_check(typing.get_args(hint))
    if origin is list:
        return _list_check(typing.get_args(hint))
    if origin is dict:
        return _dict_check(typing.get_args(hint))
    return _scalar_check(origin)


def _scalar_check(kind: type) -> Check:
    name = TYPE_NAMES.get(kind, kind.__name__)

    def check(value: Any) -> str | None:
        if isinstance(value, bool) and kind is not bool:
            return f"expected {name}, got {_describe(value)}"
        accepted = (int, float) if kind is float else kind
        return None if isinstance(value, accepted) else f"expected {name}, got {_describe(value)}"

    return check


def _choice_check(choices: tuple) -> Check:
    def check(value: Any) -> str | None:
        if value in choices and not isinstance(value, bool):
            return None
        return f"expected one of {list(choices)}, got {_describe(value)}"

    return check


def _union_check(members: tuple) -> Check:
    checks = [_check(member) for member in members]
    name = " or ".join(type_name(member) for member in members)

    def check(value: Any) -> str | None:
        for member in checks:
            if member(value) is None:
                return None
        return f"expected {name}, got {_describe(value)}"

    return check


def _list_check(args: tuple) -> Check:
    element = _check(args[0]) if args else _check(Any)

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected array, got {_describe(value)}"
        for i, item in enumerate(value):
            problem = element(item)
            if problem:
                return f"[{i}]: {problem}"
        return None

    return check


def _dict_check(args: tuple) -> Check:
    keys, items = (_check(args[0]), _check(args[1])) if args else (_check(Any), _check(Any))

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected object, got {_describe(value)}"
        for key, item in value.items():
            problem = keys(key) or items(item)
            if problem:
                return f"[{key!r}]: {problem}"
        return None

    return check


# ------------------------------------------------------------------ self-description

TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}


def type_name(hint: Any) -> str:
    """A declared type in words, as the JSON file holds it (for errors and documentation)."""
    if hint is Any:
        return "any value"
    if _is_union(hint):
        return " or ".join(type_name(member) for member in typing.get_args(hint))
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin is Literal:
        return " or ".join(json.dumps(choice) for choice in args)
    if origin is list and args:
        return f"array of ({type_name(args[0])})"
    if origin is dict and args:
        return f"object of ({type_name(args[1])})"
    if isinstance(origin, type) and issubclass(origin, Record):
        return f"object ({origin.__name__})"
    return TYPE_NAMES.get(origin, getattr(origin, "__name__", str(origin)))


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: meaning}`` from the string under each annotated field in ``cls``'s source:
    the one place a field is documented, read by ``specray config --show`` and by the
    generated schema documents."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def field_table(cls: type[Record]) -> list[tuple[str, str, bool, str]]:
    """(key, type in words, required, meaning) of every field of a record, in file order."""
    docs, hints = attribute_docs(cls), _hints(cls)
    return [
        (item.name, type_name(hints[item.name]), _is_required(item), docs.get(item.name, ""))
        for item in dataclasses.fields(cls)
    ]


def _is_required(item: dataclasses.Field) -> bool:
    """A field without a default: every file must hold it."""
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def markdown_table(cls: type[Record]) -> str:
    """A Markdown table of a record's file: every key (``schema_version`` first), its type
    and its meaning, from the record's definition (for generated schema documents)."""
    version = (
        f"The layout's version, {cls.SCHEMA_VERSION} in files this specray writes; a file "
        f"without it is version {UNVERSIONED}."
    )
    lines = ["| key | type | meaning |", "|---|---|---|"]
    lines.append(f"| `{VERSION_KEY}` | {type_name(int)} | {version} |")
    for key, kind, required, meaning in field_table(cls):
        kind = kind if required else f"{kind} (optional)"
        lines.append(f"| `{key}` | {kind} | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
