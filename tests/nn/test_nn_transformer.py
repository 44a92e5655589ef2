"""Multimodal transformers (late and early fusion) on synthetic tokens of M = 3 modalities:
shapes, masks (missing modalities and padding removed from attention, never zero-filled keys),
no NaN from fully masked attention rows, the alignment layer, input checks."""

from __future__ import annotations

import pytest
import torch

from modalign.nn.transformer import (
    EarlyFusionTransformer,
    LateFusionTransformer,
    ModalityTokenEncoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = (4, 5, 3)
LENS = (6, 8, 5)
MAX_LENS = (12, 12, 12)  # room to append padding
K = 3
W = 16
KINDS = ["late", "early"]


def make_net(kind: str, **kw):
    torch.manual_seed(0)
    common = dict(width=W, heads=2, dropout=0.0)
    common.update(kw)
    if kind == "late":
        return LateFusionTransformer(DIMS, MAX_LENS, K, **common)
    return EarlyFusionTransformer(DIMS, MAX_LENS, K, layers=2, **common)


def make_inputs(batch: int = 6, seed: int = 0):
    """Tokens, variable-length token masks (padding holds junk) and a presence mask with
    missing modalities: sample 1 lacks modality 1, sample 2 has modality 2 only."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, t, d, generator=g) for d, t in zip(DIMS, LENS)]
    masks = []
    for x, t in zip(xs, LENS):
        length = torch.randint(1, t + 1, (batch,), generator=g)
        length[0] = t  # sample 0: full length everywhere
        mask = torch.arange(t) < length[:, None]
        x[~mask] = 1e3  # junk in the padding
        masks.append(mask)
    present = torch.ones(batch, len(DIMS), dtype=torch.bool)
    present[1, 1] = False
    present[2, :2] = False
    return xs, masks, present


def run(net, xs, masks, present, *, train: bool):
    net.train(train)
    if train:
        return net(xs, masks, present)
    with torch.no_grad():
        return net(xs, masks, present)


# ---------------------------------------------------------------- shapes and masks


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_token_states(kind):
    net = make_net(kind)
    xs, masks, present = make_inputs()
    out = net(xs, masks, present)
    assert tuple(out.logits.shape) == (6, K)
    assert len(out.tokens) == len(out.masks) == 3
    for m, (tok, mask) in enumerate(zip(out.tokens, out.masks)):
        assert tuple(tok.shape) == (6, LENS[m], W)
        assert torch.equal(mask, masks[m] & present[:, m : m + 1])
        assert bool((tok[~mask] == 0).all()) and bool(tok[mask].abs().sum(-1).gt(0).all())
    # None masks: every token real, every modality present.
    full = net(xs)
    assert all(bool(mask.all()) for mask in full.masks)


def test_modality_token_encoder_zeroes_padding_and_handles_an_empty_sample():
    torch.manual_seed(0)
    enc = ModalityTokenEncoder(5, W, 8, layers=2, heads=4, dropout=0.0)
    x = torch.randn(3, 8, 5)
    mask = torch.tensor([[True] * 8, [True] * 3 + [False] * 5, [False] * 8])
    raw = []
    enc.encoder.register_forward_hook(lambda mod, args, out: raw.append(out))
    for train in (True, False):
        enc.train(train)
        with torch.set_grad_enabled(train):
            h = enc(x, mask)
        assert tuple(h.shape) == (3, 8, W) and bool(torch.isfinite(h).all())
        assert bool(torch.isfinite(raw.pop()).all())  # before the padded rows are zeroed
        assert bool((h[~mask] == 0).all()) and bool((h[mask] != 0).any(-1).all())
    # 8 tokens at most: a longer sequence is refused by the models (see the input checks).
    assert enc.embed.max_len == 8


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_ignore_missing_modalities_and_padding_values(kind, train):
    net = make_net(kind)
    xs, masks, present = make_inputs()
    base = run(net, xs, masks, present, train=train)
    junk = [x.clone() for x in xs]
    junk[1][1] = float("nan")  # every token of the missing modality 1 of sample 1
    junk[0][2] = -7.0  # modalities 0 and 1 of sample 2 are missing
    junk[1][2] = 5.0
    for x, mask in zip(junk, masks):
        x[~mask] = torch.randn(int((~mask).sum()), x.shape[-1]) * 100  # new padding values
    other = run(net, junk, masks, present, train=train)
    assert torch.equal(base.logits, other.logits)
    for a, b in zip(base.tokens, other.tokens):
        assert torch.equal(a, b)
    assert bool(torch.isfinite(base.logits).all())


@pytest.mark.parametrize("kind", KINDS)
def test_padding_and_missing_tokens_are_masked_not_zero_filled(kind):
    """More padding (or a longer missing modality) leaves the outputs unchanged: the extra
    positions are not keys. Were they zero-filled keys, the softmax would shift."""
    net = make_net(kind)
    xs, masks, present = make_inputs()
    base = run(net, xs, masks, present, train=False)
    longer_x = [torch.cat([x, torch.randn(x.shape[0], 4, x.shape[2])], 1) for x in xs]
    longer_m = [torch.cat([m, torch.zeros(m.shape[0], 4, dtype=torch.bool)], 1) for m in masks]
    longer = run(net, longer_x, longer_m, present, train=False)
    torch.testing.assert_close(longer.logits, base.logits, rtol=1e-5, atol=1e-5)
    for m, (a, b) in enumerate(zip(longer.tokens, base.tokens)):
        torch.testing.assert_close(a[:, : LENS[m]], b, rtol=1e-5, atol=1e-5)
        assert bool((a[:, LENS[m] :] == 0).all())
    # Sample 1 lacks modality 1: the same as presenting it with all-zero tokens would NOT be.
    zero_x = [x.clone() for x in xs]
    zero_x[1][1] = 0.0
    shown = present.clone()
    shown[1, 1] = True
    zero_m = [m.clone() for m in masks]
    zero_m[1][1] = True
    zero_filled = run(net, zero_x, zero_m, shown, train=False)
    assert (zero_filled.logits[1] - base.logits[1]).abs().max() > 1e-4
    torch.testing.assert_close(zero_filled.logits[0], base.logits[0])


@pytest.mark.parametrize("kind", KINDS)
def test_no_nan_with_fully_masked_sequences_and_padded_queries(kind):
    """Samples whose modality sequences are entirely masked (missing modalities, a modality
    of length 0) and padded query rows: finite outputs in training and in inference (where
    PyTorch's fused attention path gives NaN for a fully masked row), finite gradients."""
    net = make_net(kind, dropout=0.1)
    xs, masks, present = make_inputs(batch=4)
    masks[2][3] = False  # sample 3: modality 2 present but without any real token
    # Every stack's raw output, padded rows included (the models zero those afterwards,
    # which would hide a NaN in the forward pass). Hooked at the stacks' final LayerNorm: a
    # hook on a layer itself would switch PyTorch's fused inference path off.
    raw = []
    for stack in net.modules():
        if isinstance(stack, torch.nn.TransformerEncoder):
            stack.norm.register_forward_hook(lambda mod, args, out: raw.append(out))
    for train in (True, False):
        raw.clear()
        out = run(net, xs, masks, present, train=train)
        assert bool(torch.isfinite(out.logits).all())
        assert all(bool(torch.isfinite(t).all()) for t in out.tokens)
        assert raw and all(bool(torch.isfinite(h).all()) for h in raw)
    net.train()
    net.zero_grad()
    out = net(xs, masks, present)
    (out.logits.sum() + sum(t.sum() for t in out.tokens)).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


# ---------------------------------------------------------------- alignment layer


def test_early_fusion_exposes_the_chosen_layer():
    xs, masks, present = make_inputs()
    seen = {}
    for k in (0, 1, 2):
        net = make_net("early", align_layer=k)
        hooks = [
            layer.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, out))
            for i, layer in enumerate(net.encoder.layers, start=1)
        ]
        out = net(xs, masks, present)
        for h in hooks:
            h.remove()
        if k == 0:
            expected = [
                emb(x, m) + net.modality_embedding[i]
                for i, (emb, x, m) in enumerate(zip(net.embeddings, xs, out.masks))
            ]
        else:
            expected = torch.split(seen[k][:, 1:], list(LENS), 1)
        for tok, exp, mask in zip(out.tokens, expected, out.masks):
            assert torch.equal(tok[mask], exp[mask])
        # Nothing after layer k shapes the aligned tokens: no gradient reaches layer k + 1.
        net.zero_grad()
        sum((t**2).sum() for t in out.tokens).backward()
        for i, layer in enumerate(net.encoder.layers, start=1):
            has_grad = any(
                p.grad is not None and bool(p.grad.abs().sum() > 0) for p in layer.parameters()
            )
            assert has_grad == (i <= k)
        assert net.embeddings[0].proj.weight.grad.abs().sum() > 0
    assert make_net("early").align_layer == 2  # None: the last layer


