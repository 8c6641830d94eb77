"""Starting or joining Ray, the same way for every stage.

A command joins a cluster only when told to: by ``RAY_ADDRESS`` (as under ``ray job
submit``) or by the CLI's ``--address``. Otherwise it starts a fresh local Ray of its own
with ``ray.init(address="local")``. A plain ``ray.init()`` would instead read the
address file ``ray_current_cluster`` in Ray's temporary folder (written by ``ray
start``, left behind when that head is killed) and try to join it: with ``num_cpus``
given it then fails with "num_cpus and num_gpus must not be provided", and without it
it hangs on a dead address. ``"local"`` skips that file.

A local Ray we started is shut down when the command ends, also when it is killed with
SIGTERM or SIGHUP: their default action ends the process without running ``atexit``, so
Ray's own shutdown hook would not run and its helper processes would outlive the
command. We turn them into a normal exit. SIGINT (Ctrl-C) already unwinds through
KeyboardInterrupt and ``atexit``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import ray

from specray.errors import SpecrayError

log = logging.getLogger(__name__)

MIN_LOGICAL_CPUS = 4
"""Train and Data deadlock when Train's workers hold every CPU (ray-notes.md): on a small
machine we declare at least this many logical CPUs. They are bookkeeping, not cores."""

LOCAL = "local"
"""The address that means "start a new local Ray" (Ray's own spelling)."""

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a cluster's port to accept a connection before giving up, seconds.
Ray itself retries an unreachable address for minutes."""

_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_requested_address: str | None = None
_forward_worker_output = True
_dashboard = False
_log_file: str | None = None

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")
"""Ray's Python loggers on the driver: its progress lines, warnings and status messages."""


class RayUnavailable(SpecrayError, ConnectionError):
    """The Ray cluster named by RAY_ADDRESS or --address cannot be joined, or a local one
    cannot be started."""


@contextlib.contextmanager
def cluster_address(address: str | None) -> Iterator[None]:
    """Within the block, ``ensure_ray`` joins ``address`` (None: RAY_ADDRESS or local)."""
    global _requested_address
    previous, _requested_address = _requested_address, address
    try:
        yield
    finally:
        _requested_address = previous


def requested_address() -> str | None:
    """The cluster to join: --address, else RAY_ADDRESS, else None (start a local Ray)."""
    address = _requested_address or os.environ.get("RAY_ADDRESS") or None
    return None if address == LOCAL else address


@contextlib.contextmanager
def ray_output(log_file: str | None, dashboard: bool = False) -> Iterator[None]:
    """Within the block, Ray's own output goes to ``log_file`` instead of the terminal.

    ``log_file`` None leaves Ray as it is (``--verbose``). Otherwise: Ray's driver-side
    loggers write to the file only; Ray Data draws no progress bars; a Ray started or
    joined here does not forward its workers' stdout and stderr (they stay in Ray's
    session logs, whose folder the file names). specray's own progress and log lines are
    untouched. ``dashboard`` starts the local Ray with its dashboard (URL logged).
    """
    global _forward_worker_output, _dashboard, _log_file
    _dashboard = dashboard
    if log_file is None:
        try:
            yield
        finally:
            _dashboard = False
        return
    import ray.data  # noqa: F401  (configures its loggers on import: do it before redirecting)
    from ray.data import DataContext

    handler = _FolderCreatingFileHandler(log_file, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {name: _redirect(logging.getLogger(name), handler) for name in RAY_LOGGERS}
    context = DataContext.get_current()
    bars = context.enable_progress_bars, context.print_on_execution_start
    context.enable_progress_bars = context.print_on_execution_start = False
    _forward_worker_output, _log_file = False, log_file
    restore_printing = _raylet_messages_to(logging.getLogger("ray"))
    try:
        yield
    finally:
        restore_printing()
        _forward_worker_output, _dashboard, _log_file = True, False, None
        context.enable_progress_bars, context.print_on_execution_start = bars
        for name, state in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate, logger.level = state
        handler.close()


def _raylet_messages_to(logger: logging.Logger):
    """Send the messages Ray's nodes publish to the driver (e.g. "N PYTHON worker
    processes have been started ...") to ``logger`` instead of stdout; returns the undo.

    Ray's driver thread ``listen_error_messages`` prints them with
    ``ray._private.worker.print_to_stdstream`` whatever ``log_to_driver`` says. It looks
    that function up by name on every message, so replacing the module's attribute
    reroutes them; worker output (``log_to_driver``) still goes the original way. A Ray
    without that function is left alone.
    """
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        return lambda: None

    def print_or_log(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)
            return
        for line in data.get("lines", []):
            logger.warning("raylet: %s", line)

    worker.print_to_stdstream = print_or_log
    return lambda: setattr(worker, "print_to_stdstream", original)


class _FolderCreatingFileHandler(logging.FileHandler):
    """A file handler that creates its folder when the first record arrives: a command
    that fails before Ray says anything (a typo in a path) leaves no folder behind."""

    def _open(self):
        return _open_log(self.baseFilename)


def _open_log(path: str):
    """``path`` open for appending text, its folder created first."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return open(path, "a", encoding="utf-8")


@contextlib.contextmanager
def printed_by_ray() -> Iterator[None]:
    """Within the block, what Ray prints with ``print`` (Ray Tune's experiment table and
    result hints, whatever its verbosity) goes to the log file of :func:`ray_output`,
    keeping stdout for specray's results; as it is with ``--verbose``."""
    if _log_file is None:
        yield
        return
    with _open_log(_log_file) as log_stream, contextlib.redirect_stdout(log_stream):
        yield


def ray_is_quiet() -> bool:
    """True inside :func:`ray_output` with a log file: Ray should print nothing itself."""
    return _log_file is not None


def _redirect(logger: logging.Logger, handler: logging.Handler) -> tuple:
    """Send ``logger``'s records to ``handler`` only (INFO and up); return what it had."""
    saved = (list(logger.handlers), logger.propagate, logger.level)
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return saved


def session_log_folder() -> str | None:
    """Where the running Ray keeps its processes' logs (None when unknown)."""
    try:
        context = ray.get_runtime_context()
        return os.path.join(context.get_temp_dir(), context.get_session_name(), "logs")
    except Exception:  # an older or remote Ray without these: say nothing rather than fail
        return None


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join the requested cluster (see ``requested_address``) or start a local one.

    A local Ray gets ``max(4, 2 x cores)`` logical CPUs unless ``num_cpus`` says
    otherwise; ``num_cpus`` is ignored when joining (the cluster has its own).
    """
    if ray.is_initialized():
        return
    address = requested_address()
    if address:
        _join(address)
        return
    cpus = num_cpus or max(MIN_LOGICAL_CPUS, 2 * (os.cpu_count() or 1))
    log.info("starting a local Ray with %d logical CPUs", cpus)
    handlers = _current_handlers()
    context = _start_local(cpus)
    _shut_down_on_signals(handlers)
    if _dashboard:
        log.info("Ray dashboard: http://%s%s", context.dashboard_url, _sign_in_hint())
    if _log_file:
        log.info(
            "Ray's messages go to %s (--verbose shows them); its processes' logs are in %s",
            _log_file, session_log_folder(),
        )  # fmt: skip


STARTUP_ATTEMPTS = 3
"""Ray gives its local processes a fixed 30 s to register; a loaded machine can miss that."""


def _start_local(cpus: int):
    """``ray.init`` of a local Ray, tried again when its processes were too slow to start."""
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            return ray.init(
                address=LOCAL,
                num_cpus=cpus,
                include_dashboard=_dashboard,
                logging_level=logging.WARNING,
                log_to_driver=_forward_worker_output,
            )
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
            load = os.getloadavg()[0]
            log.warning("the local Ray did not start in time (attempt %d of %d, load "
                        "average %.1f on %d cores)", attempt, STARTUP_ATTEMPTS, load,
                        os.cpu_count() or 1)  # fmt: skip
    raise RayUnavailable(
        f"the local Ray did not start in {STARTUP_ATTEMPTS} attempts: its processes took "
        f"over 30 s to register (load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count() or 1} cores); run again when the machine is less busy"
    )


def _sign_in_hint() -> str:
    """How to open the dashboard when Ray guards it with a token (a local Ray does by
    default since 2.5x: ``ray.init`` sets RAY_AUTH_MODE=token for itself and its children)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ""
    return " (it asks for Ray's token: `ray get-auth-token` prints it)"


def _join(address: str) -> None:
    """Connect to the cluster at ``address``; a RayUnavailable names it if that fails."""
    hint = "set RAY_ADDRESS (or --address) to a running cluster, or unset it to start a local Ray"
    _check_reachable(address, hint)
    log.info("joining the Ray cluster at %s", address)
    try:
        ray.init(address=address, log_to_driver=_forward_worker_output)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: {exc}; {hint}") from exc


def _host_and_port(address: str) -> tuple[str, int] | None:
    """Host and port of a ``host:port`` or ``scheme://host:port`` address, else None."""
    location = address.split("://", 1)[-1].rstrip("/")
    host, _, port = location.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, hint: str) -> None:
    """Fail fast when nothing listens at ``address`` (Ray would retry for minutes)."""
    if address == "auto":
        return
    endpoint = _host_and_port(address)
    if endpoint is None:
        raise RayUnavailable(f"Ray address {address!r} is not host:port; {hint}")
    try:
        socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayUnavailable(f"no Ray cluster answers at {address} ({exc}); {hint}") from None


def _current_handlers() -> dict[int, object]:
    """The Python-level handlers of the shutdown signals, before Ray replaces them."""
    return {number: signal.getsignal(number) for number in _SHUTDOWN_SIGNALS}


def _shut_down_on_signals(before: dict[int, object]) -> None:
    """Make SIGTERM and SIGHUP a normal exit, so atexit shuts our local Ray down.

    ``ray.init`` sets a Python SIGTERM handler, and then its core worker installs a C-level
    crash handler over it that prints a stack and aborts, skipping atexit. So we re-arm,
    from Python, what was there before ``ray.init``: the caller's own handler if it set
    one, else ours. Only the main thread may set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for number, handler in before.items():
        default = handler in (signal.SIG_DFL, None)
        signal.signal(number, _exit_on_signal if default else handler)


def _exit_on_signal(number: int, _frame) -> None:
    """Raise SystemExit(128 + signal): the shell's convention for a killed command."""
    signal.signal(number, signal.SIG_DFL)  # a second signal kills at once
    log.warning("%s received: shutting down Ray", signal.Signals(number).name)
    sys.exit(128 + number)
