"""Multimodal transformers with Wasserstein modality alignment (DESIGN.md 2.2; Zhi et al.,
TMLR 2025), sklearn-style.

The model is a late-fusion or an early-fusion transformer of :mod:`modalign.nn.transformer`
(randomly initialised; the paper's early fusion starts from ViLT weights, which cannot be
downloaded here) trained on token sequences with the loss, per batch,

    L = CE(logits, y) + alpha * mean over pairs (a, b) of OT_beta(tokens_a, tokens_b)

when ``align`` is on (the plain cross-entropy when it is off). The paper publishes no code;
the formulation chosen here is UNITER's word-region alignment:

* the tokens of a modality are its token states at the alignment layer: late fusion, the
  outputs of the modality's own encoder (before the fusion transformer); early fusion, the
  output of layer ``align_layer`` of the single stream (before the final LayerNorm), split
  back per modality. The [CLS] token is never included; padded tokens carry no mass;
* ``OT_beta`` is :func:`modalign.ot.token_alignment_loss`: cost ``C_ij = 1 - cos(t_i, v_j)``,
  uniform weights over each sample's real tokens, the plan from ``solver`` (``"ipot"``:
  ``beta`` is the proximal step, ``n_iter`` steps of ``inner_iter`` sweeps; ``"sinkhorn"``:
  ``beta`` is epsilon; ``"exact"``), **held fixed**, so the gradient flows through the cost
  only (the envelope gradient), computed in float32;
* a pair's term is the mean over the samples of the batch where both modalities are present
  (one batched call per pair, on those rows only); the loss averages the terms of the pairs
  that have such samples (``M(M-1)/2`` pairs at most). With ``M = 2`` this is the single pair.

Alignment adds no trainable parameter (the model and its ``state_dict`` are the same with it
on or off), and with it off no alignment code runs: the model is the plain transformer.

Baseline recipe, ``modality_dropout = p``: in training, each sample drops each of its present
modalities independently with probability ``p`` (removed from attention through the presence
mask, exactly as a missing one), never all of them (:func:`modality_dropout`).

Inputs: ``views`` is a list of ``M >= 2`` token arrays ``(N, T_m, d_m)`` (NumPy or torch,
row ``i`` the same sample in all), ``token_masks`` a list of ``(N, T_m)`` bool (True = real
token; 0/1 accepted; None, or a None entry: all real) and ``mask`` the ``(N, M)`` presence
mask (None: all present). Tokens that do not count (padding, missing modalities) may hold
anything, even NaN: they are zero-filled before the model sees them. Every training batch
and inference chunk is cut after its last token that counts (:func:`trim_padding`: exact;
the work follows the batch's longest real sequence, not the dataset's). So that a training
batch holds sequences of similar lengths, each epoch's shuffled rows are cut into pools of
``sort_pool`` batches, each pool is sorted by length (the longest counting sequence of a row),
cut into batches, and the batches are shuffled (:func:`length_sorted_batches`). A modality with no
real token in a sample counts as missing there; every sample needs at least one present
modality.

Data-parallel training: when a default process group of :mod:`torch.distributed` is
initialised, ``fit`` trains data-parallel over its ranks. Launch a script with ``torchrun
--nproc-per-node 2 train.py`` (torchrun sets one OpenMP thread per process unless
``OMP_NUM_THREADS`` is set), every rank passing the same full data and settings (checked)::

    import torch.distributed as dist
    from modalign.methods.transformer import TransformerClassifier, TransformerConfig

    dist.init_process_group("gloo")  # gloo on the CPU
    model = TransformerClassifier(TransformerConfig(n_outputs=10), random_state=0)
    model.fit(views, y, token_masks, mask=mask, checkpoint="runs/x.pt")
    if dist.get_rank() == 0:
        print(model.score(test_views, test_y, test_token_masks))
    dist.destroy_process_group()

Every rank builds the same model (the seed), holds out the same validation rows, draws the same
global batch order and modality-dropout masks (from the epoch's seeded generator, on the global
batch of ``batch_size`` rows) and trains on its shard of each global batch
(:func:`~modalign.train.distributed.shard_rows`: rows ``r::world_size``, trimmed per shard).
Its loss is weighted so that the ranks' losses add up to the one-process loss of the global
batch: the cross-entropy by the shard's share of the rows, each pair's alignment term by the
shard's share of the batch's rows where both modalities count, and the average over pairs by
the number of pairs with such rows in the global batch. The gradients are summed over the
ranks (:func:`~modalign.train.distributed.sum_gradients`, one ``all_reduce`` per step, the
averaging of ``DistributedDataParallel`` with the weights in the loss), so every rank takes
the one-process Adam step; the logged losses are the global batch's. The validation
cross-entropy is sharded the same way and summed (reduced on rank 0 and broadcast, so that
every rank takes the same early-stopping and best-epoch decisions); only rank 0 writes the
checkpoint, the other ranks resume from a copy of it sent at the start and write nothing
(:func:`~modalign.train.distributed.rank_zero_checkpoint`).

With ``dropout = 0`` a run on W processes equals the one-process run with the same
``batch_size`` up to float32 summation order (every row's forward pass and optimal transport
are its own; only the sums over rows and over ranks are re-associated): modality dropout draws
the same masks. One exception in the weights, none in the outputs: the attention key biases
(``in_proj_bias[width:2 * width]``) have a true gradient of zero (softmax ignores them), so
their computed gradient is rounding noise, which Adam turns into steps of about ``lr`` of
arbitrary sign: they differ between any two summation orders, changing no logit.

With ``dropout > 0`` the layer-dropout masks differ: rank ``r`` draws its shard's masks from
the one-process epoch seed plus ``r``, so the run is another draw of the same distribution
(reproducible and resumable for a given W), not the one-process run.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalign.eval.supervised import classification_scores
from modalign.methods.supervised import stratified_holdout
from modalign.nn.transformer import (
    EarlyFusionTransformer,
    LateFusionTransformer,
    TransformerOutput,
)
from modalign.ot.token import SOLVERS, token_alignment_loss
from modalign.train import train_epochs
from modalign.train.distributed import (
    check_same_on_ranks,
    rank_and_world,
    rank_zero_checkpoint,
    shard_rows,
    sum_gradients,
    sum_on_ranks,
)
from modalign.train.loop import check_finite_loss
from modalign.utils import check_device

__all__ = [
    "TRANSFORMER_FUSIONS",
    "TransformerClassifier",
    "TransformerConfig",
    "check_token_views",
    "length_sorted_batches",
    "modality_dropout",
    "trim_padding",
]

TRANSFORMER_FUSIONS = ("late", "early")
_EVAL_CHUNK = 256  # rows per forward pass at inference and validation


@dataclass
class TransformerConfig:
    """Settings of :class:`TransformerClassifier`.

    ``n_outputs``: number of classes. ``fusion``: ``"late"`` (per-modality encoders, then a
    fusion transformer of ``fusion_layers`` layers and ``fusion_heads`` heads: the paper's 2
    and 8) or ``"early"`` (one single-stream transformer). ``width``: model width.
    ``heads``, ``layers``: each modality encoder's (late) or the stream's (early).
    ``ff_mult``: feed-forward width over ``width``. ``dropout``: in every layer.

    ``align``: add ``alpha * OT_beta`` between every pair of modalities' tokens (see the module
    docstring) with ``solver`` ``"ipot"`` / ``"sinkhorn"`` / ``"exact"``, ``beta`` (IPOT's
    proximal step, Sinkhorn's epsilon; unused by exact), ``n_iter`` and ``inner_iter``.
    ``align_layer`` (early fusion only): the layer whose outputs are aligned, ``1..layers``
    (0: the embedded input); None: the last layer. Late fusion aligns the modality encoders'
    outputs.

    ``modality_dropout``: probability that a training sample drops each of its modalities
    (never all). ``sort_pool``: training batches are cut from pools of that many batches'
    rows sorted by length (:func:`length_sorted_batches`; 1: plain shuffled batches).
    ``patience``: epochs without a validation-loss (cross-entropy) improvement
    before stopping (None: train all ``epochs`` and keep the best validation epoch).
    ``val_fraction``: share of the training rows held out (stratified) for validation when
    no validation set is given (0: none, no early stopping).
    """

    n_outputs: int
    fusion: str = "late"
    width: int = 64
    heads: int = 4
    layers: int = 1
    fusion_layers: int = 2
    fusion_heads: int = 8
    ff_mult: int = 2
    dropout: float = 0.1
    align: bool = False
    alpha: float = 0.1
    beta: float = 0.5
    solver: str = "ipot"
    n_iter: int = 50
    inner_iter: int = 1
    align_layer: int | None = None
    modality_dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    sort_pool: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 5
    val_fraction: float = 0.15
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.fusion not in TRANSFORMER_FUSIONS:
            raise ValueError(f"fusion must be one of {TRANSFORMER_FUSIONS}, got {self.fusion!r}")
        if self.n_outputs < 2:
            raise ValueError(f"n_outputs must be >= 2 classes, got {self.n_outputs}")
        for name in ("width", "heads", "layers", "fusion_layers", "fusion_heads", "ff_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        heads = [self.heads] + ([self.fusion_heads] if self.fusion == "late" else [])
        for h in heads:
            if self.width % h:
                raise ValueError(f"width {self.width} must be a multiple of the heads ({h})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.n_iter < 1 or self.inner_iter < 1:
            raise ValueError("n_iter and inner_iter must be >= 1")
        if self.align_layer is not None:
            if self.fusion != "early":
                raise ValueError(
                    "align_layer applies to early fusion only (late fusion aligns the "
                    "modality encoders' outputs); leave it None"
                )
            if not 0 <= self.align_layer <= self.layers:
                raise ValueError(
                    f"align_layer must lie in 0..layers={self.layers} or be None, "
                    f"got {self.align_layer}"
                )
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must lie in [0, 1), got {self.modality_dropout}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if self.sort_pool < 1:
            raise ValueError(f"sort_pool must be >= 1, got {self.sort_pool}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        check_device(self.device)


# ----------------------------------------------------------------------------- helpers
def length_sorted_batches(
    lengths: Tensor, batch_size: int, pool: int, generator: torch.Generator
) -> list[Tensor]:
    """One epoch's training batches: ``len(lengths) // batch_size`` batches of
    ``batch_size`` row indices (the remainder, random rows, sits this epoch out).

    The rows are shuffled, cut into pools of ``pool`` batches, each pool is sorted by
    ``lengths`` (N,) (stably: equal lengths keep the random order) and cut into batches,
    and the batch order is shuffled. Every batch then holds sequences of similar lengths,
    so :func:`trim_padding` has less padding to keep. ``pool = 1``: plain shuffled batches.
    Draws from ``generator`` (on the CPU). ``benchmarks/sort_pool.py`` measures the effect
    on avdigits-tokens."""
    n = len(lengths)
    n_batches = max(1, n // batch_size)
    order = torch.randperm(n, generator=generator)[: n_batches * batch_size]
    if pool > 1:
        host = lengths.detach().to("cpu")
        step = pool * batch_size
        order = torch.cat(
            [chunk[torch.argsort(host[chunk], stable=True)] for chunk in order.split(step)]
        )
        batches = list(order.split(batch_size))
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    else:
        batches = list(order.split(batch_size))
    return [b.to(lengths.device) for b in batches]


def longest_sequence(tms: Sequence[Tensor], present: Tensor) -> Tensor:
    """(N,) the number of counting tokens (real and present) in each row's longest
    modality."""
    return torch.stack([(tm & present[:, m : m + 1]).sum(1) for m, tm in enumerate(tms)], 1).amax(1)


def modality_dropout(present: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """The presence mask ``present`` (B, M) bool with each True entry turned False with
    probability ``p``, independently, except that a sample never loses all its present
    modalities: when every one was drawn, one of them (uniformly) is kept. Draws from
    ``generator`` (on the CPU); returns a new mask on ``present``'s device."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must lie in [0, 1), got {p}")
    host = present.detach().to("cpu", torch.bool)
    drop = torch.rand(host.shape, generator=generator) < p
    keep = host & ~drop
    lost = host.any(1) & ~keep.any(1)
    scores = torch.rand(host.shape, generator=generator).masked_fill(~host, -1.0)
    rescue = F.one_hot(scores.argmax(1), host.shape[1]).bool() & lost[:, None]
    return (keep | rescue).to(present.device)


def trim_padding(
    xs: Sequence[Tensor], tms: Sequence[Tensor], present: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """The token tensors and masks of a batch cut, per modality, after its last token that
    counts in any row (a real token of a present modality); at least one position is kept.

    Exact: padded tokens are zero-filled, masked out of attention as keys, zeroed as outputs
    and carry no transport mass, and positions keep their embeddings, so the trailing
    columns cut change no output (up to floating-point summation order). Only the work
    shrinks: avdigits-tokens' audio view is 141 frames long and 82 % padding."""
    out_x, out_t = [], []
    for m, (x, tm) in enumerate(zip(xs, tms)):
        used = (tm & present[:, m : m + 1]).any(0)
        keep = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
        if keep < x.shape[1]:
            x, tm = x[:, :keep], tm[:, :keep]
        out_x.append(x)
        out_t.append(tm)
    return out_x, out_t


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def check_token_views(
    views: Sequence,
    token_masks: Sequence | None,
    mask=None,
    *,
    device: str | torch.device = "cpu",
    dims: Sequence[int] | None = None,
    max_lens: Sequence[int] | None = None,
    only: int | None = None,
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Token views as float32 tensors on ``device`` (tokens that do not count zero-filled),
    their bool token masks and the (N, M) bool presence mask, checked.

    A modality counts as present in a sample when ``mask`` says so and it has a real token
    there; ``only``: every modality but that one is marked missing (its values unchecked).
    ``dims`` / ``max_lens``: the token widths and longest sequences the fitted model takes
    (None before fitting: then at least 2 modalities are required).

    Raises:
        ValueError: one line naming the modality (or sample) and what is wrong.
    """
    if isinstance(views, (Tensor, np.ndarray)) or not isinstance(views, Sequence):
        raise ValueError("views must be a list with one (N, T_m, d_m) token array per modality")
    n_mod = len(views)
    if dims is not None and n_mod != len(dims):
        raise ValueError(f"the model was trained on {len(dims)} modalities, got {n_mod}")
    if n_mod < 2:
        raise ValueError(f"the transformers need at least 2 modalities, got {n_mod}")
    if token_masks is None:
        token_masks = [None] * n_mod
    if isinstance(token_masks, (Tensor, np.ndarray)) or len(token_masks) != n_mod:
        raise ValueError(f"token_masks must be a list of {n_mod} (N, T_m) masks (or None)")
    xs, tms = [], []
    for m, (v, tm) in enumerate(zip(views, token_masks)):
        t = _as_tensor(v)
        if t.dim() != 3:
            raise ValueError(f"modality {m}: expected (N, T, d) tokens, got shape {tuple(t.shape)}")
        if dims is not None and t.shape[2] != dims[m]:
            raise ValueError(
                f"modality {m}: the model was trained on d={dims[m]}, got {t.shape[2]}"
            )
        if max_lens is not None and t.shape[1] > max_lens[m]:
            raise ValueError(
                f"modality {m}: {t.shape[1]} tokens, longer than the {max_lens[m]} the model "
                "was trained on"
            )
        if tm is None:
            tm = torch.ones(t.shape[:2], dtype=torch.bool)
        tm = _as_tensor(tm)
        if tuple(tm.shape) != tuple(t.shape[:2]):
            raise ValueError(
                f"modality {m}: token mask of shape {tuple(tm.shape)}, expected "
                f"{tuple(t.shape[:2])} (True = real token)"
            )
        if tm.dtype != torch.bool:
            if tm.is_floating_point() or not bool(((tm == 0) | (tm == 1)).all()):
                raise ValueError(f"modality {m}: token mask values must be bool or 0/1")
            tm = tm != 0
        xs.append(t.to(device, torch.float32))
        tms.append(tm.to(device))
    rows = {x.shape[0] for x in xs}
    if len(rows) != 1:
        raise ValueError(f"modalities must have one row per sample; got row counts {rows}")
    n = xs[0].shape[0]
    if mask is None:
        present = torch.ones(n, n_mod, dtype=torch.bool, device=device)
    else:
        present = _as_tensor(mask).to(device)
        if tuple(present.shape) != (n, n_mod):
            raise ValueError(f"mask: expected shape ({n}, {n_mod}), got {tuple(present.shape)}")
        if present.dtype != torch.bool and not bool(((present == 0) | (present == 1)).all()):
            raise ValueError("mask: values must be 0 or 1 (1 = modality present)")
        present = present.bool()
    if only is not None:
        if not -n_mod <= only < n_mod:
            raise ValueError(f"modality must index one of {n_mod} modalities, got {only}")
        present = present & (torch.arange(n_mod, device=device) == only % n_mod)
    present = present & torch.stack([tm.any(1) for tm in tms], 1)
    for m, (x, tm) in enumerate(zip(xs, tms)):
        counting = tm & present[:, m : m + 1]
        if not bool(torch.isfinite(x[counting]).all()):
            raise ValueError(f"modality {m}: NaN or infinite values in real tokens")
        xs[m] = torch.where(counting[..., None], x, 0.0)
    if not bool(present.any(1).all()):
        k = int((~present.any(1)).nonzero()[0, 0])
        raise ValueError(
            f"sample {k} has no present modality with a real token: every sample needs one"
        )
    return xs, tms, present


# ----------------------------------------------------------------------------- model
class TransformerClassifier(nn.Module):
    """A late- or early-fusion transformer classifier over token sequences, with optional
    Wasserstein modality alignment or modality dropout, sklearn-style.

    ``fit(views, y, token_masks, mask=None)`` trains; ``predict`` / ``score`` take the same
    inputs (``modality=m``: single-modality inference, every other modality masked out).
    """

    def __init__(self, config: TransformerConfig, random_state: int = 0):
        super().__init__()
        self.config = config
        self.random_state = random_state
        self.history: list[dict[str, float]] = []
        self.dims_: list[int] = []
        self.max_lens_: list[int] = []

    # ------------------------------------------------------------------ set-up
    def _build(self, dims: Sequence[int], max_lens: Sequence[int]) -> None:
        cfg = self.config
        torch.manual_seed(self.random_state)  # weights initialise from the seed alone
        self.dims_ = [int(d) for d in dims]
        self.max_lens_ = [int(t) for t in max_lens]
        common = dict(width=cfg.width, ff_mult=cfg.ff_mult, dropout=cfg.dropout)
        if cfg.fusion == "late":
            self.net = LateFusionTransformer(
                self.dims_,
                self.max_lens_,
                cfg.n_outputs,
                heads=cfg.heads,
                layers=cfg.layers,
                fusion_heads=cfg.fusion_heads,
                fusion_layers=cfg.fusion_layers,
                **common,
            )
        else:
            self.net = EarlyFusionTransformer(
                self.dims_,
                self.max_lens_,
                cfg.n_outputs,
                heads=cfg.heads,
                layers=cfg.layers,
                align_layer=cfg.align_layer,
                **common,
            )
        self.to(cfg.device)

    def _check(self, views, token_masks, mask, *, fitted: bool, only: int | None = None):
        if fitted and not self.dims_:
            raise RuntimeError("call fit before predict")
        return check_token_views(
            views,
            token_masks,
            mask,
            device=self.config.device,
            dims=self.dims_ if fitted else None,
            max_lens=self.max_lens_ if fitted else None,
            only=only,
        )

    def _check_targets(self, y, n: int) -> Tensor:
        t = _as_tensor(y)
        if t.shape[0] != n:
            raise ValueError(f"y: {t.shape[0]} targets for {n} samples")
        if t.dim() != 1 or t.is_floating_point() and not bool((t == t.round()).all()):
            raise ValueError("y: classification needs one integer label per sample")
        t = t.long()
        if int(t.min()) < 0 or int(t.max()) >= self.config.n_outputs:
            raise ValueError(
                f"y: labels must lie in 0..{self.config.n_outputs - 1} (n_outputs), got "
                f"{int(t.min())}..{int(t.max())}"
            )
        return t.to(self.config.device)

    # ------------------------------------------------------------------ model and losses
    def forward(
        self, views: Sequence[Tensor], token_masks: Sequence[Tensor], present: Tensor
    ) -> TransformerOutput:
        """The network on already-checked tensors (see :mod:`modalign.nn.transformer`)."""
        return self.net(views, token_masks, present)

    def alignment_loss(
        self, out: TransformerOutput, pair_rows: Sequence[int] | None = None
    ) -> Tensor:
        """``mean over pairs (a, b)`` of ``OT_beta(tokens_a, tokens_b)`` on the rows where
        both are present (one batched :func:`~modalign.ot.token_alignment_loss` per pair);
        zero (attached to the graph) when no pair has such a row.

        ``pair_rows`` (data-parallel training, ``out`` a shard of a global batch): per pair,
        in :func:`itertools.combinations` order, the number of rows of the global batch where
        both modalities count (:meth:`_pair_rows`). Each pair's term is then weighted by the
        shard's share of those rows and the sum divided by the number of pairs with such rows
        in the global batch, so that the shards' losses add up to the global batch's."""
        cfg = self.config
        has = [mask.any(1) for mask in out.masks]
        terms = []
        for i, (a, b) in enumerate(itertools.combinations(range(len(out.tokens)), 2)):
            both = has[a] & has[b]
            if not bool(both.any()):
                continue
            xa, xb, ma, mb = out.tokens[a], out.tokens[b], out.masks[a], out.masks[b]
            if not bool(both.all()):
                xa, xb, ma, mb = xa[both], xb[both], ma[both], mb[both]
            term = token_alignment_loss(
                xa,
                xb,
                ma,
                mb,
                solver=cfg.solver,
                beta=cfg.beta,
                n_iter=cfg.n_iter,
                inner_iter=cfg.inner_iter,
            )
            if pair_rows is not None:
                term = term * (int(both.sum()) / pair_rows[i])
            terms.append(term)
        if not terms:
            return out.tokens[0].sum() * 0.0
        loss = torch.stack(terms).mean()
        if pair_rows is not None:
            loss = loss * (len(terms) / sum(c > 0 for c in pair_rows))
        return loss

    @staticmethod
    def _pair_rows(tms: Sequence[Tensor], present: Tensor) -> list[int]:
        """Per pair of modalities (:func:`itertools.combinations` order), the number of rows
        where both count (a real token, and present), as :meth:`alignment_loss` sees them."""
        has = [(tm & present[:, m : m + 1]).any(1) for m, tm in enumerate(tms)]
        pairs = itertools.combinations(range(len(has)), 2)
        return [int((has[a] & has[b]).sum()) for a, b in pairs]

    def _logits(self, xs, tms, present) -> Tensor:
        """Logits in chunks of rows (inference and validation), the rows taken in order of
        their longest counting sequence so that :func:`trim_padding` cuts each chunk to
        sequences of similar lengths (every row's logits are its own: the order changes no
        value), then put back in the input order."""
        n = xs[0].shape[0]
        order = torch.argsort(longest_sequence(tms, present), stable=True)
        outs = []
        for start in range(0, n, _EVAL_CHUNK):
            rows = order[start : start + _EVAL_CHUNK]
            bx, bt = trim_padding([x[rows] for x in xs], [t[rows] for t in tms], present[rows])
            outs.append(self.net(bx, bt, present[rows]).logits)
        sorted_logits = torch.cat(outs)
        logits = torch.empty_like(sorted_logits)
        logits[order] = sorted_logits
        return logits

    # ------------------------------------------------------------------ training
    def fit(
        self,
        views: Sequence,
        y,
        token_masks: Sequence | None,
        *,
        mask=None,
        validation: tuple | None = None,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        stop_after: int | None = None,
    ) -> TransformerClassifier:
        """Train on token ``views`` (list of (N, T_m, d_m)), labels ``y`` (N,) and
        ``token_masks`` (list of (N, T_m) bool, True = real token; None: all real), with the
        presence ``mask`` (N, M) (None: all present).

        ``validation``: ``(views, y, token_masks)`` or ``(views, y, token_masks, mask)`` for
        early stopping on its cross-entropy; without it a stratified ``val_fraction`` of the
        training rows is held out (none when 0: then no early stopping). ``checkpoint``:
        written every epoch, resumed from if present. ``stop_after``: end after that many
        epochs of this call (to test interruption).
        """
        cfg = self.config
        rank, world = rank_and_world()
        xs, tms, present = self._check(views, token_masks, mask, fitted=False)
        target = self._check_targets(y, xs[0].shape[0])
        check_same_on_ranks(
            [xs[0].shape[0], int(target.sum()), self.random_state, cfg.batch_size, cfg.epochs],
            "training rows, labels, random_state, batch_size or epochs",
        )
        dims = [x.shape[2] for x in xs]
        max_lens = [x.shape[1] for x in xs]
        if validation is not None:
            if len(validation) not in (3, 4):
                raise ValueError("validation must be (views, y, token_masks[, mask])")
            vx, vt, vp = self._check(
                validation[0],
                validation[2],
                validation[3] if len(validation) > 3 else None,
                fitted=False,
            )
            if [x.shape[2] for x in vx] != dims or any(
                x.shape[1] > t for x, t in zip(vx, max_lens)
            ):
                raise ValueError(
                    f"validation: token widths {[x.shape[2] for x in vx]} and lengths "
                    f"{[x.shape[1] for x in vx]} must match training ({dims}, at most {max_lens})"
                )
            vy = self._check_targets(validation[1], vx[0].shape[0])
        elif cfg.val_fraction > 0:
            tr, va = stratified_holdout(target.cpu().numpy(), cfg.val_fraction, self.random_state)
            tr_t = torch.from_numpy(tr).to(cfg.device)
            va_t = torch.from_numpy(va).to(cfg.device)
            vx, vt, vp, vy = (
                [x[va_t] for x in xs],
                [t[va_t] for t in tms],
                present[va_t],
                target[va_t],
            )
            xs, tms = [x[tr_t] for x in xs], [t[tr_t] for t in tms]
            present, target = present[tr_t], target[tr_t]
        else:
            vx = vt = vp = vy = None
        self._build(dims, max_lens)
        optimiser = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def validate() -> float:
            if world == 1:
                return float(F.cross_entropy(self._logits(vx, vt, vp), vy))
            mine = shard_rows(torch.arange(len(vy), device=vy.device), rank, world)
            part = 0.0
            if len(mine):
                logits = self._logits([x[mine] for x in vx], [t[mine] for t in vt], vp[mine])
                part = float(F.cross_entropy(logits, vy[mine], reduction="sum"))
            return sum_on_ranks(part) / len(vy)

        desc = f"transformer-{cfg.fusion}{'+align' if cfg.align else ''} seed {self.random_state}"
        with rank_zero_checkpoint(checkpoint) as rank_checkpoint:
            self.history = train_epochs(
                self,
                optimiser,
                lambda epoch: self._train_epoch(xs, tms, present, target, optimiser, epoch),
                epochs=cfg.epochs,
                settings={
                    **asdict(cfg),
                    "seed": self.random_state,
                    "dims": str(self.dims_),
                    "max_lens": str(self.max_lens_),
                },
                validate=validate if vx is not None else None,
                patience=cfg.patience,
                checkpoint=rank_checkpoint,
                progress=progress and rank == 0,
                desc=desc,
                stop_after=stop_after,
                device=cfg.device,
                write=rank == 0,
            )
        self.eval()
        return self

    def _train_epoch(self, xs, tms, present, target, optimiser, epoch: int) -> dict[str, float]:
        cfg = self.config
        rank, world = rank_and_world()
        # Every epoch draws from its own seeded generator (batches, modality dropout) and
        # seeds the global generator (layer dropout) from it inside fork_rng, so a resumed run
        # repeats exactly and the caller's random state is left alone. Data-parallel: every
        # rank draws the global batches and modality dropout; rank r's layer dropout is seeded
        # with the one-process seed + r (module docstring).
        gen = torch.Generator().manual_seed(self.random_state * 100_003 + epoch)
        devices = [torch.device(cfg.device)] if torch.device(cfg.device).type == "cuda" else []
        batches = length_sorted_batches(
            longest_sequence(tms, present), cfg.batch_size, cfg.sort_pool, gen
        )
        n_batches = len(batches)
        totals = {"loss": 0.0, "ce": 0.0}
        if cfg.align:
            totals["align"] = 0.0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)) + rank)
            for b, rows in enumerate(batches):
                batch_present = present[rows]
                if cfg.modality_dropout > 0:
                    batch_present = modality_dropout(batch_present, cfg.modality_dropout, gen)
                share, pair_rows = 1.0, None
                if world > 1:  # this rank's shard of the global batch
                    pair_rows = self._pair_rows([t[rows] for t in tms], batch_present)
                    mine = shard_rows(torch.arange(len(rows), device=rows.device), rank, world)
                    share = len(mine) / len(rows)
                    rows, batch_present = rows[mine], batch_present[mine]
                optimiser.zero_grad()
                logged = [0.0, 0.0, 0.0]  # loss, ce, align
                if len(rows):
                    bx, bt = trim_padding(
                        [x[rows] for x in xs], [t[rows] for t in tms], batch_present
                    )
                    out = self.net(bx, bt, batch_present)
                    ce = F.cross_entropy(out.logits, target[rows])
                    if world > 1:
                        ce = ce * share
                    loss = ce
                    if cfg.align:
                        align = self.alignment_loss(out, pair_rows)
                        loss = ce + cfg.alpha * align
                        logged[2] = float(align.detach())
                    loss.backward()
                    logged[:2] = [float(loss.detach()), float(ce.detach())]
                logged = sum_gradients(list(self.parameters()), logged)  # world 1: as is
                # On the summed values, before the step: every rank stops at the same batch
                # (one rank raising alone would leave the others waiting in sum_gradients).
                check_finite_loss(logged[0], epoch, b, parts={"ce": logged[1], "align": logged[2]})
                optimiser.step()
                totals["loss"] += logged[0] / n_batches
                totals["ce"] += logged[1] / n_batches
                if cfg.align:
                    totals["align"] += logged[2] / n_batches
        return totals

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def decision(
        self,
        views: Sequence,
        token_masks: Sequence | None,
        mask=None,
        *,
        modality: int | None = None,
    ) -> Tensor:
        """Logits (N, n_outputs). ``modality``: single-modality inference, every other
        modality masked out of attention (their values are ignored); a sample needs that
        modality present."""
        xs, tms, present = self._check(views, token_masks, mask, fitted=True, only=modality)
        self.eval()
        return self._logits(xs, tms, present)

    def predict(
        self,
        views: Sequence,
        token_masks: Sequence | None,
        mask=None,
        *,
        modality: int | None = None,
    ) -> np.ndarray:
        """Class labels (N,) as a numpy array (see :meth:`decision`)."""
        return self.decision(views, token_masks, mask, modality=modality).argmax(1).cpu().numpy()

    def score(
        self,
        views: Sequence,
        y,
        token_masks: Sequence | None,
        mask=None,
        *,
        modality: int | None = None,
    ) -> dict:
        """Accuracy and macro F1 (:func:`modalign.eval.supervised.classification_scores`)."""
        pred = self.predict(views, token_masks, mask, modality=modality)
        truth = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
        return classification_scores(truth, pred)
