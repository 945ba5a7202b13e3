"""Auto-Encoding Variational Bayes: the paper's networks and a builder from config.

Kingma & Welling (2014), appendix C: one-hidden-layer tanh MLPs; a Gaussian
encoder q(z|x) = N(mu(x), diag(sigma^2(x))); a Bernoulli decoder for binary
data; for real-valued data in [0, 1] (Frey Face) a Gaussian decoder whose means
pass through a sigmoid and whose per-pixel variances are output by the MLP.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
"""

from __future__ import annotations

import functools
from typing import Sequence

from tfvae import heads
from tfvae.config import ModelConfig
from tfvae.model import VAE
from tfvae.networks import ProbabilisticMLP, child_seed


def gaussian_mlp_encoder(latent_dim: int, hidden_units: Sequence[int] = (500,), *,
                         activation: str = "tanh", init_stddev: float = 0.01,
                         weight_decay: float = 0.0, seed: int | None = None) -> ProbabilisticMLP:
    """q(z|x) = N(mu(x), diag(sigma^2(x))), event shape `[latent_dim]` (eq. 9-10)."""
    head = functools.partial(heads.DiagonalGaussian, (latent_dim,), name="posterior")
    return _network(head, hidden_units, "encoder", activation, init_stddev, weight_decay, seed)


def bernoulli_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (500,),
                          *, activation: str = "tanh", init_stddev: float = 0.01,
                          weight_decay: float = 0.0, seed: int | None = None) -> ProbabilisticMLP:
    """p(x|z) = prod Bernoulli(x_i; sigmoid(f_i(z))), event shape `event_shape` (C.1)."""
    head = functools.partial(heads.Bernoulli, event_shape, name="likelihood")
    return _network(head, hidden_units, "decoder", activation, init_stddev, weight_decay, seed)


def gaussian_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (200,),
                         *, activation: str = "tanh", init_stddev: float = 0.01,
                         weight_decay: float = 0.0, seed: int | None = None) -> ProbabilisticMLP:
    """p(x|z) = N(sigmoid(mu(z)), diag(sigma^2(z))), event shape `event_shape` (C.2)."""
    head = functools.partial(heads.DiagonalGaussian, event_shape, mean_activation="sigmoid",
                             name="likelihood")
    return _network(head, hidden_units, "decoder", activation, init_stddev, weight_decay, seed)


def _network(make_head, hidden_units, name, activation, init_stddev, weight_decay, seed):
    """A tanh MLP trunk and the head `make_head` builds, seeded apart."""
    head = make_head(init_stddev=init_stddev, weight_decay=weight_decay,
                     seed=child_seed(seed, 1))
    return ProbabilisticMLP(head, hidden_units, activation, init_stddev, weight_decay,
                            child_seed(seed, 0), name=name)


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
    encoder = gaussian_mlp_encoder(config.latent_dim, config.hidden_units,
                                   seed=child_seed(seed, 0), **trunk)
    decoder = DECODERS[config.likelihood](config.event_shape, config.hidden_units,
                                          seed=child_seed(seed, 1), **trunk)
    vae = VAE(encoder, decoder, objective=config.objective,
              num_samples=config.num_samples, kl_estimator=config.kl_estimator, seed=seed)
    vae.build((None,) + tuple(config.event_shape))
    return vae


def resolved_weight_decay(config: ModelConfig, num_train: int | None) -> float:
    """The L2 coefficient per datapoint: the config's, or 1 / (2 N) (the N(0, I) prior)."""
    if config.weight_decay is not None:
        return config.weight_decay
    return 0.5 / num_train if num_train else 0.0
