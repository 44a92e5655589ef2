"""The ``"encoder"`` probe: a classifier of raw modality data (conv net for images, MLP for
features), standardised with one scalar mean and scale, that learns a planted image class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.eval.probe import KINDS, PROBES, Probe, ProbeConfig
from modalign.nn.encoders import ImageConvEncoder, MLPEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 16


def _quadrants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 256)`` noisy 16 x 16 images in [0, 1] whose class (0..3) is the bright quadrant,
    balanced classes, rows flattened row-major."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    images = rng.random((n, SIDE, SIDE)) * 0.5
    half = SIDE // 2
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        images[i, r * half : (r + 1) * half, k * half : (k + 1) * half] += 0.5
    return images.reshape(n, -1), y


def _accuracy(config: ProbeConfig, **fit) -> tuple[float, Probe]:
    x, y = _quadrants(160, 0)
    xv, yv = _quadrants(40, 1)
    xt, yt = _quadrants(200, 2)
    probe = Probe(config, random_state=0).fit(x, y, xv, yv, 4, **fit)
    return float((probe.predict(xt) == yt).mean()), probe


def test_encoder_probe_learns_the_bright_quadrant_and_untrained_stays_near_chance():
    image = {"view_kind": "image", "shape": (SIDE, SIDE)}
    trained, probe = _accuracy(ProbeConfig(kind="encoder", epochs=5), **image)
    assert isinstance(probe.net[0], ImageConvEncoder)  # a 16 x 16 image: the conv net
    assert trained > 0.9
    # The same network without learning: the threshold above is not met by construction.
    untrained, _ = _accuracy(ProbeConfig(kind="encoder", epochs=1, lr=1e-9), **image)
    assert untrained < 0.5


def test_encoder_probe_of_features_is_an_mlp():
    _, probe = _accuracy(ProbeConfig(kind="encoder", epochs=1))
    assert isinstance(probe.net[0], MLPEncoder)
    assert probe.net[-1].out_features == 4
    # an image too small for the conv net (below 16 x 16) gets the MLP as well
    x = np.random.default_rng(0).random((20, 64))
    y = np.arange(20) % 2
    small = Probe(ProbeConfig(kind="encoder", epochs=1)).fit(
        x, y, x, y, view_kind="image", shape=(8, 8)
    )
    assert isinstance(small.net[0], MLPEncoder)


def test_encoder_standardises_with_one_scalar_and_the_others_per_feature():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 5)) * np.array([1.0, 2.0, 3.0, 4.0, 5.0]) + np.arange(5)
    y = np.arange(30) % 3
    whole = Probe(ProbeConfig(kind="encoder", epochs=1)).fit(x, y, x, y)
    t = torch.as_tensor(x, dtype=torch.float32)
    assert torch.allclose(whole.mean_, torch.full((5,), float(t.mean())))
    assert torch.allclose(whole.scale_, torch.full((5,), float(t.std())))
    per_feature = Probe(ProbeConfig(kind="mlp", epochs=1)).fit(x, y, x, y)
    assert torch.allclose(per_feature.mean_, t.mean(0))
    assert torch.allclose(per_feature.scale_, t.std(0))
    assert not torch.allclose(per_feature.mean_, per_feature.mean_[0].expand(5))


def test_encoder_is_a_kind_but_not_a_representation_probe():
    assert "encoder" in KINDS and "encoder" not in PROBES
    assert set(PROBES) <= set(KINDS)
    with pytest.raises(ValueError, match="probe kind must be one of"):
        ProbeConfig(kind="conv")
