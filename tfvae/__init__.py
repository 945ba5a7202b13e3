"""tfvae: variational autoencoders for Keras 3 with TensorFlow Probability.

Public API:
    VAE: the Keras model (any encoder/decoder that output distributions).
    Autoencoder: the plain autoencoder baseline.
    build_vae: the paper's networks from a `ModelConfig`.
    gaussian_mlp_encoder, bernoulli_mlp_decoder, gaussian_mlp_decoder.
    ModelConfig, DataConfig, TrainConfig, RunConfig.
    log_likelihood: importance-sampled log p(x) with standard errors.
"""

# Imported for its registration too: every .keras file tfvae writes loads after `import tfvae`.
from tfvae.autoencoder import Autoencoder
from tfvae.aevb import (bernoulli_mlp_decoder, build_vae, gaussian_mlp_decoder,
                        gaussian_mlp_encoder)
from tfvae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tfvae.evaluation import log_likelihood
from tfvae.model import VAE

__all__ = ["VAE", "Autoencoder", "build_vae", "gaussian_mlp_encoder", "bernoulli_mlp_decoder",
           "gaussian_mlp_decoder", "ModelConfig", "DataConfig", "TrainConfig", "RunConfig",
           "log_likelihood"]
__version__ = "0.2.0"
