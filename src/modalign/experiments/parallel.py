"""Independent runs of a protocol in worker processes (``--jobs``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["run_tasks"]

# What the pool's initializer hands every worker once (a dataset, say), so that it is not
# pickled again with every task.
_CONTEXT: Any = None


def _start_worker(context: Any) -> None:
    """One thread per process, so that ``jobs`` processes share the cores instead of each
    claiming all of them; keep ``context`` for :func:`_call`."""
    import torch

    global _CONTEXT
    torch.set_num_threads(1)
    _CONTEXT = context


def _call(fn: Callable[..., Any], task: dict) -> Any:
    return fn(**task) if _CONTEXT is None else fn(**task, context=_CONTEXT)


def run_tasks(
    fn: Callable[..., Any], tasks: list[dict], jobs: int, context: Any = None
) -> Iterator[tuple[dict, Any]]:
    """``(task, fn(**task))`` for every task, in order with ``jobs == 1``, else as ``jobs``
    worker processes finish them (the caller saves each result at once, so an interrupted
    protocol resumes). ``fn`` must be a module-level function (it is pickled); with a
    ``context`` (not None) it is also called with ``context=context``, which reaches every
    worker once."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    extra = {} if context is None else {"context": context}
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, fn(**task, **extra)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    # spawn, not fork: a forked child would inherit torch's and OpenMP's thread pools.
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)),
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(context,),
    ) as pool:
        futures = {pool.submit(_call, fn, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
