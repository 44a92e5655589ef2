"""Methods: one module per method, each a config dataclass and a model."""

from modalign.methods._vae import VAEOutput
from modalign.methods.gmc import GMC, GMCConfig, gmc_loss
from modalign.methods.mvae import MVAE, MVAEConfig
from modalign.methods.otm import OTM, OTMConfig, ot_mix
from modalign.methods.supervised import FusionOutput, SupervisedConfig, SupervisedFusion
from modalign.methods.transformer import TransformerClassifier, TransformerConfig
from modalign.methods.wvae import WVAE, WVAEConfig, w2_consensus

#: The multimodal VAEs by protocol name: (model class, config class, fixed config fields).
VAES = {
    "mvae": (MVAE, MVAEConfig, {}),
    "wvae": (WVAE, WVAEConfig, {}),
    "wvae-factorised": (WVAE, WVAEConfig, {"factorised": True}),
    "wvae-full": (WVAE, WVAEConfig, {"covariance": "full"}),
}


def vae_config(name: str, overrides=None) -> MVAEConfig | WVAEConfig:
    """The config of the VAE ``name`` (a key of :data:`VAES`), with the fields of
    ``overrides`` that it has (``epochs``, ``device``, ...) applied."""
    if name not in VAES:
        raise ValueError(f"unknown VAE {name!r}: choose from {list(VAES)}")
    _, config, fixed = VAES[name]
    extra = {k: v for k, v in dict(overrides or {}).items() if k in config.__dataclass_fields__}
    return config(**{**extra, **fixed})


def make_vae(name: str, config: MVAEConfig | WVAEConfig, random_state: int = 0) -> MVAE | WVAE:
    """An unfitted VAE ``name`` with ``config`` (from :func:`vae_config`)."""
    return VAES[name][0](config, random_state=random_state)


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
    "VAES",
    "WVAEConfig",
    "gmc_loss",
    "make_vae",
    "ot_mix",
    "vae_config",
    "w2_consensus",
    "TransformerClassifier",
    "TransformerConfig",
]
