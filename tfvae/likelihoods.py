"""Likelihoods p(x|z): heads that map decoder features to a distribution over x.

Every head here implements `tfvae.parts.Head` and factorizes over the pixels,
p(x|z) = prod_i p(x_i | theta_i(z)), so `log_prob` is a sum over the event of
`elementwise_log_prob`. With l a logit, mu a location and s a scale:

Bernoulli (binary pixels; Kingma & Welling 2014, appendix C.1):
    log p(x) = x l - softplus(l), mean sigmoid(l).
Gaussian (real pixels; appendix C.2, the Frey Face model):
    log p(x) = -(x - mu)^2 / (2 s^2) - log s - log(2 pi) / 2, s from
    `tfvae.parts.positive_scale` (see `tfvae.posteriors` for why not exp).
Continuous Bernoulli (pixels in [0, 1]; Loaiza-Ganem & Cunningham 2019):
    p(x) = C(lambda) lambda^x (1 - lambda)^(1 - x), lambda = sigmoid(l),
    C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2), C(1/2) = 2.
    Mean 1 / (1 - e^-l) - 1 / l; CDF F(x) = (e^(l x) - 1) / (e^l - 1), so a
    draw is F^-1(u) = log(1 + u (e^l - 1)) / l with u ~ U(0, 1).
Discretized logistic (8-bit pixels scaled to [0, 1]; Salimans et al. 2017):
    x takes the levels k / (n - 1), k = 0..n-1; with h = 1 / (2 (n - 1)),
    a = (x + h - mu) / s and b = (x - h - mu) / s,
        P(x) = sigmoid(a) - sigmoid(b)          inner levels,
        P(0) = sigmoid(a),  P(1) = 1 - sigmoid(b)  (the tails),
    so the n masses sum to 1. The identity
        sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^-(a - b))
    makes log P a sum of three non-positive terms, each accurate to rounding,
    with a - b = 1 / ((n - 1) s) computed directly: no difference of CDFs that
    rounds to 0, so none of PixelCNN++'s fallback to log-density + log-width.

`bits_per_dimension` turns a log-probability in nats per image into the unit
image-model papers report.

`mean` and `draw` run on phones (LiteRT builtins only), and the LiteRT
converter of TF 2.21 lowers expm1(x) to exp(x) - 1 and log1p(x) to log(1 + x),
which lose every digit for small x (measured: expm1(1e-7) gave 1.19e-7). So
their closed forms are written with exp and log, and switch to a truncated
series where those lose accuracy.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Loaiza-Ganem & Cunningham (2019). The continuous Bernoulli: fixing a
        pervasive error in variational autoencoders. NeurIPS.
    Salimans, Karpathy, Chen & Kingma (2017). PixelCNN++: Improving the
        PixelCNN with discretized logistic mixture likelihood and other
        modifications. ICLR.
    Tomczak & Welling (2018). VAE with a VampPrior. AISTATS (the discretized
        logistic on Frey Face).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.discretized_logistic import (
    DiscretizedLogisticDistribution,
    discretized_logistic_draw,
    discretized_logistic_log_prob,
    discretized_logistic_mean,
)
from tfvae.discretized_logistic import machine_epsilon as _eps
from tfvae.parts import Head, independent, positive_scale

tfd = tfp.distributions

SCALE_MODES = ("network", "per_pixel", "global", "fixed")
MEAN_ACTIVATIONS = ("sigmoid", None)


def _series_cutoff(x: tf.Tensor, coefficient: float, power: int) -> float:
    """|l| where a closed form's rounding error eps / |l|^k equals a series'
    truncation error `coefficient` |l|^m, with `power` = k + m."""
    return (_eps(x) / coefficient) ** (1.0 / power)


@keras.saving.register_keras_serializable(package="tfvae")
class Bernoulli(Head):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(logits_i)), for binary pixels.

    log p(x) = x l - softplus(l) is computed from the logits, finite with finite
    gradients however large |l| grows (sigmoid(l) rounds to 1 in float32 once
    l > 17, and log(1 - p) to -inf). It holds for any x in [0, 1], so grey
    images can be scored too (as many VAE papers do), though it is then no
    normalized density.

    Args:
        event_shape: Shape of x, e.g. `[28, 28]`.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `logits` `[B, *event_shape]`.
    Noise: `uniform_noise` ~ U(0, 1) `[B, *event_shape]`; x = 1 where u < sigmoid(l).
    """

    parameter_names = ("logits",)
    is_discrete = True
    support = "binary"

    def pixels(self, parameters) -> tfd.Distribution:
        """The per-pixel distribution: batch shape `[B, *event_shape]`, event `[]`."""
        logits = parameters["logits"]
        return tfd.Bernoulli(logits=logits, dtype=logits.dtype)

    def distribution(self, parameters):
        return independent(self.pixels(parameters), self.event_shape)

    def mean(self, parameters):
        return tf.sigmoid(parameters["logits"])

    def noise_spec(self):
        return {"uniform_noise": ("uniform", self.event_shape)}

    def draw(self, parameters, noise):
        logits = parameters["logits"]
        # Typed constants: the result is a float image, not a bool tensor.
        return tf.where(
            noise["uniform_noise"] < tf.sigmoid(logits),
            tf.constant(1, logits.dtype),
            tf.constant(0, logits.dtype),
        )

    def elementwise_log_prob(self, parameters, x):
        # x l - softplus(l) as (x - b) l - softplus(-s l), b = [x >= 1/2], s = 2 b - 1:
        # for binary x the second term alone, exact where x l and softplus(l) nearly
        # cancel (x = 1, l > 17), as TFP's -(1 - x) softplus(l) - x softplus(-l) is,
        # with one softplus instead of two (it is most of the cost of the importance-
        # sampled likelihood: benchmarks/log_likelihood_speed.py).
        logits = parameters["logits"]
        x = tf.cast(x, logits.dtype)
        b = tf.cast(x >= 0.5, logits.dtype)
        return (x - b) * logits - tf.nn.softplus((1.0 - 2.0 * b) * logits)


