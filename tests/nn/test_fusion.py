"""Fusion layers against independent references, and missing-modality gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from modalign.nn.fusion import (
    Fusion,
    LateFusion,
    LowRankTensorFusion,
    MultiplicativeInteraction,
    TensorFusion,
    make_fusion,
)

DIMS = [[3, 5], [4, 2, 3], [1, 6, 2], [2, 2]]
NAMES = ["late", "tensor", "lowrank", "mi"]


def _inputs(dims, batch=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, generator=g, dtype=torch.float64) for d in dims]


def _build(name, dims, out_dim=4, **kw):
    torch.manual_seed(0)
    return make_fusion(name, dims, out_dim=out_dim, rank=3, **kw).double()


def _one(x):
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


# ---------------------------------------------------------------- shapes and factory


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("out_dim", [None, 5])
def test_output_shape(name, dims, out_dim):
    if out_dim is None and name in ("lowrank", "mi"):
        with pytest.raises(ValueError, match="out_dim"):
            make_fusion(name, dims)
        return
    f = _build(name, dims, out_dim=out_dim)
    assert isinstance(f, Fusion)
    h = _inputs(dims)
    mask = torch.ones(7, len(dims), dtype=torch.bool)
    mask[2, 0] = False
    y = f(h, mask)
    if out_dim is not None:
        assert f.out_dim == out_dim
    elif name == "late":
        assert f.out_dim == sum(dims) + len(dims)
    else:
        assert f.out_dim == math.prod(d + 1 for d in dims)
    assert y.shape == (7, f.out_dim)
    assert torch.isfinite(y).all()
    # mask=None means all present
    full = torch.ones(7, len(dims))
    torch.testing.assert_close(f(h), f(h, full))


def test_make_fusion_types_and_unknown_name():
    assert type(make_fusion("late", [2, 3])) is LateFusion
    assert type(make_fusion("tensor", [2, 3])) is TensorFusion
    assert type(make_fusion("lowrank", [2, 3], out_dim=2, rank=5)) is LowRankTensorFusion
    assert make_fusion("lowrank", [2, 3], out_dim=2, rank=5).rank == 5
    assert type(make_fusion("mi", [2, 3], out_dim=2)) is MultiplicativeInteraction
    with pytest.raises(ValueError, match="unknown fusion"):
        make_fusion("early", [2, 3])


# ---------------------------------------------------------------- late fusion


def test_late_concat_values_and_mask_features():
    dims = [3, 2, 4]
    f = LateFusion(dims).double()
    h = _inputs(dims, batch=5)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]).bool()
    y = f(h, mask)
    for b in range(5):
        want = []
        for m in range(3):
            want.append(h[m][b] if mask[b, m] else torch.zeros(dims[m], dtype=torch.float64))
        want.append(mask[b].double())
        torch.testing.assert_close(y[b], torch.cat(want), rtol=0, atol=0)
    g = LateFusion(dims, include_mask=False)
    assert g.out_dim == 9


def test_late_mean_over_present_only():
    f = LateFusion([3, 3, 3], mode="mean", include_mask=False).double()
    h = _inputs([3, 3, 3], batch=4)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]]).bool()
    y = f(h, mask)
    for b in range(4):
        present = [h[m][b] for m in range(3) if mask[b, m]]
        want = torch.stack(present).mean(0) if present else torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(y[b], want)
    with pytest.raises(ValueError, match="equal widths"):
        LateFusion([3, 4], mode="mean")


def test_missing_rows_may_hold_nan():
    dims = [3, 2]
    for name in NAMES:
        f = _build(name, dims)
        h = _inputs(dims, batch=4)
        mask = torch.ones(4, 2, dtype=torch.bool)
        mask[1, 1] = False
        clean = f(h, mask)
        h[1] = h[1].clone()
        h[1][1] = float("nan")
        torch.testing.assert_close(f(h, mask), clean, rtol=0, atol=0)


# ---------------------------------------------------------------- tensor fusion


@pytest.mark.parametrize("dims", [[3, 5], [2, 3, 4]])
def test_tensor_fusion_matches_einsum_and_loops(dims):
    f = TensorFusion(dims)
    h = _inputs(dims, batch=6, seed=1)
    y = f(h)
    z = [_one(x) for x in h]
    if len(dims) == 2:
        ref = torch.einsum("bi,bj->bij", *z).reshape(6, -1)
    else:
        ref = torch.einsum("bi,bj,bk->bijk", *z).reshape(6, -1)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # explicit loops, written from the definition
    loop = torch.empty(6, f.out_dim, dtype=torch.float64)
    for b in range(6):
        for col, idx in enumerate(itertools.product(*[range(d + 1) for d in dims])):
            loop[b, col] = math.prod(float(z[m][b, i]) for m, i in enumerate(idx))
    torch.testing.assert_close(y, loop, rtol=1e-12, atol=1e-12)
    # the appended 1s keep the unimodal terms: the slice where all other indices hit the 1
    last = [d for d in dims]  # index of the constant 1 in each modality
    t = y.view(6, *[d + 1 for d in dims])
    torch.testing.assert_close(t[(slice(None), slice(0, dims[0]), *last[1:])], h[0])
    torch.testing.assert_close(t[(slice(None), last[0], slice(0, dims[1]), *last[2:])], h[1])
    assert float(t[(slice(None), *last)].min()) == 1.0


def test_tensor_fusion_missing_modality_is_fusion_of_the_others():
    dims = [2, 3, 2]
    f = TensorFusion(dims)
    h = _inputs(dims, batch=3)
    mask = torch.tensor([[1, 0, 1]] * 3).bool()
    t = f(h, mask).view(3, 3, 4, 3)
    # every term that involves modality 1 is zero; its constant-1 slice is the 0-2 fusion
    assert (t[:, :, :3, :] == 0).all()
    torch.testing.assert_close(t[:, :, 3, :].reshape(3, -1), TensorFusion([2, 2])([h[0], h[2]]))


def test_tensor_fusion_refuses_huge_width():
    with pytest.raises(ValueError, match="LowRankTensorFusion"):
        TensorFusion([199, 99, 99])


# ---------------------------------------------------------------- low-rank tensor fusion


@pytest.mark.parametrize("dims", [[3, 5], [2, 3, 4]])
def test_lowrank_matches_reference(dims):
    torch.manual_seed(0)
    r, o = 3, 4
    f = LowRankTensorFusion(dims, o, rank=r).double()
    with torch.no_grad():
        f.bias.normal_()
    h = _inputs(dims, batch=5, seed=2)
    y = f(h)
    ref = torch.zeros(5, o, dtype=torch.float64)
    for b in range(5):
        for i in range(r):
            term = torch.ones(o, dtype=torch.float64)
            for m in range(len(dims)):
                term = term * (_one(h[m])[b] @ f.factors[m][i])
            ref[b] += term
        ref[b] += f.bias
    torch.testing.assert_close(y, ref)
    # equals the TensorFusion tensor times the full CP-rank-r weight
    W = 0
    for i in range(r):
        fs = [f.factors[m][i] for m in range(len(dims))]
        if len(dims) == 2:
            W = W + torch.einsum("io,jo->ijo", *fs)
        else:
            W = W + torch.einsum("io,jo,ko->ijko", *fs)
    full = TensorFusion(dims)(h) @ W.reshape(-1, o) + f.bias
    torch.testing.assert_close(y, full)


def test_lowrank_factors_are_trained():
    """MultiBench's defect: factors in a plain list are not parameters and never move."""
    dims, r, o = [3, 4, 2], 5, 6
    torch.manual_seed(0)
    f = LowRankTensorFusion(dims, o, rank=r)
    params = list(f.parameters())
    ids = {id(p) for p in params}
    assert len(f.factors) == 3
    for m, w in enumerate(f.factors):
        assert isinstance(w, nn.Parameter) and id(w) in ids
        assert w.shape == (r, dims[m] + 1, o)
    assert id(f.bias) in ids
    n = sum(p.numel() for p in params)
    assert n == r * o * sum(d + 1 for d in dims) + o
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(f.parameters(), lr=0.1)
    h = _inputs(dims, batch=8, seed=3)
    h = [x.float() for x in h]
    loss = (f(h) - 1.0).pow(2).mean()
    loss.backward()
    for p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0
    opt.step()
    for p, p0 in zip(params, before):
        assert not torch.equal(p.detach(), p0)
    # state_dict round-trip keeps the factors
    g = LowRankTensorFusion(dims, o, rank=r)
    g.load_state_dict(f.state_dict())
    torch.testing.assert_close(g(h), f(h))


