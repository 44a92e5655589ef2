"""Methods: one module per method, each a config dataclass and a model."""

from modalign.methods.gmc import GMC, GMCConfig, gmc_loss
from modalign.methods.otm import OTM, OTMConfig, ot_mix
from modalign.methods.supervised import FusionOutput, SupervisedConfig, SupervisedFusion

__all__ = [
    "GMC",
    "OTM",
    "FusionOutput",
    "GMCConfig",
    "OTMConfig",
    "SupervisedConfig",
    "SupervisedFusion",
    "gmc_loss",
    "ot_mix",
]
