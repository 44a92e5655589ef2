"""What travels between the server and the agents, independent of the transport.

A :class:`Payload` is named arrays, a flat config and metrics: exactly the three record kinds
of a Flower ``RecordDict`` (``ArrayRecord``, ``ConfigRecord``, ``MetricRecord``), so the
Flower apps convert it one to one. Requests and what each agent sends back:

==========  =====================================  ===========================================
kind        server -> agent                        agent -> server
==========  =====================================  ===========================================
codes       settings, round                        ``codes`` (N_m, d); modality, row count;
                                                   privacy budget spent (numbers)
train       settings, round, ``slots.b`` (B_b,),   the epoch's loss terms (numbers); with
            ``mixed.b`` (B_b, d) per batch b;      cross-gradients on: ``grad.b`` (B_b, d),
            with cross-gradients on also           the gradient of its mixed-code loss in
            ``cross-slots.b``, ``cross.b``          ``mixed.b``
            (last round's slots, gradients)
evaluate    settings, ``clusters`` (N_m,)          purity, accuracy, NMI, ARI (numbers)
==========  =====================================  ===========================================

Nothing else leaves an agent: no features, weights, parameter gradients, labels or row
identities. With cross-gradients off, only the codes (and numbers) leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modalign.federated.agent import Agent

KINDS = ("codes", "train", "evaluate")
#: Keys of the config an agent sends back with every answer.
INFO_KEYS = ("modality", "n-rows", "round")

Scalar = bool | int | float | str


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
        metrics, grads = agent.train(slots, mixed, round_, cross)
        return Payload(
            arrays={} if grads is None else batches_to_arrays("grad", grads),
            config=info,
            metrics=metrics,
        )
    if kind == "evaluate":
        return Payload(config=info, metrics=agent.score(request.arrays["clusters"]))
    raise ValueError(f"unknown request kind {kind!r}; expected one of {KINDS}")