@keras.saving.register_keras_serializable(package="tfvae")
class Gaussian(Head):
    """p(x|z) = prod_i N(x_i; loc_i, scale_i^2), for real-valued pixels.

    Args:
        event_shape: Shape of x, e.g. `[28, 20]`.
        scale: Where the scales come from:
            `"network"`: a Dense output per pixel, a function of z (Kingma &
                Welling's Frey Face model, appendix C.2);
            `"per_pixel"`: one learned weight per pixel, independent of z;
            `"global"`: one learned scalar shared by every pixel;
            `"fixed"`: the constant `fixed_scale`, not learned.
            Learned scales are `min_scale + softplus(raw + log(e - 1))`, 1 at raw = 0.
        fixed_scale: The scale of `scale="fixed"` (positive).
        mean_activation: `"sigmoid"` (data in [0, 1], the paper's) or `None`
            (identity, for unbounded data).
        min_scale: Positive floor of every learned scale: a scale collapsing to
            0 on a constant pixel makes log p infinite; 1e-4 is far below the
            1/255 step of 8-bit images yet keeps 1/scale^2 <= 1e8.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `loc` and `scale`, each `[B, *event_shape]` (a shared scale is
        broadcast).
    Noise: `normal_noise` ~ N(0, 1) `[B, *event_shape]`; x = loc + scale * n.
    """

    parameter_names = ("loc", "scale")

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        scale: str = "network",
        fixed_scale: float = 1.0,
        mean_activation: str | None = "sigmoid",
        min_scale: float = 1e-4,
        **kwargs,
    ):
        if scale not in SCALE_MODES:
            raise ValueError(f"scale must be one of {SCALE_MODES}, got {scale!r}.")
        if mean_activation not in MEAN_ACTIVATIONS:
            raise ValueError(
                f"mean_activation must be 'sigmoid' (data in [0, 1]) or None "
                f"(the identity, for unbounded data), got {mean_activation!r}."
            )
        if not min_scale > 0:
            raise ValueError(
                f"min_scale must be positive, got {min_scale}: a scale of 0 makes log p infinite."
            )
        if not 0 < fixed_scale < math.inf:
            raise ValueError(f"fixed_scale must be positive and finite, got {fixed_scale}.")
        # Before Head.__init__, which asks raw_shapes() which Dense layers to make.
        self.scale = scale
        super().__init__(event_shape, **kwargs)
        self.fixed_scale = float(fixed_scale)
        self.mean_activation = mean_activation
        self.min_scale = float(min_scale)

    def raw_shapes(self):
        if self.scale == "network":
            return {"loc": self.event_shape, "scale": self.event_shape}
        return {"loc": self.event_shape}

    def build(self, input_shape):
        # Raw 0 starts every learned scale at 1 + min_scale, as the network's
        # near-zero initial outputs do.
        if self.scale in ("per_pixel", "global"):
            shape = self.event_shape if self.scale == "per_pixel" else ()
            self.raw_scale = self.add_weight(
                shape=shape, initializer="zeros", trainable=True, name="raw_scale"
            )
        super().build(input_shape)

    def constrain(self, raw):
        loc = raw["loc"]
        if self.mean_activation == "sigmoid":
            loc = tf.sigmoid(loc)
        if self.scale == "network":
            scale = positive_scale(raw["scale"], self.min_scale)
        elif self.scale == "fixed":
            scale = tf.fill(tf.shape(loc), tf.constant(self.fixed_scale, loc.dtype))
        else:
            shared = positive_scale(tf.cast(self.raw_scale, loc.dtype), self.min_scale)
            scale = tf.broadcast_to(shared, tf.shape(loc))
        return {"loc": loc, "scale": scale}

    def pixels(self, parameters) -> tfd.Distribution:
        return tfd.Normal(parameters["loc"], parameters["scale"])

    def distribution(self, parameters):
        return independent(self.pixels(parameters), self.event_shape)

    def mean(self, parameters):
        return parameters["loc"]

    def noise_spec(self):
        return {"normal_noise": ("normal", self.event_shape)}

    def draw(self, parameters, noise):
        return parameters["loc"] + parameters["scale"] * noise["normal_noise"]

    def elementwise_log_prob(self, parameters, x):
        return self.pixels(parameters).log_prob(x)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "fixed_scale": self.fixed_scale,
            "mean_activation": self.mean_activation,
            "min_scale": self.min_scale,
        }


