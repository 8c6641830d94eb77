"""Progress a person can read: a live line for long stages, one line when each ends.

A stage is a :class:`Progress` (a context manager) with a total and a unit. Work done on
the driver calls :meth:`Progress.advance`; work done in Ray tasks or Train workers reports
through :attr:`Progress.tally`, a handle to a tiny actor, with :func:`report` (a no-op
when the handle is None, so the same task code runs with progress off; it returns once
the actor has the report, so a finished task's reports are all counted). A thread on the
driver reads the counts and draws:

* on a terminal, one line redrawn in place: ``train  42% |########            |
  1,530/3,640 steps  51.3 steps/s  ETA 41 s  loss 0.1234``;
* elsewhere (a file, CI), the same line at most every :data:`LOG_INTERVAL_S` seconds;
* at the end, one line: ``train: 3,640 steps in 71 s (51.3 steps/s)``, the rate there
  being the count over the whole time.

Messages a worker sends (``report(tally, message=...)``, e.g. an epoch summary) are printed
as lines of their own. Everything goes to stderr, so a command's stdout holds its result
only. Off until :func:`enable` is called (the CLI does, unless ``-q``): library calls and
tests stay silent.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, TextIO

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal."""
REDRAW_S = 0.5
"""Seconds between redraws on a terminal (and between polls of the tally)."""
BAR_WIDTH = 20
DRAIN_S = 2.0
"""Seconds a finished stage waits for its workers' last reports to arrive."""

_enabled = False


def enable(on: bool = True) -> None:
    """Turn progress display on (the CLI, unless ``-q``) or off."""
    global _enabled
    _enabled = on


def enabled() -> bool:
    return _enabled


class _Tally:
    """Counts and messages from remote reporters (a Ray actor; see :func:`_tally_actor`)."""

    def __init__(self) -> None:
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.messages: list[str] = []

    def add(self, n: int = 0, done: int | None = None, message: str = "", **fields: Any) -> None:
        self.done = int(done) if done is not None else self.done + int(n)
        self.fields.update(fields)
        if message:
            self.messages.append(message)

    def take(self) -> tuple[int, dict, list[str]]:
        messages, self.messages = self.messages, []
        return self.done, dict(self.fields), messages


def _tally_actor():
    import ray

    return ray.remote(num_cpus=0)(_Tally).remote()


REPORT_TIMEOUT_S = 10.0
"""How long a reporter waits for the tally to take its report, seconds."""


def report(tally: Any, n: int = 0, done: int | None = None, message: str = "", **fields) -> None:
    """From a task or worker: ``n`` more units done (or ``done`` in all), display fields
    (e.g. ``loss=0.12``) and an optional message line; None: no-op.

    Waits until the tally has the report (a local round trip, far shorter than the work
    it counts): a task's reports are then all counted when the task returns, so the closing
    line is exact however loaded the machine, instead of racing the reports still in
    flight. A display must never break the work: a tally that is gone or slow is ignored.
    """
    if tally is None:
        return
    import ray

    with contextlib.suppress(Exception):  # the display's failure is not the work's
        ray.get(tally.add.remote(n, done, message, **fields), timeout=REPORT_TIMEOUT_S)


def format_duration(seconds: float) -> str:
    """``41 s``, ``3 min 12 s``, ``2 h 05 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_line(
    label: str, done: int, total: int | None, unit: str, rate: float | None, fields: dict
) -> str:
    """The live line: percentage and bar (with a total), counts, rate (units per second),
    ETA, fields."""
    parts = [label]
    if total:
        fraction = min(done / total, 1.0)
        filled = int(round(fraction * BAR_WIDTH))
        parts.append(f"{fraction:4.0%} |{'#' * filled}{' ' * (BAR_WIDTH - filled)}|")
        parts.append(f"{done:,}/{total:,} {unit}")
    else:
        parts.append(f"{done:,} {unit}")
    if rate:
        parts.append(f"{rate:.3g} {unit}/s")
        if total and done < total:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
    parts += [f"{key} {_value(value)}" for key, value in fields.items()]
    return "  ".join(parts)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """One stage's progress (see the module docstring); use as a context manager."""

    def __init__(
        self,
        label: str,
        total: int | None,
        unit: str,
        remote: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.active = enabled()
        self.tally = _tally_actor() if self.active and remote else None
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._started = time.monotonic()
        self._last_log = self._started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()
        self._drawn = False
        self._origin: tuple[float, int] | None = None
        """(time, count) when the first unit was seen: rates leave out the start-up."""

    def rate(self) -> float | None:
        """Units per second since the first unit was seen; None until more were seen."""
        now = time.monotonic()
        with self._lock:
            if self._origin is None:
                return None
            since, count = self._origin
            done = self.done
        return (done - count) / (now - since) if now > since and done > count else None

    def _count(self, done: int) -> None:
        """Set the count (under the lock); the first non-zero count starts the rate clock."""
        self.done = done
        if self._origin is None and done:
            self._origin = (time.monotonic(), done)

    def __enter__(self) -> Progress:
        if self.active:
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.active:
            return
        self._stop.set()
        self._thread.join()
        self._drain()
        elapsed = time.monotonic() - self._started
        # The closing rate is the plain ratio of the two numbers beside it (start-up
        # included), so the line agrees with itself; the live line's rate leaves start-up
        # out, which is what an ETA needs. Under a second ("in 0 s") a rate means nothing.
        timed = self.done and elapsed >= 1.0
        rate_text = f" ({self.done / elapsed:.3g} {self.unit}/s)" if timed else ""
        stopped = "stopped after " if exc_type else ""
        self._print(
            f"{self.label}: {stopped}{self.done:,} {self.unit} in "
            f"{format_duration(elapsed)}{rate_text}"
        )
        if self.tally is not None:
            import ray

            ray.kill(self.tally)

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` more units done on the driver; ``fields`` are shown after the rate."""
        with self._lock:
            self._count(self.done + n)
            self.fields.update(fields)

    def note(self, line: str) -> None:
        """Print ``line`` on its own, above the live line (a finished trial, a stage's step)."""
        if self.active:
            self._print(line)

    # -- drawing

    def _run(self) -> None:
        while not self._stop.wait(REDRAW_S):
            self._poll()
            self._draw()

    def _drain(self, wait_s: float = DRAIN_S) -> None:
        """Last reads of the tally: reports a finished task sent just before it returned
        may still be in flight (Ray orders calls per caller, not across callers), so read
        until the total is reached or ``wait_s`` seconds have passed."""
        deadline = time.monotonic() + wait_s
        self._poll()
        while self.tally is not None and self.done < (self.total or 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            self._poll()

    def _poll(self) -> None:
        if self.tally is None:
            return
        import ray

        try:
            done, fields, messages = ray.get(self.tally.take.remote(), timeout=10)
        except Exception:  # a display must never break the work it displays
            return
        with self._lock:
            self._count(max(self.done, done))
            self.fields.update(fields)
        for message in messages:
            self._print(message)

    def _draw(self) -> None:
        rate = self.rate()
        with self._lock:
            line = format_line(self.label, self.done, self.total, self.unit, rate, self.fields)
        if self.stream.isatty():
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_log >= LOG_INTERVAL_S:
            self._last_log = time.monotonic()
            self._print(line)

    def _print(self, line: str) -> None:
        prefix = "\r\033[K" if self._drawn else ""
        self._drawn = False
        self.stream.write(prefix + line + "\n")
        self.stream.flush()
