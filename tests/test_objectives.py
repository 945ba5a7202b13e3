"""Objectives against closed forms and an exactly solvable model.

The exactly solvable model: p(z) = N(0, 1), p(x|z) = N(z, 1), so that
p(x) = N(0, 2) and p(z|x) = N(x / 2, 1 / 2). With q(z|x) = p(z|x) every
importance weight equals p(x): every bound is exact, with zero variance.
"""

import math

import numpy as np
import pytest
import scipy.special
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=[0.0, 0.0]), diagonal_normal(tf.zeros([2, 2]), tf.ones([2, 2]))
    )
    assert not objectives.has_analytic_kl(
        diagonal_normal(tf.zeros([1, 2]), tf.ones([1, 2])), mixture
    )


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
    np.testing.assert_allclose(objectives.iwae_bound(tf.constant(log_weights[:1])), log_weights[0])


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
    bound = objectives.monte_carlo_bound(
        linear_gaussian(X),
        exact_posterior,
        num_samples=5,
        importance_weighted=importance_weighted,
        seed=(3, 4),
    )
    np.testing.assert_allclose(bound.numpy(), LOG_EVIDENCE, rtol=1e-5)


def test_monte_carlo_elbo_matches_its_closed_form():
    m, s = np.float32(0.4), np.float32(0.8)
    q = diagonal_normal(tf.fill([3, 1], m), tf.fill([3, 1], s))
    # E_q log N(x; z, 1) - KL(N(m, s^2) || N(0, 1)).
    expected = (
        -0.5 * np.log(2 * np.pi)
        - 0.5 * ((X.numpy() - m) ** 2 + s**2)
        - 0.5 * (m**2 + s**2 - 1 - np.log(s**2))
    )
    bound = objectives.monte_carlo_bound(linear_gaussian(X), q, num_samples=100_000, seed=(5, 6))
    np.testing.assert_allclose(bound.numpy(), expected, atol=0.02)
    assert np.all(bound.numpy() < LOG_EVIDENCE)


def test_iwae_bound_tightens_with_k_towards_the_evidence():
    # 4000 copies of each datapoint: the mean over copies is the expected bound.
    x = tf.repeat(X, 4000)
    q = diagonal_normal(tf.fill([12000, 1], 0.4), tf.fill([12000, 1], 0.8))

    def expected_bound(k):
        bound = objectives.monte_carlo_bound(
            linear_gaussian(x), q, num_samples=k, importance_weighted=True, seed=(7, k)
        )
        return tf.reduce_mean(tf.reshape(bound, [3, 4000]), axis=1).numpy()

    bounds = [expected_bound(k) for k in (1, 10, 100)]
    assert np.all(bounds[0] < bounds[1]) and np.all(bounds[1] < bounds[2])
    assert np.all(bounds[2] < LOG_EVIDENCE)
    np.testing.assert_allclose(bounds[2], LOG_EVIDENCE, atol=0.05)


# Property tests at extreme parameters. Tolerances are float32 rounding bounds
# (EPS = 1.2e-7), as in test_heads.py.

EPS = np.finfo(np.float32).eps
# Distinct sizes: batch, latent, importance or Monte Carlo samples.
B_WIDE, D_WIDE, K_WIDE, S_WIDE = 5, 3, 6, 50

locs = hnp.arrays(np.float32, (B_WIDE, D_WIDE), elements=st.floats(-1e3, 1e3, width=32))
# log10 of the scales: log-uniform over 1e-6..1e6.
log10_scales = hnp.arrays(np.float64, (B_WIDE, D_WIDE), elements=st.floats(-6, 6))


def rate_and_gradients(loc, scale):
    """Analytic KL(N(loc, scale) || N(0, I)) `[B]` and its gradients w.r.t. loc, scale."""
    loc, scale = tf.constant(loc), tf.constant(scale)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        rate = objectives.analytic_rate(
            diagonal_normal(loc, scale), priors.standard_normal([D_WIDE])
        )
    return rate, tape.gradient(rate, [loc, scale])


