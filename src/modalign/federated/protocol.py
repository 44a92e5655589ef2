"""What travels between the server and the agents, independent of the transport.

A :class:`Payload` is named arrays, a flat config and metrics: exactly the three record kinds
of a Flower ``RecordDict`` (``ArrayRecord``, ``ConfigRecord``, ``MetricRecord``), so the
Flower apps convert it one to one. Requests and what each agent sends back:

==========  =====================================  ===========================================
kind        server -> agent                        agent -> server
==========  =====================================  ===========================================
codes       settings, round                        ``codes`` (N_m, d), noised under DP;
                                                   modality, row count; privacy budget
                                                   spent (numbers, under DP)
train       settings, round, ``slots.b`` (B_b,),   the epoch's loss terms (numbers; none
            ``mixed.b`` (B_b, d) per batch b;      under DP); with cross-gradients on:
            with cross-gradients on also           ``grad.b`` (B_b, d), the gradient of its
            ``cross-slots.b``, ``cross.b``          mixed-code loss in ``mixed.b``
            (last round's slots, gradients)
evaluate    settings, ``clusters`` (N_m,)          purity, accuracy, NMI, ARI (numbers)
==========  =====================================  ===========================================

Nothing else leaves an agent: no features, weights, parameter gradients, labels or row
identities. With cross-gradients off, only the codes (and numbers) leave it.

Under local DP (``dp_noise > 0``; cross-gradients are then refused) a reply holds only what
the privacy accounting covers and declared non-private metadata: the noised codes; modality,
row count and round; the privacy budget (a function of the settings, the release count and
the row count); and, once at the end, the four evaluation scores of the server's clusters
(computed from the noised codes) against the agent's labels, which the accounting does not
cover (docs/federated.md). The ``train`` reply's loss terms, means over the agent's rows of
un-noised quantities, are not accounted for: under DP they stay on the agent (its log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modalign.federated.agent import Agent

KINDS = ("codes", "train", "evaluate")
#: Keys of the config an agent sends back with every answer.
INFO_KEYS = ("modality", "n-rows", "round")

Scalar = bool | int | float | str

logger = logging.getLogger(__name__)


@dataclass
class Payload:
    """Named arrays, flat settings and metrics of one message."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Scalar] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def batches_to_arrays(prefix: str, batches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``[a_0, a_1, ...]`` as ``{prefix.0: a_0, prefix.1: a_1, ...}``."""
    return {f"{prefix}.{b}": np.ascontiguousarray(a) for b, a in enumerate(batches)}


def arrays_to_batches(prefix: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`batches_to_arrays` (batches in index order)."""
    found = sorted(
        (int(k.split(".", 1)[1]), v) for k, v in arrays.items() if k.startswith(prefix + ".")
    )
    if [b for b, _ in found] != list(range(len(found))):
        raise ValueError(f"batches {prefix}.0 ... {prefix}.{len(found) - 1} are not complete")
    return [v for _, v in found]


def answer(agent: Agent, kind: str, request: Payload) -> Payload:
    """The agent's side of the protocol: compute the reply to one request."""
    round_ = int(request.config.get("round", -1))
    info: dict[str, Scalar] = {"modality": agent.modality, "n-rows": agent.n_rows, "round": round_}
    if kind == "codes":
        reply = Payload(arrays={"codes": agent.codes(round_)}, config=info)
        report = agent.privacy()
        if report is not None:
            reply.metrics = {f"privacy.{k}": v for k, v in report.as_dict().items()}
        return reply
    if kind == "train":
        slots = arrays_to_batches("slots", request.arrays)
        mixed = arrays_to_batches("mixed", request.arrays) or None
        cross_slots = arrays_to_batches("cross-slots", request.arrays)
        cross = (cross_slots, arrays_to_batches("cross", request.arrays)) if cross_slots else None
        losses, grads = agent.train(slots, mixed, round_, cross)
        return Payload(
            arrays={} if grads is None else batches_to_arrays("grad", grads),
            config=info,
            metrics=released_losses(agent, losses, round_),
        )
    if kind == "evaluate":
        return Payload(config=info, metrics=agent.score(request.arrays["clusters"]))
    raise ValueError(f"unknown request kind {kind!r}; expected one of {KINDS}")


def released_losses(agent: Agent, losses: Mapping[str, float], round_: int) -> dict[str, float]:
    """The loss terms a ``train`` reply carries: all of them without DP, none under DP.

    They are means over the agent's rows of its clean codes and features, outside the privacy
    accounting; under DP the agent logs them locally instead, so its operator can still
    follow training.
    """
    if not agent.config.private:
        return dict(losses)
    logger.info(
        "modality %d, round %d: loss terms kept on this agent (local DP): %s",
        agent.modality,
        round_,
        ", ".join(f"{k} {v:.4g}" for k, v in losses.items()),
    )
    return {}