def continuous_bernoulli_mean(logits: tf.Tensor) -> tf.Tensor:
    """E[x] = 1 / (1 - e^-l) - 1 / l of the continuous Bernoulli, any shape.

    With t = |l|, g(t) = 1 / t - 1 / (e^t - 1) is the mean at l = -t, and the
    mean at l = t is 1 - g(t) (x -> 1 - x flips the sign of l). Below the cutoff
    the closed form loses eps / (2 t^2) to cancellation and the Taylor series
    g = 1/2 - t/12 + t^3/720 - t^5/30240 (next term t^7/1209600) is used.
    """
    t = tf.abs(logits)
    near_zero = t < _series_cutoff(logits, 2.0 / 1209600.0, 9)
    safe_t = tf.where(near_zero, tf.ones_like(t), t)
    # exp(-t) never overflows; e^-t / (1 - e^-t) = 1 / (e^t - 1).
    q = tf.exp(-safe_t)
    closed_form = 1 / safe_t - q / (1 - q)
    # The series only where it is used: t^2 of a huge t is inf, and inf in an
    # unselected branch still makes tf.where's gradient NaN.
    small_t = tf.where(near_zero, t, tf.zeros_like(t))
    t2 = small_t * small_t
    series = 0.5 - small_t / 12 * (1 - t2 / 60 * (1 - t2 / 42))
    lower = tf.where(near_zero, series, closed_form)
    return tf.where(logits < 0, lower, 1 - lower)


