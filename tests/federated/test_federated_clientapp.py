"""The agent's Flower ClientApp called directly with Flower messages and contexts (no
simulation engine): state kept in the context, and an agent checkpoint that lets a
restarted agent process resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from modalign.federated import Agent, FederatedConfig, Payload, load_modality  # noqa: E402
from modalign.federated.apps import from_record_dict, make_client_app, to_record_dict  # noqa: E402
from modalign.methods import OTMConfig  # noqa: E402


@pytest.fixture()
def identity():
    """Flower builds messages for 'the task of this process'; name one for the test."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def request(cfg: FederatedConfig, kind: str, round_: int, arrays=None) -> Message:
    payload = Payload(arrays=arrays or {}, config={**cfg.to_run_config(), "round": round_})
    return Message(to_record_dict(payload), dst_node_id=5, message_type=kind)


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=5, node_config=node_config, state=RecordDict(), run_config={})


def codes(app, cfg, ctx, round_) -> np.ndarray:
    reply = app(request(cfg, "query.codes", round_), ctx)
    assert not reply.has_error(), reply.error
    return from_record_dict(reply.content).arrays["codes"]


def test_restarted_agent_resumes_from_its_checkpoint(identity, shared_data, tmp_path):
    cfg = FederatedConfig(
        dataset="prokaryotic",
        data_dir=str(shared_data),
        otm=OTMConfig(n_clusters=4, latent_dim=8, epochs=2, warmup_epochs=1),
    )
    app = make_client_app()
    node = {"modality": 1, "checkpoint": str(tmp_path / "agent1.pt")}
    first = context(node)
    before = codes(app, cfg, first, 0)
    slots = {f"slots.{b}": np.arange(b * 64, (b + 1) * 64) for b in range(8)}
    reply = app(request(cfg, "train", 0, slots), first)
    assert not reply.has_error(), reply.error
    trained = codes(app, cfg, first, 1)
    assert not np.allclose(before, trained)  # the context kept the trained model
    # A new process: empty context, same checkpoint.
    restarted = codes(app, cfg, context(node), 1)
    np.testing.assert_array_equal(restarted, trained)
    # Without the checkpoint a new context starts from scratch.
    np.testing.assert_array_equal(codes(app, cfg, context({"modality": 1}), 0), before)
    # A checkpoint of other settings is refused, naming the modality.
    other = FederatedConfig.from_run_config({**cfg.to_run_config(), "seed": 9})
    with pytest.raises(Exception, match="modality 1: checkpoint .* other settings"):
        app(request(other, "query.codes", 0), context(node))


def test_node_config_view_picks_the_view_of_the_agents_own_file(identity, shared_data):
    cfg = FederatedConfig(
        dataset="prokaryotic",
        data_dir=str(shared_data),
        otm=OTMConfig(n_clusters=4, latent_dim=8, epochs=2, warmup_epochs=1),
    )
    app = make_client_app()
    reply = app(request(cfg, "query.codes", 0), context({"modality": 0, "view": 2}))
    assert not reply.has_error(), reply.error
    got = from_record_dict(reply.content)
    assert got.config["modality"] == 0  # the agent's identity in the run
    data = load_modality("prokaryotic", 2, data_dir=str(shared_data))
    expected = Agent(dataclasses.replace(data, modality=0), cfg).codes(0)
    np.testing.assert_array_equal(got.arrays["codes"], expected)  # view 2's rows and model
