"""Probabilistic PCA: the linear-Gaussian VAE whose log p(x) is known exactly.

pPCA (seed 001; Tipping & Bishop 1999): p(z) = N(0, I), p(x|z) = N(W z + mu, S)
with S diagonal, so that p(x) = N(mu, W W^T + S). With S = s^2 I the posterior is
p(z|x) = N(M^-1 W^T (x - mu), s^2 M^-1) with M = W^T W + s^2 I (seed 001 prints
these with M's and the covariance's inverses misplaced). With orthogonal columns
W = U diag(l), M = diag(l^2 + s^2) and the exact posterior is a diagonal Gaussian:
every importance weight then equals p(x), and the IW estimate is exact with zero
variance. This is the correctness check of the ELBO, the IWAE bound and
`evaluation.log_likelihood`: a VAE with these networks can be scored against the
exact log p(x) of its own decoder.

References:
    Tipping & Bishop (1999). Probabilistic Principal Component Analysis. JRSS B.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae

tfd = tfp.distributions

DATA_DIM, NOISE = 4, 0.5
LOADINGS = np.array([2.0, 0.7, 0.0])  # l_j; the third latent unit is dead.
LATENT_DIM = len(LOADINGS)


@keras.saving.register_keras_serializable(package="tfvae")
class AffineGaussian(keras.Model):
    """inputs `[B, n]` -> N(inputs K + b, diag(scale^2)), or N(inputs K + b, L L^T).

    A pPCA decoder (and, with the exact posterior's parameters, its encoder).
    """

    def __init__(self, units, full_covariance=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.full_covariance = units, full_covariance
        self.affine = keras.layers.Dense(units)

    def build(self, input_shape):
        self.affine.build(input_shape)
        shape = (self.units, self.units) if self.full_covariance else (self.units,)
        self.scale = self.add_weight(shape=shape, initializer="ones", name="scale")

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "full_covariance": self.full_covariance}

    def set_parameters(self, kernel, bias, scale):
        for variable, value in ((self.affine.kernel, kernel), (self.affine.bias, bias),
                                (self.scale, scale)):
            variable.assign(np.asarray(value, np.float32))

    def call(self, inputs):
        loc = self.affine(inputs)
        if self.full_covariance:
            return tfd.MultivariateNormalTriL(loc, tf.linalg.band_part(self.scale, -1, 0))
        return tfd.Independent(tfd.Normal(loc, self.scale), reinterpreted_batch_ndims=1)


class PPCA:
    """A pPCA model, its exact log p(x), and VAEs with exact or chosen posteriors."""

    def __init__(self, loadings=LOADINGS, seed=0):
        rng = np.random.default_rng(seed)
        directions, _ = np.linalg.qr(rng.normal(size=(DATA_DIM, len(loadings))))
        self.weights = directions * loadings  # W [D, J], orthogonal columns.
        self.mean = rng.normal(size=DATA_DIM)
        self.posterior_precision = self.weights.T @ self.weights + NOISE**2 * np.eye(len(loadings))

    def sample(self, n, seed=1):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, LATENT_DIM))
        return (z @ self.weights.T + self.mean
                + NOISE * rng.normal(size=(n, DATA_DIM))).astype(np.float32)

    def log_evidence(self, x):
        covariance = self.weights @ self.weights.T + NOISE**2 * np.eye(DATA_DIM)
        return tfd.MultivariateNormalTriL(self.mean, np.linalg.cholesky(covariance)).log_prob(
            x.astype(np.float64)).numpy()

    def vae(self, loc_shift=0.0, scale_factor=1.0, full_covariance=False):
        """VAE whose posterior is the exact one, shifted and widened as asked."""
        encoder = AffineGaussian(LATENT_DIM, full_covariance)
        decoder = AffineGaussian(DATA_DIM)
        model = tfvae.VAE(encoder, decoder, seed=0)
        model.build((None, DATA_DIM))
        gain = self.weights @ np.linalg.inv(self.posterior_precision)  # [D, J]
        covariance = NOISE**2 * np.linalg.inv(self.posterior_precision)
        scale = (np.linalg.cholesky(covariance) if full_covariance
                 else np.sqrt(np.diag(covariance)))
        encoder.set_parameters(gain, loc_shift - self.mean @ gain, scale_factor * scale)
        decoder.set_parameters(self.weights.T, self.mean, np.full(DATA_DIM, NOISE))
        return model

    def mutual_information(self):
        return 0.5 * np.sum(np.log((LOADINGS**2 + NOISE**2) / NOISE**2))


def exact_log_evidence(decoder: AffineGaussian, x: np.ndarray) -> np.ndarray:
    """log p(x) `[N]` under N(0, I) and a diagonal `AffineGaussian` decoder, for x `[N, D]`."""
    kernel = decoder.affine.kernel.numpy().astype(np.float64)  # [J, D] = W^T
    covariance = kernel.T @ kernel + np.diag(decoder.scale.numpy().astype(np.float64) ** 2)
    bias = decoder.affine.bias.numpy().astype(np.float64)
    return tfd.MultivariateNormalTriL(bias, np.linalg.cholesky(covariance)).log_prob(
        x.astype(np.float64)).numpy()