def continuous_bernoulli_draw(logits: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """F^-1(u) = log(1 + u (e^l - 1)) / l, elementwise, with exp and log only.

    With t = |l| and q = e^-t (which never overflows) the quantile is
        -log((1 - u) + u q) / t         for l < 0,
        1 + log(q + u (1 - q)) / t      for l > 0,
    each argument a sum of non-negative terms, so rounding costs about eps / t.
    For small t the Taylor series in l is used instead:
        u + l u (1 - u) / 2 (1 + l (1 - 2u) / 3 + l^2 (1 - 6 u (1 - u)) / 12),
    whose next term is at most 1.1e-3 |l|^4. F^-1(0) = 0 and F^-1(1) = 1 exactly
    (log 0 = -inf, then clipped).
    """
    t = tf.abs(logits)
    near_zero = t < _series_cutoff(logits, 1.1e-3, 5)
    safe_t = tf.where(near_zero, tf.ones_like(t), t)
    q = tf.exp(-safe_t)
    closed_form = tf.where(
        logits < 0,
        -tf.math.log((1 - u) + u * q) / safe_t,
        1 + tf.math.log(q + u * (1 - q)) / safe_t,
    )
    small = tf.where(near_zero, logits, tf.zeros_like(logits))  # As in the mean.
    w = u * (1 - u)
    series = u + small * w / 2 * (1 + small * (1 - 2 * u) / 3 + small * small * (1 - 6 * w) / 12)
    x = tf.where(near_zero, series, closed_form)
    return tf.minimum(tf.maximum(x, tf.zeros_like(x)), tf.ones_like(x))


@keras.saving.register_keras_serializable(package="tfvae")
class ContinuousBernoulli(Head):
    """p(x|z) = prod_i CB(x_i; logits_i), the normalized density on [0, 1] that
    the Bernoulli's x l - softplus(l) is not (Loaiza-Ganem & Cunningham 2019).

    Args:
        event_shape: Shape of x, e.g. `[28, 28]`.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `logits` `[B, *event_shape]`.
    Noise: `uniform_noise` ~ U(0, 1) `[B, *event_shape]`; x = F^-1(u).
    """

    parameter_names = ("logits",)
    support = "unit_interval"

    def pixels(self, parameters) -> tfd.Distribution:
        logits = parameters["logits"]
        # TFP's dtype defaults to float32 whatever the logits' dtype. Its log_prob
        # has finite gradients up to |l| ~ 1e19 in float32 (its series squares
        # the logits in an unselected branch, inf beyond that).
        return tfd.ContinuousBernoulli(logits=logits, dtype=logits.dtype)

    def distribution(self, parameters):
        return independent(self.pixels(parameters), self.event_shape)

    def mean(self, parameters):
        return continuous_bernoulli_mean(parameters["logits"])

    def noise_spec(self):
        return {"uniform_noise": ("uniform", self.event_shape)}

    def draw(self, parameters, noise):
        return continuous_bernoulli_draw(parameters["logits"], noise["uniform_noise"])

    def elementwise_log_prob(self, parameters, x):
        return self.pixels(parameters).log_prob(x)


@keras.saving.register_keras_serializable(package="tfvae")
class DiscretizedLogistic(Head):
    """p(x|z) = prod_i DL(x_i; loc_i, scale_i) over `num_bins` grey levels in [0, 1]
    (the VampPrior paper's Frey Face likelihood; Salimans et al. 2017).

    `log_prob` is a log-probability in nats per image; `bits_per_dimension`
    converts it.

    Args:
        event_shape: Shape of x, e.g. `[28, 20]`.
        num_bins: Number of levels n >= 2; x takes k / (n - 1), k = 0..n-1.
        min_scale: Positive floor of the scale; 1e-4 is 1/39 of a level's width
            at n = 256, so a pixel can still put almost all its mass on one level.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `loc` (a sigmoid, in (0, 1)) and `scale`, each `[B, *event_shape]`.
    Noise: `uniform_noise` ~ U(0, 1) `[B, *event_shape]`; x is the level nearest
        loc + scale logit(u).
    """

    parameter_names = ("loc", "scale")
    is_discrete = True
    support = "grey_levels"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        num_bins: int = 256,
        min_scale: float = 1e-4,
        **kwargs,
    ):
        if not (isinstance(num_bins, (int, np.integer)) and num_bins >= 2):
            raise ValueError(
                f"num_bins must be an integer >= 2 (256 for 8-bit images), got {num_bins!r}."
            )
        if not min_scale > 0:
            raise ValueError(
                f"min_scale must be positive, got {min_scale}: a scale of 0 makes the masses 0/0."
            )
        super().__init__(event_shape, **kwargs)
        self.num_bins = int(num_bins)
        self.min_scale = float(min_scale)

    def constrain(self, raw):
        return {
            "loc": tf.sigmoid(raw["loc"]),
            "scale": positive_scale(raw["scale"], self.min_scale),
        }

    def pixels(self, parameters) -> DiscretizedLogisticDistribution:
        return DiscretizedLogisticDistribution(
            parameters["loc"], parameters["scale"], self.num_bins
        )

    def distribution(self, parameters):
        return independent(self.pixels(parameters), self.event_shape)

    def mean(self, parameters):
        return discretized_logistic_mean(parameters["loc"], parameters["scale"], self.num_bins)

    def noise_spec(self):
        return {"uniform_noise": ("uniform", self.event_shape)}

    def draw(self, parameters, noise):
        return discretized_logistic_draw(
            parameters["loc"], parameters["scale"], noise["uniform_noise"], self.num_bins
        )

    def elementwise_log_prob(self, parameters, x):
        return discretized_logistic_log_prob(
            x, parameters["loc"], parameters["scale"], self.num_bins
        )

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "min_scale": self.min_scale}


def bits_per_dimension(
    log_prob_nats: float | np.ndarray | tf.Tensor, num_dimensions: int
) -> float | np.ndarray | tf.Tensor:
    """-log p / (D ln 2): a log-probability in nats per image `[...]` in bits per pixel."""
    return -log_prob_nats / (num_dimensions * math.log(2.0))
