"""Two stochastic layers (Burda, Grosse & Salakhutdinov 2016, section 5) as parts of one code.

The latent code is z = [z1, z2], J1 + J2 numbers: z1 is the bottom layer
(next to x), z2 the top. Recognition and generative models factorize along
the chain x -> z1 -> z2:

    q(z|x) = q(z1|x) q(z2|z1),   q(z1|x)  = N(loc(x), diag(scale(x)^2)),
                                 q(z2|z1) = N(m(z1), diag(s(z1)^2));
    p(z)   = p(z2) p(z1|z2),     p(z2)    = N(0, I),
                                 p(z1|z2) = N(mu(z2), diag(sigma(z2)^2));
    p(x|z) = p(x|z1).

Each factor is a change of variables of a diagonal Gaussian. For q, with
e = [e1, e2] ~ N([loc, 0], diag([scale^2, 1])),

    z = f(e) = [e1, m(e1) + s(e1) e2],

an affine coupling (Dinh et al. 2017) with a fixed split at J1: its Jacobian
is triangular with determinant prod_j s_j(z1), so

    log q(z|x) = log N(e) - sum_j log s_j(z1) = log q(z1|x) + log q(z2|z1)

exactly (`tfb.RealNVP` with `num_masked=J1`). For p the coupling runs the
other way, z1 = mu(z2) + sigma(z2) e1 with [e1, z2] ~ N(0, I)
(`num_masked=-J2`: the last J2 coordinates condition the first J1).

Because q(z|x) and p(z) are distributions over the one vector z, the
ELBO and IWAE bounds of `tfvae.model`, evaluation, export and parity work
unchanged: the log-weight is

    log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1).

There is no closed-form KL(q || p): the rate is a Monte Carlo estimate.

Every scale, as in `tfvae.posteriors`, is min_scale + softplus(raw + log(e - 1))
(`tfvae.parts.positive_scale`): never below min_scale, linear growth, 1 at
raw = 0. A draw from explicit standard normal noise eps = [eps1, eps2] is

    posterior   z1 = loc + scale eps1,      z2 = m(z1) + s(z1) eps2,
    prior       z2 = eps2,                  z1 = mu(z2) + sigma(z2) eps1,

matmuls, tanh and the scale map only (builtin LiteRT ops). E[z1] under q
is loc, E[z2] under p is 0; the other halves, E_q[m(z1)] and E_p[mu(z2)],
have no closed form and are averaged over fixed antithetic noise, as the
flows' means are (`tfvae.flows`).

The conditional networks compute in their input's dtype (`tfvae.made.MaskedDense`,
unmasked), so float64 parameters give float64 densities.

References:
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders.
        ICLR. Section 5.
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Rezende, Mohamed & Wierstra (2014). Stochastic Backpropagation and
        Approximate Inference in Deep Generative Models. ICML.
    Dinh, Sohl-Dickstein & Bengio (2017). Density Estimation Using Real NVP. ICLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.flows import MEAN_NOISE_SEED
from tfvae.made import MaskedDense
from tfvae.networks import kernel_initializer
from tfvae.parts import Head, event_shape_of, positive_scale
from tfvae.posteriors import DiagonalGaussian
from tfvae.priors import Prior, standard_normal
from tfvae.seeds import child_seed

tfb = tfp.bijectors
tfd = tfp.distributions


# Shared pieces.


def split_sizes(event_shape: Sequence[int] | int, top_latent_dim: int) -> tuple[int, int]:
    """(J1, J2) of a code z = [z1, z2] of shape `[J1 + J2]`.

    Raises:
        ValueError: The event is not a vector, or either layer would be empty.
    """
    shape = event_shape_of(event_shape)
    if len(shape) != 1:
        raise ValueError(f"A two-layer code is a vector [J1 + J2], got the event {shape}.")
    if not 0 < int(top_latent_dim) < shape[0]:
        raise ValueError(
            f"top_latent_dim must be in [1, {shape[0] - 1}] for a code of "
            f"{shape[0]} dimensions (both layers non-empty), got {top_latent_dim}."
        )
    return shape[0] - int(top_latent_dim), int(top_latent_dim)


def antithetic_normal(num_samples: int, size: int, dtype: tf.DType) -> tf.Tensor:
    """Fixed noise `[num_samples, size]`: draws eps and -eps, from `MEAN_NOISE_SEED`.

    A constant, so a Monte Carlo mean is the same on every call and on LiteRT,
    and exact for functions linear in the noise.
    """
    half = np.random.default_rng(MEAN_NOISE_SEED).standard_normal((num_samples // 2, size))
    return tf.constant(np.concatenate([half, -half]), dtype)


def _check_num_mean_samples(num_mean_samples: int) -> int:
    if int(num_mean_samples) != num_mean_samples or num_mean_samples < 2 or num_mean_samples % 2:
        raise ValueError(
            f"num_mean_samples must be an even integer >= 2 (antithetic pairs), "
            f"got {num_mean_samples}."
        )
    return int(num_mean_samples)


def coupling(network: ConditionalGaussian, num_masked: int) -> tfb.Bijector:
    """The affine coupling y_free = loc(y_masked) + scale(y_masked) x_free.

    `num_masked` > 0 keeps the first `num_masked` coordinates and conditions
    the rest on them; < 0 keeps the last |num_masked| (`tfb.RealNVP`).
    """

    def affine(masked, _):
        loc, scale = network(masked)
        return tfb.Chain([tfb.Shift(loc), tfb.Scale(scale)])  # The last applies first.

    # A new function per bijector: TFP caches inverses per bijector parameters,
    # and with the layer itself as the key a z drawn before a weight update
    # would be scored after it with a stale inverse (see tfvae.flows).
    return tfb.RealNVP(num_masked=num_masked, bijector_fn=affine)


@keras.saving.register_keras_serializable(package="tfvae")
class ConditionalGaussian(keras.layers.Layer):
    """The loc and scale of a diagonal Gaussian over one layer given another:
    u `[..., input_size]` -> (loc, scale), each `[..., output_size]`.

    Hidden dense layers with `activation`, then two linear layers: loc, and the
    raw scale, mapped by `tfvae.parts.positive_scale`. Kernels start
    N(0, init_stddev^2), biases 0, as every other layer of the VAE. The layers
    compute in the input's dtype (`tfvae.made.MaskedDense`, unmasked) and take
    any number of leading axes.

    Args:
        input_size: Width of u.
        output_size: Width of loc and scale.
        hidden_units: Widths of the hidden layers (Burda et al.: (50, 50)).
        activation: Of the hidden layers.
        min_scale: Positive floor of the scale.
        init_stddev: Standard deviation of the kernels' initialisers (`None`:
            variance-preserving).
        weight_decay: L2 coefficient of the kernels, per datapoint.
        seed: Seeds the initialisers (`None`: unseeded).

    Call arguments:
        inputs: `[..., input_size]` float tensor.

    Returns:
        (loc, scale), each `[..., output_size]`, of the inputs' dtype.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_units: Sequence[int] = (50, 50),
        *,
        activation: str | None = "tanh",
        min_scale: float = 1e-4,
        init_stddev: float | None = 0.01,
        weight_decay: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        if not min_scale > 0:
            raise ValueError(
                f"min_scale must be positive, got {min_scale}: a scale of 0 "
                "makes the density infinite."
            )
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.min_scale = float(min_scale)
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed

        def layer(units, index, name, activation=None):
            return MaskedDense(
                units,
                activation=activation,
                name=name,
                dtype=self.dtype_policy,
                kernel_initializer=kernel_initializer(
                    init_stddev, activation, child_seed(seed, index)
                ),
                kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
            )

        self.hidden = [
            layer(units, i, f"hidden_{i}", activation) for i, units in enumerate(self.hidden_units)
        ]
        depth = len(self.hidden_units)
        self.loc_layer = layer(self.output_size, depth, "loc")
        self.raw_scale_layer = layer(self.output_size, depth + 1, "raw_scale")

    def build(self, input_shape=None):
        shape = (None, self.input_size)
        for hidden in self.hidden:
            hidden.build(shape)
            shape = (None, hidden.units)
        self.loc_layer.build(shape)
        self.raw_scale_layer.build(shape)
        self.built = True

    def call(self, inputs):
        h = inputs
        for hidden in self.hidden:
            h = hidden(h)
        return self.loc_layer(h), positive_scale(self.raw_scale_layer(h), self.min_scale)

    def get_config(self):
        return {
            **super().get_config(),
            "input_size": self.input_size,
            "output_size": self.output_size,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "min_scale": self.min_scale,
            "init_stddev": self.init_stddev,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }


