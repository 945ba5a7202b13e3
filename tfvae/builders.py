"""Builders: any VAE the config describes, from registered parts.

A network is a trunk (an MLP here) and a head; the encoder's head is the
posterior q(z|x), the decoder's the likelihood p(x|z), and the prior p(z) is a
layer of its own. The defaults are Kingma & Welling's (appendix C):
one-hidden-layer tanh MLPs, a diagonal-Gaussian posterior, N(0, I) prior.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfvae import likelihoods, objectives, posteriors, registry
from tfvae.config import ModelConfig, ObjectiveConfig
from tfvae.model import VAE
from tfvae.schedules import KLWeight
from tfvae.networks import MLP, ProbabilisticNetwork, child_seed


def mlp_network(head: keras.layers.Layer, hidden_units: Sequence[int] = (500,), *,
                activation: str = "tanh", init_stddev: float = 0.01,
                weight_decay: float = 0.0, seed: int | None = None,
                name: str | None = None) -> ProbabilisticNetwork:
    """An MLP trunk (seeded `child_seed(seed, 0)`) followed by `head`."""
    trunk = MLP(hidden_units, activation, init_stddev, weight_decay, child_seed(seed, 0),
                name="trunk")
    return ProbabilisticNetwork(trunk, head, name=name)


def gaussian_mlp_encoder(latent_dim: int, hidden_units: Sequence[int] = (500,), *,
                         seed: int | None = None, **trunk) -> ProbabilisticNetwork:
    """The paper's encoder: q(z|x) = N(mu(x), diag(sigma^2(x))), event `[latent_dim]`."""
    head = posteriors.DiagonalGaussian(latent_dim, seed=child_seed(seed, 1), name="posterior",
                                       **_init(trunk))
    return mlp_network(head, hidden_units, seed=seed, name="encoder", **trunk)


def bernoulli_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (500,), *,
                          seed: int | None = None, **trunk) -> ProbabilisticNetwork:
    """The paper's MNIST decoder: independent Bernoulli pixels, event `event_shape` (C.1)."""
    head = likelihoods.Bernoulli(event_shape, seed=child_seed(seed, 1), name="likelihood",
                                 **_init(trunk))
    return mlp_network(head, hidden_units, seed=seed, name="decoder", **trunk)


def gaussian_mlp_decoder(event_shape: Sequence[int], hidden_units: Sequence[int] = (200,), *,
                         seed: int | None = None, **trunk) -> ProbabilisticNetwork:
    """The paper's Frey Face decoder: N(sigmoid(mu(z)), diag(sigma^2(z))) (C.2)."""
    head = likelihoods.Gaussian(event_shape, seed=child_seed(seed, 1), name="likelihood",
                                **_init(trunk))
    return mlp_network(head, hidden_units, seed=seed, name="decoder", **trunk)


def _init(trunk: dict) -> dict:
    return {k: trunk[k] for k in ("init_stddev", "weight_decay") if k in trunk}


def build_objective(config: ObjectiveConfig, *,
                    steps_per_epoch: int | None = None) -> objectives.Objective:
    """The `tfvae.objectives.Objective` that `config` describes.

    Args:
        config: The objective's section of the model config.
        steps_per_epoch: Turns a warm-up in epochs into steps.

    Raises:
        ValueError: beta_tcvae without `dataset_size`, or a warm-up in epochs
            without `steps_per_epoch`.
    """
    kl_weight = KLWeight(beta=config.beta, warmup=config.warmup,
                         warmup_steps=config.warmup_steps(steps_per_epoch),
                         warmup_ratio=config.warmup_ratio)
    common = {"kl_weight": kl_weight, "gradient_estimator": config.gradient_estimator,
              "baseline": config.baseline}
    if config.name == "free_bits":
        return objectives.FreeBits(config.free_bits, **common)
    if config.name == "beta_tcvae":
        if config.dataset_size is None:
            raise ValueError("beta_tcvae needs dataset_size, the number of training "
                             "examples its q(z) averages over (training sets it from the "
                             "data; in Python, ObjectiveConfig(dataset_size=N)).")
        return objectives.BetaTCVAE(config.dataset_size, config.mi_weight, config.tc_weight,
                                    config.dimension_kl_weight, config.tc_estimator,
                                    **common)
    return objectives.OBJECTIVES[config.name](**common)


def build_vae(config: ModelConfig, *, num_train: int | None = None,
              seed: int | None = None, steps_per_epoch: int | None = None) -> VAE:
    """Builds the VAE that `config` describes: its likelihood, posterior and prior.

    Args:
        config: Needs `event_shape` (the shape of one datapoint).
        num_train: Training set size N; with `config.weight_decay=None` it sets
            the paper's N(0, I) weight prior, L2 coefficient 1 / (2 N). Without
            it, no weight decay.
        seed: Seeds the weight initialisers and the noise of z.
        steps_per_epoch: Turns a KL warm-up given in epochs into steps.

    Returns:
        A `VAE`, built (its weights exist), ready to compile.
    """
    if config.event_shape is None:
        raise ValueError("ModelConfig.event_shape is unset: give the shape of one "
                         "datapoint, e.g. (28, 20) for Frey Face.")
    init = {"init_stddev": config.init_stddev,
            "weight_decay": resolved_weight_decay(config, num_train)}
    trunk = {"activation": config.activation, **init}
    encoder_seed, decoder_seed = child_seed(seed, 0), child_seed(seed, 1)
    posterior = registry.build("posterior", config.posterior, (config.latent_dim,),
                               seed=child_seed(encoder_seed, 1), name="posterior", **init)
    likelihood = registry.build("likelihood", config.likelihood, config.event_shape,
                                seed=child_seed(decoder_seed, 1), name="likelihood", **init)
    prior = registry.build("prior", config.prior, (config.latent_dim,),
                           seed=child_seed(seed, 2), name="prior")
    vae = VAE(mlp_network(posterior, config.hidden_units, seed=encoder_seed,
                          name="encoder", **trunk),
              mlp_network(likelihood, config.hidden_units, seed=decoder_seed,
                          name="decoder", **trunk),
              prior, objective=build_objective(config.objective, steps_per_epoch=steps_per_epoch),
              num_samples=config.num_samples,
              kl_estimator=config.kl_estimator, seed=seed)
    vae.build((None,) + tuple(config.event_shape))
    return vae


def resolved_weight_decay(config: ModelConfig, num_train: int | None) -> float:
    """The L2 coefficient per datapoint: the config's, or 1 / (2 N) (the N(0, I) prior)."""
    if config.weight_decay is not None:
        return config.weight_decay
    return 0.5 / num_train if num_train else 0.0
