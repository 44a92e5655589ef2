"""An agent: one modality's rows, its own autoencoder and optimiser (no Flower here).

The agent computes the answers to the server's requests (:mod:`modalign.federated.protocol`
says what each reply holds, and what it withholds under local DP):

* :meth:`Agent.codes`: the codes ``f_m(X_m)`` (N_m, d) of all its rows in *slot order*
  (clipped and noised when local DP is on). Slots are positions the server may name; in the
  aligned setting slot ``i`` is row ``i`` (the sample correspondence the aligned setting
  assumes), in the unaligned setting the agent maps slots to rows through its own
  content order (:func:`modalign.methods.otm.canonical_order`), so the server learns nothing
  from how rows happen to be stored.
* :meth:`Agent.train`: one local epoch over the server's batches of slots, on exactly the
  per-modality terms of OTM's loss (:func:`modalign.methods.otm.modality_loss`, shared with
  centralised OTM): reconstruction from its own codes, the MMD prior term, reconstruction
  from the mixed codes the server computed for it, and (if enabled) the GW clustering term.
  The mixed codes are fixed inputs: no gradient reaches other agents.
* :meth:`Agent.score`: the four clustering scores of the server's clusters against the
  agent's own labels.

The model lives between rounds as plain tensors (:meth:`Agent.state_tensors`), which the
Flower app keeps in the node's context state.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from modalign.data import Preprocessor, load_dataset, unalign
from modalign.federated.config import FederatedConfig
from modalign.federated.privacy import PrivacyReport, privacy_report, privatise_codes
from modalign.methods.otm import LOSS_TERMS, add_loss_terms, canonical_order, modality_loss
from modalign.nn import Autoencoder
from modalign.train import adam


@dataclass(frozen=True)
class ModalityData:
    """One modality as an agent holds it: preprocessed rows (N, D) and, for scoring only,
    the labels of those rows (N,) when the agent knows them."""

    modality: int
    name: str
    view: Tensor
    labels: np.ndarray | None


@lru_cache(maxsize=8)
def load_modality(
    dataset: str,
    modality: int,
    *,
    data_dir: str = "",
    preprocess: str = "auto",
    setting: str = "aligned",
    rate: float = 1.0,
    seed: int = 0,
) -> ModalityData:
    """Load view ``modality`` of ``dataset``, preprocessed as ``modalign cluster`` does.

    The preprocessing of a view is fitted on that view alone, so the agent computes exactly
    what the centralised protocol computes. Unaligned: the view's rows are permuted by
    :func:`modalign.data.unalign` with the run's seed, as in ``modalign cluster``. Cached per
    process: the data is read-only, the model is not kept here.
    """
    ds = load_dataset(dataset, data_dir=data_dir or None)
    if not 0 <= modality < ds.n_views:
        raise ValueError(
            f"modality {modality}: dataset {dataset!r} has {ds.n_views} views "
            f"({', '.join(ds.names)}); choose 0..{ds.n_views - 1}"
        )
    ds = Preprocessor(preprocess).fit(ds).transform(ds)
    if setting == "unaligned":
        ds = unalign(ds, rate, seed=seed)
    labels = None if ds.labels is None else ds.row_labels(modality).cpu().numpy()
    return ModalityData(modality, ds.names[modality], ds.views[modality].float(), labels)


def agent_seed(seed: int, modality: int) -> int:
    """Seed of agent ``modality``'s weights and prior draws (distinct per agent)."""
    return seed * 1_000_003 + 7919 * (modality + 1)