# The posterior q(z1|x) q(z2|z1).


@keras.saving.register_keras_serializable(package="tfvae")
class TwoLayerPosterior(Head):
    """q(z|x) = q(z1|x) q(z2|z1) over z = [z1, z2] (module docstring).

    q(z1|x) is a `tfvae.posteriors.DiagonalGaussian` of the encoder's
    features (`bottom`); q(z2|z1) a `ConditionalGaussian` of z1 (`top`).
    The distribution does not factorize over z: no `elementwise_log_prob`.

    Args:
        event_shape: `[J1 + J2]` (an int is accepted).
        top_latent_dim: J2, the size of z2.
        hidden_units: Hidden widths of the network z1 -> (m, s) of q(z2|z1).
        activation: Its hidden activation.
        min_scale: Floor of every scale, of q(z1|x) and of q(z2|z1).
        num_mean_samples: Draws (an even number) in the Monte Carlo `mean` of z2.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: q(z1|x)'s `loc` and `scale`, each `[B, J1]`.
    Noise: `eps` ~ N(0, 1) `[B, J1 + J2]`; z1 = loc + scale eps[:J1],
    z2 = m(z1) + s(z1) eps[J1:].
    """

    parameter_names = ("loc", "scale")

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        top_latent_dim: int,
        hidden_units: Sequence[int] = (50, 50),
        activation: str | None = "tanh",
        min_scale: float = 1e-4,
        num_mean_samples: int = 128,
        **kwargs,
    ):
        bottom_latent_dim, top_latent_dim = split_sizes(event_shape, top_latent_dim)
        num_mean_samples = _check_num_mean_samples(num_mean_samples)
        super().__init__(event_shape, **kwargs)
        self.bottom_latent_dim, self.top_latent_dim = bottom_latent_dim, top_latent_dim
        self.num_mean_samples = num_mean_samples
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.min_scale = float(min_scale)
        init = {"init_stddev": self.init_stddev, "weight_decay": self.weight_decay}
        self.bottom = DiagonalGaussian(
            self.bottom_latent_dim,
            min_scale=min_scale,
            seed=child_seed(self.seed, 0),
            name="bottom",
            dtype=self.dtype_policy,
            **init,
        )
        self.top = ConditionalGaussian(
            self.bottom_latent_dim,
            self.top_latent_dim,
            self.hidden_units,
            activation=activation,
            min_scale=min_scale,
            seed=child_seed(self.seed, 1),
            name="top",
            dtype=self.dtype_policy,
            **init,
        )

    def raw_shapes(self):
        return {}  # No Dense layers of its own: `bottom` owns loc's and scale's.

    def build(self, input_shape):
        if not self.bottom.built:
            self.bottom.build(input_shape)
        if not self.top.built:
            self.top.build()
        self.built = True

    def parameters(self, features):
        return self.bottom.parameters(features)

    def bijector(self) -> tfb.Bijector:
        """e = [e1, e2] -> [e1, m(e1) + s(e1) e2], a new bijector on every call."""
        return coupling(self.top, self.bottom_latent_dim)

    def distribution(self, parameters):
        loc, scale = parameters["loc"], parameters["scale"]
        top_shape = tf.concat([tf.shape(loc)[:-1], [self.top_latent_dim]], axis=0)
        base = tfd.Independent(
            tfd.Normal(
                tf.concat([loc, tf.zeros(top_shape, loc.dtype)], axis=-1),
                tf.concat([scale, tf.ones(top_shape, scale.dtype)], axis=-1),
            ),
            reinterpreted_batch_ndims=1,
        )
        return tfd.TransformedDistribution(base, self.bijector())

    def mean(self, parameters):
        loc, scale = parameters["loc"], parameters["scale"]
        eps = antithetic_normal(self.num_mean_samples, self.bottom_latent_dim, loc.dtype)
        top_loc, _ = self.top(loc + scale * eps[:, tf.newaxis])  # [S, B, J2]
        return tf.concat([loc, tf.reduce_mean(top_loc, axis=0)], axis=-1)

    def noise_spec(self):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, parameters, noise):
        eps = tf.convert_to_tensor(noise["eps"], parameters["loc"].dtype)
        z1 = self.bottom.draw(parameters, {"eps": eps[..., : self.bottom_latent_dim]})
        top_loc, top_scale = self.top(z1)
        return tf.concat([z1, top_loc + top_scale * eps[..., self.bottom_latent_dim :]], axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "top_latent_dim": self.top_latent_dim,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "min_scale": self.min_scale,
            "num_mean_samples": self.num_mean_samples,
        }


