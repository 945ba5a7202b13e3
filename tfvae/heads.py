"""Heads: parameter layers that turn features into `tfp.distributions`.

Each head owns the Dense layers that output a distribution's parameters and
returns an `Independent` distribution whose batch shape is the leading axis of
the features and whose event shape is the head's `event_shape`. The same
`DiagonalGaussian` head serves as the posterior q(z|x) (event `[latent_dim]`)
and as the Frey Face likelihood p(x|z) (event `[28, 20]`, sigmoid means).

Kingma & Welling (2014, appendix C.2) output a Gaussian's log-variance,
sigma = exp(log_var / 2). We depart from that: in float32 exp overflows to inf
once log_var > 177 and (TF flushes subnormals) underflows to 0 below -175, and
either end turns log p and its gradient into inf or NaN. Our Dense layer
outputs an unconstrained `raw` instead, and

    sigma = min_scale + softplus(raw + log(e - 1)).

Softplus grows only linearly, so sigma overflows no sooner than `raw` itself;
the floor `min_scale` keeps sigma away from 0, where log p is infinite and its
gradient NaN; the shift log(e - 1) = softplus^-1(1) keeps the initial sigma of
1 that the log-variance gave at raw = 0 (tiny initial weights). Every
log-density is computed from these parameters or from logits, never from
probabilities that could round to 0 or 1.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.networks import child_seed, dense

tfd = tfp.distributions


class _Head(keras.layers.Layer):
    """Shared plumbing: Dense parameter layers shaped to `[B, *event_shape]`."""

    parameter_names: tuple[str, ...] = ()

    def __init__(self, event_shape: Sequence[int], *, init_stddev: float = 0.01,
                 weight_decay: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(int(d) for d in event_shape)
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        size = math.prod(self.event_shape)
        self.parameter_layers = [
            dense(size, init_stddev=init_stddev, weight_decay=weight_decay,
                  seed=child_seed(seed, i), name=name)
            for i, name in enumerate(self.parameter_names)]

    def build(self, input_shape):
        for layer in self.parameter_layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def parameters_of(self, features) -> list[tf.Tensor]:
        """Returns one `[B, *event_shape]` tensor per name in `parameter_names`."""
        shape = tf.concat([tf.shape(features)[:-1], self.event_shape], axis=0)
        return [tf.reshape(layer(features), shape) for layer in self.parameter_layers]

    def get_config(self):
        return {**super().get_config(), "event_shape": self.event_shape,
                "init_stddev": self.init_stddev, "weight_decay": self.weight_decay,
                "seed": self.seed}


# softplus^-1(1): a raw output of 0 (about what tiny initial weights give)
# maps to scale 1 + min_scale, as exp(0 / 2) = 1 did with the log-variance.
_SOFTPLUS_INVERSE_OF_ONE = math.log(math.e - 1.0)


@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussian(_Head):
    """N(loc, diag(scale^2)) with loc and scale computed from the features.

    scale = min_scale + softplus(raw + log(e - 1)), with `raw` the output of the
    "scale" Dense layer: finite for any finite `raw` and never below
    `min_scale` (see the module docstring).

    Args:
        event_shape: Shape of one draw, e.g. `[latent_dim]` or `[28, 20]`.
        mean_activation: `None`, or `"sigmoid"` for data in [0, 1] (Frey Face).
        min_scale: Positive floor of every scale. A scale that collapses to 0
            makes log p infinite and its gradient NaN; the default 1e-4 is far
            below the noise of 8-bit images (1/255) yet keeps 1/scale^2 <= 1e8.

    Call arguments:
        features: `[B, F]` tensor.

    Returns:
        `tfd.Independent(tfd.Normal)`, batch shape `[B]`, event shape `event_shape`.
    """

    parameter_names = ("loc", "scale")

    def __init__(self, event_shape: Sequence[int], *, mean_activation: str | None = None,
                 min_scale: float = 1e-4, **kwargs):
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale}: a scale of 0 "
                             "makes log p infinite.")
        super().__init__(event_shape, **kwargs)
        self.mean_activation = mean_activation
        self.min_scale = float(min_scale)

    def call(self, features):
        loc, raw_scale = self.parameters_of(features)
        if self.mean_activation:
            loc = keras.activations.get(self.mean_activation)(loc)
        scale = self.min_scale + tf.nn.softplus(raw_scale + _SOFTPLUS_INVERSE_OF_ONE)
        return tfd.Independent(tfd.Normal(loc=loc, scale=scale),
                               reinterpreted_batch_ndims=len(self.event_shape))

    def get_config(self):
        return {**super().get_config(), "mean_activation": self.mean_activation,
                "min_scale": self.min_scale}

    @classmethod
    def from_config(cls, config):
        # Heads saved before softplus scales have no min_scale, and their "scale"
        # weights output a log-variance: read as softplus inputs they would load
        # without complaint and give wrong scales (a Frey Face ELBO of 850 became
        # -87804).
        if "min_scale" not in config:
            raise ValueError(
                f"DiagonalGaussian {config.get('name')!r} was saved with log-variance "
                "scales, which this version no longer reads; retrain the model.")
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="tfvae")
class Bernoulli(_Head):
    """Independent Bernoulli pixels with logits computed from the features.

    The distribution keeps the logits, so log p(x) = x l - softplus(l) stays
    finite with finite gradients however large |l| grows; the probability
    sigmoid(l) rounds to 1 in float32 once l > 17, and log(1 - p) to -inf.

    Call arguments:
        features: `[B, F]` tensor.

    Returns:
        `tfd.Independent(tfd.Bernoulli)` of float32 draws, batch shape `[B]`,
        event shape `event_shape`.
    """

    parameter_names = ("logits",)

    def call(self, features):
        (logits,) = self.parameters_of(features)
        return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32),
                               reinterpreted_batch_ndims=len(self.event_shape))