# ---------------------------------------------------------------- multiplicative interaction


def test_mi_matches_bilinear_reference_two_modalities():
    torch.manual_seed(0)
    dz, dx, o = 3, 4, 5
    f = MultiplicativeInteraction([dz, dx], o, include_mask=False).double()
    z, x = _inputs([dz, dx], batch=6, seed=4)
    y = f([z, x])
    lin_w, lin_b = f.weight_gen[0], f.bias_gen[0]
    A = lin_w.weight.view(o, dz, dx)
    a = lin_w.bias.view(o, dz)
    ref = torch.einsum("kji,bi,bj->bk", A, x, z) + z @ a.T + x @ lin_b.weight.T + lin_b.bias
    torch.testing.assert_close(y, ref)
    # it is bilinear: scaling z scales only the z-dependent part
    y2 = f([2 * z, x])
    torch.testing.assert_close(y2 - y, y - lin_b(x))


def test_mi_three_modalities_with_mask_context():
    torch.manual_seed(0)
    dims, o = [2, 3, 4], 3
    f = MultiplicativeInteraction(dims, o, target=1).double()
    assert f.d_z == 3 and f.d_x == 2 + 4 + 3
    h = _inputs(dims, batch=5, seed=5)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]]).bool()
    y = f(h, mask)
    for b in range(5):
        fill = [h[m][b] * float(mask[b, m]) for m in range(3)]
        x = torch.cat([fill[0], fill[2], mask[b].double()])
        W = (f.weight_gen[0].weight @ x + f.weight_gen[0].bias).view(o, 3)
        want = W @ fill[1] + f.bias_gen[0].weight @ x + f.bias_gen[0].bias
        torch.testing.assert_close(y[b], want)
    # the mask reaches the context: same vectors, different mask, different output
    assert not torch.allclose(f(h, torch.ones(5, 3)), f(h, mask))


