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

import numpy as np
import tensorflow_probability as tfp

import tfvae
from tfvae import likelihoods, posteriors
from tfvae.networks import MLP, ProbabilisticNetwork
from tfvae.parts import inverse_positive_scale

tfd = tfp.distributions

DATA_DIM, NOISE = 4, 0.5
LOADINGS = np.array([2.0, 0.7, 0.0])  # l_j; the third latent unit is dead.
LATENT_DIM = len(LOADINGS)


def affine_encoder(full_covariance: bool = False):
    """x `[B, D]` -> q(z|x), a Gaussian with mean affine in x and a constant (diagonal or
    full) covariance: the exact pPCA posterior has this form. No hidden layer."""
    head = (posteriors.FullCovarianceGaussian if full_covariance else posteriors.DiagonalGaussian)(
        LATENT_DIM, name="posterior"
    )
    return ProbabilisticNetwork(MLP(()), head, name="encoder")


def affine_decoder():
    """z `[B, J]` -> p(x|z) = N(W z + mu, diag(s^2)): the pPCA decoder, s learned per
    dimension and independent of z."""
    head = likelihoods.Gaussian(
        DATA_DIM, scale="per_pixel", mean_activation=None, name="likelihood"
    )
    return ProbabilisticNetwork(MLP(()), head, name="decoder")


def set_encoder(encoder, gain, bias, scale) -> None:
    """Sets q(z|x) = N(x gain + bias, S): S = diag(scale^2), or L L^T for scale = L."""
    loc, raw = encoder.head.parameter_layers
    loc.set_weights([gain.astype(np.float32), bias.astype(np.float32)])
    min_scale = encoder.head.min_scale
    if scale.ndim == 1:
        values = inverse_positive_scale(scale, min_scale)
    else:  # Row by row, the diagonal through positive_scale (posteriors.FullCovarianceGaussian).
        rows, columns = np.tril_indices(LATENT_DIM)
        values = np.where(
            rows == columns,
            inverse_positive_scale(np.maximum(scale[rows, columns], 1e-3), min_scale),
            scale[rows, columns],
        )
    raw.set_weights([np.zeros(raw.kernel.shape, np.float32), values.astype(np.float32)])


def set_decoder(decoder, weights, mean, scale) -> None:
    """Sets p(x|z) = N(W z + mean, diag(scale^2)) for weights W `[D, J]`."""
    (loc,) = decoder.head.parameter_layers
    loc.set_weights([weights.T.astype(np.float32), mean.astype(np.float32)])
    decoder.head.raw_scale.assign(
        inverse_positive_scale(scale, decoder.head.min_scale).astype(np.float32)
    )


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
        return (z @ self.weights.T + self.mean + NOISE * rng.normal(size=(n, DATA_DIM))).astype(
            np.float32
        )

    def log_evidence(self, x):
        covariance = self.weights @ self.weights.T + NOISE**2 * np.eye(DATA_DIM)
        return (
            tfd.MultivariateNormalTriL(self.mean, np.linalg.cholesky(covariance))
            .log_prob(x.astype(np.float64))
            .numpy()
        )

    def vae(self, loc_shift=0.0, scale_factor=1.0, full_covariance=False):
        """VAE whose posterior is the exact one, shifted and widened as asked."""
        encoder, decoder = affine_encoder(full_covariance), affine_decoder()
        model = tfvae.VAE(encoder, decoder, seed=0)
        model.build((None, DATA_DIM))
        gain = self.weights @ np.linalg.inv(self.posterior_precision)  # [D, J]
        covariance = NOISE**2 * np.linalg.inv(self.posterior_precision)
        scale = np.linalg.cholesky(covariance) if full_covariance else np.sqrt(np.diag(covariance))
        set_encoder(encoder, gain, loc_shift - self.mean @ gain, scale_factor * scale)
        set_decoder(decoder, self.weights, self.mean, np.full(DATA_DIM, NOISE))
        return model

    def mutual_information(self):
        return 0.5 * np.sum(np.log((LOADINGS**2 + NOISE**2) / NOISE**2))


def exact_log_evidence(decoder, x: np.ndarray) -> np.ndarray:
    """log p(x) `[N]` under N(0, I) and an `affine_decoder`, for x `[N, D]`."""
    (loc,) = decoder.head.parameter_layers
    kernel = loc.kernel.numpy().astype(np.float64)  # [J, D] = W^T
    scale = decoder.parameters(np.zeros((1, LATENT_DIM), np.float32))["scale"][0]
    covariance = kernel.T @ kernel + np.diag(scale.numpy().astype(np.float64) ** 2)
    bias = loc.bias.numpy().astype(np.float64)
    return (
        tfd.MultivariateNormalTriL(bias, np.linalg.cholesky(covariance))
        .log_prob(x.astype(np.float64))
        .numpy()
    )


def maximum_likelihood(x: np.ndarray, latent_dim: int) -> tfd.MultivariateNormalTriL:
    """The maximum-likelihood pPCA marginal p(x) = N(mean, W W^T + s^2 I) of data x.

    Tipping & Bishop (1999), eq. 7-8: s^2 is the mean of the D - J smallest
    eigenvalues of the sample covariance and W = U_J (L_J - s^2 I)^(1/2), with
    U_J, L_J its J leading eigenvectors and eigenvalues.

    Args:
        x: Data `[N, D]`.
        latent_dim: J < D.

    Returns:
        The fitted marginal, batch shape `[]`, event shape `[D]`, float64.
    """
    x = np.asarray(x, np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # Largest first.
    noise_variance = eigenvalues[latent_dim:].mean()
    weights = eigenvectors[:, :latent_dim] * np.sqrt(eigenvalues[:latent_dim] - noise_variance)
    covariance = weights @ weights.T + noise_variance * np.eye(x.shape[1])
    return tfd.MultivariateNormalTriL(x.mean(0), np.linalg.cholesky(covariance))
