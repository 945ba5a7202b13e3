"""tfvae: variational autoencoders for Keras 3 with TensorFlow Probability.

Public API:
    VAE: the Keras model (any encoder/decoder that output distributions).
    build_vae: any likelihood x posterior x prior from a `ModelConfig`.
    mlp_network: an MLP trunk and a part head (an encoder or a decoder);
    gaussian_mlp_encoder, bernoulli_mlp_decoder, gaussian_mlp_decoder: the paper's.
    two_layer_vae: Burda et al.'s two stochastic layers.
    likelihoods, posteriors, flows, priors, hierarchical: the parts.
    objectives: ELBO (beta, warm-up, score function), IWAE, FreeBits, BetaTCVAE.
    ModelConfig (LikelihoodConfig, PosteriorConfig, PriorConfig), DataConfig,
    TrainConfig, RunConfig.
    log_likelihood: importance-sampled log p(x) with standard errors.
"""

# First, so that TensorFlow loads without its start-up notes (tfvae/startup.py).
from tfvae import startup

startup.import_tensorflow()

# The part modules are imported for their registration too: every .keras file
# tfvae writes loads after `import tfvae`.
from tfvae import flows, hierarchical, likelihoods, objectives, posteriors, priors
from tfvae.builders import (
    bernoulli_mlp_decoder,
    build_vae,
    gaussian_mlp_decoder,
    gaussian_mlp_encoder,
    mlp_network,
    two_layer_vae,
)
from tfvae.config import (
    DataConfig,
    LikelihoodConfig,
    ModelConfig,
    PosteriorConfig,
    PriorConfig,
    RunConfig,
    TrainConfig,
)
from tfvae.evaluation import log_likelihood
from tfvae.model import VAE

__all__ = [
    "VAE",
    "build_vae",
    "mlp_network",
    "gaussian_mlp_encoder",
    "bernoulli_mlp_decoder",
    "gaussian_mlp_decoder",
    "two_layer_vae",
    "likelihoods",
    "posteriors",
    "flows",
    "priors",
    "hierarchical",
    "objectives",
    "ModelConfig",
    "LikelihoodConfig",
    "PosteriorConfig",
    "PriorConfig",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "log_likelihood",
]
__version__ = "0.4.0"
