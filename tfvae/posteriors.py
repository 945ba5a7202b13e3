"""Posterior families q(z|x): heads that map encoder features to a distribution over z.

Every head here implements `tfvae.parts.Head`; `tfvae.flows` adds normalizing
flows on top of the diagonal Gaussian. Each is reparameterized (Kingma &
Welling 2014, section 2.4): z = g(eps; parameters) with parameter-free noise
eps, so that gradients of E_q[f(z)] pass through g.

Diagonal Gaussian (Kingma & Welling, eq. 9-10): q = N(loc, diag(scale^2)),
z = loc + scale * eps, eps ~ N(0, I).

Location-scale families (Kingma & Welling, section 2.4, class 2): z = loc +
scale * e with e from the standard member of the family, which a draw makes
from standard noise by

    Laplace     e = log(2u) if u < 1/2 else -log(2 (1 - u)),   u ~ U(0, 1)
    Logistic    e = log(u) - log(1 - u),                       u ~ U(0, 1)
    Student t   e = eps / sqrt(sum_k c_k^2 / nu),   eps, c_1..c_nu ~ N(0, 1)

(the inverse CDFs, and a normal over an independent sqrt(chi^2_nu / nu), so
that an on-device draw of every family needs only the normal and uniform
noise LiteRT has builtins for). The inverse CDFs clip u to [eta, 1 - eta] with
eta the dtype's spacing just below 1 (2^-24 in float32): both tails are cut at
the same probability eta, and log(0) never occurs. TFP has no closed-form KL
from these families to a Gaussian prior, so their rate is the Monte Carlo
average of log q(z|x) - log p(z) (`tfvae.objectives.monte_carlo_rate`).

Full-covariance Gaussian: q = N(loc, L L^T) with L lower triangular, z = loc +
L eps; log q = log N(L^-1 (z - loc); 0, I) - sum_j log L_jj. It can represent
the correlated exact posterior of probabilistic PCA (`tfvae.ppca`), which
no diagonal Gaussian can.

Point mass: q = delta(z - loc(x)), the plain autoencoder z = f(x). It has no
density, so there is no KL term (`has_density = False`).

Scales: Kingma & Welling (2014, appendix C.2) output a Gaussian's log-variance,
sigma = exp(log_var / 2). We depart from that: in float32 exp overflows to inf
once log_var > 177 and (TF flushes subnormals) underflows to 0 below -175, and
either end turns log q and its gradient into inf or NaN. The Dense layer outputs
an unconstrained `raw` instead, and

    sigma = min_scale + softplus(raw + log(e - 1)).

Softplus grows only linearly, so sigma overflows no sooner than `raw` itself;
the floor `min_scale` keeps sigma away from 0, where log q is infinite and its
gradient NaN; the shift log(e - 1) = softplus^-1(1) keeps the initial sigma of
1 that the log-variance gave at raw = 0 (tiny initial weights). The same map
gives the scale of every location-scale family and the diagonal of L.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Tipping & Bishop (1999). Probabilistic Principal Component Analysis. JRSS B.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.parts import Head, event_shape_of, independent, positive_scale

tfd = tfp.distributions


def _check_min_scale(min_scale: float) -> float:
    if not min_scale > 0:
        raise ValueError(
            f"min_scale must be positive, got {min_scale}: a scale of 0 makes log q infinite."
        )
    return float(min_scale)


def clip_uniform(u: tf.Tensor) -> tf.Tensor:
    """u `[...]` clipped to [eta, 1 - eta], eta = 1 - (the largest float below 1).

    Cuts both tails of an inverse CDF at the same probability eta (2^-24 in
    float32, 2^-53 in float64) and keeps log(u) and log(1 - u) finite.
    """
    eta = float(np.finfo(u.dtype.as_numpy_dtype).epsneg)
    return tf.clip_by_value(u, tf.constant(eta, u.dtype), tf.constant(1.0 - eta, u.dtype))


class LocationScaleFamily(Head):
    """Base of q(z|x) = prod_j family(z_j; loc_j, scale_j): z = loc + scale * e.

    Subclasses set `family` (a `tfd` class taking `loc` and `scale`), give its
    other parameters in `shape_parameters`, and implement `noise_spec` and
    `standard_draw` (e from the family's standard member, loc 0 and scale 1).

    Args:
        event_shape: Shape of z, e.g. `[latent_dim]` (an int is accepted).
        min_scale: Positive floor of every scale. A scale that collapses to 0
            makes log q infinite and its gradient NaN; 1e-4 keeps
            1/scale^2 <= 1e8.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `loc`, `scale`, each `[B, *event_shape]`.
    """

    parameter_names = ("loc", "scale")
    family: type | None = None

    def __init__(self, event_shape: Sequence[int] | int, *, min_scale: float = 1e-4, **kwargs):
        min_scale = _check_min_scale(min_scale)
        super().__init__(event_shape, **kwargs)
        self.min_scale = min_scale

    def constrain(self, raw):
        return {"loc": raw["loc"], "scale": positive_scale(raw["scale"], self.min_scale)}

    def shape_parameters(self) -> dict:
        """The family's parameters besides loc and scale, e.g. {"df": 5.0}."""
        return {}

    def factors(self, parameters: Mapping[str, tf.Tensor]) -> tfd.Distribution:
        """The family with batch shape `[B, *event_shape]`: one factor per element of z."""
        return self.family(
            loc=parameters["loc"], scale=parameters["scale"], **self.shape_parameters()
        )

    def distribution(self, parameters):
        return independent(self.factors(parameters), self.event_shape)

    def mean(self, parameters):
        return parameters["loc"]

    def standard_draw(self, noise: Mapping[str, tf.Tensor], dtype: tf.DType) -> tf.Tensor:
        """e `[B, *event_shape]` of `dtype` from the standard member of the family."""
        raise NotImplementedError

    def draw(self, parameters, noise):
        loc = parameters["loc"]
        return loc + parameters["scale"] * self.standard_draw(noise, loc.dtype)

    def elementwise_log_prob(self, parameters: Mapping[str, tf.Tensor], x) -> tf.Tensor:
        return self.factors(parameters).log_prob(x)

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale}


