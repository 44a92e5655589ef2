"""Federated OTM in Flower's simulation engine: real ClientApps and ServerApp, offline.

The message inspection and the dropout use Flower client mods (Flower's own middleware):
one records every reply an agent sends, one delays an agent past the round's timeout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord  # noqa: E402

from modalign.federated import (  # noqa: E402
    Agent,
    FederatedConfig,
    LocalTransport,
    load_modality,
    run_federated,
)
from modalign.federated.simulation import OFFLINE_ENV, simulate  # noqa: E402
from modalign.methods import OTMConfig  # noqa: E402

ROWS, LATENT = 551, 16
LOSS_KEYS = {"loss", "reconstruction", "mixed", "mmd", "cluster", "structure"}
SCORE_KEYS = {"purity", "accuracy", "nmi", "ari"}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Flower's and Ray's switches for this test only (restored afterwards), FLWR_HOME in
    the test's temporary folder."""
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))


def _ship_by_value() -> None:
    # The mods below travel to Ray's workers, which cannot import this test module by name.
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def spy(folder: Path):
    """A client mod writing a summary of every reply (record kinds, keys, array shapes)."""

    def mod(msg, context, call_next):
        reply = call_next(msg, context)
        entry = {
            "type": msg.metadata.message_type,
            "round": msg.metadata.group_id,
            "modality": int(context.node_config["partition-id"]),
            "error": reply.has_error(),
            "records": {},
        }
        if reply.has_content():
            for name, record in reply.content.items():
                if isinstance(record, ArrayRecord):
                    items = {k: [list(a.shape), a.dtype] for k, a in record.items()}
                else:
                    items = {k: type(v).__name__ for k, v in record.items()}
                entry["records"][name] = {"kind": type(record).__name__, "items": items}
        (folder / f"{uuid.uuid4().hex}.json").write_text(json.dumps(entry))
        return reply

    return mod


def late(modality: int, round_: str, seconds: float):
    """A client mod that holds agent ``modality``'s codes answer of one round back."""

    def mod(msg, context, call_next):
        if (
            int(context.node_config["partition-id"]) == modality
            and msg.metadata.message_type == "query.codes"
            and msg.metadata.group_id == round_
        ):
            time.sleep(seconds)
        return call_next(msg, context)

    return mod


def prokaryotic(data: Path, out: Path, rounds: int, **kw) -> FederatedConfig:
    return FederatedConfig(
        dataset="prokaryotic",
        data_dir=str(data),
        out=str(out),
        otm=OTMConfig(
            n_clusters=4, latent_dim=LATENT, epochs=rounds, warmup_epochs=1, cluster_restarts=2
        ),
        **kw,
    )


@pytest.mark.slow
def test_two_rounds_on_prokaryotic_write_results_and_only_codes_leave_agents(shared_data, tmp_path):
    _ship_by_value()
    spied = tmp_path / "messages"
    spied.mkdir()
    cfg = prokaryotic(shared_data, tmp_path / "out", rounds=2)
    result = simulate(cfg, 3, mods=[spy(spied)], flwr_home=str(tmp_path / "flwr"))
    assert os.environ["FLWR_TELEMETRY_ENABLED"] == "0"
    # Results, written as `modalign cluster` writes them.
    records = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    assert {r["metric"] for r in records} == SCORE_KEYS
    assert {(r["dataset"], r["method"], r["seed"]) for r in records} == {
        ("prokaryotic", "otm-federated", 0)
    }
    assert "otm-federated" in (tmp_path / "out" / "results.md").read_text()
    assert [h["codes_from"] for h in result.history] == [[0, 1, 2], [0, 1, 2]]
    assert result.history[1]["objective"] is not None  # round 1 mixes
    # The same run without Flower (same agents and server loop in this process) computes
    # the same thing: Flower only carries the messages and keeps each agent's state.
    agents = [
        Agent(load_modality("prokaryotic", m, data_dir=str(shared_data)), cfg) for m in range(3)
    ]
    local = run_federated(LocalTransport(agents), dataclasses.replace(cfg, out=""))
    for fed, ref in zip(result.history, local.history):
        if ref["objective"] is None:  # the warm-up round does not mix
            assert fed["objective"] is None
        else:
            assert fed["objective"] == pytest.approx(ref["objective"], rel=1e-4)
        for m in range(3):
            assert fed["losses"][m]["loss"] == pytest.approx(ref["losses"][m]["loss"], rel=1e-4)
    # Every message that left an agent: 2 rounds x (codes, train) + final codes + evaluate.
    entries = [json.loads(p.read_text()) for p in spied.iterdir()]
    assert len(entries) == 3 * (2 * 2 + 2)
    assert sorted(e["modality"] for e in entries) == sorted([0, 1, 2] * 6)
    for e in entries:
        assert not e["error"], e
        records = e["records"]
        assert set(records) <= {"arrays", "config", "metrics"}
        assert records["config"]["kind"] == ConfigRecord.__name__
        assert set(records["config"]["items"]) == {"modality", "n-rows", "round"}
        arrays = records.get("arrays", {"items": {}})["items"]
        if e["type"] == "query.codes":
            assert arrays == {"codes": [[ROWS, LATENT], "float32"]}
        elif e["type"] == "train":
            assert records["metrics"]["kind"] == MetricRecord.__name__
            assert set(records["metrics"]["items"]) == LOSS_KEYS
            # By default (no cross-gradients) training sends back numbers only.
            assert arrays == {}
        else:
            assert e["type"] == "evaluate" and arrays == {}
            assert set(records["metrics"]["items"]) == SCORE_KEYS


@pytest.mark.slow
def test_an_agent_late_for_a_round_is_skipped_and_rejoins(shared_data, tmp_path):
    _ship_by_value()
    cfg = prokaryotic(shared_data, tmp_path / "out", rounds=3, round_timeout=10.0)
    result = simulate(cfg, 3, mods=[late(2, "1", seconds=14.0)], flwr_home=str(tmp_path / "flwr"))
    assert [h["codes_from"] for h in result.history] == [[0, 1, 2], [0, 1], [0, 1, 2]]
    assert result.history[1]["trained"] == [0, 1]
    assert sorted(result.scores) == [0, 1, 2]
    assert (tmp_path / "out" / "results.json").exists()
