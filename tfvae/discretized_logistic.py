"""The discretized logistic over n grey levels, as a TFP distribution.

x takes the levels k / (n - 1), k = 0..n-1 (8-bit pixels scaled to [0, 1]);
with h = 1 / (2 (n - 1)), a = (x + h - mu) / s and b = (x - h - mu) / s,

    P(x) = sigmoid(a) - sigmoid(b)             inner levels,
    P(0) = sigmoid(a),  P(1) = 1 - sigmoid(b)  (the tails),

so the n masses sum to 1 (Salimans et al. 2017). TFP has no such
distribution; `DiscretizedLogisticDistribution` is a small
`tfd.AutoCompositeTensorDistribution`, so that it crosses Keras and XLA
function boundaries like TFP's own. `tfvae.likelihoods.DiscretizedLogistic` is
the head that outputs it.

References:
    Salimans, Karpathy, Chen & Kingma (2017). PixelCNN++. ICLR.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    parameter_properties,
    reparameterization,
    samplers,
)

tfd = tfp.distributions


def machine_epsilon(x: tf.Tensor) -> float:
    """The machine epsilon of x's dtype."""
    return float(np.finfo(x.dtype.as_numpy_dtype).eps)


def discretized_logistic_log_prob(x, loc, scale, num_bins: int) -> tf.Tensor:
    """log P(x) of the discretized logistic, elementwise (see the module docstring).

    Args:
        x: Levels k / (num_bins - 1), broadcastable with loc and scale. Not
            snapped to the grid (`tfvae.data_checks` checks the data): an x off
            it is scored as the bin of width 1 / (n - 1) centred on it.
        loc, scale: The logistic's location and (positive) scale.
        num_bins: Number of levels n >= 2.

    Not for LiteRT: its expm1 would become exp - 1 there (log_prob is not
    among the on-device signatures).
    """
    x = tf.convert_to_tensor(x, loc.dtype)
    half_bin = tf.constant(0.5 / (num_bins - 1), loc.dtype)
    upper = (x - loc + half_bin) / scale
    lower = (x - loc - half_bin) / scale
    log_cdf_upper = -tf.nn.softplus(-upper)  # log sigmoid(a)
    log_sf_lower = -tf.nn.softplus(lower)  # log (1 - sigmoid(b))
    width = tf.constant(1.0 / (num_bins - 1), loc.dtype) / scale  # a - b, exactly
    log_one_minus = tf.math.log(-tf.math.expm1(-width))  # log(1 - e^-(a - b))
    inner = log_cdf_upper + log_sf_lower + log_one_minus
    return tf.where(x < half_bin, log_cdf_upper, tf.where(x > 1 - half_bin, log_sf_lower, inner))


def discretized_logistic_mean(loc, scale, num_bins: int) -> tf.Tensor:
    """E[x] = sum_{k=1}^{n-1} P(x >= k / (n - 1)) / (n - 1), elementwise.

    Exact, with a `[..., n - 1]` intermediate (the tail mass above each inner
    bin edge): sigmoid and a sum, both LiteRT builtins.
    """
    edges = tf.constant((np.arange(1, num_bins) - 0.5) / (num_bins - 1), loc.dtype)
    tails = tf.sigmoid((loc[..., tf.newaxis] - edges) / scale[..., tf.newaxis])
    return tf.reduce_sum(tails, axis=-1) / tf.constant(num_bins - 1, loc.dtype)


def discretized_logistic_draw(loc, scale, u, num_bins: int) -> tf.Tensor:
    """The level nearest the logistic draw loc + scale logit(u), clipped to [0, 1]."""
    eps = machine_epsilon(loc)
    # U(0, 1) generators can return exactly 0, where logit(u) is -inf.
    u = tf.minimum(tf.maximum(u, tf.constant(eps, loc.dtype)), tf.constant(1 - eps, loc.dtype))
    y = loc + scale * (tf.math.log(u) - tf.math.log(1 - u))
    top = tf.constant(num_bins - 1, loc.dtype)
    # floor(v + 1/2) is round-to-nearest with builtins only.
    level = tf.floor(y * top + tf.constant(0.5, loc.dtype))
    level = tf.minimum(tf.maximum(level, tf.zeros_like(level)), top)
    return level / top


class DiscretizedLogisticDistribution(tfd.AutoCompositeTensorDistribution):
    """A logistic rounded to the levels k / (n - 1), tails in the end levels.

    Batch shape: that of `loc` and `scale` broadcast; event shape `[]`.

    Args:
        loc: Location, float tensor.
        scale: Positive scale, float tensor of the same dtype.
        num_bins: Number of levels n >= 2 (256 for 8-bit images).
    """

    def __init__(
        self,
        loc,
        scale,
        num_bins: int = 256,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "DiscretizedLogistic",
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc, name="loc")
            self._scale = tf.convert_to_tensor(scale, dtype=self._loc.dtype, name="scale")
            self._num_bins = int(num_bins)
            super().__init__(
                dtype=self._loc.dtype,
                reparameterization_type=reparameterization.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {
            "loc": parameter_properties.ParameterProperties(),
            "scale": parameter_properties.ParameterProperties(),
        }

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    @property
    def num_bins(self) -> int:
        return self._num_bins

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _log_prob(self, x):
        return discretized_logistic_log_prob(x, self._loc, self._scale, self._num_bins)

    def _mean(self):
        loc, scale = self._loc, self._scale
        shape = tf.broadcast_dynamic_shape(tf.shape(loc), tf.shape(scale))
        return discretized_logistic_mean(
            tf.broadcast_to(loc, shape), tf.broadcast_to(scale, shape), self._num_bins
        )

    def _sample_n(self, n, seed=None):
        shape = tf.concat([[n], self._batch_shape_tensor()], axis=0)
        u = samplers.uniform(shape, seed=seed, dtype=self.dtype)
        return discretized_logistic_draw(self._loc, self._scale, u, self._num_bins)
