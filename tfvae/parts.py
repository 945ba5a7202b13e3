"""The part interface: what every likelihood and posterior head tells the library.

A head is a Keras layer that owns the Dense projections from features `[B, F]`
(or, for a spatial head, a feature map `[B, H, W, F]` projected per pixel) to
the parameters of one family, and turns them into a `tfp.distributions`
object with batch shape `[B]` and event shape `event_shape`:

    features [B, F] --parameters()--> {name: tensor} --distribution()--> tfd.Distribution

Training and evaluation need only the distribution (`call`). Export, parity,
evaluation and plots need tensors, so every head also gives, from its
parameters alone:

    mean(parameters)                  E[x] (a Monte Carlo mean, seeded, where no
                                      closed form exists)
    noise_spec()                      {name: (kind, shape)}: the standard noise one
                                      draw takes, kind "normal" (N(0, 1)) or
                                      "uniform" (U(0, 1)), shape per example (the
                                      event's, or another: a Student-t's
                                      `chi2_noise` is [nu, *event])
    draw(parameters, noise)           a draw from that noise, with builtin ops only
                                      (what LiteRT runs on a phone)
    elementwise_log_prob(parameters, x)
                                      log-densities per element `[..., *event]`
                                      whose sum over the event is `log_prob`
                                      (factorized families only)

and the class attributes `is_discrete` (log_prob is a log-probability, not a
density), `has_density` (False for the point mass: no KL term), and, for
likelihoods, `support` (`tfvae.data_checks` checks the data against it).
Every parameter has a leading batch axis `[B, ...]` (a VampPrior gathers them
per component). The methods that take parameters are dtype-generic: given
float64 parameters they compute in float64 (the parity checks do);
`parameters()` itself runs Keras layers, so it returns the layers' dtype.

Priors (`tfvae.priors`) have the same tensor interface without features: their
parameters are their own weights (or, for the VampPrior, the encoder's output
at learned pseudo-inputs), so their methods take the encoder instead of
parameters: `distribution(encoder)`, `noise_spec(encoder)`,
`draw(noise, encoder)` and `elementwise_log_prob(z)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.networks import dense
from tfvae.seeds import child_seed

tfd = tfp.distributions

NOISE_KINDS = ("normal", "uniform")
SUPPORTS = ("binary", "unit_interval", "grey_levels", "real")

# softplus^-1(1): a raw output of 0 (about what tiny initial weights give)
# maps to scale 1 + min_scale, as exp(0 / 2) = 1 did with Kingma & Welling's
# log-variance.
SOFTPLUS_INVERSE_OF_ONE = math.log(math.e - 1.0)


def event_shape_of(event_shape: Sequence[int] | int) -> tuple[int, ...]:
    """A shape tuple from a sequence of ints, or from one int (a latent size)."""
    if isinstance(event_shape, int):
        return (event_shape,)
    return tuple(int(d) for d in event_shape)


def positive_scale(raw: tf.Tensor, min_scale: float) -> tf.Tensor:
    """min_scale + softplus(raw + log(e - 1)): finite for finite raw, never below
    min_scale, and 1 + min_scale at raw = 0 (see `tfvae.likelihoods`)."""
    shifted = raw + tf.constant(SOFTPLUS_INVERSE_OF_ONE, raw.dtype)
    # softplus(a) = max(a, 0) + log(1 + exp(-|a|)): the LiteRT converter lowers
    # tf.nn.softplus to log(exp(a) + 1), which is inf on the phone once a > 88.
    softplus = tf.maximum(shifted, 0) + tf.math.log(1 + tf.exp(-tf.abs(shifted)))
    return tf.constant(min_scale, raw.dtype) + softplus


class Head(keras.layers.Layer):
    """Base of likelihood and posterior heads: Dense layers shaped to the event.

    Subclasses set `parameter_names` (one Dense layer each, reshaped to
    `[B, *event_shape]`; override `raw_shapes` for other shapes, and set any
    attribute it reads before calling `Head.__init__`, which creates the Dense
    layers; a composite head such as a flow returns `{}` and overrides
    `parameters`) and implement
    `constrain`, `distribution`, `mean`, `noise_spec`, `draw` and, if the family
    factorizes over the event, `elementwise_log_prob`.

    A spatial head (`spatial=True`, for a convolutional decoder) takes a
    feature map `[B, H, W, F]` whose H and W are the event's, and projects each
    pixel's F features alone: a Dense layer of C units on the last axis (a
    1 x 1 convolution, C = 1 for an `(H, W)` event), reshaped to
    `[B, *event_shape]`. Only raw parameters of the event's shape can be
    spatial; a parameter that is a weight (a Gaussian's per-pixel or global
    scale) is unaffected.

    Args:
        event_shape: Shape of one draw, e.g. `[latent_dim]` or `[28, 20]`; an
            int is read as `[int]`.
        init_stddev: Standard deviation of the N(0, s^2) kernel initialisers
            (`None`: variance-preserving, `tfvae.networks.kernel_initializer`).
        weight_decay: L2 coefficient of the kernels, per datapoint.
        seed: Seeds the initialisers (`None`: unseeded).
        spatial: Features are a feature map `[B, H, W, F]` projected per pixel,
            for an event `(H, W)` or `(H, W, C)`; `False`: flat features `[B, F]`.

    Call arguments:
        features: `[B, F]` tensor (`[B, H, W, F]` if `spatial`).

    Returns:
        A `tfd.Distribution` with batch shape `[B]` and event shape `event_shape`.
    """

    parameter_names: tuple[str, ...] = ()
    is_discrete = False
    has_density = True
    support = "real"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        init_stddev: float | None = 0.01,
        weight_decay: float = 0.0,
        seed: int | None = None,
        spatial: bool = False,
        **kwargs,
    ):
        # Distribution parameters in float32 under a mixed-precision policy too.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.event_shape = event_shape_of(event_shape)
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        self.spatial = bool(spatial)
        if self.spatial:
            self._check_spatial()
        self.parameter_layers = [
            dense(
                self._units(shape),
                init_stddev=init_stddev,
                weight_decay=weight_decay,
                seed=child_seed(seed, i),
                name=name,
                dtype=self.dtype_policy,
            )
            for i, (name, shape) in enumerate(self.raw_shapes().items())
        ]

    def _check_spatial(self) -> None:
        """Raises unless the event is an image and every raw parameter has its shape."""
        if len(self.event_shape) not in (2, 3):
            raise ValueError(
                f"A spatial {type(self).__name__} needs an image event (H, W) or "
                f"(H, W, C), got {self.event_shape}."
            )
        for name, shape in self.raw_shapes().items():
            if tuple(shape) != self.event_shape:
                raise ValueError(
                    f"{type(self).__name__}'s {name!r} has shape {tuple(shape)}, not the event's "
                    f"{self.event_shape}: it cannot be projected per pixel (spatial=True)."
                )

    def _units(self, shape: tuple[int, ...]) -> int:
        """Dense units of a raw parameter: one per element, or per channel if spatial."""
        if self.spatial:
            return self.event_shape[2] if len(self.event_shape) == 3 else 1
        return math.prod(shape)

    def raw_shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape per example} of the Dense outputs; default: the event shape."""
        return {name: self.event_shape for name in self.parameter_names}

    def build(self, input_shape):
        if self.spatial and (
            len(input_shape) < 4
            or any(
                size not in (None, expected)
                for size, expected in zip(input_shape[-3:-1], self.event_shape)
            )
        ):
            raise ValueError(
                f"A spatial {type(self).__name__} takes a feature map [B, "
                f"{', '.join(map(str, self.event_shape[:2]))}, F] (the event's H and W), got "
                f"{list(input_shape)}."
            )
        for layer in self.parameter_layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def parameters(self, features) -> dict[str, tf.Tensor]:
        """The family's parameters, constrained: {name: `[B, *shape]`}."""
        # The batch axes: all but the features' last (flat), or last three (a map).
        batch = tf.shape(features)[:-3] if self.spatial else tf.shape(features)[:-1]
        raw = {}
        for layer, (name, shape) in zip(self.parameter_layers, self.raw_shapes().items()):
            batch_and_shape = tf.concat([batch, shape], axis=0)
            raw[name] = tf.reshape(layer(features), batch_and_shape)
        return self.constrain(raw)

    def constrain(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Maps the Dense outputs to valid parameters; default: unchanged."""
        return dict(raw)

    def call(self, features):
        return self.distribution(self.parameters(features))

    def distribution(self, parameters: Mapping[str, tf.Tensor]) -> tfd.Distribution:
        """The `tfd.Distribution` of `parameters`: batch `[B]`, event `event_shape`."""
        raise NotImplementedError

    def mean(self, parameters: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """E[x] `[B, *event_shape]`."""
        raise NotImplementedError

    def noise_spec(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """{name: (kind, shape per example)} of the noise `draw` takes."""
        raise NotImplementedError

    def draw(
        self, parameters: Mapping[str, tf.Tensor], noise: Mapping[str, tf.Tensor]
    ) -> tf.Tensor:
        """One draw `[B, *event_shape]` from explicit noise (builtin ops only)."""
        raise NotImplementedError

    def elementwise_log_prob(self, parameters: Mapping[str, tf.Tensor], x) -> tf.Tensor:
        """log p per element `[..., *event_shape]`; sums to `log_prob` over the event.

        Raises:
            NotImplementedError: The family does not factorize over the event.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not factorize over its event: it has no "
            "per-element log-probabilities."
        )

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "init_stddev": self.init_stddev,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "spatial": self.spatial,
        }


def independent(distribution: tfd.Distribution, event_shape: Sequence[int]) -> tfd.Distribution:
    """`distribution` with its last `len(event_shape)` batch axes made the event."""
    return tfd.Independent(distribution, reinterpreted_batch_ndims=len(event_shape))


def inverse_positive_scale(scale, min_scale: float) -> np.ndarray:
    """The raw value whose `positive_scale` is `scale` (numpy, for setting weights)."""
    excess = np.asarray(scale, np.float64) - min_scale
    return np.log(np.expm1(excess)) - SOFTPLUS_INVERSE_OF_ONE
