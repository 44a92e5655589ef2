"""The server's side of federated OTM, independent of the transport.

Per round (one round = one OTM epoch):

1. ask every agent for the codes of all its rows (``codes``), and wait ``round_timeout``
   seconds at most; agents that have not answered sit the round out;
2. draw the round's batches of slots and, once the warm-up is over and at least two agents
   answered, mix every batch with :func:`modalign.methods.otm.ot_mix` (the same mixer,
   barycenter and masks as centralised OTM, from a generator seeded by the seed and round);
3. send each agent its slots and its own mixed codes (``train``) and collect its losses;
4. log the round: who answered, the mean barycenter objective over batches, the losses
   (under local DP the agents keep their losses, and the log says they are withheld).

Every reply that reaches the server is also entered, by its layout (array names and shapes,
config and metric keys, no values), in :class:`ReceivedLog`: ``federated.json`` says what
left the agents, as the server received it.

After the last round the agents send final codes, the clustering head of
:class:`modalign.methods.OTM` assigns clusters (aligned: on the agents' codes side by side;
unaligned: on each agent's codes), each agent scores its own clusters against its own labels
(``evaluate``), and the records go to ``results.json`` / ``results.md`` with the writers of
``modalign cluster`` (:mod:`modalign.eval`), the round log to ``federated.json``.

Transports: :class:`LocalTransport` calls agent objects in this process (tests, quick
comparisons); :mod:`modalign.federated.apps` carries the same requests over Flower.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from modalign.eval import (
    merge_records,
    read_header,
    read_results,
    records_from_scores,
    write_results,
)
from modalign.federated.agent import Agent
from modalign.federated.config import FederatedConfig
from modalign.federated.protocol import Payload, answer, arrays_to_batches, batches_to_arrays
from modalign.methods import OTM
from modalign.methods.otm import draw_batches, epoch_generator, mixes, ot_mix
from modalign.provenance import (
    check_provenance,
    dataset_name,
    plain_settings,
    protocol_key,
    run_header,
)
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


def reply_layout(payload: Payload) -> dict[str, Any]:
    """What a reply holds, without its values: array names with their shapes, config keys
    and metric keys (each sorted)."""
    return {
        "arrays": {k: list(v.shape) for k, v in sorted(payload.arrays.items())},
        "config": sorted(payload.config),
        "metrics": sorted(payload.metrics),
    }


class ReceivedLog:
    """The layouts of the replies the server received, per request kind, each with how many
    replies had it: a record of what left the agents (``received`` in ``federated.json``).

    Entered before the server uses or drops anything of a reply, so that it shows what the
    agents sent, not what the server kept.
    """

    def __init__(self) -> None:
        self._seen: dict[str, list[dict[str, Any]]] = {}

    def add(self, kind: str, payload: Payload) -> None:
        layout = reply_layout(payload)
        entries = self._seen.setdefault(kind, [])
        for entry in entries:
            if entry["layout"] == layout:
                entry["replies"] += 1
                return
        entries.append({"layout": layout, "replies": 1})

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        """``{kind: [{"layout": ..., "replies": n}, ...]}`` (a copy, JSON-ready)."""
        return copy.deepcopy(self._seen)


@dataclass
class FederatedResult:
    """What a run produced: records (as ``modalign cluster`` writes them), the round log,
    the clusters per modality (slot order), each agent's privacy budget and the layouts of
    the replies received (:class:`ReceivedLog`)."""

    records: list[dict[str, Any]]
    history: list[dict[str, Any]]
    clusters: dict[int, np.ndarray]
    scores: dict[int, dict[str, float]]
    privacy: dict[int, dict[str, float]] = field(default_factory=dict)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


#: Settings that do not change a run's records: where files go, how long to wait, the seed
#: (records carry it) and the fingerprint (in the key).
_NOT_IN_CONFIG = (
    "seed",
    "out",
    "data-dir",
    "data-sha256",
    "join-timeout",
    "round-timeout",
    "n-agents",
)


def results_key(config: FederatedConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The results folder's key and the run's config (:mod:`modalign.provenance`): another
    seed adds its records, anything else that changes them is refused."""
    key = protocol_key(
        "federated",
        dataset_name(config.dataset),
        config.data_sha256 or None,
        preprocess=config.preprocess,
        setting=config.setting,
        rate=config.rate if not config.aligned else None,
    )
    flat = {k: v for k, v in config.to_run_config().items() if k not in _NOT_IN_CONFIG}
    return key, {config.method: plain_settings(flat)}


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

        The batches of centralised OTM (:func:`modalign.methods.otm.draw_batches`, modalities
        in increasing order): aligned, one permutation shared by all modalities (slot i is
        sample i everywhere); unaligned, an independent permutation per modality (the agents'
        slots are already in content order, as OTM's unaligned positions are).
        """
        cfg = self.config
        gen = epoch_generator(cfg.seed, round_)
        mods = sorted(sizes)
        if cfg.aligned and len({sizes[m] for m in mods}) > 1:
            raise ValueError(
                "aligned setting needs equal row counts, got "
                + ", ".join(f"modality {m}: {sizes[m]}" for m in mods)
            )
        drawn = draw_batches([sizes[m] for m in mods], cfg.otm.batch_size, gen, aligned=cfg.aligned)
        return {m: [batch[i].numpy() for batch in drawn] for i, m in enumerate(mods)}, gen

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
        if not mixes(cfg, round_) or len(mods) < 2:
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
        """Cluster labels per modality (slot order), with OTM's head and the run's seed: aligned,
        one clustering of the agents' codes fused as centralised OTM fuses them
        (:meth:`~modalign.methods.OTM.cluster_aligned`)."""
        head = OTM(self.config.otm, random_state=self.config.seed)
        mods = sorted(codes)
        if self.config.aligned:
            labels = head.cluster_aligned([torch.from_numpy(codes[m]).double() for m in mods])
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


#: What every round of the log says in place of the agents' losses under local DP.
LOSSES_WITHHELD = (
    "local DP: the agents keep their loss terms, which the privacy accounting does not cover"
)


def loss_summary(losses: Mapping[int, Mapping[str, float]], private: bool) -> str:
    """The round's line about the agents' losses: their sum, or that DP withholds them."""
    if private:
        return "agent losses withheld (local DP)"
    return f"summed agent loss {sum(v['loss'] for v in losses.values()):.4f}"


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
    if config.out:  # before the first round: a run that cannot be saved is refused at once
        check_provenance(config.out, read_header(config.out), *results_key(config))
    history: list[dict[str, Any]] = []
    privacy: dict[int, dict[str, float]] = {}
    received = ReceivedLog()

    def ask(kind: str, payloads: Mapping[int, Payload], timeout: float, round_: int):
        replies = transport.request(kind, payloads, timeout, round_)
        for reply in replies.values():
            received.add(kind, reply)
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
        if config.private:
            entry["losses_withheld"] = LOSSES_WITHHELD
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
        # Under local DP the agents keep their loss terms (outside the privacy accounting);
        # should one send them anyway, they are not logged.
        losses = {} if config.private else {m: dict(r.payload.metrics) for m, r in trained.items()}
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
        obj = "-" if objective is None else f"{objective:.4f}"
        say(
            f"round {round_}: agents {sorted(got)} barycenter objective {obj} "
            + loss_summary(losses, config.private)
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
    result = FederatedResult(records, history, clusters, scores, privacy, received.as_dict())
    if config.out:
        write_federated_results(Path(config.out), result, config, started=start)
    say(
        "final: agents "
        + str(sorted(scores))
        + " "
        + " ".join(f"{r['metric']} {r['value']:.3f}" for r in records)
    )
    return result


def write_federated_results(
    out: Path, result: FederatedResult, config: FederatedConfig, *, started: float | None = None
) -> None:
    """``results.json``/``results.md`` (merged with earlier runs of the same key and config,
    as ``modalign cluster`` does, with the header of :func:`results_key`; ``started``: the
    run's ``time.perf_counter()`` at its start, for the header's wall time) and
    ``federated.json`` (settings, round log, per-agent scores and privacy, the layouts of
    the replies received)."""
    key, configs = results_key(config)
    configs = check_provenance(out, read_header(out), key, configs)
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
    header = run_header(
        key=key,
        configs=configs,
        data={"name": key["dataset"], "sha256": key["data_sha256"], "source": config.dataset},
        started=started,
        device=config.otm.device,
    )
    write_results(out, records, extra_markdown=note, header=header)
    log = {
        "settings": config.to_run_config(),
        "history": result.history,
        "scores": {str(m): s for m, s in result.scores.items()},
        "privacy": {str(m): p for m, p in result.privacy.items()},
        "received": result.received,
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
