"""The typed-record machinery (specray.records) on a small record of its own: round trips,
type checks naming the file and the field, files older and newer than the code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from specray import storage
from specray.records import (
    FieldTypeError,
    NewerRecordError,
    Record,
    RecordError,
    attribute_docs,
    field_table,
    omitted,
    read_lines,
    type_name,
    write_lines,
)


@dataclass(frozen=True)
class Part(Record):
    """A record nested in another."""

    name: str
    """What it is called."""


@dataclass(frozen=True)
class Sample(Record):
    """A record with one field of each kind the real ones use."""

    INDENT = 2
    NEWLINE = True

    count: int
    """How many."""
    ratio: float
    status: Literal["ok", "bad"]
    tags: list[str] = field(default_factory=list)
    extra: dict | None = None
    parts: list[Part] = field(default_factory=list)


@dataclass(frozen=True)
class Line(Record):
    id: str
    transient: bool = omitted(False)


SAMPLE = Sample(3, 0.5, "ok", ["a"], {"k": [1, 2]}, [Part("x")])


def test_a_record_round_trips_through_its_file(tmp_path):
    uri = str(tmp_path / "sample.json")
    SAMPLE.write(uri)
    text = (tmp_path / "sample.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "schema_version": 1,')
    assert Sample.read(uri) == SAMPLE
    assert json.loads(text)["parts"] == [{"schema_version": 1, "name": "x"}]


def test_line_records_round_trip_and_leave_omitted_defaults_out(tmp_path):
    uri = str(tmp_path / "lines.jsonl")
    lines = [Line("a"), Line("b", transient=True)]
    write_lines(uri, lines)
    assert (tmp_path / "lines.jsonl").read_text().splitlines() == [
        '{"schema_version": 1, "id": "a"}',
        '{"schema_version": 1, "id": "b", "transient": true}',
    ]
    assert read_lines(Line, uri) == lines
    assert read_lines(Line, str(tmp_path / "none.jsonl")) == []


def test_a_file_without_schema_version_reads_as_version_1():
    old = {"count": 3, "ratio": 1, "status": "bad"}
    assert Sample.from_dict(old, "old.json") == Sample(3, 1, "bad")


def test_a_newer_schema_version_is_refused_with_a_clear_message():
    newer = {"schema_version": 2, "count": 3, "ratio": 1.0, "status": "ok"}
    with pytest.raises(NewerRecordError, match=r"new\.json: schema_version 2 is newer .*upgrade"):
        Sample.from_dict(newer, "new.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": "3"}, r"field 'count': expected integer, got str '3'"),
        ({"count": True}, r"field 'count': expected integer, got bool True"),
        ({"ratio": None}, r"field 'ratio': expected number, got null"),
        ({"status": "fine"}, r"field 'status': expected one of \['ok', 'bad'\]"),
        ({"tags": ["a", 2]}, r"field 'tags': \[1\]: expected string, got int 2"),
        ({"extra": [1]}, r"field 'extra': expected object or null, got list"),
        ({"parts": [{"name": 1}]}, r", parts\[0\]: damaged, field 'name'"),
        ({"surprise": 1}, r"unknown field\(s\) 'surprise'"),
        ({"schema_version": "1"}, r"schema_version must be a whole number"),
    ],
)
def test_a_wrong_typed_file_names_the_file_and_the_field(change, message):
    values = {"count": 3, "ratio": 1.0, "status": "ok", **change}
    with pytest.raises(RecordError, match=r"sample\.json.*" + message):
        Sample.from_dict(values, "sample.json")


def test_a_damaged_file_names_the_file_and_what_is_missing(tmp_path):
    uri = str(tmp_path / "sample.json")
    storage.atomic_write_text(uri, '{"count": 3')
    with pytest.raises(storage.StorageError, match=f"{uri}: damaged, not valid JSON"):
        Sample.read(uri)
    storage.atomic_write_text(uri, '{"count": 3}')
    with pytest.raises(RecordError, match=f"{uri}: damaged, lacks 'ratio', 'status'"):
        Sample.read(uri)
    storage.atomic_write_text(uri, "[1, 2]")
    with pytest.raises(RecordError, match=f"{uri}: damaged, holds list .*, not an object"):
        Sample.read(uri)


def test_a_damaged_line_is_named_by_file_and_line(tmp_path):
    uri = str(tmp_path / "lines.jsonl")
    (tmp_path / "lines.jsonl").write_text('{"id": "a"}\n\n{"id": 5}\n')
    with pytest.raises(RecordError, match=rf"{uri}, line 3: damaged, field 'id'"):
        read_lines(Line, uri)


def test_a_record_made_in_code_with_a_wrong_type_is_a_bug_not_a_user_error():
    with pytest.raises(FieldTypeError, match="Sample: field 'count'"):
        Sample("3", 0.5, "ok")
    assert not issubclass(FieldTypeError, RecordError)


def test_records_describe_themselves_from_their_definitions():
    assert attribute_docs(Sample) == {"count": "How many."}
    rows = field_table(Sample)
    assert rows[0] == ("count", "integer", True, "How many.")
    assert rows[3][:3] == ("tags", "array of (string)", False)
    assert type_name(dict | None) == "object or null"
    assert type_name(Literal["ok", "bad"]) == '"ok" or "bad"'
