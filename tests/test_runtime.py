"""Starting Ray: never hijacked by a stale address file, fails fast on a dead cluster, and
leaves no Ray process behind when the command is killed. Each case is a real process with
its own Ray temporary folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from specray.runtime import CONNECT_TIMEOUT_S

START_LOCAL_RAY = """
import sys, time, ray
from specray.runtime import ensure_ray
ensure_ray(num_cpus=3)
print(ray.cluster_resources()["CPU"], ray.get(ray.remote(lambda: 42).remote()), flush=True)
print(ray._private.worker._global_node.get_session_dir_path(), flush=True)
if sys.argv[1] == "wait":
    time.sleep(300)
"""


@pytest.fixture
def ray_tmpdir():
    """A short, private RAY_TMPDIR (Ray's socket paths must stay under 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def dead_address() -> str:
    """host:port on which nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def environment(ray_tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": str(ray_tmpdir), **extra}


def start(ray_tmpdir: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", START_LOCAL_RAY, mode],
        env=environment(ray_tmpdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_stale_address_file_does_not_stop_a_local_start(ray_tmpdir):
    # What a killed `ray start --head` leaves: Ray's address file naming a dead head.
    # A plain ray.init(num_cpus=...) reads it and fails ("num_cpus ... must not be
    # provided"); ensure_ray must start its own Ray.
    (ray_tmpdir / "ray").mkdir()
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(dead_address())
    child = start(ray_tmpdir, "exit")
    out, err = child.communicate(timeout=240)
    assert child.returncode == 0, err[-3000:]
    cpus, answer = out.splitlines()[0].split()
    assert (float(cpus), answer) == (3.0, "42")  # a Ray of our own, with our CPU count


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Ray's workers show only ``ray::IDLE``)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    survivors = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            survivors.add(pid)
    return survivors


@pytest.mark.parametrize(
    ("kill_with", "exit_status"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, None)]
)
def test_a_killed_command_leaves_no_ray_process_behind(ray_tmpdir, kill_with, exit_status):
    child = start(ray_tmpdir, "wait")
    child.stdout.readline()  # Ray answered a task
    session = child.stdout.readline().strip()
    assert session.startswith(str(ray_tmpdir)), child.stderr.read()[-3000:]
    ours = set(processes_mentioning(session)) | descendants(child.pid)
    assert len(processes_mentioning(session)) >= 2  # at least gcs_server and raylet
    child.send_signal(kill_with)
    child.wait(timeout=120)
    err = child.stderr.read()
    if exit_status is not None:
        assert child.returncode == exit_status, err[-3000:]  # a clean exit, not an abort
    else:  # Ctrl-C: KeyboardInterrupt unwinds; a failure exit, but not a crash
        assert "KeyboardInterrupt" in err and child.returncode not in (0, -signal.SIGABRT)
    deadline = time.monotonic() + 30
    while alive(ours) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(ours), [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in alive(ours)]
    assert not processes_mentioning(session)


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "--address"])
def test_joining_a_dead_cluster_fails_fast_naming_the_address(ray_tmpdir, how):
    address = dead_address()
    extra = {"RAY_ADDRESS": address} if how == "RAY_ADDRESS" else {}
    option = ["--address", address] if how == "--address" else []
    command = [sys.executable, "-m", "specray.cli", "-q", *option, "synth"]
    command += ["--out", str(ray_tmpdir / "raw"), "--stars", "1", "--format", "fits"]
    began = time.monotonic()
    done = subprocess.run(
        command, env=environment(ray_tmpdir, **extra), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert f"no Ray cluster answers at {address}" in line and "RAY_ADDRESS" in line
    assert time.monotonic() - began < 60 + CONNECT_TIMEOUT_S  # Ray alone retries for minutes
    assert not (ray_tmpdir / "raw").exists()


OPEN_THE_DASHBOARD = """
import json, logging, subprocess, sys, urllib.request
from specray.cli import main

seen = {}


class OpenDashboard(logging.Handler):
    # Opens the URL the command prints, while the command's Ray is up, as a user would.
    def emit(self, record):
        message = record.getMessage()
        if not message.startswith("Ray dashboard: "):
            return
        seen["line"] = message
        url = message.split()[2]
        token = subprocess.run(["ray", "get-auth-token"], capture_output=True, text=True)
        headers = {"Authorization": "Bearer " + token.stdout.strip()}
        request = urllib.request.Request(url + "/api/version", headers=headers)
        with urllib.request.urlopen(request, timeout=60) as reply:
            seen["answer"] = json.loads(reply.read())


logging.getLogger("specray.runtime").addHandler(OpenDashboard())
code = main(sys.argv[1:])
print(json.dumps(seen))
sys.exit(code)
"""


def test_dashboard_option_serves_the_dashboard_at_the_printed_url(ray_tmpdir):
    script = ray_tmpdir / "open_dashboard.py"
    script.write_text(OPEN_THE_DASHBOARD)
    command = [sys.executable, str(script), "--dashboard", "synth"]
    command += ["--out", str(ray_tmpdir / "raw"), "--stars", "1", "--format", "fits"]
    bin_folder = os.path.dirname(sys.executable)  # `ray`, as the hint tells the user to run
    env = environment(ray_tmpdir, PATH=f"{bin_folder}:{os.environ['PATH']}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["line"] in done.stderr  # printed on the terminal
    assert seen["answer"]["ray_version"] == ray_version()
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled":  # Ray's default: a token
        assert "`ray get-auth-token` prints it" in seen["line"]


def ray_version() -> str:
    import ray

    return ray.__version__


def test_a_local_ray_too_slow_to_start_is_retried_then_named(monkeypatch, caplog):
    """Ray's own 30 s registration limit cannot be hit on demand; its bare Exception can."""
    import ray

    from specray import runtime

    calls = []

    def slow_init(**_):
        calls.append(1)
        raise Exception("The current node timed out during startup. This could happen ...")

    monkeypatch.setattr(ray, "init", slow_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(runtime.RayUnavailable, match=r"did not start in 3 attempts.*load average"):
        runtime._start_local(4)
    assert len(calls) == runtime.STARTUP_ATTEMPTS
    assert caplog.text.count("the local Ray did not start in time") == runtime.STARTUP_ATTEMPTS

    def broken_init(**_):
        raise RuntimeError("something else")

    monkeypatch.setattr(ray, "init", broken_init)
    with pytest.raises(RuntimeError, match="something else"):  # not every failure is load
        runtime._start_local(4)


def test_what_ray_prints_goes_to_the_log_file_unless_verbose(tmp_path, capsys):
    """Ray Tune prints its experiment table with print() whatever its verbosity."""
    from specray import runtime

    log_file = tmp_path / "logs" / "tune.log"
    with runtime.ray_output(str(log_file)), runtime.printed_by_ray():
        print("Configuration for experiment")
    with runtime.ray_output(None), runtime.printed_by_ray():  # --verbose: the terminal
        print("View detailed results here")
    assert capsys.readouterr().out == "View detailed results here\n"
    assert log_file.read_text() == "Configuration for experiment\n"


PUBLISH_RAYLET_MESSAGES = """
import io, os, sys, time, ray
from ray._private.utils import publish_error_to_driver
from specray.runtime import ensure_ray, ray_output

log_file = sys.argv[1]
written = []


class Recording(io.TextIOBase):
    def write(self, text):
        written.append(text)
        return sys.__stdout__.write(text)

    def flush(self):
        sys.__stdout__.flush()


def publish_and_wait(message, arrived):
    client = ray._private.worker.global_worker.gcs_client
    publish_error_to_driver("specray_test", message, gcs_client=client)
    deadline = time.monotonic() + 60
    while not arrived(message):
        assert time.monotonic() < deadline, f"{message} never arrived"
        time.sleep(0.1)


def in_log(message):
    return os.path.exists(log_file) and message in open(log_file).read()


sys.stdout = Recording()
with ray_output(log_file):
    ensure_ray(num_cpus=4)
    publish_and_wait("quiet: 9 PYTHON worker processes have been started", in_log)
publish_and_wait("verbose: the raylet speaks", lambda message: message in "".join(written))
"""


def test_messages_the_raylet_publishes_go_to_the_log_file_unless_verbose(ray_tmpdir, tmp_path):
    """Ray prints its nodes' messages (e.g. "N PYTHON worker processes have been started")
    on the driver's stdout whatever log_to_driver says; a quiet command logs them instead."""
    log_file = tmp_path / "logs" / "ray.log"
    child = subprocess.run(
        [sys.executable, "-c", PUBLISH_RAYLET_MESSAGES, str(log_file)],
        env=environment(ray_tmpdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "raylet: quiet: 9 PYTHON worker processes" in log_file.read_text()
    assert "9 PYTHON" not in child.stdout + child.stderr
    assert "verbose: the raylet speaks" in child.stdout
    assert "verbose" not in log_file.read_text()
