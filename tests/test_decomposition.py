"""The KL decomposition estimators against closed forms.

The solvable model: data x ~ N(0, I_D) and posterior q(z|x) = N(x A, s^2 I_J).
The aggregate posterior is then N(0, S) with S = A^T A + s^2 I, so

    MI  = 1/2 log det(I + A^T A / s^2)
    TC  = 1/2 sum_j log S_jj - 1/2 log det S
    dim-wise KL = sum_j KL(N(0, S_jj) || N(0, 1)) = 1/2 sum_j (S_jj - 1 - log S_jj)

A diagonal A gives independent latents (TC = 0); a single row (D = 1) makes every
z_j a noisy copy of the same x, so TC > 0.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.special import logsumexp

from tfvae import decomposition

tfd = tfp.distributions

SCALE = 0.5
INDEPENDENT = np.diag([1.0, 0.5, 0.0]).astype(np.float32)  # D = J = 3, one dead unit.
CORRELATED = np.array([[1.0, 0.7, -0.4]], np.float32)  # D = 1, J = 3.


def exact_terms(a: np.ndarray) -> np.ndarray:
    covariance = a.T @ a + SCALE**2 * np.eye(a.shape[1])
    variances = np.diag(covariance)
    mutual_information = 0.5 * np.linalg.slogdet(covariance / SCALE**2)[1]
    total_correlation = 0.5 * np.sum(np.log(variances)) - 0.5 * np.linalg.slogdet(covariance)[1]
    dimensionwise_kl = 0.5 * np.sum(variances - 1 - np.log(variances))
    return np.array([mutual_information, total_correlation, dimensionwise_kl])


def posterior_batch(a: np.ndarray, batch_size: int, seed: int):
    """z, loc, scale `[B, J]` and log p(z_j) `[B, J]` for B datapoints of the model."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(batch_size, a.shape[0])).astype(np.float32) @ a
    scale = np.full_like(loc, SCALE)
    z = (loc + scale * rng.normal(size=loc.shape)).astype(np.float32)
    return z, loc, scale, tfd.Normal(0.0, 1.0).log_prob(z)


def estimate(a, batch_size, num_data, estimator, num_batches=1, seed=0) -> np.ndarray:
    terms = [
        decomposition.kl_decomposition(
            *posterior_batch(a, batch_size, seed + i), num_data=num_data, estimator=estimator
        )
        for i in range(num_batches)
    ]
    return np.mean([[float(t) for t in batch_terms] for batch_terms in terms], axis=0)


def test_pairwise_log_prob_matches_tfd_normal():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3)).astype(np.float32)
    loc = rng.normal(size=(4, 3)).astype(np.float32)
    scale = rng.uniform(0.3, 2.0, size=(4, 3)).astype(np.float32)
    log_q = decomposition.pairwise_log_prob(z, loc, scale)
    assert log_q.shape == (5, 4, 3)
    expected = tfd.Normal(loc[None], scale[None]).log_prob(z[:, None])
    np.testing.assert_allclose(log_q, expected, rtol=1e-5)


def test_estimators_keep_trailing_axes():
    log_q = tf.random.normal([6, 6, 3], seed=1)
    for log_density in (
        decomposition.minibatch_stratified_log_density,
        decomposition.minibatch_weighted_log_density,
    ):
        assert log_density(log_q, 50).shape == (6, 3)
        assert log_density(log_q[..., 0], 50).shape == (6,)


def test_stratified_estimator_with_the_whole_dataset_is_eq_24():
    # B = N: weights 1/N on and off the diagonal, the full-data estimator.
    log_q = np.random.default_rng(2).normal(size=(7, 7, 2)) * 3
    full_data = logsumexp(log_q, axis=1) - math.log(7)
    np.testing.assert_allclose(
        decomposition.minibatch_stratified_log_density(tf.constant(log_q), 7), full_data, rtol=1e-10
    )


def test_stratified_weights_own_and_other_posteriors_as_eq_29():
    log_q = np.random.default_rng(3).normal(size=(4, 4))
    n, b = 100, 4
    weights = np.full((b, b), (n - 1) / (n * (b - 1)))
    np.fill_diagonal(weights, 1 / n)
    expected = np.log(np.sum(weights * np.exp(log_q), axis=1))
    np.testing.assert_allclose(
        decomposition.minibatch_stratified_log_density(tf.constant(log_q), n), expected, rtol=1e-10
    )


def test_weighted_estimator_is_chen_et_al_and_never_above_stratified():
    log_q = np.random.default_rng(4).normal(size=(5, 5)) * 2
    weighted = decomposition.minibatch_weighted_log_density(tf.constant(log_q), 1000).numpy()
    np.testing.assert_allclose(weighted, logsumexp(log_q, axis=1) - math.log(5 * 1000))
    stratified = decomposition.minibatch_stratified_log_density(tf.constant(log_q), 1000)
    assert np.all(weighted <= stratified.numpy())


@pytest.mark.parametrize("estimator", decomposition.ESTIMATORS)
@pytest.mark.parametrize("batch_size,num_data", [(200, 200), (50, 10_000)])
def test_terms_add_up_to_the_monte_carlo_rate(estimator, batch_size, num_data):
    z, loc, scale, log_prior = posterior_batch(CORRELATED, batch_size, seed=5)
    terms = decomposition.kl_decomposition(z, loc, scale, log_prior, num_data, estimator)
    rate = tf.reduce_mean(
        tfd.Independent(tfd.Normal(loc, scale), 1).log_prob(z) - tf.reduce_sum(log_prior, axis=-1)
    )
    assert all(t.shape == () for t in terms)
    np.testing.assert_allclose(sum(float(t) for t in terms), float(rate), rtol=1e-5)


@pytest.mark.parametrize("a", [INDEPENDENT, CORRELATED], ids=["independent", "correlated"])
def test_full_data_estimate_approaches_the_closed_forms(a):
    # B = N = 2000: the stratified estimator is eq. 24 over a sample of the population.
    terms = estimate(a, batch_size=2000, num_data=2000, estimator="stratified")
    np.testing.assert_allclose(terms, exact_terms(a), atol=0.06)


@pytest.mark.parametrize("a", [INDEPENDENT, CORRELATED], ids=["independent", "correlated"])
def test_stratified_minibatches_estimate_the_closed_forms(a):
    # Minibatches of 500 from a dataset of N = 10^6: what training-time estimates see.
    terms = estimate(a, batch_size=500, num_data=10**6, estimator="stratified", num_batches=8)
    np.testing.assert_allclose(terms, exact_terms(a), atol=0.06)


def test_weighted_estimator_is_off_by_its_documented_shifts():
    # Overlapping posteriors: MWS underestimates q(z) and each q(z_j) by a factor N.
    n, j = 10**6, CORRELATED.shape[1]
    terms = estimate(CORRELATED, batch_size=500, num_data=n, estimator="weighted", num_batches=8)
    shifts = np.array([1, j - 1, -j]) * math.log(n)
    np.testing.assert_allclose(terms - shifts, exact_terms(CORRELATED), atol=0.1)


def test_invalid_arguments_raise():
    z, loc, scale, log_prior = posterior_batch(INDEPENDENT, 4, seed=6)
    with pytest.raises(ValueError, match="estimator"):
        decomposition.kl_decomposition(z, loc, scale, log_prior, 10, "naive")
    with pytest.raises(ValueError, match="B <= N"):
        decomposition.kl_decomposition(z, loc, scale, log_prior, 3, "stratified")
    with pytest.raises(ValueError, match="2 <= B"):
        decomposition.minibatch_stratified_log_density(tf.zeros([1, 1]), 10)
