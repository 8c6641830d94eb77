"""End to end: a real Ray head on 127.0.0.1, token authentication on, `ray job submit`.

The head is started the way docs/cluster.md tells users to (``ray start --head`` from the
project's virtual environment, so the entrypoint's ``python`` is the venv's), with free
ports in place of Ray's fixed defaults and its own ``--temp-dir``, so it does not collide
with another Ray on the machine. ``HOME`` points into the test's folder: ``ray get-auth-token --generate`` writes
the token to ``$HOME/.ray/auth_token``, ``ray start`` finds it there and turns token
authentication on (Ray 2.60's default when a token exists), and the test never reads or
replaces the user's own token. The client gets ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN``, as a user's laptop would.

The head runs with ``--block``; stopping it means ending that one process (its Node
shuts down what it started), then, by pid, any process whose command line or working
directory lies under this head's unique folder (a job driver runs in a session of its
own). ``ray stop`` is never called: it stops every Ray on the machine, other people's too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
DATA = REPO / "tests" / "data"

# What `--working-dir .` must not upload (Ray 2.60 also skips .git, .venv and __pycache__
# by default and honours .gitignore; being explicit keeps the upload small on any version).
EXCLUDES = [".venv", "venv", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache"]
EXCLUDES += [".ruff_cache", "specray-demo", ".whl", ".gl"]

AUTH_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class Head:
    url: str
    token: str
    log: Path

    def client_env(self, token: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token or self.token)
        return env

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _processes_in(root: Path) -> list[int]:
    """Processes whose command line or working directory lies under ``root`` (Linux /proc)."""
    marker, found = str(root), []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or not ours to inspect
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(int(entry.name))
    return found


def _stop_head(proc: subprocess.Popen, root: Path) -> None:
    """End the head this test started, and only it: its pid, then what runs under its dir."""
    if proc.poll() is None:
        proc.terminate()  # `ray start --block` shuts its node down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # Stragglers, e.g. a job driver (Ray starts it in a session of its own).
    _signal(_processes_in(root), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (left := _processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    _signal(left, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Head]:
    # A short root: Ray puts Unix sockets under it (107-byte path limit).
    root = Path(tempfile.mkdtemp(prefix="specray-head-"))
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # a test head: no 30 s drain on SIGTERM
    # Ports Ray would otherwise take at fixed defaults (6379, 8265, 52365, 10001), which
    # another Ray on this machine may hold; Ray picks the others at random itself.
    gcs, dash, agent_http, client = _free_ports(4)
    log = root / "ray-start.log"
    command = [
        RAY, "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--dashboard-agent-listen-port", str(agent_http),
        "--ray-client-server-port", str(client),
        "--num-cpus", "4", "--temp-dir", str(root / "ray"), "--disable-usage-stats",
    ]  # fmt: skip
    proc = None
    try:
        # Ray's own way to make a token: $HOME/.ray/auth_token, where `ray start` finds it.
        subprocess.run(
            [RAY, "get-auth-token", "--generate"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        token = (home / ".ray" / "auth_token").read_text().strip()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        head = Head(f"http://127.0.0.1:{dash}", token, log)
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if head.get("/api/jobs/", token=token)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer in 180 s:\n{log.read_text()}")
            time.sleep(1)
        yield head
    finally:
        if proc is not None:
            _stop_head(proc, root)
        shutil.rmtree(root, ignore_errors=True)


def _synth_available() -> bool:
    try:
        import specray.data.synth_store  # noqa: F401
        import specray.spectra.synth  # noqa: F401
    except ImportError:
        return False
    return True


def test_token_auth_is_on(ray_head):
    """Without the token the job API refuses; with a wrong one too."""
    assert ray_head.get("/api/jobs/")[0] == 401
    assert ray_head.get("/api/jobs/", token="not-the-token")[0] == 403
    assert ray_head.get("/api/jobs/", token=ray_head.token)[0] == 200


def test_submit_stage_job(ray_head, tmp_path):
    """`ray job submit --working-dir . -- python jobs/<stage>.py ...` runs the stage."""
    if _synth_available():
        out = tmp_path / "synth"
        stage = ["python", "jobs/synth.py", "--out", str(out), "--stars", "3", "--epochs", "1"]
        stage += ["--format", "fits", "--seed", "1"]
    else:  # synth not there yet: ingest the two real HARPS files instead
        out = tmp_path / "store"
        stage = ["python", "jobs/ingest.py", str(DATA), "--out", str(out), "--grid", "harps"]
    submission_id = f"specray-test-{uuid.uuid4().hex[:8]}"
    command = [
        RAY, "job", "submit", "--address", ray_head.url, "--submission-id", submission_id,
        "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
        "--", *stage,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=ray_head.client_env(), capture_output=True, text=True, timeout=420
    )
    status, body = ray_head.get(f"/api/jobs/{submission_id}", token=ray_head.token)
    status_logs, logs = ray_head.get(f"/api/jobs/{submission_id}/logs", token=ray_head.token)
    logs = json.loads(logs)["logs"] if status_logs == 200 else logs
    report = (
        f"ray job submit exited {result.returncode}\n--- client:\n{result.stdout}\n"
        f"{result.stderr}\n--- job ({status}): {body}\n--- job logs:\n{logs}\n"
        f"--- head log tail:\n{ray_head.log.read_text()[-3000:]}"
    )
    assert result.returncode == 0, report
    assert status == 200 and json.loads(body)["status"] == "SUCCEEDED", report
    assert json.loads(body)["entrypoint"].startswith(f"python {stage[1]}"), report
    assert str(out) in logs, report  # the stage's summary line, printed by the driver

    if stage[1] == "jobs/synth.py":
        labels = (out / "labels.csv").read_text().splitlines()
        fits = sorted(out.rglob("*.fits*"))
        assert len(labels) - 1 == len(fits) >= 3, (labels, fits, report)  # >= 1 epoch a star
    else:
        assert (out / "store.json").exists(), report
        assert list((out / "shards").glob("*.parquet")), (list(out.rglob("*")), report)
    print(f"job {submission_id} took {time.monotonic() - started:.1f} s")
