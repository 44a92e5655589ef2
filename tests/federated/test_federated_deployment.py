"""A real deployment on 127.0.0.1 without TLS (test_federated_tls.py runs the TLS recipe):
one SuperLink and three SuperNodes as separate processes, started through ``modalign
federated server`` / ``agent``, a run started with ``flwr run``, one agent process killed in
the middle, and every process stopped by its PID (the ``deployment`` fixture, conftest.py)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("flwr")

from modalign.federated import FederatedConfig  # noqa: E402
from modalign.methods import OTMConfig  # noqa: E402

LOSS_KEYS = ["cluster", "loss", "mixed", "mmd", "reconstruction", "structure"]


@pytest.mark.slow
def test_superlink_and_three_supernodes_survive_a_killed_agent(shared_data, deployment, tmp_path):
    out, port = tmp_path / "out", deployment.free_port()
    deployment.start(
        "superlink",
        ["modalign", "federated", "server", "--insecure", "--host", "127.0.0.1"]
        + ["--port", str(port)],
    )
    deployment.wait_for(lambda: deployment.listening(port), 120, "the SuperLink to listen")
    link = f"127.0.0.1:{port}"
    for m in range(3):
        deployment.start_agent(m, link, shared_data, "--insecure")
    config = FederatedConfig(
        dataset="prokaryotic",
        otm=OTMConfig(n_clusters=4, latent_dim=16, epochs=2, warmup_epochs=1, cluster_restarts=2),
        out=str(out),
        n_agents=3,
        round_timeout=20.0,
    )
    run = deployment.start_run(config, link)
    # Kill agent 2 once the run is under way: after round 0, with all three agents.
    deployment.wait_for(lambda: deployment.rounds_done(out) >= 1, 400, "round 0 of the run")
    deployment.stop("agent2")
    deployment.wait_for(lambda: (out / "results.json").exists(), 400, "the run's results")
    run.wait(timeout=120)
    log = json.loads((out / "federated.json").read_text())
    history = log["history"]
    assert history[0]["codes_from"] == [0, 1, 2]
    assert len(history) == 2
    assert sorted(log["scores"]) == ["0", "1"]  # results from the remaining agents
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["metric"] for r in records} == {"purity", "accuracy", "nmi", "ari"}
    # Without DP the agents send their loss terms, and the server's record shows them.
    assert {tuple(e["layout"]["metrics"]) for e in log["received"]["train"]} == {tuple(LOSS_KEYS)}
