"""Neural building blocks shared by the methods: MLPs and latent regularisers."""

from modalign.nn.losses import imq_mmd, reconstruction_error
from modalign.nn.mlp import Autoencoder, hidden_width, mlp

__all__ = ["Autoencoder", "hidden_width", "imq_mmd", "mlp", "reconstruction_error"]
