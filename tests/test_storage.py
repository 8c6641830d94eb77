"""The storage layer on its own: one spelling per location, writes that appear whole or not
at all (on disk and on a real S3 endpoint), and damaged files named in the error."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specray import storage
from specray.storage import StorageError


def test_relative_absolute_and_file_uris_are_one_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spellings = ["store", "./store/", str(tmp_path / "store"), f"file://{tmp_path}/store"]
    assert {storage.normalize(uri) for uri in spellings} == {str(tmp_path / "store")}
    assert storage.normalize("s3://bucket//prefix/") == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [("", "empty path"), ("s3://", "no bucket"), ("gs://bucket/x", "unsupported scheme 'gs'")],
)
def test_unusable_locations_are_refused_by_name(uri, problem):
    with pytest.raises(StorageError, match=problem):
        storage.normalize(uri)


@pytest.fixture(params=["local", "s3"])
def folder(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket")


def listing(folder: str) -> list[str]:
    fs, path = storage.filesystem(folder)
    return sorted(os.path.basename(name) for name in fs.find(path))


@pytest.mark.parametrize("written", [12, 12_000_000], ids=["small", "multipart"])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_debris(folder, written):
    target = storage.join(folder, "manifest.jsonl")
    storage.atomic_write_text(target, '{"id": "a"}\n{"id": "b"}\n')
    with pytest.raises(RuntimeError, match="killed"), storage.atomic_open(target) as handle:
        handle.write(b'{"id": "half' + b"x" * written)  # S3 uploads 5 MB parts as they fill
        raise RuntimeError("killed while writing")
    assert storage.read_text(target) == '{"id": "a"}\n{"id": "b"}\n'
    assert listing(folder) == ["manifest.jsonl"]
    if storage.is_remote(folder):
        import boto3

        bucket = folder.removeprefix("s3://")
        uploads = boto3.client("s3").list_multipart_uploads(Bucket=bucket)
        assert not uploads.get("Uploads"), "an aborted write left a multipart upload open"


def test_write_if_changed_leaves_identical_bytes_untouched(folder):
    target = storage.join(folder, "a.fits")
    assert storage.write_if_changed(target, b"spectrum v1") is True
    fs, path = storage.filesystem(target)
    before = storage.list_files(folder, (".fits",))
    assert storage.write_if_changed(target, b"spectrum v1") is False
    assert storage.list_files(folder, (".fits",)) == before  # same size and change marker
    assert storage.write_if_changed(target, b"spectrum v2") is True
    assert fs.cat_file(path) == b"spectrum v2"


def test_damaged_json_and_parquet_files_are_named(folder):
    descriptor = storage.join(folder, "store.json")
    shard = storage.join(folder, "part-0.parquet")
    for uri in (descriptor, shard):
        storage.atomic_write_bytes(uri, b"\x00torn")
    with pytest.raises(StorageError, match=f"{descriptor}: damaged, not valid JSON"):
        storage.parse_json(descriptor, storage.read_bytes(descriptor))
    with pytest.raises(StorageError, match=f"{shard}: damaged or not a Parquet file"):
        storage.read_parquet(shard)
    with pytest.raises(StorageError, match=f"{shard}: damaged or not a Parquet file"):
        storage.read_parquet_footer(shard)


def test_parquet_round_trip_reads_only_the_asked_columns(folder):
    shard = storage.join(folder, "part-0.parquet")
    table = pa.table({"id": ["a", "b"], "snr": [10.0, 20.0], "teff": [5000.0, 6000.0]})
    fs, path = storage.arrow_filesystem(shard)
    pq.write_table(table, path, filesystem=fs)
    assert storage.read_parquet(shard, columns=["id", "snr"]).to_pydict() == {
        "id": ["a", "b"],
        "snr": [10.0, 20.0],
    }
    assert storage.read_parquet_footer(shard).num_rows == 2


def test_missing_things_are_named(folder):
    with pytest.raises(StorageError, match="none.json: no such file"):
        storage.read_bytes(storage.join(folder, "none.json"))
    with pytest.raises(StorageError, match="no such folder or prefix"):
        storage.list_files(storage.join(folder, "raw"), (".fits",))


def test_listing_is_recursive_sorted_and_by_suffix_in_any_case(folder):
    for name in ("b/ADP.2.FITS", "a/x.fits.gz", "a/notes.txt", "c.fits"):
        storage.atomic_write_bytes(storage.join(folder, name), b"x" * len(name))
    found = storage.list_files(folder, (".fits", ".fits.gz"))
    names = [entry.uri.removeprefix(folder).lstrip("/") for entry in found]
    assert names == ["a/x.fits.gz", "b/ADP.2.FITS", "c.fits"]
    assert [entry.size for entry in found] == [len(name) for name in names]
    assert all(entry.version for entry in found)


def _write_many(target: str, byte: int, times: int, size: int) -> None:
    for _ in range(times):
        storage.atomic_write_bytes(target, bytes([byte]) * size)


def test_two_processes_writing_one_file_never_leave_it_mixed(tmp_path):
    """Each writer's bytes are uniform; whatever a reader sees at any moment must be one
    writer's whole file, never a splice of both or a truncated one."""
    target = str(tmp_path / "store.json")
    size, times = 4_000_000, 15
    storage.atomic_write_bytes(target, b"\x00" * size)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(target, b, times, size)) for b in (1, 2)]
    for writer in writers:
        writer.start()
    seen = set()
    while any(writer.is_alive() for writer in writers):
        data = np.frombuffer(storage.read_bytes(target), np.uint8)
        assert data.size == size and np.all(data == data[0]), "a reader saw a mixed file"
        seen.add(int(data[0]))
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    final = np.frombuffer(storage.read_bytes(target), np.uint8)
    assert final.size == size and final[0] in (1, 2) and np.all(final == final[0])
    assert os.listdir(tmp_path) == ["store.json"]  # no temporary files left
    assert seen & {1, 2}, "the reader never saw a writer's file: the test proved nothing"
