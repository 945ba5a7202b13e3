"""Builders: any VAE the config describes, from registered parts.

A network is a trunk (an MLP here) and a head; the encoder's head is the
posterior q(z|x), the decoder's the likelihood p(x|z), and the prior p(z) is a
layer of its own. The defaults are Kingma & Welling's (appendix C):
one-hidden-layer tanh MLPs, a diagonal-Gaussian posterior, N(0, I) prior.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfvae import hierarchical, likelihoods, objectives, posteriors, registry
from tfvae.config import ModelConfig, ObjectiveConfig
from tfvae.model import VAE
from tfvae.networks import (
    MLP,
    ConvolutionalDecoder,
    ConvolutionalEncoder,
    ProbabilisticNetwork,
    child_seed,
)
from tfvae.schedules import KLWeight


def mlp_network(
    head: keras.layers.Layer,
    hidden_units: Sequence[int] = (500,),
    *,
    activation: str = "tanh",
    init_stddev: float | None = 0.01,
    weight_decay: float = 0.0,
    seed: int | None = None,
    name: str | None = None,
) -> ProbabilisticNetwork:
    """An MLP trunk (seeded `child_seed(seed, 0)`) followed by `head`."""
    trunk = MLP(
        hidden_units, activation, init_stddev, weight_decay, child_seed(seed, 0), name="trunk"
    )
    return ProbabilisticNetwork(trunk, head, name=name)


def gaussian_mlp_encoder(
    latent_dim: int, hidden_units: Sequence[int] = (500,), *, seed: int | None = None, **trunk
) -> ProbabilisticNetwork:
    """The paper's encoder: q(z|x) = N(mu(x), diag(sigma^2(x))), event `[latent_dim]`."""
    head = posteriors.DiagonalGaussian(
        latent_dim, seed=child_seed(seed, 1), name="posterior", **_init(trunk)
    )
    return mlp_network(head, hidden_units, seed=seed, name="encoder", **trunk)


def bernoulli_mlp_decoder(
    event_shape: Sequence[int],
    hidden_units: Sequence[int] = (500,),
    *,
    seed: int | None = None,
    **trunk,
) -> ProbabilisticNetwork:
    """The paper's MNIST decoder: independent Bernoulli pixels, event `event_shape` (C.1)."""
    head = likelihoods.Bernoulli(
        event_shape, seed=child_seed(seed, 1), name="likelihood", **_init(trunk)
    )
    return mlp_network(head, hidden_units, seed=seed, name="decoder", **trunk)


def gaussian_mlp_decoder(
    event_shape: Sequence[int],
    hidden_units: Sequence[int] = (200,),
    *,
    seed: int | None = None,
    **trunk,
) -> ProbabilisticNetwork:
    """The paper's Frey Face decoder: N(sigmoid(mu(z)), diag(sigma^2(z))) (C.2)."""
    head = likelihoods.Gaussian(
        event_shape, seed=child_seed(seed, 1), name="likelihood", **_init(trunk)
    )
    return mlp_network(head, hidden_units, seed=seed, name="decoder", **trunk)


def _init(trunk: dict) -> dict:
    return {k: trunk[k] for k in ("init_stddev", "weight_decay") if k in trunk}


def build_objective(
    config: ObjectiveConfig, *, steps_per_epoch: int | None = None
) -> objectives.Objective:
    """The `tfvae.objectives.Objective` that `config` describes.

    Args:
        config: The objective's section of the model config.
        steps_per_epoch: Turns a warm-up in epochs into steps.

    Raises:
        ValueError: beta_tcvae without `dataset_size`, or a warm-up in epochs
            without `steps_per_epoch`.
    """
    kl_weight = KLWeight(
        beta=config.beta,
        warmup=config.warmup,
        warmup_steps=config.warmup_steps(steps_per_epoch),
        warmup_ratio=config.warmup_ratio,
    )
    common = {
        "kl_weight": kl_weight,
        "gradient_estimator": config.gradient_estimator,
        "baseline": config.baseline,
    }
    if config.name == "free_bits":
        return objectives.FreeBits(config.free_bits, **common)
    if config.name == "beta_tcvae":
        if config.dataset_size is None:
            raise ValueError(
                "beta_tcvae needs dataset_size, the number of training "
                "examples its q(z) averages over (training sets it from the "
                "data; in Python, ObjectiveConfig(dataset_size=N))."
            )
        return objectives.BetaTCVAE(
            config.dataset_size,
            config.mi_weight,
            config.tc_weight,
            config.dimension_kl_weight,
            config.tc_estimator,
            **common,
        )
    return objectives.OBJECTIVES[config.name](**common)


