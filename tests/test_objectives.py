"""Objectives against closed forms and an exactly solvable model.

The exactly solvable model: p(z) = N(0, 1), p(x|z) = N(z, 1), so that
p(x) = N(0, 2) and p(z|x) = N(x / 2, 1 / 2). With q(z|x) = p(z|x) every
importance weight equals p(x): every bound is exact, with zero variance.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import objectives, priors

tfd = tfp.distributions


def diagonal_normal(loc, scale):
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


@pytest.fixture
def posterior():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(3, 4)).astype(np.float32)
    scale = rng.uniform(0.2, 2.0, size=(3, 4)).astype(np.float32)
    return diagonal_normal(loc, scale)


def test_analytic_rate_matches_the_closed_form(posterior):
    # Seed 000, problem 1.7: -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    mu, sigma = posterior.mean().numpy(), posterior.stddev().numpy()
    expected = -0.5 * np.sum(1 + np.log(sigma**2) - mu**2 - sigma**2, axis=-1)
    rate = objectives.analytic_rate(posterior, priors.standard_normal([4]))
    assert rate.shape == (3,)
    np.testing.assert_allclose(rate.numpy(), expected, rtol=1e-5)


def test_monte_carlo_rate_agrees_with_the_analytic_rate(posterior):
    prior = priors.standard_normal([4])
    z = posterior.sample(200_000, seed=(1, 2))
    estimate = objectives.monte_carlo_rate(posterior, prior, z).numpy()
    samples = (posterior.log_prob(z) - prior.log_prob(z)).numpy()
    stderr = samples.std(axis=0) / math.sqrt(samples.shape[0])
    exact = objectives.analytic_rate(posterior, prior).numpy()
    assert np.all(np.abs(estimate - exact) < 4 * stderr)


def test_has_analytic_kl():
    prior = priors.standard_normal([2])
    assert objectives.has_analytic_kl(diagonal_normal(tf.zeros([1, 2]), tf.ones([1, 2])), prior)
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                    diagonal_normal(tf.zeros([2, 2]), tf.ones([2, 2])))
    assert not objectives.has_analytic_kl(diagonal_normal(tf.zeros([1, 2]), tf.ones([1, 2])),
                                          mixture)


def test_elbo_splits_into_rate_and_distortion():
    log_likelihood = tf.constant([[-1.0, -4.0], [-3.0, -2.0]])  # [S=2, B=2]
    terms = objectives.elbo(log_likelihood, rate=tf.constant([0.5, 1.0]))
    np.testing.assert_allclose(terms.distortion, [2.0, 3.0])
    np.testing.assert_allclose(terms.elbo, [-2.5, -4.0])
    np.testing.assert_allclose(terms.bound, terms.elbo)


def test_iwae_bound_is_log_mean_exp_and_above_the_elbo():
    log_weights = np.random.default_rng(1).normal(size=(7, 5)) * 3
    bound = objectives.iwae_bound(tf.constant(log_weights)).numpy()
    expected = np.log(np.mean(np.exp(log_weights), axis=0))
    np.testing.assert_allclose(bound, expected, rtol=1e-6)
    assert np.all(bound >= log_weights.mean(axis=0))
    np.testing.assert_allclose(objectives.iwae_bound(tf.constant(log_weights[:1])),
                               log_weights[0])


def linear_gaussian(x):
    """log p(x, z) of the exactly solvable model, for z [S, B, 1]."""
    def log_joint(z):
        z = z[..., 0]
        return tfd.Normal(z, 1.0).log_prob(x) + tfd.Normal(0.0, 1.0).log_prob(z)
    return log_joint


X = tf.constant([-1.5, 0.3, 2.0])
LOG_EVIDENCE = tfd.Normal(0.0, math.sqrt(2.0)).log_prob(X).numpy()


@pytest.mark.parametrize("importance_weighted", [False, True])
def test_bounds_are_exact_when_q_is_the_true_posterior(importance_weighted):
    exact_posterior = diagonal_normal(X[:, None] / 2, tf.fill([3, 1], math.sqrt(0.5)))
    bound = objectives.monte_carlo_bound(linear_gaussian(X), exact_posterior, num_samples=5,
                                         importance_weighted=importance_weighted, seed=(3, 4))
    np.testing.assert_allclose(bound.numpy(), LOG_EVIDENCE, rtol=1e-5)


def test_monte_carlo_elbo_matches_its_closed_form():
    m, s = np.float32(0.4), np.float32(0.8)
    q = diagonal_normal(tf.fill([3, 1], m), tf.fill([3, 1], s))
    # E_q log N(x; z, 1) - KL(N(m, s^2) || N(0, 1)).
    expected = (-0.5 * np.log(2 * np.pi) - 0.5 * ((X.numpy() - m) ** 2 + s**2)
                - 0.5 * (m**2 + s**2 - 1 - np.log(s**2)))
    bound = objectives.monte_carlo_bound(linear_gaussian(X), q, num_samples=100_000, seed=(5, 6))
    np.testing.assert_allclose(bound.numpy(), expected, atol=0.02)
    assert np.all(bound.numpy() < LOG_EVIDENCE)


def test_iwae_bound_tightens_with_k_towards_the_evidence():
    # 4000 copies of each datapoint: the mean over copies is the expected bound.
    x = tf.repeat(X, 4000)
    q = diagonal_normal(tf.fill([12000, 1], 0.4), tf.fill([12000, 1], 0.8))
    def expected_bound(k):
        bound = objectives.monte_carlo_bound(linear_gaussian(x), q, num_samples=k,
                                             importance_weighted=True, seed=(7, k))
        return tf.reduce_mean(tf.reshape(bound, [3, 4000]), axis=1).numpy()
    bounds = [expected_bound(k) for k in (1, 10, 100)]
    assert np.all(bounds[0] < bounds[1]) and np.all(bounds[1] < bounds[2])
    assert np.all(bounds[2] < LOG_EVIDENCE)
    np.testing.assert_allclose(bounds[2], LOG_EVIDENCE, atol=0.05)
