"""Multilayer perceptrons sized from the data."""

from __future__ import annotations

from torch import Tensor, nn


def hidden_width(n_features: int) -> int:
    """A hidden width that grows with the input: 64 for tiny views, up to 512 for wide ones."""
    return int(min(512, max(64, n_features // 2)))


def mlp(sizes: list[int], *, final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """A deterministic MLP autoencoder ``x (B, D) -> z (B, d) -> x_hat (B, D)``.

    Two hidden layers of :func:`hidden_width` units each way.
    """

    def __init__(self, n_features: int, latent_dim: int, hidden: int | None = None):
        super().__init__()
        h = hidden or hidden_width(n_features)
        self.encoder = mlp([n_features, h, h, latent_dim])
        self.decoder = mlp([latent_dim, h, h, n_features])

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)
