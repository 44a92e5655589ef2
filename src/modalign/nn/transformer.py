"""Multimodal transformers over token sequences, with token masks and missing modalities.

The two models of DESIGN.md section 2.2 (Zhi et al., TMLR 2025), for ``M >= 2`` modalities.
Every forward pass takes

* ``xs``: one token tensor per modality, ``x_m`` of shape ``(B, T_m, d_m)``;
* ``token_masks``: one ``(B, T_m)`` bool tensor per modality, **True = real token** (False =
  padding; the convention of :mod:`modalign.ot.token`, the opposite of PyTorch's
  ``key_padding_mask``); None: every token real;
* ``present``: the ``(B, M)`` bool mask of present modalities (None: all present),

and returns a :class:`TransformerOutput`: the logits and, for the alignment loss, each
modality's token states at the alignment layer with the mask of the tokens that count (real
tokens of present modalities; the [CLS] token is never among them).

Masking, common to both models:

* A token counts when it is real and its modality is present: ``token_masks[m] &
  present[:, m]``. Every other token (padding, or any token of a missing modality) is replaced
  by zeros *before* the projection and removed from attention as a key through the
  ``src_key_padding_mask``: it is never a zero-filled key that other tokens attend to. No
  output depends on its values (even NaN), and no gradient reaches it.
* The outputs at non-counting positions (the padded *query* rows) are set to exactly zero
  (with :func:`torch.where`), so nothing downstream depends on them either.
* Fully masked attention rows: PyTorch's attention gives NaN for a query whose keys are all
  masked (the fused fast path of ``nn.TransformerEncoderLayer`` in inference does; the
  training path returns zeros). That happens when a sample has no counting token in a
  sequence, e.g. a missing modality in its own encoder. Such a sample's key mask is lifted
  (all its keys visible); its inputs are zeros plus embeddings, so the result is finite and
  independent of the data, and its outputs are zeroed afterwards. The fusion sequences
  (late and early) always hold the [CLS] token as a real key, so they never need the guard.
* A sample needs at least one present modality with at least one real token: otherwise a
  ``ValueError`` names it.

Pooling: a learned [CLS] token is prepended to the fusion sequence (late fusion) or to the
single stream (early fusion); its final state, after the stack's last LayerNorm, feeds the
linear task head. (Masked mean pooling would be the alternative; [CLS] is ViLT's choice and
keeps pooling inside attention, where the masks already act.)

All stacks are ``torch.nn.TransformerEncoder`` of pre-norm layers (``norm_first``,
``batch_first``, GELU, feed-forward width ``ff_mult * width``) with a final LayerNorm;
``enable_nested_tensor`` is off, so training and inference compute the same function. Each
layer is constructed on its own (PyTorch's ``TransformerEncoder`` would deep-copy one layer,
giving every layer the same initial weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "EarlyFusionTransformer",
    "LateFusionTransformer",
    "ModalityTokenEncoder",
    "TokenEmbedding",
    "TransformerOutput",
    "counting_masks",
]


@dataclass
class TransformerOutput:
    """What a forward pass returns.

    ``logits`` (B, n_outputs); ``tokens[m]`` (B, T_m, width): modality ``m``'s token states
    at the alignment layer (late fusion: its encoder's outputs; early fusion: the output of
    layer ``align_layer``), exactly zero where ``masks[m]`` is False; ``masks[m]`` (B, T_m)
    bool: the tokens that count (real tokens of a present modality). Special tokens are not
    included.
    """

    logits: Tensor
    tokens: list[Tensor]
    masks: list[Tensor]


# ----------------------------------------------------------------------------- helpers
def _stack(width: int, heads: int, layers: int, ff_mult: int, dropout: float) -> nn.Module:
    """A pre-norm ``nn.TransformerEncoder`` with independently initialised layers."""

    def layer() -> nn.TransformerEncoderLayer:
        return nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=ff_mult * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )

    encoder = nn.TransformerEncoder(
        layer(), layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
    )
    encoder.layers = nn.ModuleList(layer() for _ in range(layers))
    return encoder


def _key_padding(mask: Tensor) -> Tensor:
    """PyTorch's ``key_padding_mask`` (True = ignored key) for a token mask (True = real).

    A sample without any real token gets no masked key at all (see the module docstring: a
    fully masked attention row gives NaN in some of PyTorch's attention paths)."""
    return ~mask & mask.any(-1, keepdim=True)


def _check_width(width: int, heads: int, what: str) -> None:
    if width < 1 or heads < 1 or width % heads:
        raise ValueError(f"{what}: width {width} must be a positive multiple of heads {heads}")


def counting_masks(
    xs: Sequence[Tensor],
    token_masks: Sequence[Tensor | None] | None,
    present: Tensor | None,
    *,
    dims: Sequence[int],
    max_lens: Sequence[int],
) -> tuple[list[Tensor], Tensor]:
    """Check the inputs of a forward pass; return the counting masks ``token_masks[m] &
    present[:, m]`` (list of (B, T_m) bool) and ``present`` (B, M) bool.

    Raises ``ValueError`` for a wrong number of modalities, wrong shapes, a sequence longer
    than the positional embedding, or a sample without any counting token."""
    n_mod = len(dims)
    if isinstance(xs, Tensor) or len(xs) != n_mod:
        raise ValueError(f"expected a list of {n_mod} token tensors (one per modality)")
    if token_masks is None:
        token_masks = [None] * n_mod
    if len(token_masks) != n_mod:
        raise ValueError(f"expected {n_mod} token masks (one per modality), got {len(token_masks)}")
    batch = xs[0].shape[0] if xs[0].dim() == 3 else -1
    masks = []
    for m, (x, mask) in enumerate(zip(xs, token_masks)):
        if x.dim() != 3 or x.shape[0] != batch or x.shape[-1] != dims[m]:
            raise ValueError(
                f"modality {m}: expected tokens of shape (B={batch}, T, {dims[m]}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[1] > max_lens[m]:
            raise ValueError(
                f"modality {m}: {x.shape[1]} tokens, but the positional embedding holds "
                f"{max_lens[m]} (the longest sequence the model was built for)"
            )
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"modality {m}: token mask of shape {tuple(mask.shape)}, expected "
                f"{tuple(x.shape[:2])} (True = real token)"
            )
        masks.append(mask.to(device=x.device, dtype=torch.bool))
    if present is None:
        present = torch.ones(batch, n_mod, dtype=torch.bool, device=xs[0].device)
    if tuple(present.shape) != (batch, n_mod):
        raise ValueError(
            f"present: expected shape ({batch}, {n_mod}) (True = modality present), "
            f"got {tuple(present.shape)}"
        )
    present = present.to(device=xs[0].device, dtype=torch.bool)
    masks = [mask & present[:, m : m + 1] for m, mask in enumerate(masks)]
    any_token = torch.stack([mask.any(-1) for mask in masks], -1).any(-1)
    if not bool(any_token.all()):
        k = int((~any_token).nonzero()[0, 0])
        what = (
            "no present modality"
            if not bool(present[k].any())
            else "no real token in any present modality"
        )
        raise ValueError(f"sample {k} has {what}: every sample needs at least one")
    return masks, present


# ----------------------------------------------------------------------------- blocks
class TokenEmbedding(nn.Module):
    """Linear projection ``d_in -> width`` plus a learned positional embedding (``max_len``
    positions); tokens outside ``mask`` are zeroed before the projection."""

    def __init__(self, in_dim: int, width: int, max_len: int):
        super().__init__()
        if in_dim < 1 or width < 1 or max_len < 1:
            raise ValueError(
                f"in_dim, width and max_len must be >= 1, got {in_dim, width, max_len}"
            )
        self.proj = nn.Linear(in_dim, width)
        self.position = nn.Parameter(torch.randn(max_len, width) * 0.02)

    @property
    def max_len(self) -> int:
        return self.position.shape[0]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self.proj(x) + self.position[: x.shape[1]]


class ModalityTokenEncoder(nn.Module):
    """One modality's token encoder: :class:`TokenEmbedding` then a small pre-norm
    transformer (``layers`` layers, ``heads`` heads) with the token mask as key padding mask.

    ``forward(x, mask)``: ``x`` (B, T, in_dim), ``mask`` (B, T) bool (True = real token) ->
    (B, T, width), exactly zero at masked positions. A sample with no real token (a missing
    modality) gives all zeros, without NaN.
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        max_len: int,
        *,
        layers: int = 1,
        heads: int = 4,
        ff_mult: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        _check_width(width, heads, "ModalityTokenEncoder")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.embed = TokenEmbedding(in_dim, width, max_len)
        self.encoder = _stack(width, heads, layers, ff_mult, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.encoder(self.embed(x, mask), src_key_padding_mask=_key_padding(mask))
        return torch.where(mask[..., None], h, torch.zeros((), dtype=h.dtype, device=h.device))


class _Fusion(nn.Module):
    """Shared by the two models: dimensions, [CLS] token, modality embeddings, head."""

    def __init__(self, in_dims, max_lens, n_outputs, width):
        super().__init__()
        self.dims = [int(d) for d in in_dims]
        self.max_lens = [int(t) for t in max_lens]
        if len(self.dims) < 2 or len(self.max_lens) != len(self.dims):
            raise ValueError(
                f"need in_dims and max_lens for M >= 2 modalities, got {self.dims} and "
                f"{self.max_lens}"
            )
        if n_outputs < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
        self.width = int(width)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.dims), width) * 0.02)
        self.head = nn.Linear(width, n_outputs)

    def _with_cls(self, parts: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The sequence ``[CLS, parts...]`` (each part plus its modality embedding) and its
        key padding mask (the [CLS] key is always visible)."""
        batch = parts[0].shape[0]
        seq = torch.cat(
            [self.cls.expand(batch, -1, -1)]
            + [p + self.modality_embedding[m] for m, p in enumerate(parts)],
            1,
        )
        real = torch.cat([masks[0].new_ones(batch, 1), *masks], 1)
        return seq, ~real

    @staticmethod
    def _split(h: Tensor, masks: list[Tensor]) -> list[Tensor]:
        """The per-modality token states of a ``[CLS, tokens...]`` sequence, zero where
        their mask is False."""
        out, start = [], 1
        for mask in masks:
            part = h[:, start : start + mask.shape[1]]
            zero = torch.zeros((), dtype=h.dtype, device=h.device)
            out.append(torch.where(mask[..., None], part, zero))
            start += mask.shape[1]
        return out


class LateFusionTransformer(_Fusion):
    """Late fusion: per-modality token encoders, then a fusion transformer over their
    concatenated outputs (each plus a learned modality embedding) and a [CLS] token, whose
    final state feeds the linear head.

    Args:
        in_dims: the token widths ``d_m`` of the ``M >= 2`` modalities.
        max_lens: the longest sequence of each modality (positional embeddings' size).
        n_outputs: the head's outputs (classes).
        width: the model width (every modality is projected to it).
        heads, layers: each modality encoder's heads and layers.
        fusion_heads, fusion_layers: the fusion transformer's (the paper's: 8 and 2).
        ff_mult: feed-forward width as a multiple of ``width``.
        dropout: dropout in every transformer layer.

    ``forward(xs, token_masks=None, present=None)`` -> :class:`TransformerOutput`, whose
    ``tokens`` are the modality encoders' outputs (the alignment layer of late fusion).
    Randomly initialised.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        max_lens: Sequence[int],
        n_outputs: int,
        *,
        width: int = 64,
        heads: int = 4,
        layers: int = 1,
        fusion_heads: int = 8,
        fusion_layers: int = 2,
        ff_mult: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__(in_dims, max_lens, n_outputs, width)
        _check_width(width, fusion_heads, "LateFusionTransformer fusion")
        if fusion_layers < 1:
            raise ValueError(f"fusion_layers must be >= 1, got {fusion_layers}")
        self.encoders = nn.ModuleList(
            ModalityTokenEncoder(
                d, width, t, layers=layers, heads=heads, ff_mult=ff_mult, dropout=dropout
            )
            for d, t in zip(self.dims, self.max_lens)
        )
        self.fusion = _stack(width, fusion_heads, fusion_layers, ff_mult, dropout)

    def forward(
        self,
        xs: Sequence[Tensor],
        token_masks: Sequence[Tensor | None] | None = None,
        present: Tensor | None = None,
    ) -> TransformerOutput:
        masks, _ = counting_masks(xs, token_masks, present, dims=self.dims, max_lens=self.max_lens)
        tokens = [enc(x, mask) for enc, x, mask in zip(self.encoders, xs, masks)]
        seq, padding = self._with_cls(tokens, masks)
        h = self.fusion(seq, src_key_padding_mask=padding)
        return TransformerOutput(logits=self.head(h[:, 0]), tokens=tokens, masks=masks)


class EarlyFusionTransformer(_Fusion):
    """Early fusion: one single-stream transformer over ``[CLS]`` and every modality's
    projected tokens (linear projection + positional embedding + modality embedding, from
    the input), ViLT-style. The [CLS] token's final state feeds the linear head.

    The paper initialises ViLT's pre-trained weights; nothing can be downloaded here, so this
    model is randomly initialised.

    Args:
        in_dims, max_lens, n_outputs, width, ff_mult, dropout: as
            :class:`LateFusionTransformer`.
        heads, layers: the stream's heads and layers.
        align_layer: the layer whose outputs are returned as ``tokens`` (for the alignment
            loss), split back per modality: ``k`` in ``1..layers`` is the output of layer
            ``k`` (before the final LayerNorm), 0 the embedded input; None: the last layer.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        max_lens: Sequence[int],
        n_outputs: int,
        *,
        width: int = 64,
        heads: int = 8,
        layers: int = 2,
        align_layer: int | None = None,
        ff_mult: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__(in_dims, max_lens, n_outputs, width)
        _check_width(width, heads, "EarlyFusionTransformer")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        align_layer = layers if align_layer is None else int(align_layer)
        if not 0 <= align_layer <= layers:
            raise ValueError(f"align_layer must lie in 0..{layers} (or None), got {align_layer}")
        self.align_layer = align_layer
        self.embeddings = nn.ModuleList(
            TokenEmbedding(d, width, t) for d, t in zip(self.dims, self.max_lens)
        )
        self.encoder = _stack(width, heads, layers, ff_mult, dropout)

    def forward(
        self,
        xs: Sequence[Tensor],
        token_masks: Sequence[Tensor | None] | None = None,
        present: Tensor | None = None,
    ) -> TransformerOutput:
        masks, _ = counting_masks(xs, token_masks, present, dims=self.dims, max_lens=self.max_lens)
        parts = [emb(x, mask) for emb, x, mask in zip(self.embeddings, xs, masks)]
        h, padding = self._with_cls(parts, masks)
        kept = h
        for k, layer in enumerate(self.encoder.layers, start=1):
            h = layer(h, src_key_padding_mask=padding)
            if k == self.align_layer:
                kept = h
        h = self.encoder.norm(h)
        return TransformerOutput(
            logits=self.head(h[:, 0]), tokens=self._split(kept, masks), masks=masks
        )
