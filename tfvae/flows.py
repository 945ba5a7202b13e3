"""Normalizing-flow posteriors: a diagonal Gaussian pushed through invertible maps.

q(z|x) is the density of z = f_K(... f_1(z_0)), z_0 ~ q_0(z|x) = N(loc(x),
diag(scale(x)^2)) (`tfvae.posteriors.DiagonalGaussian`). By the change of
variables,

    log q(z|x) = log q_0(z_0|x) - sum_k log |det d f_k / d z_{k-1}|.

Each f_k here is affine in each coordinate with a triangular Jacobian, so its
log-determinant is a sum of log-scales s computed by a network:

Inverse autoregressive flow (Kingma et al. 2016: z_t = mu_t + sigma_t z_{t-1},
here with sigma = exp(-s), mu = -m sigma), with (m, s) a MADE (Germain et al.
2015), a dense network whose weight masks make outputs i see inputs 1..i-1 only:

    z_k,i = (z_{k-1},i - m_i(z_{k-1},<i)) exp(-s_i(z_{k-1},<i)),
    log |det| = -sum_i s_i.

That is `tfb.Invert(tfb.MaskedAutoregressiveFlow(made))`. A draw is one pass of
each MADE. The density of a draw reuses the z_{k-1} it came from (the bijectors
cache it, per distribution object) and costs one more pass per flow, for the
log-scales; the density of any other z solves for z_{k-1} one coordinate after
the other, J passes per flow (the MAF's forward), then that one.

The MADE and the coupling networks are Keras 3 layers of this module:
`tfb.AutoregressiveNetwork` is a tf_keras layer, whose weights a Keras 3 model
does not track (they would never train).

Affine coupling (RealNVP, Dinh et al. 2017), with d = J // 2:

    z_k,1:d = z_{k-1},1:d,
    z_k,d+1:J = z_{k-1},d+1:J exp(s(z_{k-1},1:d)) + m(z_{k-1},1:d),
    log |det| = sum s,

one pass either way (`tfb.RealNVP`). It needs J >= 2.

Between flows the coordinates are reversed (`tfb.Permute`), so that every
coordinate is transformed and conditions the others; after an even number of
flows one more reversal restores their order.

Log-scales: a network's raw output r becomes s = c tanh(r / c), c =
`max_log_scale` (3 by default): s = r near 0, and |s| < c always, so one flow
scales a coordinate by at most e^c (about 20) and a bad step cannot overflow
exp(s) or send log q to -inf. The last layer of every network starts at zero:
m = s = 0, every flow is the identity, and training starts from the diagonal
Gaussian.

E[z] has no closed form: `mean` averages `num_mean_samples` draws from fixed
antithetic noise (eps and -eps, eps drawn once by numpy from the seed
`MEAN_NOISE_SEED`): deterministic, a constant in the graph (LiteRT runs it),
and exact for the identity flow. Its Monte Carlo error is about sd(z) / sqrt(S).

The networks compute in their input's dtype (`autocast=False`, weights cast):
float64 parameters and z give float64 log q.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Germain, Gregor, Murray & Larochelle (2015). MADE: Masked Autoencoder for
        Distribution Estimation. ICML.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016). Improved
        Variational Inference with Inverse Autoregressive Flow. NeurIPS.
    Dinh, Sohl-Dickstein & Bengio (2017). Density Estimation Using Real NVP. ICLR.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.parts import Head, event_shape_of
from tfvae.posteriors import DiagonalGaussian
from tfvae.seeds import child_seed

tfb = tfp.bijectors
tfd = tfp.distributions

MEAN_NOISE_SEED = 20160615  # Any fixed integer: `mean` must not change between calls.


def _as_list(degrees):
    return None if degrees is None else [int(d) for d in degrees]


@keras.saving.register_keras_serializable(package="tfvae")
class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (Germain et al. 2015).

    The mask comes from degrees: output unit k sees input i if
    `output_degrees[k] >= input_degrees[i]` (hidden layers), or `>` if
    `exclusive` (the output layer of a MADE: output i sees inputs 1..i-1).
    Without degrees the layer is an ordinary dense layer. It computes in its
    input's dtype (float64 in, float64 out).

    Args:
        units: Number of outputs.
        activation: A Keras activation name or None.
        input_degrees: `[n_in]` ints, or None (no mask).
        output_degrees: `[units]` ints, or None (no mask).
        exclusive: Strict inequality in the mask (see above).
        kernel_initializer: A Keras initializer (or its name / config).
        kernel_regularizer: A Keras regularizer (or None).

    Call arguments:
        inputs: `[..., n_in]` float tensor.

    Returns:
        `[..., units]`, of the inputs' dtype.
    """

    def __init__(self, units: int, *, activation=None, input_degrees=None, output_degrees=None,
                 exclusive: bool = False, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        # Keras casts the inputs of an autocast layer to float32; the flows'
        # densities must stay in float64 when given float64.
        super().__init__(autocast=False, **kwargs)
        if (input_degrees is None) != (output_degrees is None):
            raise ValueError("Give both input_degrees and output_degrees, or neither.")
        if output_degrees is not None and len(output_degrees) != units:
            raise ValueError(f"{len(output_degrees)} output degrees for {units} units.")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.input_degrees = _as_list(input_degrees)
        self.output_degrees = _as_list(output_degrees)
        self.exclusive = bool(exclusive)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def mask(self) -> np.ndarray | None:
        """`[n_in, units]` 0/1 mask, or None."""
        if self.input_degrees is None:
            return None
        inputs = np.asarray(self.input_degrees)[:, None]
        outputs = np.asarray(self.output_degrees)[None, :]
        return (outputs > inputs if self.exclusive else outputs >= inputs).astype(np.float32)

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        if self.input_degrees is not None and len(self.input_degrees) != n_in:
            raise ValueError(f"{len(self.input_degrees)} input degrees for {n_in} inputs.")
        self.kernel = self.add_weight(shape=(n_in, self.units), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")
        self.built = True

    def call(self, inputs):
        kernel = tf.cast(self.kernel, inputs.dtype)
        mask = self.mask()
        if mask is not None:
            kernel = kernel * tf.constant(mask, inputs.dtype)
        return self.activation(tf.matmul(inputs, kernel) + tf.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "input_degrees": self.input_degrees, "output_degrees": self.output_degrees,
                "exclusive": self.exclusive,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@keras.saving.register_keras_serializable(package="tfvae")
class ShiftAndLogScaleNetwork(keras.layers.Layer):
    """x `[..., input_size]` -> (shift, log_scale), each `[..., output_size]`.

    A dense network (the one of an affine coupling layer) whose last layer
    starts at zero, so that shift = log_scale = 0 until training moves it;
    log_scale = c tanh(raw / c) with c = `max_log_scale`.

    Args:
        input_size: Width of x.
        output_size: Width of shift and of log_scale.
        hidden_units: Widths of the hidden layers.
        activation: Of the hidden layers.
        max_log_scale: c above: |log_scale| < c.
        weight_decay: L2 coefficient of the kernels, per datapoint.
        seed: Seeds the hidden layers' Glorot initialisers (`None`: unseeded).

    Call arguments:
        inputs: `[..., input_size]` float tensor.

    Returns:
        (shift, log_scale), each `[..., output_size]`, of the inputs' dtype.
    """

    def __init__(self, input_size: int, output_size: int, hidden_units: Sequence[int] = (64,),
                 *, activation: str = "tanh", max_log_scale: float = 3.0,
                 weight_decay: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(autocast=False, **kwargs)
        if not max_log_scale > 0:
            raise ValueError(f"max_log_scale must be positive, got {max_log_scale}.")
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.max_log_scale = float(max_log_scale)
        self.weight_decay = weight_decay
        self.seed = seed
        regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
        degrees = self.degrees()
        self.hidden = [
            MaskedDense(units, activation=activation, input_degrees=degrees[i],
                        output_degrees=degrees[i + 1], kernel_regularizer=regularizer,
                        kernel_initializer=keras.initializers.GlorotUniform(child_seed(seed, i)),
                        name=f"hidden_{i}")
            for i, units in enumerate(self.hidden_units)]
        # Shift and log-scale of output j share output j's degree.
        output_degrees = None if degrees[-1] is None else np.tile(degrees[-1], 2)
        self.last = MaskedDense(2 * self.output_size, input_degrees=degrees[-2],
                                output_degrees=output_degrees, exclusive=True,
                                kernel_initializer="zeros", kernel_regularizer=regularizer,
                                name="shift_and_log_scale")

    def degrees(self) -> list[np.ndarray | None]:
        """Degrees of the inputs, of each hidden layer and of the outputs; None: unmasked."""
        return [None] * (len(self.hidden_units) + 2)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in [*self.hidden, self.last]:
            if not layer.built:
                layer.build(shape)
            shape = (*shape[:-1], layer.units)
        self.built = True

    def call(self, inputs):
        h = inputs
        for layer in self.hidden:
            h = layer(h)
        shift, raw_log_scale = tf.split(self.last(h), 2, axis=-1)
        c = tf.constant(self.max_log_scale, raw_log_scale.dtype)
        return shift, c * tf.tanh(raw_log_scale / c)

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size,
                "output_size": self.output_size, "hidden_units": self.hidden_units,
                "activation": self.activation, "max_log_scale": self.max_log_scale,
                "weight_decay": self.weight_decay, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfvae")
class MADE(ShiftAndLogScaleNetwork):
    """The autoregressive network (Germain et al. 2015): z `[..., J]` -> (shift, log_scale)
    `[..., J]` each, output i a function of z_1..z_{i-1} only.

    Degrees: input i has degree i; hidden units take degrees 1..J-1 in turn
    (evenly, where Germain et al. draw them at random), a unit of degree d
    seeing z_1..z_d; output i has degree i and sees hidden degrees < i. For
    J = 1 the outputs see nothing: constants, learned through the biases.

    Args:
        event_size: J.
        hidden_units, activation, max_log_scale, weight_decay, seed: As
            `ShiftAndLogScaleNetwork`.

    Call arguments:
        inputs: `[..., J]` float tensor.

    Returns:
        (shift, log_scale), each `[..., J]`, of the inputs' dtype: the
        `shift_and_log_scale_fn` of `tfb.MaskedAutoregressiveFlow`.
    """

    def __init__(self, event_size: int, hidden_units: Sequence[int] = (64,), **kwargs):
        super().__init__(event_size, event_size, hidden_units, **kwargs)

    def degrees(self):
        size = self.input_size
        hidden = [np.zeros(units, int) if size == 1 else np.arange(units) % (size - 1) + 1
                  for units in self.hidden_units]
        return [np.arange(1, size + 1), *hidden, np.arange(1, size + 1)]

    def get_config(self):
        config = super().get_config()
        config["event_size"] = config.pop("input_size")
        del config["output_size"]
        return config


class FlowPosterior(Head):
    """Base of flow posteriors: a `DiagonalGaussian` base q_0 and `num_flows` bijectors.

    Subclasses implement `make_network(index)` (a `ShiftAndLogScaleNetwork`)
    and `flow(network)` (the bijector it drives).

    Args:
        event_shape: `[J]` (an int is accepted).
        num_flows: K, the number of flow steps.
        hidden_units: Hidden widths of every shift/log-scale network.
        activation: Their hidden activation.
        max_log_scale: Bound on each step's |log-scale| (module docstring).
        min_scale: Of the base `DiagonalGaussian`.
        num_mean_samples: Draws (an even number) in the Monte Carlo `mean`.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name);
            init_stddev goes to the base's Dense layers, weight_decay to all kernels.

    Parameters: the base's, `loc` and `scale`, each `[B, J]`.
    Noise: `eps` ~ N(0, 1) `[B, J]`; z = f(loc + scale * eps).
    """

    parameter_names = ("loc", "scale")

    def __init__(self, event_shape: Sequence[int] | int, *, num_flows: int = 2,
                 hidden_units: Sequence[int] = (64,), activation: str = "tanh",
                 max_log_scale: float = 3.0, min_scale: float = 1e-4,
                 num_mean_samples: int = 128, **kwargs):
        shape = event_shape_of(event_shape)
        if len(shape) != 1:
            raise ValueError(f"{type(self).__name__} needs a rank-1 event [J], got {shape}.")
        if int(num_flows) != num_flows or num_flows < 1:
            raise ValueError(f"num_flows must be a positive integer, got {num_flows}.")
        if int(num_mean_samples) != num_mean_samples or num_mean_samples < 2 \
                or num_mean_samples % 2:
            raise ValueError(f"num_mean_samples must be an even integer >= 2 (antithetic "
                             f"pairs), got {num_mean_samples}.")
        super().__init__(shape, **kwargs)
        self.num_flows = int(num_flows)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.max_log_scale = float(max_log_scale)
        self.min_scale = float(min_scale)
        self.num_mean_samples = int(num_mean_samples)
        self.base = DiagonalGaussian(shape, min_scale=min_scale, init_stddev=self.init_stddev,
                                     weight_decay=self.weight_decay,
                                     seed=child_seed(self.seed, 0), name="base")
        self.networks = [self.make_network(i) for i in range(self.num_flows)]

    def raw_shapes(self):
        return {}  # No Dense layers of its own: the base owns loc's and scale's.

    def network_kwargs(self, index: int) -> dict:
        return {"activation": self.activation, "max_log_scale": self.max_log_scale,
                "weight_decay": self.weight_decay, "seed": child_seed(self.seed, index + 1)}

    def make_network(self, index: int) -> ShiftAndLogScaleNetwork:
        raise NotImplementedError

    def flow(self, network: ShiftAndLogScaleNetwork) -> tfb.Bijector:
        raise NotImplementedError

    def build(self, input_shape):
        if not self.base.built:
            self.base.build(input_shape)
        for network in self.networks:
            if not network.built:
                network.build((None, network.input_size))
        self.built = True

    def parameters(self, features):
        return self.base.parameters(features)

    def bijector(self) -> tfb.Bijector:
        """f = [reverse o] f_K o reverse o ... o reverse o f_1, a new chain on every call.

        The last reversal, present when K is even, puts the coordinates back in
        their order: a fresh flow is the identity, not a permutation of loc.

        Bijectors are tf.Modules: kept as attributes they would join the
        layer's tracked objects. Built per call, each chain caches only the
        draws made through it (see `flow`).
        """
        (size,) = self.event_shape
        steps = []
        for index, network in enumerate(self.networks):
            if index:
                steps.append(tfb.Permute(np.arange(size)[::-1]))
            steps.append(self.flow(network))
        if self.num_flows % 2 == 0:
            steps.append(tfb.Permute(np.arange(size)[::-1]))
        return tfb.Chain(steps[::-1])  # A Chain applies its last bijector first.

    def distribution(self, parameters):
        return tfd.TransformedDistribution(self.base.distribution(parameters), self.bijector())

    def mean(self, parameters):
        loc, scale = parameters["loc"], parameters["scale"]
        half = np.random.default_rng(MEAN_NOISE_SEED).standard_normal(
            (self.num_mean_samples // 2, *self.event_shape))
        eps = tf.constant(np.concatenate([half, -half]), loc.dtype)[:, tf.newaxis]  # [S, 1, J]
        return tf.reduce_mean(self.bijector().forward(loc + scale * eps), axis=0)

    def noise_spec(self):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, parameters, noise):
        return self.bijector().forward(self.base.draw(parameters, noise))

    def get_config(self):
        return {**super().get_config(), "num_flows": self.num_flows,
                "hidden_units": self.hidden_units, "activation": self.activation,
                "max_log_scale": self.max_log_scale, "min_scale": self.min_scale,
                "num_mean_samples": self.num_mean_samples}


@keras.saving.register_keras_serializable(package="tfvae")
class InverseAutoregressiveFlow(FlowPosterior):
    """q(z|x): an inverse autoregressive flow (Kingma et al. 2016) on a diagonal Gaussian.

    z = f_K(... f_1(z_0)), z_0 = loc + scale * eps, each f_k = tfb.Invert(
    tfb.MaskedAutoregressiveFlow(MADE)), reversals between. Arguments,
    parameters and noise: as `FlowPosterior`.
    """

    def make_network(self, index):
        (size,) = self.event_shape
        return MADE(size, self.hidden_units, name=f"made_{index}", **self.network_kwargs(index))

    def flow(self, network):
        # TFP caches a bijector's results under its parameters (here the
        # function) and the tensor: with the layer itself as the function, a z
        # drawn before a weight update would be scored after it with the stale
        # cached inverse. A new function per chain confines the cache to one
        # distribution object.
        return tfb.Invert(tfb.MaskedAutoregressiveFlow(
            shift_and_log_scale_fn=lambda z: network(z)))


@keras.saving.register_keras_serializable(package="tfvae")
class AffineCoupling(FlowPosterior):
    """q(z|x): RealNVP affine coupling layers (Dinh et al. 2017) on a diagonal Gaussian.

    z = f_K(... f_1(z_0)), z_0 = loc + scale * eps, each f_k = tfb.RealNVP with
    num_masked = J // 2, reversals between. Arguments, parameters and noise:
    as `FlowPosterior`; J must be at least 2.
    """

    def __init__(self, event_shape: Sequence[int] | int, **kwargs):
        shape = event_shape_of(event_shape)
        if len(shape) == 1 and shape[0] < 2:
            raise ValueError(
                f"AffineCoupling needs at least 2 latent dimensions, got {shape}: a coupling "
                "layer transforms one part of z given the other. Use InverseAutoregressiveFlow "
                "(or a DiagonalGaussian) for a 1-dimensional z.")
        super().__init__(shape, **kwargs)

    def make_network(self, index):
        (size,) = self.event_shape
        return ShiftAndLogScaleNetwork(size // 2, size - size // 2, self.hidden_units,
                                       name=f"coupling_{index}", **self.network_kwargs(index))

    def flow(self, network):
        (size,) = self.event_shape
        return tfb.RealNVP(num_masked=size // 2,
                           shift_and_log_scale_fn=lambda z_masked, _: network(z_masked))
