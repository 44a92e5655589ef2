"""Fusion layers for supervised multimodal models, with missing-modality masks.

Every fusion takes a list of ``M`` per-modality vectors ``h[m]`` of shape ``(B, d_m)`` and a
mask of shape ``(B, M)`` (bool, or float with values 0/1; 1 = modality present, ``None`` = all
present) and returns a fused vector of shape ``(B, out_dim)``; ``out_dim`` is an attribute.

Missing modalities, common to all fusions: before fusing, the rows of ``h[m]`` where modality
``m`` is missing are replaced by zeros with :func:`torch.where` (not by multiplying with the
mask). The fused output therefore does not depend on those rows at all, even when they hold NaN
or inf, and the encoder that produced ``h[m]`` receives exactly zero gradient from them. Each
fusion then documents what the zero-filled modality means for its output:

- :class:`LateFusion` (``"late"``): concatenation of the zero-filled vectors, plus the mask as
  ``M`` extra features (so "missing" is distinguishable from "present and zero"); or, with
  ``mode="mean"``, the mean of the present modalities only.
- :class:`TensorFusion` (``"tensor"``): the outer product of the ``[h_m, 1]``; a missing modality
  contributes only its constant 1, so the output is exactly the tensor fusion of the present
  modalities (all interaction terms that involve the missing one are zero).
- :class:`LowRankTensorFusion` (``"lowrank"``): a rank-``r`` linear map of the same tensor, so a
  missing modality contributes only the last (constant) row of each of its factors.
- :class:`MultiplicativeInteraction` (``"mi"``): weights and bias generated from a context of the
  other modalities (zero-filled) plus the mask, applied to the target modality (zero-filled, so a
  missing target leaves only the generated bias).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from modalign.nn.mlp import mlp

__all__ = [
    "FUSIONS",
    "Fusion",
    "LateFusion",
    "LowRankTensorFusion",
    "MultiplicativeInteraction",
    "TensorFusion",
    "make_fusion",
]


class Fusion(nn.Module):
    """Base class: checks the inputs and zero-fills missing modalities.

    Args:
        dims: the widths ``d_m`` of the ``M`` modality vectors, in order.
    """

    out_dim: int

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2:
            raise ValueError(f"fusion needs at least 2 modalities, got {len(dims)} (dims={dims})")
        for m, d in enumerate(dims):
            if d < 1:
                raise ValueError(f"modality {m}: width must be >= 1, got {d}")
        self.dims: list[int] = dims

    @property
    def n_modalities(self) -> int:
        return len(self.dims)

    def prepare(self, h: Sequence[Tensor], mask: Tensor | None) -> tuple[list[Tensor], Tensor]:
        """Validate ``h`` and ``mask``; return the zero-filled vectors and a bool mask (B, M).

        Raises:
            ValueError: wrong number of modalities, a vector that is not ``(B, d_m)`` with the
                batch size of modality 0, or a mask that is not ``(B, M)`` with values 0/1.
        """
        M = self.n_modalities
        if isinstance(h, Tensor) or not isinstance(h, Sequence):
            raise ValueError(f"expected a list of {M} modality tensors, got {type(h).__name__}")
        if len(h) != M:
            raise ValueError(f"expected {M} modalities (dims={self.dims}), got {len(h)}")
        B = None
        for m, (x, d) in enumerate(zip(h, self.dims)):
            if not isinstance(x, Tensor):
                raise ValueError(f"modality {m}: expected a Tensor, got {type(x).__name__}")
            if B is None and x.ndim == 2:
                B = x.shape[0]
            if x.ndim != 2 or x.shape[1] != d or x.shape[0] != B:
                want = f"({B if B is not None else 'B'}, {d})"
                raise ValueError(f"modality {m}: expected shape {want}, got {tuple(x.shape)}")
            if not x.is_floating_point():
                raise ValueError(f"modality {m}: expected a floating tensor, got {x.dtype}")
        if mask is None:
            present = torch.ones(B, M, dtype=torch.bool, device=h[0].device)
        else:
            if not isinstance(mask, Tensor):
                mask = torch.as_tensor(mask, device=h[0].device)
            if tuple(mask.shape) != (B, M):
                raise ValueError(f"mask: expected shape ({B}, {M}), got {tuple(mask.shape)}")
            if mask.dtype == torch.bool:
                present = mask
            else:
                # A soft mask (e.g. 0.5) has no zero-fill meaning; refuse it rather than guess.
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError("mask: values must be 0 or 1 (1 = modality present)")
                present = mask != 0
            present = present.to(h[0].device)
        # torch.where, not h * mask: the missing rows are dropped (NaN-safe) and their gradient
        # is exactly zero, whatever flows back from downstream.
        filled = [
            torch.where(present[:, m : m + 1], x, torch.zeros_like(x)) for m, x in enumerate(h)
        ]
        return filled, present

    def forward(self, h: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        filled, present = self.prepare(h, mask)
        return self.fuse(filled, present)

    def fuse(self, h: list[Tensor], present: Tensor) -> Tensor:
        """Fuse already-checked, zero-filled vectors; ``present`` is the bool mask (B, M)."""
        raise NotImplementedError


def _with_one(x: Tensor) -> Tensor:
    """``[x, 1]``: the appended constant keeps the unimodal and lower-order terms."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


