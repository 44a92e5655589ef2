"""The shared Adam factory: torch's fused kernel where it exists, the same update as the
per-tensor loop up to rounding, and OTM's checkpoints keyed by the choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modalign.methods import OTM, OTMConfig
from modalign.train import adam

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))


def _steps(model: nn.Module, optimiser: torch.optim.Optimizer, n: int) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        x = torch.randn(16, 7, generator=g)
        optimiser.zero_grad()
        model(x).pow(2).mean().backward()
        optimiser.step()


@pytest.mark.parametrize("fused", [False, True])
def test_first_step_is_the_closed_form(fused):
    """Adam's first step from zero moments is ``-lr g / (|g| + eps)`` per entry (bias
    correction cancels the moments' (1 - beta) factors)."""
    w = nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    optimiser = adam([w], lr=0.1, weight_decay=0.0, fused=fused)
    grad = torch.tensor([3.0, -0.25, 1e-3, 0.0])
    w.grad = grad.clone()
    optimiser.step()
    expected = torch.tensor([0.5, -1.0, 2.0, 0.0]) - 0.1 * grad / (grad.abs() + 1e-8)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=1e-7)
    assert optimiser.defaults["fused"] is (True if fused else None)


def test_fused_and_per_tensor_adam_agree_to_rounding_over_many_steps():
    default, fused = _model(), _model()
    _steps(default, adam(default.parameters(), 1e-2, 1e-3, fused=False), 50)
    _steps(fused, adam(fused.parameters(), 1e-2, 1e-3, fused=True), 50)
    moved = 0.0
    for a, b, start in zip(default.parameters(), fused.parameters(), _model().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        moved = max(moved, float((a - start).detach().abs().max()))
    assert moved > 0.05  # the comparison is of trained weights, not of the start


def test_a_device_without_the_fused_kernel_gets_the_per_tensor_loop():
    w = nn.Parameter(torch.zeros(3, device="meta"))
    assert adam([w], 1e-3, 0.0, fused=True).defaults["fused"] is None


def test_otm_checkpoint_is_keyed_by_the_optimiser(tmp_path):
    """A run trained with the per-tensor Adam is not resumed by one asking for the fused
    kernel: the two do not repeat each other to the bit."""
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(40, 6, generator=g), torch.randn(40, 4, generator=g)]
    cfg = OTMConfig(n_clusters=2, latent_dim=4, epochs=2, warmup_epochs=1, fused_adam=False)
    ckpt = tmp_path / "otm.pt"
    OTM(cfg, random_state=0).fit(views, checkpoint=ckpt)
    assert "fused_adam" in cfg.training_settings()
    fused = OTMConfig(**{**cfg.training_settings(), "fused_adam": True})
    with pytest.raises(ValueError, match="fused_adam=False, not fused_adam=True"):
        OTM(fused, random_state=0).fit(views, checkpoint=ckpt)
