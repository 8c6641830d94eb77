"""URIs to filesystems, for local paths and ``s3://`` alike, with atomic writes.

Every stage reads and writes URIs, so the same code serves a laptop folder and a bucket.
S3-compatible endpoints come from the standard AWS environment variables:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g. MinIO, Ceph, a local moto server),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, and
``AWS_DEFAULT_REGION``. No credential is ever written in code or configuration.

Atomic writes: a local file is written under a temporary name in the same folder and
renamed over the target (``os.replace`` is atomic on POSIX); an S3 object becomes visible
only when its upload completes, so a killed writer leaves nothing a reader would trust.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlparse

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ParamValidationError

from specray.errors import SpecrayError


class StorageError(SpecrayError, OSError):
    """A URI that cannot be used: the message names the URI and what is wrong."""


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def normalize(uri: str) -> str:
    """The one spelling of a location: an absolute local path, or ``s3://bucket/key``.

    ``store/``, ``./store``, ``/abs/store`` and ``file:///abs/store`` name the same folder
    and must compare equal wherever URIs are stored or matched (manifests, shard lists),
    so every stage normalises its arguments once, here.
    """
    text = os.fspath(uri) if not isinstance(uri, str) else uri
    if not text:
        raise StorageError("empty path: give a folder, a file or an s3:// URI")
    if is_remote(text):
        _check_scheme(text)
        scheme, _, rest = text.partition("://")
        parts = [part for part in rest.split("/") if part]
        if not parts:
            raise StorageError(f"{uri}: no bucket in the URI")
        return f"{scheme}://" + "/".join(parts)
    path = text.removeprefix("file://")
    return os.path.abspath(os.path.expanduser(path))


def s3_endpoint() -> str | None:
    """The S3 endpoint URL from the environment, or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _check_scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme if is_remote(uri) else "file"
    if scheme not in ("file", "s3"):
        raise StorageError(f"{uri}: unsupported scheme {scheme!r}; use a local path or s3://")
    return scheme


CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
    "credentials), or AWS_PROFILE for a profile in ~/.aws/credentials"
)

_usable_buckets: set[str] = set()
"""Buckets this process has seen answer (checked once each)."""


def _s3fs() -> fsspec.AbstractFileSystem:
    endpoint = s3_endpoint()
    return fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint} if endpoint else {})


def _check_bucket(fs: fsspec.AbstractFileSystem, uri: str) -> None:
    """Raise StorageError, naming the URI, when its bucket is missing or unreachable.

    Without this, a missing bucket or missing credentials surface later as "no such
    folder", a botocore traceback, or a failed upload that names no bucket.
    """
    bucket = str(uri).removeprefix("s3://").split("/", 1)[0]
    if bucket in _usable_buckets:
        return
    if not bucket:
        raise StorageError(f"{uri}: no bucket in the URI; use s3://BUCKET/PREFIX")
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise StorageError(f"{uri}: bucket {bucket!r} does not exist; create it first") from None
    except PermissionError:
        pass  # no HeadBucket right; object reads and writes may still be allowed
    except NoCredentialsError:
        raise StorageError(f"{uri}: no AWS credentials found; {CREDENTIALS_HINT}") from None
    except ParamValidationError:
        raise StorageError(f"{uri}: {bucket!r} is not a valid bucket name") from None
    except EndpointConnectionError as exc:
        raise StorageError(f"{uri}: cannot reach S3 ({exc}); check AWS_ENDPOINT_URL") from None
    _usable_buckets.add(bucket)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem and the path within it for ``uri``.

    For ``s3://`` the bucket is checked once per process (see ``_check_bucket``).
    """
    scheme = _check_scheme(str(uri))
    if scheme == "s3":
        fs = _s3fs()
        _check_bucket(fs, uri)
        return fs, str(uri).removeprefix("s3://")
    path = str(uri).removeprefix("file://")
    return fsspec.filesystem("file"), os.path.abspath(path)


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A native pyarrow filesystem and path for ``uri`` (fast Parquet reads, Ray Data)."""
    scheme = _check_scheme(str(uri))
    if scheme == "s3":
        _check_bucket(_s3fs(), uri)
        endpoint = s3_endpoint()
        options = {}
        if endpoint:
            parsed = urlparse(endpoint)
            options = {"endpoint_override": parsed.netloc or endpoint, "scheme": parsed.scheme}
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            options["region"] = region
        return pafs.S3FileSystem(**options), str(uri).removeprefix("s3://")
    return pafs.LocalFileSystem(), os.path.abspath(str(uri).removeprefix("file://"))


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with forward slashes."""
    if is_remote(uri):
        return posixpath.join(str(uri).rstrip("/"), *parts)
    return os.path.join(str(uri), *parts)


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URI of a path returned by an fsspec listing."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"s3://{path}" if protocol in ("s3", "s3a") else path


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    """The whole file; a local one may be a pipe (``--config <(...)``). StorageError names
    the file when it is missing or cannot be read."""
    fs, path = filesystem(uri)
    try:
        if is_remote(uri):
            return fs.cat_file(path)
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise StorageError(f"{uri}: no such file") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot be read: {exc}") from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


@contextmanager
def atomic_open(uri: str) -> Iterator[IO[bytes]]:
    """Open ``uri`` for binary writing so that it appears whole or not at all."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        handle = fs.open(path, "wb")
        try:
            yield handle
        except BaseException:
            # Closing would commit the upload, torn as it is: abort it instead.
            handle.discard()
            handle.closed = True
            raise
        handle.close()
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_bytes(uri: str, data: bytes) -> None:
    with atomic_open(uri) as handle:
        handle.write(data)


