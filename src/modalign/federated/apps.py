"""Flower apps for federated OTM: thin wrappers over :mod:`~modalign.federated.agent`,
:mod:`~modalign.federated.protocol` and :mod:`~modalign.federated.server`.

* :data:`client_app` (``modalign.federated.apps:client_app``): one agent per SuperNode. It
  answers ``query.codes``, ``train`` and ``evaluate`` messages and keeps its autoencoder and
  optimiser between rounds in the node's context state (``context.state["agent"]``). Its
  modality is the node config's ``modality`` (deployment: ``flower-supernode --node-config
  "modality=0"``), else the simulation's ``partition-id``; ``dataset``, ``data-dir`` and
  ``preprocess`` in the node config override the run's, so that each machine points at its
  own data (``view`` picks the view of that file, default the modality). With
  ``checkpoint=PATH`` in the node config the agent also writes its state
  there after every message and, when its context is new (a restarted process), resumes
  from it.
* :data:`server_app` (``modalign.federated.apps:server_app``): its own main loop over the
  Grid (not FedAvg): :func:`modalign.federated.server.run_federated`, with the settings of
  the run config (:meth:`FederatedConfig.from_run_config`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from modalign.federated.agent import Agent, load_modality
from modalign.federated.config import FederatedConfig
from modalign.federated.protocol import Payload, answer
from modalign.federated.server import FederatedResult, run_federated
from modalign.train import load_checkpoint, save_checkpoint

#: Flower message type of each request kind.
MESSAGE_TYPES = {"codes": "query.codes", "train": "train", "evaluate": "evaluate"}
#: Where an agent keeps its model in the node's context state.
STATE_KEY = "agent"
#: Per-message keys that are not run settings.
_MESSAGE_KEYS = ("round",)


# ------------------------------------------------------------------------------ conversion
def to_record_dict(payload: Payload) -> RecordDict:
    """A :class:`Payload` as a Flower ``RecordDict`` (``arrays``, ``config``, ``metrics``)."""
    records: dict[str, Any] = {}
    if payload.arrays:
        records["arrays"] = ArrayRecord(
            {k: Array(np.ascontiguousarray(v)) for k, v in payload.arrays.items()}
        )
    if payload.config:
        records["config"] = ConfigRecord(dict(payload.config))
    if payload.metrics:
        records["metrics"] = MetricRecord({k: float(v) for k, v in payload.metrics.items()})
    return RecordDict(records)


def from_record_dict(content: RecordDict) -> Payload:
    """Inverse of :func:`to_record_dict`; other records are refused."""
    unknown = set(content.keys()) - {"arrays", "config", "metrics"}
    if unknown:
        raise ValueError(f"unexpected records {sorted(unknown)} in a federated OTM message")
    arrays = content.get("arrays")
    config = content.get("config")
    metrics = content.get("metrics")
    return Payload(
        arrays={} if arrays is None else {k: a.numpy() for k, a in arrays.items()},
        config={} if config is None else dict(config),
        metrics={} if metrics is None else {k: float(v) for k, v in metrics.items()},
    )


def run_settings(config: Mapping[str, Any]) -> FederatedConfig:
    """The run's settings from a message's config (per-message keys removed)."""
    return FederatedConfig.from_run_config(
        {k: v for k, v in config.items() if k not in _MESSAGE_KEYS}
    )


# ------------------------------------------------------------------------------ ClientApp
def _node_agent(context: Context, request: Payload) -> Agent:
    """This node's agent: its modality's data, and its model restored from the context."""
    config = run_settings(request.config)
    node = context.node_config
    if "modality" in node:
        modality = int(node["modality"])
    elif "partition-id" in node:
        modality = int(node["partition-id"])
    else:
        raise ValueError("this SuperNode has no modality: start it with --node-config 'modality=K'")
    # ``view``: which view of the agent's own file it holds (default: its modality), so that
    # a machine can keep a file with its one view only.
    data = load_modality(
        str(node.get("dataset", config.dataset)),
        int(node.get("view", modality)),
        data_dir=str(node.get("data-dir", config.data_dir)),
        preprocess=str(node.get("preprocess", config.preprocess)),
        setting=config.setting,
        rate=config.rate,
        seed=config.seed,
    )
    agent = Agent(dataclasses.replace(data, modality=modality), config)
    stored = context.state.get(STATE_KEY)
    if stored is not None:
        agent.load_state_tensors(stored.to_torch_state_dict())
    elif "checkpoint" in node and Path(str(node["checkpoint"])).exists():
        # A restarted agent process: its context is new, its checkpoint is not.
        path = Path(str(node["checkpoint"]))
        saved = load_checkpoint(path)
        if saved.get("modality") != modality or saved.get("settings") != _model_settings(config):
            raise ValueError(
                f"modality {modality}: checkpoint {path} was written for other settings "
                "(another modality, seed or model); remove it to start afresh"
            )
        agent.load_state_tensors(saved["agent"])
    return agent


def _model_settings(config: FederatedConfig) -> dict[str, Any]:
    """The settings an agent's model depends on (not timeouts, rounds or output folders)."""
    skip = {"out", "join-timeout", "round-timeout", "n-agents", "epochs"}
    return {k: v for k, v in config.to_run_config().items() if k not in skip}


