"""Heads: parameter layers that turn features into `tfp.distributions`.

Each head owns the Dense layers that output a distribution's parameters and
returns an `Independent` distribution whose batch shape is the leading axis of
the features and whose event shape is the head's `event_shape`. The same
`DiagonalGaussian` head serves as the posterior q(z|x) (event `[latent_dim]`)
and as the Frey Face likelihood p(x|z) (event `[28, 20]`, sigmoid means).

Following Kingma & Welling (2014, appendix C.2), Gaussians are parameterised by
their mean and log-variance, sigma = exp(log_var / 2).

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


@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussian(_Head):
    """N(loc, diag(scale^2)) with loc and log-variance computed from the features.

    Args:
        event_shape: Shape of one draw, e.g. `[latent_dim]` or `[28, 20]`.
        mean_activation: `None`, or `"sigmoid"` for data in [0, 1] (Frey Face).

    Call arguments:
        features: `[B, F]` tensor.

    Returns:
        `tfd.Independent(tfd.Normal)`, batch shape `[B]`, event shape `event_shape`.
    """

    parameter_names = ("loc", "log_variance")

    def __init__(self, event_shape: Sequence[int], *, mean_activation: str | None = None,
                 **kwargs):
        super().__init__(event_shape, **kwargs)
        self.mean_activation = mean_activation

    def call(self, features):
        loc, log_variance = self.parameters_of(features)
        if self.mean_activation:
            loc = keras.activations.get(self.mean_activation)(loc)
        return tfd.Independent(
            tfd.Normal(loc=loc, scale=tf.exp(0.5 * log_variance)),
            reinterpreted_batch_ndims=len(self.event_shape))

    def get_config(self):
        return {**super().get_config(), "mean_activation": self.mean_activation}


@keras.saving.register_keras_serializable(package="tfvae")
class Bernoulli(_Head):
    """Independent Bernoulli pixels with logits computed from the features.

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
