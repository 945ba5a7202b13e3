"""Priors p(z) over the latent code, as Keras layers whose weights train with the VAE.

Kingma & Welling (2014) take the isotropic standard normal

    p(z) = N(z; 0, I).

The ELBO's rate term E_q[log q(z|x) - log p(z)] is smallest, averaged over the
data, when p(z) is the aggregated posterior (1/N) sum_n q(z|x_n); a fixed
N(0, I) can be far from it. Two learned priors come closer:

    mixture of Gaussians   p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)),
                           pi = softmax(logits), K components with learned
                           logits, locations and scales (Dilokthanakul et al.
                           2016; the "MoG prior" of Tomczak & Welling 2018);
    VampPrior              p(z) = (1/K) sum_k q(z | u_k), the encoder's own
                           posterior averaged over K learned pseudo-inputs u_k
                           (Tomczak & Welling 2018): the aggregated posterior
                           with N data points replaced by K trainable ones.

Neither mixture has a closed-form KL from q(z|x): a VAE with them estimates the
rate by Monte Carlo. Their distributions are `tfd.MixtureSameFamily`s whose
log-density is computed by matrix products when the components are diagonal
Gaussians (`tfvae.gaussian_mixture`), which the importance-sampled test NLL
needs: it scores 10^4 draws against K = 500 components per step. Only N(0, I)
is `tfd.Independent(tfd.Normal)`, so TFP's analytic KL from a diagonal-Gaussian
posterior still applies to it.

Every prior mirrors the head interface of `tfvae.parts` without features (its
parameters are its own weights, or the encoder's output at the pseudo-inputs,
so the methods take the encoder instead):

    distribution(encoder)        tfd.Distribution, batch shape [], event [J]
    parameters(encoder)          {name: tensor}, what an export describes
    mean(encoder)                E[z] [J]
    noise_spec(encoder)          {name: (kind, shape per example)}
    draw(noise, encoder)         z [B, J] from explicit noise, builtin LiteRT ops only
    elementwise_log_prob(z)      [..., J], factorized priors only

A mixture draws from two pieces of noise: the uniform `component_noise`
u ~ U(0, 1) picks component k by the inverse CDF of the weights (k = the number
of cumulative weights below u, so P(k) = pi_k), and the component's own noise
gives its draw (mu_k + sigma_k * eps for the mixture of Gaussians).

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Dilokthanakul, Mediano, Garnelo, Lee, Salimbeni, Arulkumaran & Shanahan
        (2016). Deep Unsupervised Clustering with Gaussian Mixture Variational
        Autoencoders. arXiv:1611.02648.
    Tomczak & Welling (2018). VAE with a VampPrior. AISTATS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.gaussian_mixture import DiagonalGaussianMixture
from tfvae.parts import event_shape_of, positive_scale

tfd = tfp.distributions


def standard_normal(
    event_shape: Sequence[int], dtype: tf.DType | str = tf.float32
) -> tfd.Distribution:
    """N(0, I) with batch shape `[]` and event shape `event_shape`."""
    loc = tf.zeros(event_shape, dtype=dtype)
    return tfd.Independent(
        tfd.Normal(loc=loc, scale=tf.ones_like(loc)), reinterpreted_batch_ndims=len(event_shape)
    )


def inverse_cdf_component(logits: tf.Tensor, component_noise: tf.Tensor) -> tf.Tensor:
    """The component k with C_{k-1} < u <= C_k, C the cumulative softmax(logits).

    With u ~ U(0, 1), P(k) = softmax(logits)_k. Builtin LiteRT ops only
    (softmax, cumsum, less, cast, sum, minimum); the clip to K - 1 catches a
    u above the last cumulative weight, which rounding may leave below 1.

    Args:
        logits: `[K]` unnormalised log-weights.
        component_noise: `[B]` uniform noise u.

    Returns:
        `[B]` int32 component indices in [0, K).
    """
    u = tf.convert_to_tensor(component_noise)
    cumulative = tf.cumsum(tf.nn.softmax(tf.cast(logits, u.dtype)))
    below = tf.cast(cumulative[tf.newaxis, :] < u[:, tf.newaxis], tf.int32)
    return tf.minimum(tf.reduce_sum(below, axis=-1), tf.shape(cumulative)[0] - 1)


def _gather(parameters: Mapping[str, tf.Tensor], k: tf.Tensor) -> dict[str, tf.Tensor]:
    """{name: `[K, ...]`} -> {name: `[B, ...]`}, row k[b] of each."""
    return {name: tf.gather(value, k) for name, value in parameters.items()}


class Prior(keras.layers.Layer):
    """Base of the priors: p(z) over latent codes of shape `event_shape`.

    Subclasses implement `distribution`, `parameters`, `mean`, `noise_spec`,
    `draw` and, if p(z) factorizes over dimensions, `elementwise_log_prob`.

    Args:
        event_shape: Shape of z, `[J]` (an int J is accepted).
        **kwargs: Of `keras.layers.Layer` (name, dtype).
    """

    needs_encoder = False  # True where p(z) is built from the encoder (VampPrior).

    def __init__(self, event_shape: Sequence[int] | int, **kwargs):
        kwargs.setdefault("dtype", "float32")  # In float32 under mixed precision too.
        super().__init__(**kwargs)
        self.event_shape = event_shape_of(event_shape)

    def build(self, input_shape=None):
        """Creates input-dependent weights; `input_shape` is x's `(None, *x_event)`."""

    def distribution(self, encoder=None) -> tfd.Distribution:
        """p(z): a `tfd.Distribution` with batch shape `[]` and event shape `[J]`."""
        raise NotImplementedError

    def parameters(self, encoder=None) -> dict[str, tf.Tensor]:
        """{name: tensor}: what defines p(z), for describing exports."""
        raise NotImplementedError

    def mean(self, encoder=None) -> tf.Tensor:
        """E[z] `[J]`."""
        raise NotImplementedError

    def noise_spec(self, encoder=None) -> dict[str, tuple[str, tuple[int, ...]]]:
        """{name: (kind, shape per example)} of the noise `draw` takes, kind
        "normal" (N(0, 1)) or "uniform" (U(0, 1))."""
        raise NotImplementedError

    def draw(self, noise: Mapping[str, tf.Tensor], encoder=None) -> tf.Tensor:
        """z `[B, J]` from explicit noise {name: `[B, *shape]`} (builtin ops only)."""
        raise NotImplementedError

    def elementwise_log_prob(self, z) -> tf.Tensor:
        """log p(z) per dimension `[..., J]`; sums to `log_prob` over the event.

        Raises:
            NotImplementedError: p(z) does not factorize over dimensions.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not factorize over dimensions: it has no "
            "per-dimension log-densities."
        )

    def get_config(self):
        return {**super().get_config(), "event_shape": self.event_shape}


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormal(Prior):
    """p(z) = N(0, I) (Kingma & Welling 2014); no weights.

    Computes in the layer's compute dtype (float32 unless `dtype` says otherwise).

    Parameters: `loc` (zeros) and `scale` (ones), each `[J]`.
    Noise: `eps` ~ N(0, 1) `[B, J]`; z = eps.
    """

    def __init__(self, event_shape: Sequence[int] | int, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.built = True

    def distribution(self, encoder=None):
        return standard_normal(self.event_shape, self.compute_dtype)

    def parameters(self, encoder=None):
        loc = tf.zeros(self.event_shape, self.compute_dtype)
        return {"loc": loc, "scale": tf.ones_like(loc)}

    def mean(self, encoder=None):
        return tf.zeros(self.event_shape, self.compute_dtype)

    def noise_spec(self, encoder=None):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, noise, encoder=None):
        return tf.convert_to_tensor(noise["eps"])

    def elementwise_log_prob(self, z):
        z = tf.convert_to_tensor(z)
        return tfd.Normal(tf.zeros([], z.dtype), tf.ones([], z.dtype)).log_prob(z)


@keras.saving.register_keras_serializable(package="tfvae")
class MixtureOfGaussians(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), every part learned.

    Weights (trainable): `logits` `[K]`, initialised to 0 (equal weights);
    `loc` `[K, J]`, initialised N(0, 1) so that the components start apart
    (equal locations would get equal gradients and stay together); `raw_scale`
    `[K, J]`, initialised to 0, with sigma = `tfvae.parts.positive_scale(raw,
    min_scale)`, 1 + min_scale at the start.

    Args:
        event_shape: Shape of z, `[J]` (an int is accepted).
        num_components: K.
        min_scale: Positive floor of every scale: a component that collapses
            onto a point would make log p(z) unbounded.
        seed: Seeds the initial locations (`None`: unseeded).
        **kwargs: Of `keras.layers.Layer`.

    Parameters: `logits` `[K]`, `loc` `[K, J]`, `scale` `[K, J]`.
    Noise: `component_noise` ~ U(0, 1) `[B]` picks k; `eps` ~ N(0, 1) `[B, J]`;
    z = loc_k + scale_k * eps.
    """

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        num_components: int = 10,
        *,
        min_scale: float = 1e-4,
        seed: int | None = None,
        **kwargs,
    ):
        if num_components < 1:
            raise ValueError(f"num_components must be at least 1, got {num_components}.")
        if not min_scale > 0:
            raise ValueError(
                f"min_scale must be positive, got {min_scale}: a scale of 0 "
                "makes log p(z) infinite."
            )
        super().__init__(event_shape, **kwargs)
        self.num_components = int(num_components)
        self.min_scale = float(min_scale)
        self.seed = seed
        shape = (self.num_components, *self.event_shape)
        # Created here, not in build: their shapes do not depend on the data.
        self.logits = self.add_weight(
            shape=(self.num_components,), initializer="zeros", name="logits"
        )
        self.loc = self.add_weight(
            shape=shape,
            name="loc",
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed),
        )
        self.raw_scale = self.add_weight(shape=shape, initializer="zeros", name="raw_scale")
        self.built = True

    def parameters(self, encoder=None):
        dtype = self.compute_dtype
        return {
            "logits": tf.cast(self.logits, dtype),
            "loc": tf.cast(self.loc, dtype),
            "scale": positive_scale(tf.cast(self.raw_scale, dtype), self.min_scale),
        }

    def distribution(self, encoder=None):
        p = self.parameters()
        components = tfd.Independent(
            tfd.Normal(p["loc"], p["scale"]), reinterpreted_batch_ndims=len(self.event_shape)
        )
        return DiagonalGaussianMixture(tfd.Categorical(logits=p["logits"]), components)

    def mean(self, encoder=None):
        p = self.parameters()
        weights = tf.reshape(tf.nn.softmax(p["logits"]), [-1] + [1] * len(self.event_shape))
        return tf.reduce_sum(weights * p["loc"], axis=0)

    def noise_spec(self, encoder=None):
        return {"component_noise": ("uniform", ()), "eps": ("normal", self.event_shape)}

    def draw(self, noise, encoder=None):
        eps = tf.convert_to_tensor(noise["eps"])
        p = {name: tf.cast(value, eps.dtype) for name, value in self.parameters().items()}
        k = inverse_cdf_component(p["logits"], tf.cast(noise["component_noise"], eps.dtype))
        return tf.gather(p["loc"], k) + tf.gather(p["scale"], k) * eps

    def get_config(self):
        return {
            **super().get_config(),
            "num_components": self.num_components,
            "min_scale": self.min_scale,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posterior at K learned
    pseudo-inputs (Tomczak & Welling 2018).

    The pseudo-inputs are a trainable weight `[K, *x_event]` created by
    `build(x_shape)`, u = sigmoid(raw). The data are in [0, 1] (pixel
    intensities, binary or grey), and an encoder fed inputs outside the range
    it was trained on says nothing about the data; the sigmoid keeps u there
    without the zero gradients of the hard clip (hardtanh) in Tomczak &
    Welling's code. The raw weights start N(0, 0.01^2), so every u starts near
    0.5, mid-range, where the sigmoid's gradient is largest; the seeded noise
    breaks their symmetry.

    Works with any posterior head: the mixture's components are
    `encoder(pseudo_inputs)`, batch shape `[K]`, and its draws the head's own
    `draw` at the chosen pseudo-input. The encoder is not a part of this layer
    (it belongs to the VAE, which saves it); every method that needs it takes it.

    Start the networks variance-preserving (`init_stddev=None`) when they have
    more than one hidden layer: from N(0, 0.01^2) they begin with q(z|x) = p(z)
    for every x, and the noise of the Monte Carlo KL keeps them there.

    Args:
        event_shape: Shape of z, `[J]` (an int is accepted); must be the
            encoder's.
        num_pseudo_inputs: K (500 in Tomczak & Welling's MNIST experiments).
        seed: Seeds the initial pseudo-inputs (`None`: unseeded).
        **kwargs: Of `keras.layers.Layer`.

    Parameters: `pseudo_inputs` `[K, *x_event]`.
    Noise: `component_noise` ~ U(0, 1) `[B]` picks k, plus the encoder head's
    noise (`eps` `[B, J]` for a diagonal Gaussian).
    """

    needs_encoder = True

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        num_pseudo_inputs: int = 500,
        *,
        seed: int | None = None,
        **kwargs,
    ):
        if num_pseudo_inputs < 1:
            raise ValueError(f"num_pseudo_inputs must be at least 1, got {num_pseudo_inputs}.")
        super().__init__(event_shape, **kwargs)
        self.num_pseudo_inputs = int(num_pseudo_inputs)
        self.seed = seed
        self.raw_pseudo_inputs = None

    def build(self, input_shape=None):
        """Creates the pseudo-inputs `[K, *x_event]` for x of shape `(None, *x_event)`."""
        if input_shape is None or len(input_shape) < 2 or None in tuple(input_shape)[1:]:
            raise ValueError(
                "VampPrior.build needs the shape of x, (None, *x_event) with "
                f"every event axis known; got {input_shape}."
            )
        if self.raw_pseudo_inputs is not None:
            return  # built before (a reloaded prior, or a second VAE.build)
        self.raw_pseudo_inputs = self.add_weight(
            shape=(self.num_pseudo_inputs, *(int(d) for d in tuple(input_shape)[1:])),
            initializer=keras.initializers.RandomNormal(stddev=0.01, seed=self.seed),
            name="raw_pseudo_inputs",
        )

    def pseudo_inputs(self) -> tf.Tensor:
        """u = sigmoid(raw) `[K, *x_event]`, in (0, 1)."""
        if self.raw_pseudo_inputs is None:
            raise RuntimeError(
                "The VampPrior has no pseudo-inputs yet: build it with the "
                "shape of x, prior.build((None, *x_event))."
            )
        return tf.sigmoid(tf.cast(self.raw_pseudo_inputs, self.compute_dtype))

    def _check_encoder(self, encoder):
        if encoder is None:
            raise ValueError(
                "The VampPrior is the encoder's posterior at its pseudo-inputs: "
                "pass the VAE's encoder, e.g. prior.distribution(encoder)."
            )
        head_shape = getattr(getattr(encoder, "head", None), "event_shape", None)
        if head_shape is not None and tuple(head_shape) != self.event_shape:
            raise ValueError(
                f"The encoder's latent shape {tuple(head_shape)} is not this "
                f"VampPrior's event shape {self.event_shape}."
            )
        return encoder

    def _encoder_parameters(self, encoder) -> dict[str, tf.Tensor]:
        """The posterior's parameters at the pseudo-inputs, {name: `[K, ...]`}."""
        return self._check_encoder(encoder).parameters(self.pseudo_inputs())

    def distribution(self, encoder=None):
        components = self._check_encoder(encoder)(self.pseudo_inputs())
        logits = tf.zeros([self.num_pseudo_inputs], components.dtype)
        return DiagonalGaussianMixture(tfd.Categorical(logits=logits), components)

    def parameters(self, encoder=None):
        return {"pseudo_inputs": self.pseudo_inputs()}

    def mean(self, encoder=None):
        parameters = self._encoder_parameters(encoder)
        return tf.reduce_mean(encoder.head.mean(parameters), axis=0)

    def noise_spec(self, encoder=None):
        head_spec = self._check_encoder(encoder).head.noise_spec()
        if "component_noise" in head_spec:
            raise ValueError(
                "The encoder head's noise is named 'component_noise', the name "
                "of the VampPrior's own."
            )
        return {"component_noise": ("uniform", ()), **head_spec}

    def draw(self, noise, encoder=None):
        parameters = self._encoder_parameters(encoder)
        u = tf.convert_to_tensor(noise["component_noise"])
        k = inverse_cdf_component(tf.zeros([self.num_pseudo_inputs], u.dtype), u)
        head_noise = {name: noise[name] for name in encoder.head.noise_spec()}
        return encoder.head.draw(_gather(parameters, k), head_noise)

    def get_config(self):
        return {
            **super().get_config(),
            "num_pseudo_inputs": self.num_pseudo_inputs,
            "seed": self.seed,
        }
