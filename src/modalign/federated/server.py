"""The server's side of federated OTM, independent of the transport.

Per round (one round = one OTM epoch):

1. ask every agent for the codes of all its rows (``codes``), and wait ``round_timeout``
   seconds at most; agents that have not answered sit the round out;
2. draw the round's batches of slots and, once the warm-up is over and at least two agents
   answered, mix every batch with :func:`modalign.methods.otm.ot_mix` (the same mixer,
   barycenter and masks as centralised OTM, from a generator seeded by the seed and round);
3. send each agent its slots and its own mixed codes (``train``) and collect its losses;
4. log the round: who answered, the mean barycenter objective over batches, the losses.

After the last round the agents send final codes, the clustering head of
:class:`modalign.methods.OTM` assigns clusters (aligned: on the agents' codes side by side;
unaligned: on each agent's codes), each agent scores its own clusters against its own labels
(``evaluate``), and the records go to ``results.json`` / ``results.md`` with the writers of
``modalign cluster`` (:mod:`modalign.eval`), the round log to ``federated.json``.

Transports: :class:`LocalTransport` calls agent objects in this process (tests, quick
comparisons); :mod:`modalign.federated.apps` carries the same requests over Flower.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from modalign.eval import merge_records, read_results, records_from_scores, write_results
from modalign.federated.agent import Agent
from modalign.federated.config import FederatedConfig
from modalign.federated.protocol import Payload, answer, arrays_to_batches, batches_to_arrays
from modalign.methods import OTM
from modalign.methods.otm import ot_mix
from modalign.utils import atomic_write


class Transport(Protocol):
    """How the server reaches agents. Node ids are opaque integers."""

    def nodes(self) -> list[int]:
        """The agents reachable now."""

    def request(
        self, kind: str, payloads: Mapping[int, Payload], timeout: float, round_: int
    ) -> dict[int, Payload]:
        """Send ``payloads[node]`` to each node; return the replies that arrived within
        ``timeout`` seconds (nodes that failed or were late are missing)."""


@dataclass
class AgentReply:
    node: int
    modality: int
    payload: Payload


@dataclass
class FederatedResult:
    """What a run produced: records (as ``modalign cluster`` writes them), the round log,
    the clusters per modality (slot order) and each agent's privacy budget."""

    records: list[dict[str, Any]]
    history: list[dict[str, Any]]
    clusters: dict[int, np.ndarray]
    scores: dict[int, dict[str, float]]
    privacy: dict[int, dict[str, float]] = field(default_factory=dict)


def dataset_name(dataset: str) -> str:
    """The name results are filed under, as ``modalign cluster`` files them."""
    return Path(dataset).stem if Path(dataset).suffix else dataset


