"""Methods: one module per method, each a config dataclass and a model."""

from modalign.methods._vae import VAEOutput
from modalign.methods.gmc import GMC, GMCConfig, gmc_loss
from modalign.methods.mvae import MVAE, MVAEConfig
from modalign.methods.otm import OTM, OTMConfig, ot_mix
from modalign.methods.supervised import FusionOutput, SupervisedConfig, SupervisedFusion
from modalign.methods.wvae import WVAE, WVAEConfig, w2_consensus

__all__ = [
    "GMC",
    "MVAE",
    "OTM",
    "WVAE",
    "FusionOutput",
    "GMCConfig",
    "MVAEConfig",
    "OTMConfig",
    "SupervisedConfig",
    "SupervisedFusion",
    "VAEOutput",
    "WVAEConfig",
    "gmc_loss",
    "ot_mix",
    "w2_consensus",
]
