"""Auto-Encoding Variational Bayes: the paper's networks and a builder from config.

Kingma & Welling (2014), appendix C: one-hidden-layer tanh MLPs; a Gaussian
encoder q(z|x) = N(mu(x), diag(sigma^2(x))); a Bernoulli decoder for binary
data; for real-valued data in [0, 1] (Frey Face) a Gaussian decoder whose means
pass through a sigmoid and whose per-pixel variances are output by the MLP.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
"""

from __future__ import annotations

from typing import Sequence

from tfvae import heads
from tfvae.config import ModelConfig
from tfvae.model import VAE
from tfvae.networks import ProbabilisticMLP


def gaussian_mlp_encoder(latent_dim: int, hidden_units: Sequence[int] = (500,), *,
                         activation: str = "tanh", init_stddev: float = 0.01,
                         weight_decay: float = 0.0) -> ProbabilisticMLP:
    """q(z|x) = N(mu(x), diag(sigma^2(x))), event shape `[latent_dim]` (eq. 9-10)."""
    head = heads.DiagonalGaussian((latent_dim,), init_stddev=init_stddev,
                                  weight_decay=weight_decay, name="posterior")
    return ProbabilisticMLP(head, hidden_units, activation, init_stddev, weight_decay,
                            name="encoder")


def bernoulli_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (500,),
                          *, activation: str = "tanh", init_stddev: float = 0.01,
                          weight_decay: float = 0.0) -> ProbabilisticMLP:
    """p(x|z) = prod Bernoulli(x_i; sigmoid(f_i(z))), event shape `event_shape` (C.1)."""
    head = heads.Bernoulli(event_shape, init_stddev=init_stddev,
                           weight_decay=weight_decay, name="likelihood")
    return ProbabilisticMLP(head, hidden_units, activation, init_stddev, weight_decay,
                            name="decoder")


def gaussian_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (200,),
                         *, activation: str = "tanh", init_stddev: float = 0.01,
                         weight_decay: float = 0.0) -> ProbabilisticMLP:
    """p(x|z) = N(sigmoid(mu(z)), diag(sigma^2(z))), event shape `event_shape` (C.2)."""
    head = heads.DiagonalGaussian(event_shape, mean_activation="sigmoid",
                                  init_stddev=init_stddev, weight_decay=weight_decay,
                                  name="likelihood")
    return ProbabilisticMLP(head, hidden_units, activation, init_stddev, weight_decay,
                            name="decoder")


DECODERS = {"bernoulli": bernoulli_mlp_decoder, "gaussian": gaussian_mlp_decoder}


def build_vae(config: ModelConfig, *, num_train: int | None = None,
              seed: int | None = None) -> VAE:
    """Builds the paper's VAE described by `config`.

    Args:
        config: Needs `event_shape` (the shape of one datapoint).
        num_train: Training set size N; with `config.weight_decay=None` it sets
            the paper's N(0, I) weight prior, L2 coefficient 1 / (2 N). Without
            it, no weight decay.
        seed: Seeds the weight initialisers and the noise of z.

    Returns:
        A compiled-ready `VAE`, built (its weights exist).
    """
    if config.event_shape is None:
        raise ValueError("ModelConfig.event_shape is unset: give the shape of one "
                         "datapoint, e.g. (28, 20) for Frey Face.")
    trunk = {"activation": config.activation, "init_stddev": config.init_stddev,
             "weight_decay": resolved_weight_decay(config, num_train)}
    if seed is not None:
        import keras
        keras.utils.set_random_seed(seed)
    encoder = gaussian_mlp_encoder(config.latent_dim, config.hidden_units, **trunk)
    decoder = DECODERS[config.likelihood](config.event_shape, config.hidden_units, **trunk)
    vae = VAE(encoder, decoder, objective=config.objective,
              num_samples=config.num_samples, kl_estimator=config.kl_estimator, seed=seed)
    vae.build((None,) + tuple(config.event_shape))
    return vae


def resolved_weight_decay(config: ModelConfig, num_train: int | None) -> float:
    """The L2 coefficient per datapoint: the config's, or 1 / (2 N) (the N(0, I) prior)."""
    if config.weight_decay is not None:
        return config.weight_decay
    return 0.5 / num_train if num_train else 0.0