class Coordinator:
    """The server's computations: batches, mixing, clusters, records."""

    def __init__(self, config: FederatedConfig):
        self.config = config

    def by_modality(self, replies: Mapping[int, Payload], kind: str) -> dict[int, AgentReply]:
        """Replies keyed by the modality each agent declares, checked.

        Two nodes claiming one modality are an error (which one would be right?); a ``codes``
        reply must hold exactly one finite (n_rows, latent_dim) array.
        """
        out: dict[int, AgentReply] = {}
        d = self.config.otm.latent_dim
        for node, p in sorted(replies.items()):
            try:
                modality, n_rows = int(p.config["modality"]), int(p.config["n-rows"])
            except KeyError as err:
                raise ValueError(f"agent at node {node} sent a {kind} reply without {err}") from err
            if modality in out:
                raise ValueError(
                    f"modality {modality} is claimed by nodes {out[modality].node} and {node}; "
                    "give every agent its own --modality"
                )
            if kind == "codes":
                z = p.arrays.get("codes")
                if set(p.arrays) != {"codes"} or z is None or z.shape != (n_rows, d):
                    shapes = {k: v.shape for k, v in p.arrays.items()}
                    raise ValueError(
                        f"modality {modality}: expected codes of shape ({n_rows}, {d}), "
                        f"got {shapes}"
                    )
                if not np.isfinite(z).all():
                    raise ValueError(f"modality {modality}: codes contain NaN or inf")
            out[modality] = AgentReply(node, modality, p)
        return out

    def batches(self, round_: int, sizes: Mapping[int, int]) -> tuple[dict, torch.Generator]:
        """The round's batches of slots per modality, ``{m: [(B,), ...]}``, and the generator
        (seeded by seed and round, as OTM seeds its epochs) that then draws the masks.

        Aligned: one permutation shared by all modalities (slot i is sample i everywhere);
        unaligned: an independent permutation per modality. ``min(N) // batch_size`` batches.
        """
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + round_)
        mods = sorted(sizes)
        if cfg.aligned:
            if len({sizes[m] for m in mods}) > 1:
                raise ValueError(
                    "aligned setting needs equal row counts, got "
                    + ", ".join(f"modality {m}: {sizes[m]}" for m in mods)
                )
            order = torch.randperm(sizes[mods[0]], generator=gen)
            orders = {m: order for m in mods}
        else:
            orders = {m: torch.randperm(sizes[m], generator=gen) for m in mods}
        bs = cfg.otm.batch_size
        n_batches = max(1, min(sizes.values()) // bs)
        out = {
            m: [orders[m][b * bs : (b + 1) * bs].numpy() for b in range(n_batches)] for m in mods
        }
        return out, gen

    def mix(
        self, round_: int, codes: Mapping[int, np.ndarray]
    ) -> tuple[dict[int, list[np.ndarray]], dict[int, list[np.ndarray]] | None, float | None]:
        """Batches, mixed codes per modality and batch (None during the warm-up or with
        fewer than two modalities) and the mean barycenter objective over batches.

        The mixing graph of the round is kept (:attr:`graph`) for :meth:`backward`.
        """
        cfg = self.config.otm
        mods = sorted(codes)
        batches, gen = self.batches(round_, {m: len(codes[m]) for m in mods})
        self.graph: list[tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]] = []
        if round_ < cfg.warmup_epochs or len(mods) < 2:
            return batches, None, None
        mixed: dict[int, list[np.ndarray]] = {m: [] for m in mods}
        objectives = []
        for b in range(len(batches[mods[0]])):
            z = {m: torch.from_numpy(codes[m][batches[m][b]]).requires_grad_() for m in mods}
            out, bary = ot_mix([z[m] for m in mods], gen, mixer=cfg.mixer, alpha=cfg.alpha)
            self.graph.append((z, dict(zip(mods, out))))
            for m, zm in zip(mods, out):
                mixed[m].append(zm.detach().float().numpy())
            objectives.append(float(bary.objective[-1]))
        return batches, mixed, float(np.mean(objectives))

    def backward(self, grads: Mapping[int, list[np.ndarray]]) -> dict[int, list[np.ndarray]]:
        """Gradients with respect to every modality's codes of the round's batches,
        ``{k: [(B_b, d), ...]}``, from the agents' gradients with respect to their mixed
        codes ``grads[m][b]`` (B_b, d): the chain rule through :func:`ot_mix`'s
        projections, as in centralised OTM's backward pass. Agents that sent no gradient
        contribute nothing."""
        mods = sorted(self.graph[0][0]) if self.graph else []
        out: dict[int, list[np.ndarray]] = {m: [] for m in mods}
        for b, (z, mixed) in enumerate(self.graph):
            senders = [m for m in sorted(grads) if m in mixed]
            if not senders:
                return {}
            outputs = [mixed[m] for m in senders]
            grad_outputs = []
            for m in senders:
                g = torch.as_tensor(np.asarray(grads[m][b]), dtype=mixed[m].dtype)
                if g.shape != mixed[m].shape:
                    raise ValueError(
                        f"modality {m}: gradient of batch {b} has shape {tuple(g.shape)}, "
                        f"expected {tuple(mixed[m].shape)}"
                    )
                grad_outputs.append(g)
            found = torch.autograd.grad(
                outputs,
                [z[k] for k in mods],
                grad_outputs,
                retain_graph=False,
                allow_unused=True,
            )
            for k, g in zip(mods, found):
                out[k].append(
                    np.zeros(tuple(z[k].shape), np.float32) if g is None else g.float().numpy()
                )
        self.graph = []
        return out

    def cluster(self, codes: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Cluster labels per modality (slot order), with OTM's head and the run's seed."""
        head = OTM(self.config.otm, random_state=self.config.seed)
        mods = sorted(codes)
        if self.config.aligned:
            fused = torch.cat([torch.from_numpy(codes[m]).double() for m in mods], dim=1)
            labels = head.assign_clusters(fused)
            return {m: labels for m in mods}
        return {m: head.assign_clusters(torch.from_numpy(codes[m]).double()) for m in mods}

    def records(self, scores: Mapping[int, Mapping[str, float]], seconds: float) -> list[dict]:
        """Records of the run: the mean over agents of their scores (aligned: every agent
        scores the same clusters; unaligned: each its own rows, as ``modalign cluster``)."""
        mods = sorted(scores)
        mean = {k: float(np.mean([scores[m][k] for m in mods])) for k in scores[mods[0]]}
        cfg = self.config
        return records_from_scores(
            dataset_name(cfg.dataset), cfg.setting, cfg.method, cfg.seed, mean, seconds
        )


def run_federated(
    transport: Transport,
    config: FederatedConfig,
    *,
    say: Callable[[str], None] | None = None,
) -> FederatedResult:
    """The server's main loop over ``transport``; writes results when ``config.out`` is set."""
    say = say or (lambda _msg: None)
    coord = Coordinator(config)
    settings = config.to_run_config()
    start = time.perf_counter()
    history: list[dict[str, Any]] = []
    privacy: dict[int, dict[str, float]] = {}

    def ask(kind: str, payloads: Mapping[int, Payload], timeout: float, round_: int):
        replies = transport.request(kind, payloads, timeout, round_)
        late = sorted(set(payloads) - set(replies))
        if late:
            say(f"round {round_}: no {kind} answer from node(s) {late} within {timeout:.0f} s")
        return coord.by_modality(replies, kind)

    def request_codes(round_: int, timeout: float) -> dict[int, AgentReply]:
        nodes = transport.nodes()
        cfg = {**settings, "round": round_}
        got = ask("codes", {n: Payload(config=cfg) for n in nodes}, timeout, round_)
        for m, r in got.items():
            if r.payload.metrics:
                privacy[m] = {
                    k.split(".", 1)[1]: v for k, v in r.payload.metrics.items() if "." in k
                }
        return got

    # Gradients for each agent's codes from the previous round: (slots, gradients) per batch.
    pending: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for round_ in range(config.rounds):
        timeout = config.join_timeout if round_ == 0 else config.round_timeout
        got = request_codes(round_, timeout)
        entry: dict[str, Any] = {"round": round_, "codes_from": sorted(got)}
        if not got:
            say(f"round {round_}: no agent answered; skipped")
            pending = {}
            entry.update(trained=[], objective=None, losses={})
            history.append(entry)
            continue
        codes = {m: r.payload.arrays["codes"] for m, r in got.items()}
        batches, mixed, objective = coord.mix(round_, codes)
        payloads = {}
        for m, r in got.items():
            arrays = batches_to_arrays("slots", batches[m])
            if mixed is not None:
                arrays.update(batches_to_arrays("mixed", mixed[m]))
            if m in pending:
                arrays.update(batches_to_arrays("cross-slots", pending[m][0]))
                arrays.update(batches_to_arrays("cross", pending[m][1]))
            payloads[r.node] = Payload(arrays=arrays, config={**settings, "round": round_})
        trained = ask("train", payloads, timeout, round_)
        losses = {m: dict(r.payload.metrics) for m, r in trained.items()}
        pending = {}
        if mixed is not None and config.cross_gradients:
            grads = {
                m: arrays_to_batches("grad", r.payload.arrays)
                for m, r in trained.items()
                if r.payload.arrays
            }
            pending = {k: (batches[k], g) for k, g in coord.backward(grads).items() if g}
        entry.update(trained=sorted(trained), objective=objective, losses=losses)
        history.append(entry)
        if config.out:
            # Progress on disk after every round: a long run can be followed (and a test can
            # tell when a run is under way).
            write_progress(Path(config.out), config, history)
        total = sum(v["loss"] for v in losses.values())
        obj = "-" if objective is None else f"{objective:.4f}"
        say(
            f"round {round_}: agents {sorted(got)} barycenter objective {obj} "
            f"summed agent loss {total:.4f}"
        )

    final = request_codes(config.rounds, config.round_timeout)
    if not final:
        raise RuntimeError("no agent sent final codes: nothing to evaluate")
    clusters = coord.cluster({m: r.payload.arrays["codes"] for m, r in final.items()})
    payloads = {
        r.node: Payload(
            arrays={"clusters": clusters[m]}, config={**settings, "round": config.rounds}
        )
        for m, r in final.items()
    }
    scored = ask("evaluate", payloads, config.round_timeout, config.rounds)
    if not scored:
        raise RuntimeError("no agent scored its clusters: nothing to report")
    scores = {m: dict(r.payload.metrics) for m, r in scored.items()}
    seconds = time.perf_counter() - start
    records = coord.records(scores, seconds)
    result = FederatedResult(records, history, clusters, scores, privacy)
    if config.out:
        write_federated_results(Path(config.out), result, config)
    say(
        "final: agents "
        + str(sorted(scores))
        + " "
        + " ".join(f"{r['metric']} {r['value']:.3f}" for r in records)
    )
    return result


def write_federated_results(out: Path, result: FederatedResult, config: FederatedConfig) -> None:
    """``results.json``/``results.md`` (merged with earlier runs, as ``modalign cluster``
    does) and ``federated.json`` (settings, round log, per-agent scores and privacy)."""
    records = merge_records(read_results(out), result.records)
    note = ""
    if result.privacy:
        rows = [
            f"| {m} | {p['releases']:.0f} | {p['epsilon_code']:.3g} | "
            f"{p['epsilon_dataset']:.3g} | {p['delta']:.0e} |"
            for m, p in sorted(result.privacy.items())
        ]
        note = "\n".join(
            [
                "## Local differential privacy of released codes (per agent)",
                "",
                "The server sees every agent's noised codes. epsilon per code: the code as a "
                "function of its own row; epsilon dataset: any row may move all codes through "
                "the encoder (see docs/federated.md).",
                "",
                "| modality | releases | epsilon per code | epsilon dataset | delta |",
                "| ---: | ---: | ---: | ---: | ---: |",
                *rows,
            ]
        )
    write_results(out, records, extra_markdown=note)
    log = {
        "settings": config.to_run_config(),
        "history": result.history,
        "scores": {str(m): s for m, s in result.scores.items()},
        "privacy": {str(m): p for m, p in result.privacy.items()},
    }
    text = json.dumps(log, indent=1, allow_nan=False) + "\n"
    atomic_write(out / "federated.json", lambda f: f.write(text.encode("utf-8")))


def write_progress(out: Path, config: FederatedConfig, history: list[dict[str, Any]]) -> None:
    """``progress.json``: the settings and the rounds done so far."""
    log = {"settings": config.to_run_config(), "history": history}
    text = json.dumps(log, indent=1, allow_nan=False) + "\n"
    atomic_write(out / "progress.json", lambda f: f.write(text.encode("utf-8")))


class LocalTransport:
    """Agents as objects in this process: every request is answered at once.

    ``absent(kind, round_, modality) -> bool`` lets a caller take an agent offline for a
    request (a dropout without waiting for a timeout).
    """

    def __init__(
        self,
        agents: list[Agent],
        absent: Callable[[str, int, int], bool] | None = None,
    ):
        self.agents = {node: a for node, a in enumerate(agents)}
        self.absent = absent or (lambda _k, _r, _m: False)
        self.sent: list[tuple[str, int, Payload]] = []
        self.received: list[tuple[str, int, Payload]] = []

    def nodes(self) -> list[int]:
        return sorted(self.agents)

    def request(
        self, kind: str, payloads: Mapping[int, Payload], timeout: float, round_: int
    ) -> dict[int, Payload]:
        out = {}
        for node, payload in payloads.items():
            agent = self.agents[node]
            if self.absent(kind, round_, agent.modality):
                continue
            self.sent.append((kind, node, payload))
            out[node] = answer(agent, kind, payload)
            self.received.append((kind, node, out[node]))
        return out
