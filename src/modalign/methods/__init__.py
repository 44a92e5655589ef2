"""Methods: one module per method, each a config dataclass and a model."""

from modalign.methods.otm import OTM, OTMConfig, ot_mix

__all__ = ["OTM", "OTMConfig", "ot_mix"]