@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussian(LocationScaleFamily):
    """q(z|x) = N(loc, diag(scale^2)), loc and scale computed from the features.

    Arguments and parameters as `LocationScaleFamily`.
    Noise: `eps` ~ N(0, 1) `[B, *event_shape]`; z = loc + scale * eps.
    """

    family = tfd.Normal

    def noise_spec(self):
        return {"eps": ("normal", self.event_shape)}

    def standard_draw(self, noise, dtype):
        return tf.convert_to_tensor(noise["eps"], dtype)


@keras.saving.register_keras_serializable(package="tfvae")
class Laplace(LocationScaleFamily):
    """q(z|x) = prod_j Laplace(z_j; loc_j, scale_j), density exp(-|z - loc| / scale) / (2 scale).

    Args: as `LocationScaleFamily` (event_shape, min_scale, Head's kwargs).

    Parameters: `loc`, `scale`, each `[B, *event_shape]`.
    Noise: `eps` ~ U(0, 1) `[B, *event_shape]`; z = loc + scale * F^-1(eps) with
    the standard Laplace inverse CDF F^-1 (module docstring).
    """

    family = tfd.Laplace

    def noise_spec(self):
        return {"eps": ("uniform", self.event_shape)}

    def standard_draw(self, noise, dtype):
        u = clip_uniform(tf.convert_to_tensor(noise["eps"], dtype))
        two = tf.constant(2.0, u.dtype)
        # `where` evaluates both branches everywhere: on the clipped u both are
        # finite, so neither the value nor a gradient turns NaN.
        return tf.where(u < 0.5, tf.math.log(two * u), -tf.math.log(two * (1.0 - u)))


@keras.saving.register_keras_serializable(package="tfvae")
class Logistic(LocationScaleFamily):
    """q(z|x) = prod_j Logistic(z_j; loc_j, scale_j), CDF sigmoid((z - loc) / scale).

    Args: as `LocationScaleFamily` (event_shape, min_scale, Head's kwargs).

    Parameters: `loc`, `scale`, each `[B, *event_shape]`.
    Noise: `eps` ~ U(0, 1) `[B, *event_shape]`; z = loc + scale * logit(eps).
    """

    family = tfd.Logistic

    def noise_spec(self):
        return {"eps": ("uniform", self.event_shape)}

    def standard_draw(self, noise, dtype):
        u = clip_uniform(tf.convert_to_tensor(noise["eps"], dtype))
        return tf.math.log(u) - tf.math.log(1.0 - u)


@keras.saving.register_keras_serializable(package="tfvae")
class StudentT(LocationScaleFamily):
    """q(z|x) = prod_j t_nu(z_j; loc_j, scale_j), Student's t with nu degrees of freedom.

    Args:
        event_shape: Shape of z (an int is accepted).
        degrees_of_freedom: nu, an integer >= 2: integer so that chi^2_nu is a
            sum of nu squared normals in `draw`; at least 2 so that the mean
            (`loc`) exists (nu = 1 is the Cauchy, which has none).
        min_scale, **kwargs: As `LocationScaleFamily`.

    Parameters: `loc`, `scale`, each `[B, *event_shape]`.
    Noise: `eps` ~ N(0, 1) `[B, *event_shape]` and `chi2_noise` ~ N(0, 1)
    `[B, nu, *event_shape]`; z = loc + scale * eps / sqrt(sum_k chi2_noise_k^2 / nu).
    """

    family = tfd.StudentT

    def __init__(self, event_shape: Sequence[int] | int, *, degrees_of_freedom: int = 5, **kwargs):
        if int(degrees_of_freedom) != degrees_of_freedom or degrees_of_freedom < 2:
            raise ValueError(
                f"degrees_of_freedom must be an integer >= 2, got {degrees_of_freedom}: "
                "draw makes chi^2_nu from nu normals, and nu = 1 has no mean."
            )
        super().__init__(event_shape, **kwargs)
        self.degrees_of_freedom = int(degrees_of_freedom)

    def shape_parameters(self):
        return {"df": float(self.degrees_of_freedom)}

    def noise_spec(self):
        return {
            "eps": ("normal", self.event_shape),
            "chi2_noise": ("normal", (self.degrees_of_freedom, *self.event_shape)),
        }

    def standard_draw(self, noise, dtype):
        eps, c = (tf.convert_to_tensor(noise[name], dtype) for name in ("eps", "chi2_noise"))
        nu_axis = -(len(self.event_shape) + 1)
        # chi^2_nu / nu; a floor at the smallest normal float makes the
        # probability-zero all-zero noise give a huge finite t, not inf.
        chi2_over_nu = tf.maximum(
            tf.reduce_mean(tf.square(c), axis=nu_axis),
            tf.constant(np.finfo(c.dtype.as_numpy_dtype).tiny, c.dtype),
        )
        return eps / tf.sqrt(chi2_over_nu)

    def get_config(self):
        return {**super().get_config(), "degrees_of_freedom": self.degrees_of_freedom}