def test_late_fusion_tokens_are_the_encoders_outputs_and_layers_start_different():
    net = make_net("late")
    xs, masks, present = make_inputs()
    out = net(xs, masks, present)
    for m, enc in enumerate(net.encoders):
        assert torch.equal(out.tokens[m], enc(xs[m], out.masks[m]))
    assert len(net.fusion.layers) == 2 and net.fusion.layers[0].self_attn.num_heads == 8
    a, b = net.fusion.layers
    assert not torch.equal(a.linear1.weight, b.linear1.weight)  # independent initialisation


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize("kind", KINDS)
def test_input_errors(kind):
    net = make_net(kind)
    xs, masks, present = make_inputs()
    none = present.clone()
    none[4] = False
    with pytest.raises(ValueError, match="sample 4 has no present modality"):
        net(xs, masks, none)
    empty = [m.clone() for m in masks]
    for m in empty:
        m[5] = False
    with pytest.raises(ValueError, match="sample 5 has no real token in any present modality"):
        net(xs, empty, present)
    with pytest.raises(ValueError, match="list of 3 token tensors"):
        net(xs[:2], masks[:2], present[:, :2])
    with pytest.raises(ValueError, match="modality 1: expected tokens of shape"):
        net([xs[0], xs[1][..., :2], xs[2]], masks, present)
    with pytest.raises(ValueError, match="positional embedding holds 12"):
        net([xs[0], torch.randn(6, 13, 5), xs[2]], None, present)
    with pytest.raises(ValueError, match="token mask of shape"):
        net(xs, [masks[0], masks[1][:, :3], masks[2]], present)
    with pytest.raises(ValueError, match=r"present: expected shape \(6, 3\)"):
        net(xs, masks, present[:, :2])
    with pytest.raises(ValueError, match="M >= 2"):
        LateFusionTransformer([4], [6], K, width=W, heads=2)
    with pytest.raises(ValueError, match="multiple of heads"):
        LateFusionTransformer(DIMS, MAX_LENS, K, width=12, heads=2)  # 8 fusion heads
    with pytest.raises(ValueError, match="align_layer"):
        EarlyFusionTransformer(DIMS, MAX_LENS, K, width=W, heads=2, layers=2, align_layer=3)
