"""Methods: one module per method, each a config dataclass and a model."""

from modalign.methods.otm import OTM, OTMConfig, ot_mix
from modalign.methods.supervised import FusionOutput, SupervisedConfig, SupervisedFusion

__all__ = ["OTM", "FusionOutput", "OTMConfig", "SupervisedConfig", "SupervisedFusion", "ot_mix"]
