"""``modalign federated``: simulate (in-process engine), the Flower app folder, and the
SuperLink / SuperNode command lines."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import load_dataset
from modalign.eval import read_header, read_results
from modalign.federated import FederatedConfig
from modalign.provenance import data_fingerprint


def test_simulate_local_engine_writes_cluster_results(shared_data, tmp_path):
    args = ["federated", "simulate", "--dataset", "prokaryotic", "--rounds", "2"]
    args += ["--engine", "local", "--data-dir", str(shared_data), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert {r["metric"] for r in records} == {"purity", "accuracy", "nmi", "ari"}
    assert {r["method"] for r in records} == {"otm-federated"}
    saved = json.loads((tmp_path / "results.json").read_text())["records"]
    assert saved == records
    log = json.loads((tmp_path / "federated.json").read_text())
    assert [h["codes_from"] for h in log["history"]] == [[0, 1, 2], [0, 1, 2]]


def test_simulate_results_folder_is_keyed_by_the_data_and_the_run(shared_data, tmp_path):
    def simulate(*extra: str):
        args = ["federated", "simulate", "--dataset", "prokaryotic", "--rounds", "1"]
        args += ["--engine", "local", "--data-dir", str(shared_data), "--out", str(tmp_path)]
        return CliRunner().invoke(app, [*args, "--json", *extra])

    assert simulate().exit_code == 0
    header = read_header(tmp_path)
    data = load_dataset("prokaryotic", data_dir=shared_data)
    assert header["key"]["data_sha256"] == data_fingerprint(data)
    assert header["key"]["protocol"] == "federated"
    assert header["configs"]["otm-federated"]["epochs"] == 1
    # Another seed adds its records; other rounds or preprocessing are refused.
    assert simulate("--seed", "1").exit_code == 0
    assert {r["seed"] for r in read_results(tmp_path)} == {0, 1}
    for extra, named in (
        (("--rounds", "2"), "otm-federated results with epochs=1, not epochs=2"),
        (("--preprocess", "l2"), "preprocess 'auto', not preprocess 'l2'"),
    ):
        result = simulate(*extra)
        assert result.exit_code == 2 and named in result.output, result.output


def test_simulate_reports_the_privacy_budget(shared_data, tmp_path):
    args = ["federated", "simulate", "--dataset", "prokaryotic", "--rounds", "1"]
    args += ["--engine", "local", "--data-dir", str(shared_data), "--out", str(tmp_path)]
    args += ["--no-cross-gradients", "--dp-clip", "1", "--dp-noise", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "epsilon per code" in result.output and "the server saw these noised codes" in result.output
    )
    assert "Local differential privacy" in (tmp_path / "results.md").read_text()


def test_dp_with_cross_gradients_is_refused(tmp_path):
    args = ["federated", "simulate", "--dataset", "digits", "--rounds", "1", "--engine", "local"]
    result = CliRunner().invoke(
        app,
        [*args, "--cross-gradients", "--dp-clip", "1", "--dp-noise", "1", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "cross-gradients are not noised" in result.output


def test_app_folder_names_our_apps_and_every_setting(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    result = CliRunner().invoke(
        app,
        ["federated", "app", "--dataset", "prokaryotic", "--n-clusters", "4", "--rounds", "7"]
        + ["--folder", str(tmp_path / "fed-app"), "--n-agents", "3"],
    )
    assert result.exit_code == 0, result.output
    toml = tomllib.loads((tmp_path / "fed-app" / "pyproject.toml").read_text())
    flwr = toml["tool"]["flwr"]["app"]
    assert flwr["components"] == {
        "serverapp": "modalign.federated.apps:server_app",
        "clientapp": "modalign.federated.apps:client_app",
    }
    config = FederatedConfig.from_run_config(flwr["config"])
    assert config.rounds == 7 and config.n_agents == 3 and config.otm.n_clusters == 4


def test_server_and_agent_commands():
    run = CliRunner().invoke
    tls = run(
        app,
        ["federated", "server", "--ssl-ca-certfile", "ca.crt", "--ssl-certfile", "s.pem"]
        + ["--ssl-keyfile", "s.key", "--dry-run"],
    )
    assert tls.exit_code == 0, tls.output
    assert tls.output.startswith("flower-superlink --ssl-ca-certfile ca.crt")
    assert "--disable-runtime-dependency-installation" in tls.output
    bare = run(app, ["federated", "server", "--dry-run"])
    assert bare.exit_code == 2 and "TLS certificates" in bare.output
    agent = run(
        app,
        ["federated", "agent", "--modality", "2", "--superlink", "link:9093"]
        + ["--root-certificates", "ca.crt", "--data-dir", "/data", "--dry-run"],
    )
    assert agent.exit_code == 0, agent.output
    assert "--node-config 'modality=2 data-dir=\"/data\"'" in agent.output
    # SuperNode authentication: the server admits registered keys, the agent signs with its own.
    auth = run(
        app,
        ["federated", "server", "--ssl-ca-certfile", "ca.crt", "--ssl-certfile", "s.pem"]
        + ["--ssl-keyfile", "s.key", "--enable-supernode-auth", "--dry-run"],
    )
    assert auth.exit_code == 0 and "--enable-supernode-auth" in auth.output, auth.output
    signed = run(
        app,
        ["federated", "agent", "--modality", "0", "--superlink", "link:9093"]
        + ["--root-certificates", "ca.crt", "--auth-supernode-private-key", "a.key", "--dry-run"],
    )
    assert signed.exit_code == 0, signed.output
    assert "--auth-supernode-private-key a.key" in signed.output
    insecure = run(app, ["federated", "server", "--insecure", "--enable-supernode-auth"])
    assert insecure.exit_code == 2 and "needs TLS" in insecure.output
