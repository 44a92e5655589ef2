"""Data-parallel training of the transformer classifiers (torch.distributed, gloo on the CPU):
the shards of a global batch cover it, the shards' weighted losses add up to the batch's
(cross-entropy and the alignment's per-pair means over rows where both modalities count), and
a two-process run (interrupted and resumed from rank 0's checkpoint) ends where the
one-process run with the same global batch does, up to float32 summation order."""

from __future__ import annotations

import datetime
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import modalign.train.loop as loop
from modalign.methods.transformer import (
    TransformerClassifier,
    TransformerConfig,
    check_token_views,
    trim_padding,
)
from modalign.train import rank_and_world, shard_rows, sum_gradients, sum_on_ranks

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(),
        reason="torch.distributed with the gloo backend is not available",
    ),
]

K = 3  # classes
DIMS = (4, 3, 5)
LENS = (5, 7, 4)
FUSIONS = ("late", "early")
# The two-process runs: both fusions, and modality dropout (drawn on the global batch, so the
# same masks as in one process).
RUNS = {"late": {}, "early": {}, "late-moddrop": {"modality_dropout": 0.3}}
WORLD = 2
# float32 sums re-associated (per shard, then over ranks) through a few Adam steps
TOL = dict(rtol=1e-5, atol=1e-6)
# Logits sit a whole network downstream of weights that agree to TOL, so their float32
# rounding differences grow with the kernels of the CPU (4.7e-6 seen on an AMD EPYC); the
# weights themselves are held to TOL.
LOGIT_TOL = dict(rtol=1e-4, atol=2e-5)


