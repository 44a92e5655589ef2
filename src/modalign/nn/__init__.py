"""Neural building blocks shared by the methods: encoders, MLPs, fusion layers and losses."""

from modalign.nn.encoders import AudioConvEncoder, ImageConvEncoder, MLPEncoder, modality_encoder
from modalign.nn.fusion import (
    FUSIONS,
    Fusion,
    LateFusion,
    LowRankTensorFusion,
    MultiplicativeInteraction,
    TensorFusion,
    make_fusion,
)
from modalign.nn.gaussian import (
    DECODERS,
    BernoulliDecoder,
    CategoricalDecoder,
    FullGaussianEncoder,
    GaussianDecoder,
    GaussianEncoder,
    LikelihoodDecoder,
    make_decoder,
    product_of_experts,
    reparameterise,
    reparameterise_tril,
)
from modalign.nn.losses import distance_stress, imq_mmd, reconstruction_error
from modalign.nn.mlp import Autoencoder, hidden_width, mlp
from modalign.nn.transformer import (
    EarlyFusionTransformer,
    LateFusionTransformer,
    ModalityTokenEncoder,
    TokenEmbedding,
    TransformerOutput,
)

__all__ = [
    "AudioConvEncoder",
    "ImageConvEncoder",
    "MLPEncoder",
    "modality_encoder",
    "FUSIONS",
    "DECODERS",
    "BernoulliDecoder",
    "CategoricalDecoder",
    "FullGaussianEncoder",
    "GaussianDecoder",
    "GaussianEncoder",
    "LikelihoodDecoder",
    "make_decoder",
    "product_of_experts",
    "reparameterise",
    "reparameterise_tril",
    "Autoencoder",
    "Fusion",
    "LateFusion",
    "LowRankTensorFusion",
    "MultiplicativeInteraction",
    "TensorFusion",
    "hidden_width",
    "distance_stress",
    "imq_mmd",
    "make_fusion",
    "mlp",
    "reconstruction_error",
    "EarlyFusionTransformer",
    "LateFusionTransformer",
    "ModalityTokenEncoder",
    "TokenEmbedding",
    "TransformerOutput",
]