class LateFusion(Fusion):
    """Late fusion of per-modality vectors.

    ``mode="concat"`` (default): ``[h_0, ..., h_{M-1}]`` of the zero-filled vectors, followed
    by the mask as ``M`` float features when ``include_mask`` (default), so the head can tell a
    missing modality from a present one whose vector is zero. Width ``sum(d_m) (+ M)``.

    ``mode="mean"`` (all ``d_m`` equal to ``d``): the mean of the *present* modalities only,
    ``sum_m mask_m h_m / max(1, sum_m mask_m)``, so dropping a modality does not shrink the
    output; rows with no modality present give zeros. Width ``d`` (``+ M`` with the mask).

    If ``out_dim`` is given, a linear layer maps the result to ``(B, out_dim)``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        out_dim: int | None = None,
        *,
        mode: str = "concat",
        include_mask: bool = True,
    ):
        super().__init__(dims)
        if mode not in ("concat", "mean"):
            raise ValueError(f"mode must be 'concat' or 'mean', got {mode!r}")
        if mode == "mean" and len(set(self.dims)) != 1:
            raise ValueError(f"mode='mean' needs equal widths, got dims={self.dims}")
        self.mode = mode
        self.include_mask = include_mask
        width = sum(self.dims) if mode == "concat" else self.dims[0]
        width += self.n_modalities if include_mask else 0
        self.fused_dim = width
        self.proj = mlp([width, out_dim]) if out_dim is not None else None
        self.out_dim = int(out_dim) if out_dim is not None else width

    def fuse(self, h: list[Tensor], present: Tensor) -> Tensor:
        m = present.to(h[0].dtype)
        if self.mode == "concat":
            parts = list(h)
        else:
            # Missing rows are already zero, so the sum runs over the present ones only.
            parts = [torch.stack(h, 0).sum(0) / m.sum(1, keepdim=True).clamp(min=1.0)]
        if self.include_mask:
            parts.append(m)
        out = torch.cat(parts, dim=1)
        return self.proj(out) if self.proj is not None else out


class TensorFusion(Fusion):
    """Tensor fusion (Zadeh et al., 2017): ``vec([h_0, 1] ⊗ [h_1, 1] ⊗ ... ⊗ [h_{M-1}, 1])``.

    Flattened row-major (modality 0 varies slowest), width ``prod(d_m + 1)``; equals
    ``einsum("bi,bj,bk->bijk", ...)`` reshaped to ``(B, -1)``. The appended 1s keep every
    unimodal and lower-order interaction term. A missing (zero-filled) modality contributes
    only its 1, so the output is the tensor fusion of the present modalities with every term
    involving the missing one set to zero.

    If ``out_dim`` is given, a linear layer maps the result to ``(B, out_dim)``. Widths are
    refused above ``max_features`` because the tensor grows as a product: use
    :class:`LowRankTensorFusion` then.
    """

    def __init__(
        self, dims: Sequence[int], out_dim: int | None = None, *, max_features: int = 2**20
    ):
        super().__init__(dims)
        width = math.prod(d + 1 for d in self.dims)
        if width > max_features:
            raise ValueError(
                f"tensor fusion of dims={self.dims} has {width} features (> max_features="
                f"{max_features}); use LowRankTensorFusion or smaller modality vectors"
            )
        self.fused_dim = width
        self.proj = mlp([width, out_dim]) if out_dim is not None else None
        self.out_dim = int(out_dim) if out_dim is not None else width

    def fuse(self, h: list[Tensor], present: Tensor) -> Tensor:
        z = _with_one(h[0])
        for x in h[1:]:
            # Outer product with the next modality, flattened so modality 0 varies slowest.
            z = (z.unsqueeze(2) * _with_one(x).unsqueeze(1)).flatten(1)
        return self.proj(z) if self.proj is not None else z


class LowRankTensorFusion(Fusion):
    """Low-rank multimodal fusion (Liu et al., 2018).

    ``y = sum_{i<r} prod_m ([h_m, 1] @ W_m[i]) + b`` with modality factors
    ``W_m`` of shape ``(r, d_m + 1, out_dim)`` (elementwise product over modalities) and bias
    ``b`` of shape ``(out_dim,)``. This equals a linear map of the :class:`TensorFusion` tensor
    whose weight has CP rank ``r``, without building the tensor.

    Every factor is a registered parameter (``self.factors``, an :class:`nn.ParameterList`,
    one ``(r, d_m + 1, out_dim)`` tensor per modality), unlike MultiBench's version, which keeps
    them in a plain list so they are neither trained nor counted. Parameter count:
    ``r * out_dim * sum_m (d_m + 1) + out_dim``.

    A missing (zero-filled) modality contributes ``W_m[i][-1]``, the row that multiplies its
    constant 1: consistent with the zero-filled tensor of :class:`TensorFusion`.
    """

    def __init__(self, dims: Sequence[int], out_dim: int, rank: int = 4):
        super().__init__(dims)
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.out_dim = int(out_dim)
        self.rank = int(rank)
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(self.rank, d + 1, self.out_dim)) for d in self.dims]
        )
        self.bias = nn.Parameter(torch.zeros(self.out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Each factor maps a unit-scale [h_m, 1] to unit-scale values, so the product over
        # modalities stays O(1); 1/sqrt(r) keeps the sum over rank O(1) too.
        with torch.no_grad():
            for m, (w, d) in enumerate(zip(self.factors, self.dims)):
                std = 1.0 / math.sqrt(d + 1)
                if m == 0:
                    std /= math.sqrt(self.rank)
                w.normal_(0.0, std)
            self.bias.zero_()

    def fuse(self, h: list[Tensor], present: Tensor) -> Tensor:
        prod = None
        for x, w in zip(h, self.factors):
            # (B, d+1) x (r, d+1, o) -> (B, r, o)
            f = torch.einsum("bd,rdo->bro", _with_one(x), w)
            prod = f if prod is None else prod * f
        return prod.sum(1) + self.bias


class MultiplicativeInteraction(Fusion):
    """Multiplicative interaction, MI-matrix form (Jayakumar et al., 2020).

    With an input ``z`` (width ``d_z``) and a context ``x`` (width ``d_x``):
    ``y = W(x) z + b(x)`` where ``W(x) = reshape(A x + a, (out_dim, d_z))`` and
    ``b(x) = B x + c``. Written out, ``y_k = sum_ij A[k, j, i] x_i z_j + sum_j a[k, j] z_j +
    sum_i B[k, i] x_i + c_k``: the full bilinear form with both unimodal terms.

    With ``M`` modalities the input is ``z = h[target]`` (default modality 0) and the context is
    the concatenation of all the other modalities in order (each zero-filled), followed by the
    full ``(B, M)`` mask as float features when ``include_mask`` (default), so the generated
    weights can depend on which modalities are present. A missing target gives
    ``y = b(x)``. ``A, a`` live in ``self.weight_gen`` and ``B, c`` in ``self.bias_gen``
    (linear layers from :func:`modalign.nn.mlp.mlp`; ``A`` is ``weight_gen[0].weight`` viewed
    as ``(out_dim, d_z, d_x)``).
    """

    def __init__(
        self,
        dims: Sequence[int],
        out_dim: int,
        *,
        target: int = 0,
        include_mask: bool = True,
    ):
        super().__init__(dims)
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        M = self.n_modalities
        if not -M <= target < M:
            raise ValueError(f"target must index one of {M} modalities, got {target}")
        self.target = target % M
        self.include_mask = include_mask
        self.out_dim = int(out_dim)
        self.d_z = self.dims[self.target]
        self.d_x = sum(d for m, d in enumerate(self.dims) if m != self.target)
        self.d_x += M if include_mask else 0
        self.weight_gen = mlp([self.d_x, self.out_dim * self.d_z])
        self.bias_gen = mlp([self.d_x, self.out_dim])
        # W(x) z sums d_z products: scale the generated weights so y starts at the scale of b(x).
        with torch.no_grad():
            self.weight_gen[0].weight.mul_(1.0 / math.sqrt(self.d_z))
            self.weight_gen[0].bias.mul_(1.0 / math.sqrt(self.d_z))

    def context(self, h: list[Tensor], present: Tensor) -> Tensor:
        """The context ``x`` (B, d_x) built from zero-filled vectors and the bool mask."""
        parts = [x for m, x in enumerate(h) if m != self.target]
        if self.include_mask:
            parts.append(present.to(h[0].dtype))
        return torch.cat(parts, dim=1)

    def fuse(self, h: list[Tensor], present: Tensor) -> Tensor:
        x = self.context(h, present)
        z = h[self.target]
        W = self.weight_gen(x).view(-1, self.out_dim, self.d_z)
        return torch.bmm(W, z.unsqueeze(2)).squeeze(2) + self.bias_gen(x)


FUSIONS: dict[str, type[Fusion]] = {
    "late": LateFusion,
    "tensor": TensorFusion,
    "lowrank": LowRankTensorFusion,
    "mi": MultiplicativeInteraction,
}


def make_fusion(
    name: str, dims: Sequence[int], out_dim: int | None = None, rank: int = 4, **kwargs
) -> Fusion:
    """Build a fusion by name: ``"late"``, ``"tensor"``, ``"lowrank"`` or ``"mi"``.

    ``out_dim`` is optional for ``"late"`` and ``"tensor"`` (without it they return the raw
    concatenation / tensor) and required for ``"lowrank"`` and ``"mi"``; ``rank`` is used by
    ``"lowrank"`` only. Extra keyword arguments go to the class.
    """
    key = name.lower()
    if key not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; expected one of {sorted(FUSIONS)}")
    if key in ("lowrank", "mi"):
        if out_dim is None:
            raise ValueError(f"fusion {name!r} needs out_dim")
        if key == "lowrank":
            return LowRankTensorFusion(dims, out_dim, rank=rank, **kwargs)
        return MultiplicativeInteraction(dims, out_dim, **kwargs)
    return FUSIONS[key](dims, out_dim, **kwargs)