# ---------------------------------------------------------------- missing-modality gradients


def _encoded(name, dims, mask, seed=0):
    torch.manual_seed(seed)
    encs = nn.ModuleList([nn.Linear(6, d) for d in dims]).double()
    f = make_fusion(name, dims, out_dim=3, rank=2).double()
    head = nn.Linear(f.out_dim, 1).double()
    g = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(mask.shape[0], 6, generator=g, dtype=torch.float64) for _ in dims]
    return encs, f, head, xs


def _enc_grad(encs, f, head, xs, mask, rows):
    encs.zero_grad()
    h = [e(x[rows]) for e, x in zip(encs, xs)]
    loss = head(f(h, mask[rows])).pow(2).sum()
    loss.backward()
    return [(e.weight.grad.clone(), e.bias.grad.clone()) for e in encs]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", [[3, 4], [3, 4, 2]])
def test_missing_modality_encoder_gets_exactly_zero_grad(name, dims):
    B = 6
    mask = torch.ones(B, len(dims), dtype=torch.bool)
    mask[:, 1] = False
    encs, f, head, xs = _encoded(name, dims, mask)
    grads = _enc_grad(encs, f, head, xs, mask, slice(None))
    gw, gb = grads[1]
    assert torch.equal(gw, torch.zeros_like(gw)) and torch.equal(gb, torch.zeros_like(gb))
    # the present modalities do learn (the test would pass vacuously otherwise)
    assert grads[0][0].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", [[3, 4], [3, 4, 2]])
def test_mixed_batch_grad_equals_grad_of_present_rows(name, dims):
    B = 8
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(B, len(dims), generator=g) > 0.4
    mask[:, 0] = True
    mask[0, 1], mask[1, 1] = True, False  # modality 1 both present and missing
    encs, f, head, xs = _encoded(name, dims, mask, seed=3)
    full = _enc_grad(encs, f, head, xs, mask, slice(None))
    present = mask[:, 1].nonzero().squeeze(1)
    only = _enc_grad(encs, f, head, xs, mask, present)
    for (w, b), (w0, b0) in zip(full[1:2], only[1:2]):
        assert w.abs().sum() > 0
        torch.testing.assert_close(w, w0, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(b, b0, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_the_modality(name):
    dims = [3, 4, 2]
    f = _build(name, dims)
    h = _inputs(dims, batch=5)
    with pytest.raises(ValueError, match=r"expected 3 modalities.*got 2"):
        f(h[:2])
    with pytest.raises(ValueError, match=r"modality 1: expected shape \(5, 4\), got \(5, 7\)"):
        f([h[0], torch.randn(5, 7, dtype=torch.float64), h[2]])
    with pytest.raises(ValueError, match=r"modality 2: expected shape \(5, 2\), got \(4, 2\)"):
        f([h[0], h[1], h[2][:4]])
    with pytest.raises(ValueError, match=r"modality 0: expected shape \(B, 3\), got \(5,\)"):
        f([h[0][:, 0], h[1], h[2]])
    with pytest.raises(ValueError, match="modality 1: expected a Tensor"):
        f([h[0], [1.0], h[2]])
    with pytest.raises(ValueError, match="list of 3"):
        f(torch.randn(5, 9))
    with pytest.raises(ValueError, match=r"mask: expected shape \(5, 3\), got \(5, 2\)"):
        f(h, torch.ones(5, 2))
    with pytest.raises(ValueError, match="0 or 1"):
        f(h, torch.full((5, 3), 0.5))


def test_bad_construction():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        LateFusion([3])
    with pytest.raises(ValueError, match="modality 1: width"):
        TensorFusion([3, 0])
    with pytest.raises(ValueError, match="rank"):
        LowRankTensorFusion([3, 2], 4, rank=0)
    with pytest.raises(ValueError, match="target"):
        MultiplicativeInteraction([3, 2], 4, target=2)
