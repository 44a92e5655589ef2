"""Data-parallel training helpers (``torch.distributed``, e.g. gloo on the CPU under
``torchrun``), for methods whose every rank holds the full training data and draws the same
global batch order, and whose rank ``r`` trains on the rows :func:`shard_rows` gives it.

Gradients are summed over the ranks by hand (:func:`sum_gradients`, one ``all_reduce`` per
step) rather than averaged by ``DistributedDataParallel``: each rank weights its loss by its
share of the global batch, so that the sum is the one-process gradient of that batch. Without
an initialised process group every helper is the one-process identity (rank 0 of 1).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "check_same_on_ranks",
    "rank_and_world",
    "rank_zero_checkpoint",
    "shard_rows",
    "sum_gradients",
    "sum_on_ranks",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_rows(rows: Tensor, rank: int, world: int) -> Tensor:
    """Rank ``rank``'s rows of the global batch ``rows``: ``rows[rank::world]``. The shards
    of the ``world`` ranks are disjoint, their union is ``rows``, and their sizes differ by
    one at most (a shard is empty when ``rows`` has fewer than ``world`` rows)."""
    return rows[rank::world]


def sum_gradients(params: Sequence[nn.Parameter], values: Sequence[float] = ()) -> list[float]:
    """Sum the gradients of ``params`` over the ranks, in place, and the scalars ``values``
    with them (one ``all_reduce``); return the summed ``values``.

    A parameter without a gradient on a rank counts as zero there; it is left without one
    (None, so that the optimiser skips it, as after a one-process backward that never
    reaches it) only when no rank has one.
    """
    _, world = rank_and_world()
    if world == 1:
        return [float(v) for v in values]
    ref = params[0]
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        + [
            torch.tensor(
                [p.grad is not None for p in params] + [float(v) for v in values],
                dtype=ref.dtype,
                device=ref.device,
            )
        ]
    )
    dist.all_reduce(flat)
    chunks = flat.split([p.numel() for p in params] + [len(params), len(values)])
    for p, grad, has in zip(params, chunks, chunks[-2].tolist()):
        p.grad = grad.view_as(p) if has else None
    return chunks[-1].tolist()


def sum_on_ranks(value: float) -> float:
    """``value`` summed over the ranks (in float64), the same number on every rank: reduced
    on rank 0 and broadcast from it, so that decisions taken on it (early stopping, the best
    epoch) cannot differ between ranks in the last bit."""
    _, world = rank_and_world()
    if world == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.reduce(t, dst=0)
    dist.broadcast(t, src=0)
    return float(t)


def check_same_on_ranks(values: Sequence[int], what: str) -> None:
    """Raise ValueError on every rank unless every rank passed the same integers ``values``
    (one ``all_reduce``: their maxima and minima must agree)."""
    _, world = rank_and_world()
    if world == 1:
        return
    mine = torch.tensor(list(values), dtype=torch.int64)
    both = torch.cat([mine, -mine])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if not torch.equal(both[: len(mine)], -both[len(mine) :]):
        raise ValueError(f"the ranks differ in {what}: every rank must pass the same")


@contextlib.contextmanager
def rank_zero_checkpoint(checkpoint: str | Path | None) -> Iterator[str | Path | None]:
    """The checkpoint this rank resumes from: ``checkpoint`` itself on rank 0 (the only rank
    that writes it: ``train_epochs(..., write=rank == 0)``); on the other ranks a private
    copy of rank 0's file at entry (sent over the process group, so no shared file system is
    needed), in a temporary folder removed at exit, so that every rank resumes from the same
    state. Without a process group (or a checkpoint): the argument. Enter it on every rank,
    before the first training step."""
    rank, world = rank_and_world()
    if world == 1 or checkpoint is None:
        yield checkpoint
        return
    path = Path(checkpoint)
    data = [path.read_bytes() if rank == 0 and path.exists() else None]
    dist.broadcast_object_list(data, src=0)
    if rank == 0:
        yield checkpoint
        return
    with tempfile.TemporaryDirectory(prefix=f"modalign-rank{rank}-") as tmp:
        copy = Path(tmp) / path.name
        if data[0] is not None:
            copy.write_bytes(data[0])
        yield copy