def write_if_changed(uri: str, data: bytes) -> bool:
    """Write ``data`` atomically unless ``uri`` already holds exactly these bytes.

    Keeps an unchanged file's modification time (or ETag), so a re-run of a deterministic
    writer (the synthetic survey) does not make its files look changed to ingest.
    Returns True if it wrote."""
    fs, path = filesystem(uri)
    if fs.exists(path) and fs.size(path) == len(data) and fs.cat_file(path) == data:
        return False
    atomic_write_bytes(uri, data)
    return True


def atomic_write_text(uri: str, text: str) -> None:
    atomic_write_bytes(uri, text.encode("utf-8"))


def parse_json(uri: str, text: str | bytes) -> Any:
    """The value in a JSON text read from ``uri``; StorageError naming it if it is damaged."""
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"{uri}: damaged, not valid JSON ({exc})") from None


@contextmanager
def _parquet_file(uri: str) -> Iterator[str]:
    """Turn Arrow's complaint about a damaged Parquet file into a StorageError naming it."""
    try:
        yield uri
    except pa.ArrowInvalid as exc:
        raise StorageError(f"{uri}: damaged or not a Parquet file ({exc})") from None


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """The table in one Parquet file (only ``columns`` if given)."""
    fs, path = arrow_filesystem(uri)
    with _parquet_file(uri):
        return pq.read_table(path, filesystem=fs, columns=columns)


def read_parquet_footer(uri: str) -> pq.FileMetaData:
    """The footer of one Parquet file: its schema and row count, without reading rows."""
    fs, path = arrow_filesystem(uri)
    with _parquet_file(uri):
        return pq.read_metadata(path, filesystem=fs)


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path)


@dataclass(frozen=True)
class FileEntry:
    """One input file: its URI, size in bytes and a change marker (mtime or ETag)."""

    uri: str
    size: int
    version: str


def _version(info: dict) -> str:
    for key in ("ETag", "etag", "mtime", "LastModified", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


def list_files(uri: str, suffixes: tuple[str, ...]) -> list[FileEntry]:
    """Every file under ``uri`` (recursively) whose name ends in one of ``suffixes``."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise StorageError(f"{uri}: no such folder or prefix")
    listing = {path: fs.info(path)} if fs.isfile(path) else fs.find(path, detail=True)
    entries = [
        FileEntry(to_uri(fs, name), int(info.get("size") or 0), _version(info))
        for name, info in sorted(listing.items())
        if name.lower().endswith(suffixes) and info.get("type", "file") == "file"
    ]
    return entries