def build_vae(
    config: ModelConfig,
    *,
    num_train: int | None = None,
    seed: int | None = None,
    steps_per_epoch: int | None = None,
) -> VAE:
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
        raise ValueError(
            "ModelConfig.event_shape is unset: give the shape of one "
            "datapoint, e.g. (28, 20) for Frey Face."
        )
    if config.conditional and config.num_classes is None:
        raise ValueError(
            "A conditional ModelConfig needs num_classes (training sets it from the data's labels)."
        )
    init = {
        "init_stddev": config.init_stddev,
        "weight_decay": resolved_weight_decay(config, num_train),
    }
    encoder_seed, decoder_seed = child_seed(seed, 0), child_seed(seed, 1)
    conv = config.network.name == "conv"
    posterior, prior = _latent_parts(config, init, child_seed(encoder_seed, 1), child_seed(seed, 2))
    # A convolutional decoder ends in a feature map: its head projects per pixel.
    likelihood = registry.build(
        "likelihood",
        config.likelihood,
        config.event_shape,
        seed=child_seed(decoder_seed, 1),
        name="likelihood",
        **({"spatial": True} if conv else {}),
        **init,
    )
    encoder_trunk, decoder_trunk = _trunks(config, init["weight_decay"], encoder_seed, decoder_seed)
    if config.top_latent_dim:  # p(x|z1): the decoder reads the first layer only.
        decoder_trunk = hierarchical.FirstLatents(config.latent_dim, decoder_trunk, name="trunk")
    vae = VAE(
        ProbabilisticNetwork(encoder_trunk, posterior, name="encoder"),
        ProbabilisticNetwork(decoder_trunk, likelihood, name="decoder"),
        prior,
        objective=build_objective(config.objective, steps_per_epoch=steps_per_epoch),
        num_samples=config.num_samples,
        kl_estimator=config.kl_estimator,
        num_classes=config.num_classes if config.conditional else None,
        seed=seed,
    )
    vae.build((None,) + tuple(config.event_shape))
    return vae


def _latent_parts(config: ModelConfig, init: dict, posterior_seed, prior_seed):
    """q(z|x) and p(z): the registered parts, or with two stochastic layers
    (`top_latent_dim`) Burda et al.'s q(z1|x) q(z2|z1) and p(z2) p(z1|z2) over
    z = [z1, z2]."""
    if not config.top_latent_dim:
        return (
            registry.build(
                "posterior",
                config.posterior,
                (config.latent_dim,),
                seed=posterior_seed,
                name="posterior",
                **init,
            ),
            registry.build(
                "prior", config.prior, (config.latent_dim,), seed=prior_seed, name="prior"
            ),
        )
    size = config.latent_dim + config.top_latent_dim
    layers = {"top_latent_dim": config.top_latent_dim, "activation": config.activation, **init}
    return (
        hierarchical.TwoLayerPosterior(
            size,
            hidden_units=config.top_hidden_units,
            seed=posterior_seed,
            name="posterior",
            **layers,
        ),
        hierarchical.TwoLayerPrior(
            size,
            hidden_units=config.top_hidden_units[::-1],
            seed=prior_seed,
            name="prior",
            **layers,
        ),
    )


def two_layer_vae(
    event_shape: Sequence[int],
    latent_dims: tuple[int, int] = (100, 50),
    hidden_units: tuple[Sequence[int], Sequence[int]] = ((100, 100), (50, 50)),
    *,
    seed: int | None = None,
    **options,
) -> VAE:
    """Burda et al.'s two-stochastic-layer VAE with a Bernoulli p(x|z1), built.

    x -> hidden -> z1 -> top hidden -> z2 recognises; z2 -> top hidden reversed
    -> z1 -> hidden -> x generates (section 5: 100-100 and 50-50 tanh layers, z1
    of 100 and z2 of 50 units). The latent code is z = [z1, z2].

    Args:
        event_shape: Shape of one datapoint, e.g. (28, 28).
        latent_dims: (J1, J2).
        hidden_units: (between x and z1, between z1 and z2).
        seed: Seeds the initialisers and the noise of z.
        **options: Other `ModelConfig` fields (objective, num_samples,
            activation, init_stddev, weight_decay...); `iwae` with k = 5 unless given.
    """
    options = {"objective": "iwae", "num_samples": 5, "weight_decay": 0.0, **options}
    config = ModelConfig(
        latent_dim=latent_dims[0],
        top_latent_dim=latent_dims[1],
        hidden_units=tuple(hidden_units[0]),
        top_hidden_units=tuple(hidden_units[1]),
        event_shape=tuple(event_shape),
        **options,
    )
    return build_vae(config, seed=seed)


def _trunks(config: ModelConfig, weight_decay: float, encoder_seed, decoder_seed):
    """The encoder's and decoder's trunks (seeded `child_seed(network seed, 0)`)."""
    condition_size = config.num_classes if config.conditional else 0
    common = {
        "activation": config.activation,
        "weight_decay": weight_decay,
        "condition_size": condition_size,
    }
    if config.network.name == "mlp":
        return tuple(
            MLP(
                config.hidden_units,
                init_stddev=config.init_stddev,
                seed=child_seed(seed, 0),
                name="trunk",
                **common,
            )
            for seed in (encoder_seed, decoder_seed)
        )
    if len(config.event_shape) not in (2, 3):
        raise ValueError(
            f"network='conv' takes images [H, W] or [H, W, C], not data of "
            f"shape {tuple(config.event_shape)}: use --network mlp."
        )
    # The paper's N(0, 0.01^2) suits one tanh layer, not a convolution stack: the
    # trunks keep their own He / Glorot initialisers (see tfvae.networks).
    conv = {"kernel_size": config.network.kernel_size, **common}
    filters = config.network.conv_filters
    return (
        ConvolutionalEncoder(
            filters, config.hidden_units, seed=child_seed(encoder_seed, 0), name="trunk", **conv
        ),
        ConvolutionalDecoder(
            config.event_shape,
            filters[::-1],
            config.hidden_units,
            seed=child_seed(decoder_seed, 0),
            name="trunk",
            **conv,
        ),
    )


def resolved_weight_decay(config: ModelConfig, num_train: int | None) -> float:
    """The L2 coefficient per datapoint: the config's, or 1 / (2 N) (the N(0, I) prior)."""
    if config.weight_decay is not None:
        return config.weight_decay
    return 0.5 / num_train if num_train else 0.0