@keras.saving.register_keras_serializable(package="tfvae")
class FullCovarianceGaussian(Head):
    """q(z|x) = N(loc, L L^T), loc and the Cholesky factor L computed from the features.

    The Dense layer of L outputs its J (J + 1) / 2 lower-triangular entries row
    by row (L_11, L_21, L_22, L_31, ...); the diagonal ones go through the scale
    map of the module docstring, the others stay unconstrained.

    Args:
        event_shape: `[J]` (an int is accepted): the family is over vectors.
        min_scale: Positive floor of L's diagonal, so that L stays invertible.
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `loc` `[B, J]`, `scale_tril` `[B, J, J]` (lower triangular).
    Noise: `eps` ~ N(0, 1) `[B, J]`; z = loc + L eps.
    """

    parameter_names = ("loc", "scale_tril")

    def __init__(self, event_shape: Sequence[int] | int, *, min_scale: float = 1e-4, **kwargs):
        if len(event_shape_of(event_shape)) != 1:
            raise ValueError(
                f"FullCovarianceGaussian needs a rank-1 event [J], got "
                f"{event_shape_of(event_shape)}: flatten z first."
            )
        min_scale = _check_min_scale(min_scale)
        super().__init__(event_shape, **kwargs)
        self.min_scale = min_scale

    def raw_shapes(self):
        (size,) = self.event_shape
        return {"loc": (size,), "scale_tril": (size * (size + 1) // 2,)}

    def constrain(self, raw):
        # With a where and a gather instead of tfp.math.fill_triangular and
        # tf.linalg.set_diag: the encoder's parameters run on LiteRT too, which
        # has no builtin for MatrixDiagPart.
        (size,) = self.event_shape
        rows, columns = np.tril_indices(size)
        entries = raw["scale_tril"]  # [B, J (J + 1) / 2], row by row
        entries = tf.where(
            tf.constant(rows == columns), positive_scale(entries, self.min_scale), entries
        )
        # Entry J (J + 1) / 2, an appended zero, fills the upper triangle.
        index = np.full((size, size), len(rows))
        index[rows, columns] = np.arange(len(rows))
        padded = tf.concat([entries, tf.zeros_like(entries[..., :1])], axis=-1)
        scale_tril = tf.reshape(
            tf.gather(padded, index.reshape(-1), axis=-1),
            tf.concat([tf.shape(entries)[:-1], [size, size]], axis=0),
        )
        return {"loc": raw["loc"], "scale_tril": scale_tril}

    def distribution(self, parameters):
        return tfd.MultivariateNormalTriL(parameters["loc"], parameters["scale_tril"])

    def mean(self, parameters):
        return parameters["loc"]

    def noise_spec(self):
        return {"eps": ("normal", self.event_shape)}

    def draw(self, parameters, noise):
        # A product and a sum over the last axis: what LiteRT runs as builtins.
        loc = parameters["loc"]
        eps = tf.convert_to_tensor(noise["eps"], loc.dtype)
        return loc + tf.reduce_sum(parameters["scale_tril"] * eps[..., tf.newaxis, :], axis=-1)

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale}


@keras.saving.register_keras_serializable(package="tfvae")
class PointMass(Head):
    """q(z|x) = delta(z - loc): the deterministic encoder of a plain autoencoder.

    Args:
        event_shape: Shape of z (an int is accepted).
        **kwargs: Of `tfvae.parts.Head` (init_stddev, weight_decay, seed, name).

    Parameters: `loc` `[B, *event_shape]`.
    Noise: none; a draw is `loc`. No density: `has_density = False`, no KL term.
    """

    parameter_names = ("loc",)
    has_density = False

    def distribution(self, parameters):
        return independent(tfd.Deterministic(parameters["loc"]), self.event_shape)

    def mean(self, parameters):
        return parameters["loc"]

    def noise_spec(self):
        return {}

    def draw(self, parameters, noise):
        return parameters["loc"]