def make_data(n: int = 64, seed: int = 0):
    """M = 3 token views of a class signal with variable lengths (NaN padding) and a presence
    mask with missing modalities, so that the pairs of modalities count on different rows."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % K)
    views, masks = [], []
    for d, t in zip(DIMS, LENS):
        centres = rng.normal(size=(K, d))
        x = centres[y][:, None, :] + rng.normal(size=(n, t, d))
        mask = np.arange(t)[None, :] < rng.integers(1, t + 1, size=n)[:, None]
        x[~mask] = np.nan
        views.append(x.astype(np.float32))
        masks.append(mask)
    present = rng.random((n, len(DIMS))) < 0.7
    present[~present.any(1), 0] = True
    return views, masks, y, present


def config(run: str, **kw) -> TransformerConfig:
    base = dict(
        n_outputs=K,
        fusion=run.split("-")[0],
        width=8,
        heads=2,
        layers=1,
        fusion_layers=1,
        fusion_heads=2,
        dropout=0.0,
        modality_dropout=0.0,
        align=True,
        alpha=0.2,
        n_iter=5,
        epochs=3,
        batch_size=16,
        lr=3e-3,
        patience=1,
        val_fraction=0.25,
    )
    base.update(RUNS.get(run, {}), **kw)
    return TransformerConfig(**base)


# ---------------------------------------------------------------- shards and weights


def test_shards_cover_the_global_batch_and_one_process_is_the_identity():
    for n in range(0, 18):
        rows = torch.randperm(100)[:n]
        for world in (1, 2, 3, 4):
            shards = [shard_rows(rows, r, world) for r in range(world)]
            joined = torch.cat(shards)
            assert len(joined) == n and torch.equal(joined.sort().values, rows.sort().values)
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # Without a process group: rank 0 of 1, nothing reduced.
    assert not dist.is_initialized() and rank_and_world() == (0, 1)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert sum_gradients([p], [1.5, 2.0]) == [1.5, 2.0] and torch.equal(
        p.grad, torch.full((3,), 2.0)
    )
    assert sum_on_ranks(0.25) == 0.25


@pytest.mark.parametrize("fusion", FUSIONS)
def test_shard_losses_add_up_to_the_batch_loss(fusion):
    """The losses `_train_epoch` gives each shard (cross-entropy times the shard's share,
    alignment with the global batch's pair counts) sum to the batch's loss, even where a
    pair counts on different numbers of rows per shard, or on none in a shard."""
    views, masks, y, present = make_data(24, seed=3)
    present[:, 2] = False
    present[[1, 3, 5, 7], 2] = True  # pair terms with 0 and 1..4 rows per shard
    present[~present.any(1), 1] = True
    model = TransformerClassifier(config(fusion), random_state=0)
    model._build(DIMS, LENS)
    xs, tms, pres = check_token_views(views, masks, present)
    target = torch.as_tensor(y)
    rows = torch.randperm(24, generator=torch.Generator().manual_seed(0))[:16]

    def loss(r, pair_rows=None, share=1.0):
        bx, bt = trim_padding([x[r] for x in xs], [t[r] for t in tms], pres[r])
        out = model.net(bx, bt, pres[r])
        ce = F.cross_entropy(out.logits, target[r]) * share
        return ce, model.alignment_loss(out, pair_rows)

    ce, align = loss(rows)
    pair_rows = model._pair_rows([t[rows] for t in tms], pres[rows])
    assert 0 < min(pair_rows) < max(pair_rows)  # the pairs count on different rows
    idx = torch.arange(len(rows))
    shards = [rows[shard_rows(idx, r, 3)] for r in range(3)]
    parts = [loss(s, pair_rows, len(s) / len(rows)) for s in shards]
    torch.testing.assert_close(sum(p[0] for p in parts), ce, **TOL)
    torch.testing.assert_close(sum(p[1] for p in parts), align, **TOL)
    # Unweighted per-shard means would not add up: the test has teeth.
    naive = sum(loss(s)[1] for s in shards) / 3
    assert abs(float(naive.detach()) - float(align.detach())) > 1e-4


# ---------------------------------------------------------------- two processes


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: for each run, train 1 epoch with a checkpoint, then resume from it to
    the end in a new model; save the final weights, history and the paths checkpointed."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    written = []
    save = loop.save_checkpoint

    def spy(path, state):
        written.append(str(path))
        save(path, state)

    loop.save_checkpoint = spy
    try:
        views, masks, y, present = make_data()
        for run in RUNS:
            ckpt = f"{out_dir}/{run}.pt"
            args = (views, y, masks)
            TransformerClassifier(config(run), 0).fit(
                *args, mask=present, checkpoint=ckpt, stop_after=1
            )
            model = TransformerClassifier(config(run), 0).fit(*args, mask=present, checkpoint=ckpt)
            torch.save(
                {"state": model.state_dict(), "history": model.history, "written": written},
                f"{out_dir}/{run}-rank{rank}.result",
            )
    finally:
        loop.save_checkpoint = save
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """The results of both ranks of the two-process runs (spawned once for all runs)."""
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two-process run did not finish in 180 s")
    return {
        (run, rank): torch.load(out / f"{run}-rank{rank}.result", weights_only=False)
        for run in RUNS
        for rank in range(WORLD)
    }, out


def assert_same_weights(got: dict, ref: dict, width: int) -> None:
    """Every weight close (not bitwise: the sums over rows and ranks are re-associated),
    except the attention key biases (``in_proj_bias[width:2 * width]``): softmax is invariant
    to them, so their true gradient is zero and the computed one is rounding noise, which
    Adam normalises into steps of size ~lr of arbitrary sign. They differ between any two
    summation orders and change no output (the logits are compared instead)."""
    assert got.keys() == ref.keys()
    for k in ref:
        a, b = got[k], ref[k]
        if k.endswith("in_proj_bias"):
            a = torch.cat([a[:width], a[2 * width :]])
            b = torch.cat([b[:width], b[2 * width :]])
        torch.testing.assert_close(a, b, **TOL, msg=k)


@pytest.mark.parametrize("run", RUNS)
def test_two_processes_equal_one_process_with_the_same_global_batch(run, two_process_runs):
    runs, _ = two_process_runs
    views, masks, y, present = make_data()
    cfg = config(run)
    one = TransformerClassifier(cfg, 0).fit(views, y, masks, mask=present)
    logits = one.decision(views, masks, present)
    assert one.history[0]["align"] > 0  # the alignment term ran
    for rank in range(WORLD):
        got = runs[run, rank]
        assert_same_weights(got["state"], one.state_dict(), cfg.width)
        twin = TransformerClassifier(cfg, 0).fit(views, y, masks, mask=present, stop_after=0)
        twin.load_state_dict(got["state"])
        torch.testing.assert_close(twin.decision(views, masks, present), logits, **LOGIT_TOL)
        # The same logged losses (the global batch's), validation and stopping epoch.
        assert len(got["history"]) == len(one.history)
        for h2, h1 in zip(got["history"], one.history):
            assert h2.keys() == h1.keys() == {"loss", "ce", "align", "val_loss"}
            for key in h1:
                assert h2[key] == pytest.approx(h1[key], rel=1e-5, abs=1e-6)


def test_only_rank_zero_writes_the_checkpoint(two_process_runs):
    runs, out = two_process_runs
    for run in RUNS:
        mine = str(out / f"{run}.pt")
        assert (out / f"{run}.pt").exists()
        assert mine in runs[run, 0]["written"]
        # Rank 1 resumed from a private copy of rank 0's file, never writing to it.
        assert mine not in runs[run, 1]["written"]
        assert all(str(out) not in p for p in runs[run, 1]["written"])