# The prior p(z2) p(z1|z2).


@keras.saving.register_keras_serializable(package="tfvae")
class TwoLayerPrior(Prior):
    """p(z) = p(z2) p(z1|z2) over z = [z1, z2]: p(z2) = N(0, I), p(z1|z2) a
    `ConditionalGaussian` of z2 (`bottom`), whose weights train with the VAE.

    Computes in the layer's compute dtype (the noise's dtype for `draw`).
    The density does not factorize over z: no `elementwise_log_prob`.

    Args:
        event_shape: `[J1 + J2]` (an int is accepted).
        top_latent_dim: J2, the size of z2.
        hidden_units: Hidden widths of the network z2 -> (mu, sigma) of p(z1|z2).
        activation: Its hidden activation.
        min_scale: Floor of sigma.
        num_mean_samples: Draws (an even number) in the Monte Carlo `mean` of z1.
        init_stddev, weight_decay: Of the network's kernels.
        seed: Seeds the initialisers (`None`: unseeded).
        **kwargs: Of `keras.layers.Layer`.

    Parameters: the network's weights, {"<layer>/<weight>": tensor}.
    Noise: `eps` ~ N(0, 1) `[B, J1 + J2]`; z2 = eps[J1:],
    z1 = mu(z2) + sigma(z2) eps[:J1].
    """

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        top_latent_dim: int,
        hidden_units: Sequence[int] = (50, 50),
        activation: str | None = "tanh",
        min_scale: float = 1e-4,
        num_mean_samples: int = 128,
        init_stddev: float | None = 0.01,
        weight_decay: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        bottom_latent_dim, top_latent_dim = split_sizes(event_shape, top_latent_dim)
        num_mean_samples = _check_num_mean_samples(num_mean_samples)
        super().__init__(event_shape, **kwargs)
        self.bottom_latent_dim, self.top_latent_dim = bottom_latent_dim, top_latent_dim
        self.num_mean_samples = num_mean_samples
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.min_scale = float(min_scale)
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        self.bottom = ConditionalGaussian(
            self.top_latent_dim,
            self.bottom_latent_dim,
            self.hidden_units,
            activation=activation,
            min_scale=min_scale,
            init_stddev=init_stddev,
            weight_decay=weight_decay,
            seed=seed,
            name="bottom",
            dtype=self.dtype_policy,
        )
        # Built here, not in build: the shapes do not depend on the data, and
        # the weights must exist before the VAE is saved.
        self.bottom.build()
        self.built = True

    def bijector(self) -> tfb.Bijector:
        """[e1, z2] -> [mu(z2) + sigma(z2) e1, z2], a new bijector on every call."""
        return coupling(self.bottom, -self.top_latent_dim)

    def distribution(self, encoder=None):
        return tfd.TransformedDistribution(
            standard_normal(self.event_shape, self.compute_dtype), self.bijector()
        )

    def parameters(self, encoder=None):
        layers = [*self.bottom.hidden, self.bottom.loc_layer, self.bottom.raw_scale_layer]
        return {
            f"{layer.name}/{weight.name}": tf.cast(weight, self.compute_dtype)
            for layer in layers
            for weight in layer.weights
        }

    def mean(self, encoder=None):
        z2 = antithetic_normal(self.num_mean_samples, self.top_latent_dim, self.compute_dtype)
        bottom_loc, _ = self.bottom(z2)  # [S, J1]
        return tf.concat([tf.reduce_mean(bottom_loc, axis=0), tf.zeros_like(z2[0])], axis=-1)

    def noise_spec(self, encoder=None):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, noise, encoder=None):
        eps = tf.convert_to_tensor(noise["eps"])
        z2 = eps[..., self.bottom_latent_dim :]
        bottom_loc, bottom_scale = self.bottom(z2)
        return tf.concat(
            [bottom_loc + bottom_scale * eps[..., : self.bottom_latent_dim], z2], axis=-1
        )

    def get_config(self):
        return {
            **super().get_config(),
            "top_latent_dim": self.top_latent_dim,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "min_scale": self.min_scale,
            "num_mean_samples": self.num_mean_samples,
            "init_stddev": self.init_stddev,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }


