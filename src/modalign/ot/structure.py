"""Structure matrices: squared distances and kernels, dense or in exact low-rank form.

Squared Euclidean distance matrices have rank at most d + 2:
``D = |x|^2 1^T + 1 |y|^2^T - 2 X Y^T``. Keeping them as factors ``D = L R^T`` turns the
Gromov-Wasserstein products ``C1 T C2^T`` from O(N^3) into O(N^2 d), exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import torch
from scipy.sparse import csr_matrix

from modalign.ot._checks import ArrayLike, as_tensor, check_finite


@dataclass(frozen=True)
class LowRank:
    """A matrix (or batch of matrices) ``left @ right^T`` of shape (..., n, m), kept factored.

    ``left`` is (..., n, r) and ``right`` is (..., m, r).
    """

    left: torch.Tensor
    right: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.left.shape[:-1], self.right.shape[-2]))

    @property
    def dtype(self) -> torch.dtype:
        return self.left.dtype

    @property
    def device(self) -> torch.device:
        return self.left.device

    @property
    def rank(self) -> int:
        return self.left.shape[-1]

    def dense(self) -> torch.Tensor:
        return self.left @ self.right.transpose(-1, -2)

    @property
    def mT(self) -> LowRank:  # noqa: N802 - mirrors torch.Tensor.mT
        return LowRank(self.right, self.left)

    def to(self, *args, **kwargs) -> LowRank:
        return LowRank(self.left.to(*args, **kwargs), self.right.to(*args, **kwargs))

    def __getitem__(self, idx) -> LowRank:
        return LowRank(self.left[idx], self.right[idx])


@dataclass(frozen=True)
class SparseGraph:
    """The dissimilarity ``1 1^T - W`` (n, n) of a sparse symmetric affinity graph, kept as ``W``.

    ``affinity`` is ``W``, a sparse CSR (n, n) tensor. The GW products need only ``W``:
    ``(1 1^T - W) X = 1 (1^T X) - W X`` and ``(1 - W)^2 = 1 - 2 W + W * W`` entrywise, so one
    product with an (n, k) matrix costs O(nnz(W) k) instead of O(n^2 k). OTM's head on a joined
    graph of 2,695 nodes ran 6.1 times faster sparse than dense (``benchmarks/pair_fusion.py``).
    """

    affinity: torch.Tensor

    @classmethod
    def from_entries(
        cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int
    ) -> SparseGraph:
        """The graph with ``W[rows[e], cols[e]] = values[e]`` (duplicates summed), (n, n)."""
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), values, (n, n), check_invariants=True
        ).coalesce()
        with warnings.catch_warnings():
            # torch flags its sparse CSR layout as beta; the products used here are stable.
            warnings.simplefilter("ignore", UserWarning)
            return cls(coo.to_sparse_csr())

    @classmethod
    def from_dense(cls, affinity: torch.Tensor) -> SparseGraph:
        """The graph of a dense (n, n) affinity, its zeros left out."""
        rows, cols = affinity.nonzero(as_tuple=True)
        return cls.from_entries(rows, cols, affinity[rows, cols], affinity.shape[-1])

    @property
    def shape(self) -> torch.Size:
        return self.affinity.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.affinity.dtype

    @property
    def device(self) -> torch.device:
        return self.affinity.device

    @property
    def mT(self) -> SparseGraph:  # noqa: N802 - mirrors torch.Tensor.mT; symmetric
        return self

    def to(self, *args, **kwargs) -> SparseGraph:
        return SparseGraph(self.affinity.to(*args, **kwargs))

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, cols, values)`` of ``W``'s stored entries, each (nnz,)."""
        crow = self.affinity.crow_indices()
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow.diff())
        return rows, self.affinity.col_indices(), self.affinity.values()

    def dense(self) -> torch.Tensor:
        return 1 - self.affinity.to_dense()

    def to_scipy(self) -> csr_matrix:
        """``W`` as a float64 scipy CSR (n, n) matrix on the CPU (for scipy's eigensolvers and
        sequential row-by-row work)."""
        w = self.affinity.detach().cpu()
        return csr_matrix(
            (w.values().double().numpy(), w.col_indices().numpy(), w.crow_indices().numpy()),
            shape=tuple(w.shape),
        )

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``(1 1^T - W) x`` for x (n, k) or (n,)."""
        if x.dim() > 2:
            raise ValueError(f"a SparseGraph multiplies (n, k) matrices, got {tuple(x.shape)}")
        if x.dim() == 1:
            return x.sum() - torch.mv(self.affinity, x)
        return x.sum(0, keepdim=True) - self.affinity @ x

    @cached_property
    def _square_part(self) -> torch.Tensor:
        """``W * W - 2 W`` (sparse CSR, W's pattern): ``(1 - W)^2 = 1 + (W * W - 2 W)``."""
        values = self.affinity.values()
        return torch.sparse_csr_tensor(
            self.affinity.crow_indices(),
            self.affinity.col_indices(),
            values * values - 2 * values,
            self.shape,
            check_invariants=False,  # W's own indices, valid by construction
        )

    def squared_matvec(self, w: torch.Tensor) -> torch.Tensor:
        """``((1 1^T - W) * (1 1^T - W)) w`` (w (n,)), entrywise square, in O(nnz)."""
        return w.sum() + torch.mv(self._square_part, w)

    def row(self, i: int) -> torch.Tensor:
        """Row i (n,) of ``1 1^T - W``."""
        crow = self.affinity.crow_indices()
        lo, hi = int(crow[i]), int(crow[i + 1])
        out = torch.ones(self.shape[-1], dtype=self.dtype, device=self.device)
        out[self.affinity.col_indices()[lo:hi]] -= self.affinity.values()[lo:hi]
        return out

    def mean(self) -> float:
        n, m = self.shape
        return 1.0 - float(self.affinity.values().sum()) / (n * m)


Structure = torch.Tensor | LowRank | SparseGraph


def reference(c: Structure) -> torch.Tensor:
    """A dense tensor with the structure's dtype and device (for allocating alongside it)."""
    if isinstance(c, LowRank):
        return c.left
    if isinstance(c, SparseGraph):
        return c.affinity.values()
    return c


def _inner_products(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x y^T`` (..., n, m): one BLAS product, whose entries (i, j) and (j, i) for ``y = x``
    may differ in the last bit (kernels block and accumulate them differently)."""
    return x @ y.transpose(-1, -2)


def sq_distances(x: ArrayLike, y: ArrayLike | None = None) -> torch.Tensor:
    """Dense squared Euclidean distances between rows, shape (..., n, m), clamped at zero.

    With ``y`` omitted the (..., n, n) matrix is exactly symmetric on any BLAS: it is averaged
    with its transpose, which is exactly symmetric in IEEE arithmetic (``a + b == b + a``).
    """
    x = as_tensor(x, "x")
    check_finite(x, "x")
    y = x if y is None else as_tensor(y, "y", dtype=x.dtype, device=x.device)
    if y is not x:
        check_finite(y, "y")
    xx = (x * x).sum(-1)
    yy = (y * y).sum(-1)
    d = xx[..., :, None] + yy[..., None, :] - 2 * _inner_products(x, y)
    if y is x:
        d = 0.5 * (d + d.transpose(-1, -2))
    return d.clamp_min(0)


def sqeuclidean_lowrank(x: ArrayLike, *, normalize: bool = True) -> LowRank:
    """Exact factored form of the squared distances of ``x`` (..., n, d): rank d + 2.

    With ``normalize`` the matrix is divided by its maximum, the usual scale-free structure.
    The maximum is found without forming the n x n matrix twice.
    """
    x = as_tensor(x, "x")
    check_finite(x, "x")
    sq = (x * x).sum(-1, keepdim=True)
    ones = torch.ones_like(sq)
    left = torch.cat([sq, ones, -2 * x], dim=-1)
    right = torch.cat([ones, sq, x], dim=-1)
    if normalize:
        scale = (
            sq_distances(x).amax(dim=(-1, -2), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        )
        left = torch.where(coincident(x), 0.0, left / scale)
    return LowRank(left, right)


def coincident(x: torch.Tensor) -> torch.Tensor:
    """``(..., 1, 1)`` bool: whether all the rows of ``x`` (..., n, d) are the same point.

    Their distance matrix is zero, and so is the only sensible normalisation of it: the
    factors of a zero matrix are not zero (``|x|^2 + |x|^2 - 2 x.x``), so dividing them by its
    maximum (zero, or a rounding residue) would give inf and NaN, or noise. Callers use it to
    return the zero structure instead; no synchronisation with the device is needed.
    """
    return (x == x[..., :1, :]).all(dim=-1).all(dim=-1)[..., None, None]


def kernel_structure(x: ArrayLike, bandwidth: float | None = None) -> torch.Tensor:
    """Gaussian kernel ``exp(-|x_i - x_j|^2 / (2 h^2))`` (dense; kernels are not low rank).

    The default bandwidth ``h`` is the median pairwise distance.
    """
    d = sq_distances(x)
    if bandwidth is None:
        off = d[..., ~torch.eye(d.shape[-1], dtype=torch.bool, device=d.device)]
        # One point has no pairwise distance (the median of nothing is NaN); any bandwidth
        # gives its kernel [[1]].
        bandwidth = float(off.median().sqrt().clamp_min(1e-12)) if off.numel() else 1.0
    if not bandwidth > 0:  # NaN included
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    return torch.exp(-d / (2 * bandwidth**2))


def graph_structure(x: ArrayLike, n_neighbors: int, *, scale_neighbor: int = 7) -> torch.Tensor:
    """Dissimilarity ``1 - W`` (n, n) of a sparse self-tuning affinity graph of ``x`` (n, d).

    ``W[i, j] = exp(-|x_i - x_j|^2 / (s_i s_j))`` on the symmetric ``n_neighbors``-nearest-
    neighbour graph (self included) and 0 elsewhere, with ``s_i`` the distance from ``x_i`` to
    its ``scale_neighbor``-th neighbour (Zelnik-Manor and Perona's local scaling). Matched by
    GW to a block structure, it rewards clusters that follow the data's neighbourhoods rather
    than compact balls, as spectral clustering does.
    """
    x = as_tensor(x, "x")
    check_finite(x, "x")
    if x.dim() != 2:
        raise ValueError(f"x must be (n, d), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < 2 or n_neighbors < 1:
        raise ValueError(f"need at least 2 points and n_neighbors >= 1, got {n} and {n_neighbors}")
    d = sq_distances(x)  # exactly symmetric, and so is everything computed from it below
    # Only the nearest few neighbours are needed: a partial sort, O(n^2) rather than
    # O(n^2 log n).
    ranked = d.topk(min(max(scale_neighbor, n_neighbors), n - 1) + 1, dim=1, largest=False)
    scale = ranked.values[:, min(scale_neighbor, n - 1)].sqrt()
    scale = scale.clamp_min(scale.max().clamp_min(1e-12) * 1e-6)
    near = torch.zeros_like(d, dtype=torch.bool)
    near.scatter_(1, ranked.indices[:, : min(n_neighbors, n - 1) + 1], True)
    near = near | near.T | torch.eye(n, dtype=torch.bool, device=x.device)
    affinity = torch.exp(-d / (scale[:, None] * scale[None, :])) * near
    return 1.0 - affinity


def normalize_structure(c: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Scale a structure matrix to a unit maximum ("max") or unit mean ("mean")."""
    if how == "max":
        s = c.abs().amax(dim=(-1, -2), keepdim=True)
    elif how == "mean":
        s = c.abs().mean(dim=(-1, -2), keepdim=True)
    else:
        raise ValueError(f"unknown normalisation {how!r}: use 'max' or 'mean'")
    return c / s.clamp_min(torch.finfo(c.dtype).tiny)


def dense(c: Structure) -> torch.Tensor:
    return c.dense() if isinstance(c, LowRank | SparseGraph) else c


def sandwich(c1: Structure, t: torch.Tensor, c2: Structure) -> torch.Tensor:
    """``C1 @ T @ C2^T`` for dense or factored structures, shape (..., n1, n2).

    In factored form it costs O(n1 n2 r) instead of O(n1 n2 (n1 + n2)); a
    :class:`SparseGraph` multiplies in O(nnz n2) or O(n1 nnz).
    """
    if isinstance(c1, SparseGraph) or isinstance(c2, SparseGraph):
        return _times(c1, _times(c2, t.mT).mT)
    if isinstance(c2, LowRank):
        # T C2^T = (T R2) L2^T
        tr = t @ c2.right
        if isinstance(c1, LowRank):
            core = c1.right.transpose(-1, -2) @ tr  # (r1, r2)
            return (c1.left @ core) @ c2.left.transpose(-1, -2)
        return (c1 @ tr) @ c2.left.transpose(-1, -2)
    if isinstance(c1, LowRank):
        return c1.left @ ((c1.right.transpose(-1, -2) @ t) @ c2.transpose(-1, -2))
    return c1 @ t @ c2.transpose(-1, -2)


def _times(c: Structure, x: torch.Tensor) -> torch.Tensor:
    """``C @ x`` for any structure: x (n, k)."""
    if isinstance(c, SparseGraph):
        return c.matmul(x)
    if isinstance(c, LowRank):
        return c.left @ (c.right.transpose(-1, -2) @ x)
    return c @ x


def squared_matvec(c: Structure, w: torch.Tensor) -> torch.Tensor:
    """``(C * C) @ w`` (elementwise square), O(n r^2) for factored ``C``, O(nnz) for a
    :class:`SparseGraph`."""
    if isinstance(c, SparseGraph):
        return c.squared_matvec(w)
    if isinstance(c, LowRank):
        gram = c.right.transpose(-1, -2) @ (c.right * w[..., :, None])  # (r, r)
        return ((c.left @ gram) * c.left).sum(-1)
    rows = max(1, _SQUARE_BLOCK // max(c.shape[-1], 1))
    if c.shape[-2] <= rows:
        return ((c * c) @ w[..., :, None])[..., 0]
    # Blocks of rows: the squares of a block stay in cache, where one n x n temporary would
    # be written to and read back from memory (3-4x slower at n = 5000).
    return torch.cat([((b * b) @ w[..., :, None])[..., 0] for b in c.split(rows, dim=-2)], dim=-1)


#: Entries of a dense structure squared at once by :func:`squared_matvec` (2 MiB in float64).
_SQUARE_BLOCK = 2**18


def is_symmetric(c: Structure) -> bool:
    if isinstance(c, SparseGraph):
        coo = c.affinity.to_sparse_coo().coalesce()
        flipped = coo.t().coalesce()
        return bool(
            torch.equal(coo.indices(), flipped.indices())
            and torch.allclose(coo.values(), flipped.values())
        )
    if isinstance(c, LowRank):
        # Squared-distance factors are symmetric by construction; check numerically on a probe.
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(c.shape[-1], generator=g, dtype=c.dtype).to(c.device)
        left, right = c.left.detach(), c.right.detach()
        a = left @ (right.transpose(-1, -2) @ v)
        b = right @ (left.transpose(-1, -2) @ v)
        return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max() + 1)))
    c = c.detach()
    return bool(torch.allclose(c, c.transpose(-1, -2)))