class Agent:
    """One modality's learner. ``data.view`` is (N, D); codes are (N, ``otm.latent_dim``)."""

    def __init__(self, data: ModalityData, config: FederatedConfig):
        self.data = data
        self.config = config
        self.modality = data.modality
        view = data.view
        if view.dim() != 2 or view.shape[0] < 2:
            raise ValueError(
                f"modality {self.modality} ({data.name}): expected an (N >= 2, D) view, "
                f"got shape {tuple(view.shape)}"
            )
        if not bool(torch.isfinite(view).all()):
            raise ValueError(f"modality {self.modality} ({data.name}): NaN or infinite values")
        self.n_rows = int(view.shape[0])
        # slot -> row. Aligned: identity. Unaligned: content order, private to the agent.
        self.order = (
            torch.arange(self.n_rows) if config.aligned else canonical_order(view).to(torch.long)
        )
        cfg = config.otm
        # Weights from the agent's seed alone, without touching the process's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(agent_seed(config.seed, self.modality))
            self.autoencoder = Autoencoder(view.shape[1], cfg.latent_dim)
        self.optimiser = adam(
            self.autoencoder.parameters(), cfg.lr, cfg.weight_decay, fused=cfg.fused_adam
        )
        self.releases = 0  # how many times every row's code has left the agent
        # The DP noise seed is the agent's secret (kept in its state, never sent): a seed
        # derived from the run's settings would let the server subtract the noise.
        self.noise_seed = secrets.randbits(62)

    # ---------------------------------------------------------------- requests
    @torch.no_grad()
    def codes(self, round_: int) -> np.ndarray:
        """The codes of all rows in slot order, (N, d) float32; noised if local DP is on.

        Every call is a release of every row and is counted for the privacy report. The noise
        of each release is fresh: it is keyed by the agent's own release count, not by
        ``round_`` (which the server names), since two releases with the same noise would
        hand the server the noise-free difference of the codes (outside the accounting).
        """
        self.autoencoder.eval()
        z = self.autoencoder.encode(self.data.view[self.order])
        if self.config.private:
            gen = torch.Generator().manual_seed(self.noise_seed + self.releases)
            z = privatise_codes(z, self.config.dp_clip, self.config.dp_noise, gen)
        self.releases += 1
        out = z.float().numpy()
        if not np.isfinite(out).all():
            raise ValueError(
                f"modality {self.modality} ({self.data.name}): codes became NaN or infinite "
                f"in round {round_}; lower the learning rate"
            )
        return out

    def train(
        self,
        batches: Sequence[np.ndarray],
        mixed: Sequence[np.ndarray] | None,
        round_: int,
        cross: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    ) -> tuple[dict[str, float], list[np.ndarray] | None]:
        """One local epoch: for each batch of slots (B_b,), one Adam step on this modality's
        OTM loss, :func:`modalign.methods.otm.modality_loss` (the very function centralised
        OTM sums over modalities), plus the cross term below.

        ``mixed[b]`` (B_b, d): the server's mixed codes for batch ``b`` (None before mixing
        starts or when no other agent answered). ``cross = (slots, grads)``: the server's
        gradients (B'_b, d) of the previous round's mixed-code losses of all agents with
        respect to this agent's codes of ``slots[b]``; ``<f(x_slots), grad>`` is added to the
        loss of batch ``b``, so that the encoder receives what centralised OTM's backward
        pass through the mixer gives it (one round late).

        Returns the epoch's mean loss terms and, when mixed codes were given and
        cross-gradients are on, the gradient of ``lambda_mix * rec(mixed)`` with respect to
        ``mixed[b]`` for every batch (B_b, d).
        """
        cfg = self.config.otm
        if mixed is not None and len(mixed) != len(batches):
            raise ValueError(
                f"modality {self.modality}: {len(mixed)} mixed-code batches for "
                f"{len(batches)} batches of slots"
            )
        cross_slots, cross_grads = cross if cross is not None else ([], [])
        if len(cross_slots) != len(cross_grads):
            raise ValueError(
                f"modality {self.modality}: {len(cross_grads)} cross-gradients for "
                f"{len(cross_slots)} batches of slots"
            )
        gen = torch.Generator().manual_seed(agent_seed(self.config.seed, self.modality) + round_)
        totals = dict.fromkeys(LOSS_TERMS, 0.0)
        returned: list[np.ndarray] = []
        self.autoencoder.train()
        for b, slots in enumerate(batches):
            x = self.data.view[self.order[self._slots(slots, f"batch {b}")]]
            z = self.autoencoder.encode(x)
            prior = torch.randn(z.shape, generator=gen).to(z)
            target = None if mixed is None else self._mixed_target(mixed[b], z, b)
            terms = modality_loss(self.autoencoder, x, z, prior, target, cfg, round_)
            objective = terms["loss"]
            if b < len(cross_slots):
                objective = objective + self._cross_term(cross_slots[b], cross_grads[b], b)
            self.optimiser.zero_grad()
            objective.backward()
            if target is not None and target.grad is not None:
                returned.append(target.grad.detach().float().numpy())
            self.optimiser.step()
            add_loss_terms(totals, len(batches), terms)
        return totals, (returned or None)

    def _mixed_target(self, mixed: np.ndarray, codes: Tensor, b: int) -> Tensor:
        """The server's mixed codes of batch ``b`` (B, d) as a fixed input of the decoder;
        a leaf that records its gradient when cross-gradients are on."""
        target = torch.as_tensor(np.asarray(mixed), dtype=codes.dtype).clone()
        if target.shape != codes.shape:
            raise ValueError(
                f"modality {self.modality}: mixed codes of batch {b} have shape "
                f"{tuple(target.shape)}, expected {tuple(codes.shape)}"
            )
        return target.requires_grad_(self.config.cross_gradients)

    def _cross_term(self, slots: np.ndarray, grad: np.ndarray, b: int) -> Tensor:
        """``<f(x_slots), grad>``: a surrogate whose gradient in the encoder is ``J^T grad``,
        the chain rule through the server's mixer completed here."""
        old = self.data.view[self.order[self._slots(slots, f"cross batch {b}")]]
        d = self.config.otm.latent_dim
        g = torch.as_tensor(np.asarray(grad), dtype=old.dtype)
        if g.shape != (len(old), d):
            raise ValueError(
                f"modality {self.modality}: cross-gradient {b} has shape "
                f"{tuple(g.shape)}, expected ({len(old)}, {d})"
            )
        return (self.autoencoder.encode(old) * g).sum()

    def _slots(self, slots: np.ndarray, what: str) -> Tensor:
        slots_t = torch.as_tensor(np.asarray(slots), dtype=torch.long)
        if slots_t.dim() != 1 or len(slots_t) == 0:
            raise ValueError(f"modality {self.modality}: {what} of slots must be (B,)")
        if int(slots_t.min()) < 0 or int(slots_t.max()) >= self.n_rows:
            raise ValueError(
                f"modality {self.modality}: {what} names slots outside 0..{self.n_rows - 1}"
            )
        return slots_t

    def score(self, clusters: np.ndarray) -> dict[str, float]:
        """Purity, accuracy, NMI and ARI of cluster labels given in slot order (N,) against
        the agent's own labels; the labels never leave the agent, only these four numbers."""
        from modalign.eval import clustering_scores

        if self.data.labels is None:
            raise ValueError(f"modality {self.modality} ({self.data.name}) has no labels to score")
        clusters = np.asarray(clusters).reshape(-1)
        if clusters.shape[0] != self.n_rows:
            raise ValueError(
                f"modality {self.modality}: {clusters.shape[0]} cluster labels for "
                f"{self.n_rows} rows"
            )
        by_row = np.empty(self.n_rows, dtype=np.int64)
        by_row[self.order.numpy()] = clusters
        return clustering_scores(self.data.labels, by_row)

    def privacy(self) -> PrivacyReport | None:
        """The budget spent so far, or None without local DP."""
        if not self.config.private:
            return None
        return privacy_report(
            self.releases,
            self.n_rows,
            self.config.dp_clip,
            self.config.dp_noise,
            self.config.dp_delta,
        )

    # ---------------------------------------------------------------- persistence
    def state_tensors(self) -> dict[str, Tensor]:
        """Weights, optimiser moments and counters as a flat name -> tensor mapping."""
        out = {f"model.{k}": v.detach().clone() for k, v in self.autoencoder.state_dict().items()}
        for idx, state in self.optimiser.state_dict()["state"].items():
            for name, value in state.items():
                out[f"adam.{idx}.{name}"] = torch.as_tensor(value).detach().clone()
        out["releases"] = torch.tensor(self.releases, dtype=torch.int64)
        out["noise-seed"] = torch.tensor(self.noise_seed, dtype=torch.int64)
        return out

    def load_state_tensors(self, state: Mapping[str, Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        model = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
        try:
            self.autoencoder.load_state_dict(model)
        except RuntimeError as err:
            raise ValueError(
                f"modality {self.modality}: stored model does not fit this view ({err})"
            ) from err
        moments: dict[int, dict[str, Tensor]] = {}
        for key, value in state.items():
            if key.startswith("adam."):
                _, idx, name = key.split(".", 2)
                moments.setdefault(int(idx), {})[name] = value
        optim_state = self.optimiser.state_dict()
        optim_state["state"] = moments
        self.optimiser.load_state_dict(optim_state)
        self.releases = int(state["releases"])
        self.noise_seed = int(state["noise-seed"])
