"""Local DP of codes: clipping, noise, and the RDP budget against its closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalign.federated.privacy import (
    DEFAULT_ORDERS,
    clip_codes,
    gaussian_epsilon_closed_form,
    gaussian_rdp,
    privacy_report,
    privatise_codes,
    rdp_to_epsilon,
)


def test_clipping_bounds_every_code_and_keeps_short_ones():
    z = torch.cat([torch.randn(50, 8) * 10, torch.randn(50, 8) * 0.01])
    clipped = clip_codes(z, 1.0)
    assert float(clipped.norm(dim=1).max()) <= 1.0 + 1e-6
    torch.testing.assert_close(clipped[50:], z[50:])  # already inside the ball
    # Long codes keep their direction.
    cos = torch.nn.functional.cosine_similarity(clipped[:50], z[:50])
    assert float(cos.min()) > 0.9999


def test_noise_has_the_promised_scale_and_comes_from_the_agents_generator():
    z = torch.zeros(4000, 16)
    a = privatise_codes(
        z, clip=2.0, noise_multiplier=1.5, generator=torch.Generator().manual_seed(1)
    )
    b = privatise_codes(
        z, clip=2.0, noise_multiplier=1.5, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(a, b)
    assert float(a.std()) == pytest.approx(3.0, rel=0.02)  # noise_multiplier * clip


@pytest.mark.parametrize("z, count, delta", [(1.0, 1, 1e-5), (4.0, 100, 1e-5), (20.0, 500, 1e-6)])
def test_rdp_grid_is_close_to_the_closed_form_and_never_below_it(z, count, delta):
    exact = gaussian_epsilon_closed_form(z, count, delta)
    grid = rdp_to_epsilon(DEFAULT_ORDERS, gaussian_rdp(DEFAULT_ORDERS, z, count), delta)
    assert grid >= exact - 1e-12  # the closed form is the minimum over all orders
    assert grid <= exact * 1.01


def test_closed_form_matches_a_hand_computation():
    # rho = 10 / (2 * 4) = 1.25; eps = rho + 2 sqrt(rho ln 1e5)
    rho = 1.25
    assert gaussian_epsilon_closed_form(2.0, 10, 1e-5) == pytest.approx(
        rho + 2 * math.sqrt(rho * math.log(1e5))
    )


def test_report_grows_with_releases_and_rows():
    one = privacy_report(1, 100, clip=1.0, noise_multiplier=4.0, delta=1e-5)
    ten = privacy_report(10, 100, clip=1.0, noise_multiplier=4.0, delta=1e-5)
    assert 0 < one.epsilon_code < ten.epsilon_code
    # One row may move all 100 codes through the encoder: a far larger worst case.
    assert ten.epsilon_dataset > 5 * ten.epsilon_code
    # Per-code sensitivity 2C: noise multiplier 4 is 2 in sensitivity units.
    assert ten.epsilon_code == pytest.approx(gaussian_epsilon_closed_form(2.0, 10, 1e-5), rel=0.01)
    assert privacy_report(0, 100, 1.0, 4.0, 1e-5).epsilon_code == 0.0


def test_flower_rdp_accountant_agrees_when_available():
    pytest.importorskip("dp_accounting")
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    acc = RdpAccountant(
        PrivacyConfig(
            1e-5, 1, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.NO_AMPLIFICATION
        )
    )
    acc.compose(GaussianPrivacyEvent(2.0, 1, 1), count=10)
    ours = rdp_to_epsilon(DEFAULT_ORDERS, gaussian_rdp(DEFAULT_ORDERS, 2.0, 10), 1e-5)
    # dp-accounting uses a tighter RDP-to-DP conversion: ours may only be larger.
    assert acc.get_epsilon(1e-5) <= ours * 1.001
    assert acc.get_epsilon(1e-5) >= 0.7 * ours


def test_bad_privacy_settings_are_refused():
    with pytest.raises(ValueError, match="clip"):
        clip_codes(torch.ones(2, 2), 0.0)
    with pytest.raises(ValueError, match="delta"):
        rdp_to_epsilon([2.0], [1.0], 1.5)
    with pytest.raises(ValueError, match="orders"):
        gaussian_rdp(np.array([1.0]), 1.0)
