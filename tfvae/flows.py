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

The MADE and the coupling networks are Keras 3 layers (`tfvae.made`):
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

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.made import MADE, ShiftAndLogScaleNetwork
from tfvae.parts import Head, event_shape_of
from tfvae.posteriors import DiagonalGaussian
from tfvae.seeds import child_seed

tfb = tfp.bijectors
tfd = tfp.distributions

MEAN_NOISE_SEED = 20160615  # Any fixed integer: `mean` must not change between calls.


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

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        *,
        num_flows: int = 2,
        hidden_units: Sequence[int] = (64,),
        activation: str = "tanh",
        max_log_scale: float = 3.0,
        min_scale: float = 1e-4,
        num_mean_samples: int = 128,
        **kwargs,
    ):
        shape = event_shape_of(event_shape)
        if len(shape) != 1:
            raise ValueError(f"{type(self).__name__} needs a rank-1 event [J], got {shape}.")
        if int(num_flows) != num_flows or num_flows < 1:
            raise ValueError(f"num_flows must be a positive integer, got {num_flows}.")
        if (
            int(num_mean_samples) != num_mean_samples
            or num_mean_samples < 2
            or num_mean_samples % 2
        ):
            raise ValueError(
                f"num_mean_samples must be an even integer >= 2 (antithetic "
                f"pairs), got {num_mean_samples}."
            )
        super().__init__(shape, **kwargs)
        self.num_flows = int(num_flows)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.max_log_scale = float(max_log_scale)
        self.min_scale = float(min_scale)
        self.num_mean_samples = int(num_mean_samples)
        self.base = DiagonalGaussian(
            shape,
            min_scale=min_scale,
            init_stddev=self.init_stddev,
            weight_decay=self.weight_decay,
            seed=child_seed(self.seed, 0),
            name="base",
        )
        self.networks = [self.make_network(i) for i in range(self.num_flows)]

    def raw_shapes(self):
        return {}  # No Dense layers of its own: the base owns loc's and scale's.

    def network_kwargs(self, index: int) -> dict:
        return {
            "activation": self.activation,
            "max_log_scale": self.max_log_scale,
            "weight_decay": self.weight_decay,
            "seed": child_seed(self.seed, index + 1),
            "dtype": self.dtype_policy,
        }

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
            (self.num_mean_samples // 2, *self.event_shape)
        )
        eps = tf.constant(np.concatenate([half, -half]), loc.dtype)[:, tf.newaxis]  # [S, 1, J]
        return tf.reduce_mean(self.bijector().forward(loc + scale * eps), axis=0)

    def noise_spec(self):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, parameters, noise):
        return self.bijector().forward(self.base.draw(parameters, noise))

    def get_config(self):
        return {
            **super().get_config(),
            "num_flows": self.num_flows,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "max_log_scale": self.max_log_scale,
            "min_scale": self.min_scale,
            "num_mean_samples": self.num_mean_samples,
        }


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
        return tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=lambda z: network(z)))


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
                "(or a DiagonalGaussian) for a 1-dimensional z."
            )
        super().__init__(shape, **kwargs)

    def make_network(self, index):
        (size,) = self.event_shape
        return ShiftAndLogScaleNetwork(
            size // 2,
            size - size // 2,
            self.hidden_units,
            name=f"coupling_{index}",
            **self.network_kwargs(index),
        )

    def flow(self, network):
        (size,) = self.event_shape
        return tfb.RealNVP(
            num_masked=size // 2, shift_and_log_scale_fn=lambda z_masked, _: network(z_masked)
        )