def _handler(kind: str) -> Callable[[Message, Context], Message]:
    def handle(msg: Message, context: Context) -> Message:
        request = from_record_dict(msg.content)
        agent = _node_agent(context, request)
        reply = answer(agent, kind, request)
        # The model stays on the node: in its context, never in a reply.
        tensors = {k: v.contiguous() for k, v in agent.state_tensors().items()}
        context.state[STATE_KEY] = ArrayRecord(tensors)
        if "checkpoint" in context.node_config:
            save_checkpoint(
                str(context.node_config["checkpoint"]),
                {
                    "modality": agent.modality,
                    "settings": _model_settings(agent.config),
                    "agent": tensors,
                },
            )
        return Message(to_record_dict(reply), reply_to=msg)

    handle.__name__ = f"handle_{kind}"
    return handle


def make_client_app(mods: Sequence[Callable] = ()) -> ClientApp:
    """The agent's ``ClientApp``; ``mods`` are Flower client mods (e.g. to log messages)."""
    app = ClientApp(mods=list(mods))
    app.query("codes")(_handler("codes"))
    app.train()(_handler("train"))
    app.evaluate()(_handler("evaluate"))
    return app


# ------------------------------------------------------------------------------ ServerApp
class GridTransport:
    """:class:`~modalign.federated.server.Transport` over a Flower ``Grid``."""

    def __init__(self, grid: Grid):
        self.grid = grid

    def nodes(self) -> list[int]:
        return sorted(self.grid.get_node_ids())

    def wait_for_nodes(self, count: int, timeout: float) -> list[int]:
        """Wait until ``count`` nodes are connected or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        nodes = self.nodes()
        while len(nodes) < count and time.monotonic() < deadline:
            time.sleep(0.5)
            nodes = self.nodes()
        if len(nodes) < count:
            log(WARNING, "only %d of %d agents connected; going on with them", len(nodes), count)
        return nodes

    def request(
        self, kind: str, payloads: Mapping[int, Payload], timeout: float, round_: int
    ) -> dict[int, Payload]:
        messages = [
            Message(
                to_record_dict(p),
                dst_node_id=node,
                message_type=MESSAGE_TYPES[kind],
                group_id=str(round_),
            )
            for node, p in payloads.items()
        ]
        out = {}
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        # Pushing gives every message its id; an error the SuperLink writes for an
        # unreachable node comes from the link itself, so name the node by the request.
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        for reply in replies:
            node = sent.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            if reply.has_error():
                # A failing agent sits the request out, like a late one; say why.
                log(WARNING, "agent at node %s failed its %s request: %s", node, kind, reply.error)
                continue
            out[node] = from_record_dict(reply.content)
        return out


def make_server_app(
    defaults: Mapping[str, Any] | None = None,
    on_result: Callable[[FederatedResult], None] | None = None,
) -> ServerApp:
    """The ``ServerApp``: settings are ``defaults`` updated by the run config.

    ``on_result`` receives the run's :class:`FederatedResult` (the simulation uses it).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = FederatedConfig.from_run_config({**(defaults or {}), **context.run_config})
        transport = GridTransport(grid)
        transport.wait_for_nodes(max(1, config.n_agents), config.join_timeout)
        result = run_federated(transport, config, say=lambda msg: log(INFO, msg))
        context.state["results"] = MetricRecord(
            {f"{r['metric']}": float(r["value"]) for r in result.records}
        )
        if on_result is not None:
            on_result(result)

    return app


client_app = make_client_app()
server_app = make_server_app()

__all__ = [
    "MESSAGE_TYPES",
    "GridTransport",
    "client_app",
    "from_record_dict",
    "make_client_app",
    "make_server_app",
    "server_app",
    "to_record_dict",
]