# The decoder's view of z, and the whole model.


@keras.saving.register_keras_serializable(package="tfvae")
class FirstLatents(keras.layers.Layer):
    """A trunk that reads z1 only: z `[B, J1 + J2]` -> trunk(z[:, :J1]).

    So that p(x|z) = p(x|z1) while the decoder still takes the whole code,
    which is what the VAE, export and parity hand it.

    Args:
        latent_dim: J1, the width of z1 (the first coordinates of z).
        trunk: A layer mapping `[B, J1]` to features `[B, F]` (e.g. a
            `tfvae.networks.MLP`).
        **kwargs: Of `keras.layers.Layer`.

    Call arguments:
        inputs: `[B, J]` codes, J >= J1.
        condition: `[B, K]`, passed on to a conditional trunk (`condition_size`
            K > 0), else `None`.

    Returns:
        `[B, F]` features of z1.
    """

    def __init__(self, latent_dim: int, trunk: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}.")
        self.latent_dim = int(latent_dim)
        self.trunk = trunk

    @property
    def condition_size(self) -> int:
        """The trunk's: `tfvae.networks.ProbabilisticNetwork` reads it."""
        return getattr(self.trunk, "condition_size", 0)

    def _sliced(self, input_shape) -> tuple:
        if input_shape[-1] is not None and input_shape[-1] < self.latent_dim:
            raise ValueError(
                f"FirstLatents({self.latent_dim}) needs codes of at least "
                f"{self.latent_dim} dimensions, got the shape {input_shape}."
            )
        return (*input_shape[:-1], self.latent_dim)

    def build(self, input_shape):
        if not self.trunk.built:
            self.trunk.build(self._sliced(tuple(input_shape)))
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.trunk.compute_output_shape(self._sliced(tuple(input_shape)))

    def call(self, inputs, condition=None):
        z1 = inputs[..., : self.latent_dim]
        # As ProbabilisticNetwork does: trunks without a condition argument still work.
        return self.trunk(z1) if condition is None else self.trunk(z1, condition=condition)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "trunk": keras.saving.serialize_keras_object(self.trunk),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        trunk = keras.saving.deserialize_keras_object(config.pop("trunk"))
        return cls(trunk=trunk, **config)
