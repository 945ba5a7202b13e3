"""Tests for tfvae.ppca.maximum_likelihood against properties of the exact maximum."""

import numpy as np
import scipy.optimize
import tensorflow_probability as tfp

from tfvae import ppca

tfd = tfp.distributions


def data(n=4000, seed=0):
    return ppca.PPCA(seed=seed).sample(n, seed=seed + 1).astype(np.float64)


def test_the_fit_equals_a_numerical_maximum_of_the_log_likelihood():
    x = data()
    dim, latent_dim = x.shape[1], 2
    sample_covariance = np.cov(x, rowvar=False, bias=True)

    def negative_log_likelihood(theta):  # Mean over x, up to constants, at mean = x.mean(0).
        weights, log_variance = theta[:-1].reshape(dim, latent_dim), theta[-1]
        covariance = weights @ weights.T + np.exp(log_variance) * np.eye(dim)
        _, log_det = np.linalg.slogdet(covariance)
        return 0.5 * (log_det + np.trace(np.linalg.solve(covariance, sample_covariance)))

    start = np.random.default_rng(0).normal(size=dim * latent_dim + 1)
    numerical = scipy.optimize.minimize(negative_log_likelihood, start, method="BFGS", tol=1e-10)
    fit = ppca.maximum_likelihood(x, latent_dim)
    constant = 0.5 * dim * np.log(2 * np.pi)
    np.testing.assert_allclose(
        float(np.mean(fit.log_prob(x))), -numerical.fun - constant, rtol=1e-6
    )


def test_the_fit_keeps_the_data_variance_and_finds_the_noise():
    x = data(n=20000)
    fit = ppca.maximum_likelihood(x, latent_dim=2)
    sample_covariance = np.cov(x, rowvar=False, bias=True)
    # The ML covariance matches the sample covariance's trace (Tipping & Bishop 1999).
    np.testing.assert_allclose(np.trace(fit.covariance()), np.trace(sample_covariance), rtol=1e-9)
    # The third loading is 0, so with J = 2 the discarded directions hold noise only.
    eigenvalues = np.linalg.eigvalsh(fit.covariance().numpy())
    np.testing.assert_allclose(eigenvalues[:2], ppca.NOISE**2, rtol=0.05)
