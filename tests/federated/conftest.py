"""Shared fixtures of the federated tests: the real data folder, and a harness for real
Flower processes on 127.0.0.1 (SuperLink, SuperNodes, ``flwr``) that stops every process it
started and checks that none of their helpers is left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from modalign.federated import FederatedConfig
from modalign.federated.deploy import connection_toml, write_flower_app

# ../shared/data beside the checkout; the library itself never looks there.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: modalign, flower-superlink, flower-supernode and flwr live beside this Python.
BIN = Path(sys.executable).parent
PROC = Path("/proc")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data folder (tests using it skip when prokaryotic is absent)."""
    if not (SHARED_DATA / "prokaryotic").exists():
        pytest.skip(f"real data not available: {SHARED_DATA / 'prokaryotic'} is missing")
    return SHARED_DATA


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from /proc, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last one.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _marked(marker: str) -> dict[int, int]:
    """Every live process whose environment holds ``marker`` as {pid: start time} (the start
    time tells a reused pid from the original); empty where /proc is missing. Flower's
    helpers inherit the environment of the process that started them, also when they run
    in a session of their own or have outlived their parent."""
    needle = marker.encode() + b"\0"
    found: dict[int, int] = {}
    for entry in PROC.glob("[0-9]*") if PROC.is_dir() else ():
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        info = _stat(int(entry.name))
        if needle in environ and info is not None and info[0] != "Z":
            found[int(entry.name)] = info[1]
    return found


def _running(pid: int, start: int) -> bool:
    info = _stat(pid)
    return info is not None and info[0] != "Z" and info[1] == start


class Deployment:
    """Real Flower processes started by one test, each logging to ``logs/NAME.log``.

    ``env`` is the environment of every process: a private ``FLWR_HOME`` (``home``, where
    ``flwr`` reads its connections), telemetry and update checks off, this venv first on
    ``PATH`` (Flower starts its helpers, ``flower-superexec``, by name).
    """

    def __init__(self, root: Path):
        self.root = root
        self.home, self.logs = root / "flwr-home", root / "logs"
        for folder in (self.home, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # Marks every process started here, and every helper those start (conftest checks
        # that none is left at the end).
        key, value = "MODALIGN_TEST_DEPLOYMENT", uuid.uuid4().hex
        self.env[key] = value
        self.marker = f"{key}={value}"
        self.procs: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @staticmethod
    def listening(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    @staticmethod
    def rounds_done(out: Path) -> int:
        """Rounds the server has logged in ``out/progress.json`` so far."""
        try:
            return len(json.loads((out / "progress.json").read_text())["history"])
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    # ---------------------------------------------------------------- processes
    def start(self, name: str, cmd: Sequence[str]) -> subprocess.Popen:
        """Start ``cmd`` (its program looked up in this venv first) as process ``name``."""
        program = BIN / cmd[0]
        argv = [str(program) if program.exists() else cmd[0], *cmd[1:]]
        with (self.logs / f"{name}.log").open("w") as log:
            self.procs[name] = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self.procs[name]

    def start_agent(
        self, modality: int, superlink: str, data_dir: Path, *tls: str
    ) -> subprocess.Popen:
        """``modalign federated agent`` holding ``modality`` as process ``agentK``;
        ``tls``: ``--insecure``, or ``--root-certificates CA``."""
        return self.start(
            f"agent{modality}",
            [
                "modalign",
                "federated",
                "agent",
                "--modality",
                str(modality),
                "--superlink",
                superlink,
                *tls,
                "--port",
                str(self.free_port()),
                "--data-dir",
                str(data_dir),
            ],
        )

    def start_run(
        self, config: FederatedConfig, superlink: str, root_certificates: Path | None = None
    ) -> subprocess.Popen:
        """Write the Flower app of ``config`` and its connection (TLS with
        ``root_certificates``, else insecure), and start ``flwr run`` as process ``run``."""
        app = write_flower_app(self.root / "app", config)
        (self.home / "config.toml").write_text(
            connection_toml(
                "local",
                superlink,
                insecure=root_certificates is None,
                root_certificates=None if root_certificates is None else str(root_certificates),
            )
        )
        return self.start("run", ["flwr", "run", str(app), "local", "--stream"])

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI to its end (connections from ``home/config.toml``)."""
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        """Stop one process by its PID: SIGTERM, then SIGKILL if it lingers."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)

    def close(self, grace: float = 30.0) -> list[str]:
        """Stop every process, then wait up to ``grace`` seconds for every helper they had
        started (Flower's ``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``) to
        exit too. Returns the command lines of those still running after that (each then
        killed by its PID, so that nothing outlives the test)."""
        for name in self.procs:
            self.stop(name)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _marked(self.marker):
            time.sleep(0.5)
        left = []
        for pid, start in _marked(self.marker).items():
            try:
                cmdline = (PROC / str(pid) / "cmdline").read_text().replace("\0", " ")
                if _running(pid, start):
                    os.kill(pid, signal.SIGKILL)
            except OSError:  # it exited just now
                continue
            left.append(cmdline)
        return left


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A :class:`Deployment` in the test's folder. Afterwards every process it started is
    stopped by its PID and their logs are printed (pytest shows them when a test fails); the
    test errors if a process, or a helper it had started, outlived it."""
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        left = dep.close()
        for name in dep.procs:
            sys.stdout.write(f"--- {name}\n{dep.log(name)[-3000:]}\n")
    assert all(p.poll() is not None for p in dep.procs.values())
    assert not left, f"helper processes outlived their parents: {left}"
