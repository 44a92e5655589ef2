"""Modality encoders chosen by what a view holds: ``(B, D) -> (B, out_dim)``.

Every view reaches a method flattened to ``(N, D)``; a :class:`~modalign.data.MultiViewDataset`
also records each view's kind and row shape. :func:`modality_encoder` picks the network:

* ``image`` views of row shape ``(H, W)`` with H, W >= 16 (28 x 28 MNIST): a small conv net,
  two stride-2 4x4 convolutions (16 and 32 channels) and a linear layer;
* ``audio`` views of row shape ``(bands, frames)`` (log-mel frames): a 1-D conv net over time,
  the bands as channels, two stride-2 convolutions of width 5 (64 channels), average-pooled over
  the remaining frames, then a linear layer; the pooling makes it indifferent to the number of
  frames;
* anything else: an MLP with two hidden layers of :func:`~modalign.nn.hidden_width` units.

GELU activations throughout, as in the GMC reference networks.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from modalign.nn.mlp import hidden_width

__all__ = ["AudioConvEncoder", "ImageConvEncoder", "MLPEncoder", "modality_encoder"]


class MLPEncoder(nn.Module):
    """``(B, D) -> (B, out_dim)`` through two hidden layers of ``hidden`` units (GELU)."""

    def __init__(self, n_features: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        h = hidden or hidden_width(n_features)
        self.net = nn.Sequential(
            nn.Linear(n_features, h),
            nn.GELU(),
            nn.Linear(h, h),
            nn.GELU(),
            nn.Linear(h, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageConvEncoder(nn.Module):
    """``(B, H * W) -> (B, out_dim)`` for one-channel ``H x W`` images (rows flattened
    row-major, as MNIST's are)."""

    def __init__(self, shape: Sequence[int], out_dim: int):
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        h, w = self.shape
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Flatten(),
        )
        self.out = nn.Linear(32 * (h // 4) * (w // 4), out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x.reshape(-1, 1, *self.shape)))


class AudioConvEncoder(nn.Module):
    """``(B, bands * frames) -> (B, out_dim)`` for log-mel features stored band-major
    (row shape ``(bands, frames)``): a 1-D conv net over time, bands as channels."""

    def __init__(self, shape: Sequence[int], out_dim: int, channels: int = 64):
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        self.features = nn.Sequential(
            nn.Conv1d(self.shape[0], channels, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2),
            nn.GELU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.out = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x.reshape(-1, *self.shape)))


def modality_encoder(
    n_features: int,
    out_dim: int,
    *,
    kind: str = "features",
    shape: Sequence[int] | None = None,
    hidden: int | None = None,
) -> nn.Module:
    """The encoder of one view (see the module docstring for the choice).

    Args:
        n_features: ``D``, the flattened row width.
        out_dim: the output width.
        kind: the view's kind (``"features"``, ``"image"`` or ``"audio"``).
        shape: the row shape before flattening, or None.
        hidden: the MLP's hidden width (default :func:`~modalign.nn.hidden_width`).
    """
    if shape is not None and len(shape) == 2 and shape[0] * shape[1] == n_features:
        if kind == "image" and min(shape) >= 16:
            return ImageConvEncoder(shape, out_dim)
        if kind == "audio" and shape[1] >= 4:
            return AudioConvEncoder(shape, out_dim)
    return MLPEncoder(n_features, out_dim, hidden)
