"""A real deployment on 127.0.0.1: one SuperLink and three SuperNodes as separate processes,
started by this test through ``modalign federated server`` / ``agent``, a run started with
``flwr run``, one agent process killed in the middle, and every process stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from modalign.federated import FederatedConfig  # noqa: E402
from modalign.federated.deploy import connection_toml, write_flower_app  # noqa: E402
from modalign.methods import OTMConfig  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def rounds_done(out: Path) -> int:
    try:
        return len(json.loads((out / "progress.json").read_text())["history"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def stop(proc: subprocess.Popen) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.mark.slow
def test_superlink_and_three_supernodes_survive_a_killed_agent(shared_data, tmp_path):
    home, out, logs = tmp_path / "flwr-home", tmp_path / "out", tmp_path / "logs"
    for d in (home, logs):
        d.mkdir()
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    port = free_port()
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, *args: str) -> subprocess.Popen:
        log = (logs / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(
            [str(BIN / "modalign"), "federated", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return procs[name]

    try:
        start("superlink", "server", "--insecure", "--host", "127.0.0.1", "--port", str(port))
        wait_for(lambda: listening(port), 120, "the SuperLink to listen")
        for m in range(3):
            start(
                f"agent{m}",
                "agent",
                "--modality",
                str(m),
                "--superlink",
                f"127.0.0.1:{port}",
                "--insecure",
                "--port",
                str(free_port()),
                "--data-dir",
                str(shared_data),
            )
        config = FederatedConfig(
            dataset="prokaryotic",
            otm=OTMConfig(
                n_clusters=4, latent_dim=16, epochs=2, warmup_epochs=1, cluster_restarts=2
            ),
            out=str(out),
            n_agents=3,
            round_timeout=20.0,
        )
        app = write_flower_app(tmp_path / "app", config)
        (home / "config.toml").write_text(
            connection_toml("local", f"127.0.0.1:{port}", insecure=True)
        )
        run_log = (logs / "run.log").open("w")
        procs["run"] = subprocess.Popen(
            [str(BIN / "flwr"), "run", str(app), "local", "--stream"],
            env=env,
            stdout=run_log,
            stderr=subprocess.STDOUT,
        )
        # Kill agent 2 once the run is under way: after round 0, with all three agents.
        wait_for(lambda: rounds_done(out) >= 1, 400, "round 0 of the run")
        stop(procs["agent2"])
        wait_for(lambda: (out / "results.json").exists(), 400, "the run's results")
        procs["run"].wait(timeout=120)
    finally:
        for proc in procs.values():
            stop(proc)
        for name in procs:
            sys.stdout.write(f"--- {name}\n{(logs / f'{name}.log').read_text()[-3000:]}\n")
    assert all(p.poll() is not None for p in procs.values())
    log = json.loads((out / "federated.json").read_text())
    history = log["history"]
    assert history[0]["codes_from"] == [0, 1, 2]
    assert len(history) == 2
    assert sorted(log["scores"]) == ["0", "1"]  # results from the remaining agents
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["metric"] for r in records} == {"purity", "accuracy", "nmi", "ari"}