@settings(max_examples=100, deadline=None)
@given(loc=locs, log10_scale=log10_scales)
def test_analytic_rate_is_exact_and_finite_for_extreme_posteriors(loc, log10_scale):
    scale = (10.0**log10_scale).astype(np.float32)
    rate, (d_loc, d_scale) = rate_and_gradients(loc, scale)
    m, s = loc.astype(np.float64), scale.astype(np.float64)
    expected = np.sum(0.5 * (s**2 + m**2 - 1) - np.log(s), axis=-1)
    # TFP computes 0.5 expm1(2 log s) for the s^2 term: log s errs by EPS |log s|,
    # which expm1(2 .) turns into a relative error of 2 EPS |log s| <= 28 EPS; the
    # sum over D latents adds (D - 1) EPS and the other roundings a few more. Near
    # KL = 0 the terms cancel, so the error is relative to their size, not to KL.
    amplification = 2 * np.abs(np.log(s)).max() + D_WIDE + 4
    size = np.sum(0.5 * (s**2 + m**2 + 1) + np.abs(np.log(s)), axis=-1)
    assert rate.shape == (B_WIDE,)
    assert np.all(np.isfinite(rate)) and np.all(rate.numpy() >= 0)
    assert np.all(np.abs(rate.numpy() - expected) <= amplification * EPS * size)
    # dKL/dloc = loc and dKL/dscale = scale - 1 / scale, elementwise; TF flushes
    # subnormal locs (below float32's tiny, 1.2e-38) to 0.
    np.testing.assert_allclose(d_loc, m, rtol=2 * EPS, atol=np.finfo(np.float32).tiny)
    gradient_size = s + 1 / s
    assert np.all(np.abs(d_scale.numpy() - (s - 1 / s)) <= amplification * EPS * gradient_size)


@settings(max_examples=60, deadline=None)
@given(loc=locs, log10_scale=log10_scales)
def test_monte_carlo_rate_is_finite_for_extreme_posteriors(loc, log10_scale):
    scale = tf.constant((10.0**log10_scale).astype(np.float32))
    loc = tf.constant(loc)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        posterior = diagonal_normal(loc, scale)
        z = posterior.sample(S_WIDE, seed=(8, 9))  # Reparameterized: gradients flow to loc, scale.
        rate = objectives.monte_carlo_rate(posterior, priors.standard_normal([D_WIDE]), z)
    gradients = tape.gradient(rate, [loc, scale])
    assert rate.shape == (B_WIDE,)
    for tensor in (rate, *gradients):
        assert np.all(np.isfinite(tensor.numpy()))


@settings(max_examples=100, deadline=None)
@given(
    log_weights=hnp.arrays(np.float32, (K_WIDE, B_WIDE), elements=st.floats(-1e4, 1e4, width=32))
)
def test_iwae_bound_lies_between_the_largest_weight_and_it_over_k(log_weights):
    log_weights = tf.constant(log_weights)
    with tf.GradientTape() as tape:
        tape.watch(log_weights)
        bound = objectives.iwae_bound(log_weights)
    gradient = tape.gradient(bound, log_weights).numpy()
    w = log_weights.numpy().astype(np.float64)
    largest = w.max(axis=0)
    # Adding and removing log k near |log w| ~ 1e4 rounds twice to float32's
    # spacing there (1e-3): allow 2 spacings of the largest magnitude involved.
    tolerance = 2 * np.spacing(np.float32(np.abs(w).max(axis=0) + math.log(K_WIDE)))
    assert bound.shape == (B_WIDE,) and np.all(np.isfinite(bound))
    assert np.all(bound >= largest - math.log(K_WIDE) - tolerance)
    assert np.all(bound <= largest + tolerance)
    expected = scipy.special.logsumexp(w, axis=0) - math.log(K_WIDE)
    assert np.all(np.abs(bound.numpy() - expected) <= tolerance)
    # d bound / d log w_i is the normalised weight w_i / sum_j w_j: a softmax.
    assert np.all(np.isfinite(gradient)) and np.all(gradient >= 0)
    np.testing.assert_allclose(gradient.sum(axis=0), 1.0, atol=K_WIDE * EPS)
