"""Exclusive locks on a URI, for local folders and S3 alike, so two writers never interleave.

``exclusive_lock(uri)`` holds ``uri`` for the duration of a ``with`` block:

* **Local**: ``fcntl.flock`` on the lock file. The kernel releases it when the holder dies
  (even on SIGKILL), so a local lock is never stale. The file is removed on release; a
  waiter that locked a file just removed checks the inode and tries again.
* **S3**: the lock is an object created only if absent (a conditional put, ``If-None-Match:
  *``). Its holder rewrites it every ``heartbeat_s`` seconds (``If-Match`` on its own ETag);
  a lock whose heartbeat is older than ``stale_after_s`` belongs to a dead holder and is
  taken over by a conditional overwrite of exactly that version, so two takers cannot both
  win. A holder that finds its lock taken stops claiming it (:meth:`Lock.check` raises).

The lock body is a :class:`LockRecord` (host, pid, purpose, since, heartbeat), so a refusal
can say who holds the lock and since when.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from specray import storage
from specray.errors import SpecrayError
from specray.records import Record

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often a waiter tries again (seconds)."""


class LockHeld(SpecrayError, RuntimeError):
    """Another process holds the lock: the message says who and since when."""


@dataclass(frozen=True)
class LockRecord(Record):
    """The body of a lock file: who holds the lock, for what, and since when."""

    token: str
    """The holder's random token: a holder releases only a lock that still carries it."""
    purpose: str
    """What the holder is doing ("an ingest", "a retrain"), for the refusal message."""
    host: str
    """The holder's host name."""
    pid: int
    """The holder's process id."""
    since: float
    """When the holder took the lock (Unix time, seconds)."""
    heartbeat: float
    """When the holder last rewrote the lock (Unix time); S3 locks older than
    ``stale_after_s`` belong to a dead holder."""

    @classmethod
    def parse(cls, body: bytes, uri: str) -> LockRecord | None:
        """The holder in a lock body; None when it is empty, being written, or unreadable
        (the lock is held all the same, by someone this cannot name)."""
        try:
            return cls.from_json(body, uri) if body.strip() else None
        except (storage.StorageError, ValueError):
            return None


def _body(purpose: str, token: str, since: float) -> bytes:
    record = LockRecord(
        token=token,
        purpose=purpose,
        host=socket.gethostname(),
        pid=os.getpid(),
        since=since,
        heartbeat=time.time(),
    )
    return record.to_json().encode()


def _describe(uri: str, holder: LockRecord | None) -> str:
    if holder is None:
        return f"{uri} is held by another process"
    minutes = (time.time() - holder.since) / 60
    return (
        f"{uri} is held by {holder.purpose} "
        f"(pid {holder.pid} on {holder.host}, for {minutes:.0f} min)"
    )


class Lock:
    """A held lock; :meth:`check` raises LockHeld if it was lost (S3 takeover)."""

    def __init__(self, uri: str, purpose: str):
        self.uri = uri
        self.purpose = purpose
        self.token = uuid.uuid4().hex
        self.since = time.time()
        self.lost = False

    def check(self) -> None:
        if self.lost:
            raise LockHeld(f"{self.uri}: this run's lock was taken over; nothing was committed")


class _LocalLock(Lock):
    def try_acquire(self, stale_after_s: float) -> bool:
        path = storage.filesystem(self.uri)[1]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        if not os.path.exists(path) or os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)  # the previous holder removed this file while we waited
            return self.try_acquire(stale_after_s)
        os.ftruncate(fd, 0)
        os.write(fd, _body(self.purpose, self.token, self.since))
        self._fd = fd
        return True

    def holder(self) -> LockRecord | None:
        try:
            return LockRecord.parse(storage.read_bytes(self.uri), self.uri)
        except storage.StorageError:
            return None

    def release(self) -> None:
        path = storage.filesystem(self.uri)[1]
        os.remove(path)
        os.close(self._fd)


class _S3Lock(Lock):
    def __init__(self, uri: str, purpose: str, heartbeat_s: float):
        super().__init__(uri, purpose)
        self.fs, self.path = storage.filesystem(uri)
        self.heartbeat_s = heartbeat_s
        self._etag = ""
        self._stop = threading.Event()

    def _put(self, **condition) -> bool:
        try:
            reply = self.fs.pipe_file(
                self.path, _body(self.purpose, self.token, self.since), **condition
            )
        except FileExistsError:
            return False
        except OSError as exc:
            if "pre-condition" in str(exc) or "PreconditionFailed" in str(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(self.path)
        self._etag = reply.get("ETag", "") if isinstance(reply, dict) else ""
        return True

    def holder(self) -> LockRecord | None:
        try:
            return LockRecord.parse(self.fs.cat_file(self.path), self.uri)
        except FileNotFoundError:
            return None

    def try_acquire(self, stale_after_s: float) -> bool:
        if self._put(mode="create"):
            self._start_heartbeat()
            return True
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return False  # released just now: the next poll will take it
        holder = self.holder()
        if holder is None or time.time() - holder.heartbeat < stale_after_s:
            return False
        if not self._put(IfMatch=info["ETag"]):
            return False  # someone else took it over first
        log.warning("%s: took over a stale lock (%s)", self.uri, _describe(self.uri, holder))
        self._start_heartbeat()
        return True

    def _start_heartbeat(self) -> None:
        thread = threading.Thread(target=self._beat, name="specray-lock-heartbeat", daemon=True)
        thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self._put(IfMatch=self._etag):
                log.error("%s: lost the lock to another process", self.uri)
                self.lost = True
                return

    def release(self) -> None:
        self._stop.set()
        holder = self.holder()
        if not self.lost and holder is not None and holder.token == self.token:
            self.fs.rm(self.path)


@contextmanager
def exclusive_lock(
    uri: str,
    purpose: str = "another specray run",
    wait_s: float = 0.0,
    stale_after_s: float = 600.0,
    heartbeat_s: float = 30.0,
) -> Iterator[Lock]:
    """Hold the lock at ``uri`` for the ``with`` block, or raise LockHeld.

    ``wait_s``: how long to wait for the holder to finish (seconds; 0 = refuse at once,
    ``float('inf')`` = wait for ever). ``stale_after_s`` and ``heartbeat_s`` apply to S3.
    """
    lock = (
        _S3Lock(uri, purpose, heartbeat_s) if storage.is_remote(uri) else _LocalLock(uri, purpose)
    )
    deadline = time.monotonic() + wait_s
    announced = False
    while not lock.try_acquire(stale_after_s):
        if time.monotonic() >= deadline:
            raise LockHeld(_describe(uri, lock.holder()))
        if not announced:
            log.warning("waiting: %s", _describe(uri, lock.holder()))
            announced = True
        time.sleep(POLL_S)
    try:
        yield lock
    finally:
        lock.release()
