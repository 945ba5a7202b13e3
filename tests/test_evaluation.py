"""Evaluation against probabilistic PCA, where everything is known in closed form.

pPCA (seed 001; Tipping & Bishop 1999): p(z) = N(0, I), p(x|z) = N(W z + mu, s^2 I),
so p(x) = N(mu, W W^T + s^2 I) and p(z|x) = N(M^-1 W^T (x - mu), s^2 M^-1) with
M = W^T W + s^2 I (the seed prints these with M's and the covariance's inverses
misplaced). With orthogonal columns W = U diag(l), M = diag(l^2 + s^2) and the
exact posterior is a diagonal Gaussian: with it every importance weight equals
p(x), so the IW estimate is exact with zero variance. For x ~ p(x) its aggregate
posterior is the prior, so TC = dim-wise KL = 0 and MI = rate
= 1/2 sum_j log((l_j^2 + s^2) / s^2); unit j has activity l_j^2 / (l_j^2 + s^2).
"""

import math

import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy.special import logsumexp

import tfvae
from tfvae import evaluation, priors
from tfvae import ppca as ppca_lib

tfd = tfp.distributions

DATA_DIM, NOISE, LOADINGS, LATENT_DIM = (
    ppca_lib.DATA_DIM,
    ppca_lib.NOISE,
    ppca_lib.LOADINGS,
    ppca_lib.LATENT_DIM,
)
PPCA = ppca_lib.PPCA


@pytest.fixture(scope="module")
def ppca():
    return PPCA()


def test_log_mean_weight_streams_exact_log_sum_exp():
    rng = np.random.default_rng(0)
    log_weights = -1000 + 30 * rng.normal(size=(37, 3))  # exp() would underflow.
    chunks = np.array_split(log_weights, [5, 6, 20])  # uneven chunk sizes
    estimate, stderr = evaluation.log_mean_weight(iter(chunks))
    np.testing.assert_allclose(estimate, logsumexp(log_weights, axis=0) - math.log(37), rtol=1e-12)
    w = np.exp(log_weights - log_weights.max(axis=0))
    np.testing.assert_allclose(
        stderr, w.std(axis=0, ddof=1) / (math.sqrt(37) * w.mean(axis=0)), rtol=1e-9
    )
    _, equal_weights_stderr = evaluation.log_mean_weight([np.full((9, 2), -3.0)])
    np.testing.assert_array_equal(equal_weights_stderr, 0.0)


def test_exact_posterior_gives_log_px_with_zero_variance(ppca):
    x = ppca.sample(7)
    result = evaluation.log_likelihood(ppca.vae(), x, 20, batch_size=3, sample_chunk=6)
    assert result.per_example.shape == result.per_example_stderr.shape == (7,)
    assert result.num_samples == 20
    np.testing.assert_allclose(result.per_example, ppca.log_evidence(x), atol=2e-4)
    assert np.all(result.per_example_stderr < 1e-3)
    assert result.mean == pytest.approx(np.mean(ppca.log_evidence(x)), abs=2e-4)
    assert result.stderr == pytest.approx(
        np.std(ppca.log_evidence(x), ddof=1) / math.sqrt(7), rel=1e-3
    )


def test_log_likelihood_works_for_a_full_covariance_posterior():
    model = PPCA(loadings=np.array([2.0, 1.0, 0.3]), seed=3)
    model.weights = model.weights @ np.array([[1, 0.5, 0], [0, 1, 0.2], [0, 0, 1]])  # oblique
    model.posterior_precision = model.weights.T @ model.weights + NOISE**2 * np.eye(LATENT_DIM)
    x = model.sample(5)
    result = evaluation.log_likelihood(model.vae(full_covariance=True), x, 10, sample_chunk=4)
    np.testing.assert_allclose(result.per_example, model.log_evidence(x), atol=2e-4)
    with pytest.raises(evaluation.UnsupportedDistribution, match="factorizes"):
        evaluation.kl_decomposition(model.vae(full_covariance=True), x)


def test_with_a_wrong_posterior_the_estimate_climbs_from_the_elbo_to_log_px(ppca):
    x = ppca.sample(200)
    model = ppca.vae(loc_shift=0.4, scale_factor=1.5)
    exact = ppca.log_evidence(x)
    elbo = evaluation.rate_distortion(model, x).elbo
    estimates = [evaluation.log_likelihood(model, x, k, seed=1) for k in (1, 10, 5000)]
    means = [e.mean for e in estimates]
    assert elbo < means[1] < means[2] < exact.mean() + 3 * estimates[2].monte_carlo_stderr
    assert means[0] == pytest.approx(elbo, abs=3 * estimates[0].stderr)  # IW_1 is an ELBO.
    assert exact.mean() - elbo > 0.5  # The posterior is wrong enough to matter.
    # The per-example standard errors describe the actual errors.
    z_scores = (estimates[2].per_example - exact) / estimates[2].per_example_stderr
    assert 0.5 < np.sqrt(np.mean(z_scores**2)) < 2


def assert_consistent(first, other):
    """Different draws, differences within 5 combined standard errors per example."""
    assert not np.array_equal(other.per_example, first.per_example)
    combined = np.hypot(first.per_example_stderr, other.per_example_stderr)
    assert np.all(np.abs(other.per_example - first.per_example) < 5 * combined)


def test_same_seed_same_result_and_batching_is_consistent(ppca):
    x = ppca.sample(30)
    model = ppca.vae(loc_shift=0.4, scale_factor=1.5)
    first = evaluation.log_likelihood(model, x, 200, batch_size=8, sample_chunk=64, seed=5)
    again = evaluation.log_likelihood(model, x, 200, batch_size=8, sample_chunk=64, seed=5)
    np.testing.assert_array_equal(first.per_example, again.per_example)
    assert_consistent(
        first, evaluation.log_likelihood(model, x, 200, batch_size=30, sample_chunk=200, seed=5)
    )


@pytest.mark.slow
def test_xla_step_is_consistent_with_the_graph_step(ppca):
    # XLA's stateless sampler draws other z from the same seed.
    x = ppca.sample(30)
    model = ppca.vae(loc_shift=0.4, scale_factor=1.5)
    assert_consistent(
        evaluation.log_likelihood(model, x, 200, seed=5),
        evaluation.log_likelihood(model, x, 200, seed=5, jit_compile=True),
    )


def test_active_units_match_closed_form(ppca):
    units = evaluation.active_units(ppca.vae(), ppca.sample(4000), batch_size=1500)
    np.testing.assert_allclose(units.activities, LOADINGS**2 / (LOADINGS**2 + NOISE**2), atol=0.04)
    assert units.count == 2 and units.threshold == 0.01
    strict = evaluation.active_units(ppca.vae(), ppca.sample(100), threshold=0.8)
    assert strict.count == 1


def test_decomposition_of_the_exact_posterior_is_all_mutual_information(ppca):
    x = ppca.sample(1000)
    model = ppca.vae()
    terms = evaluation.kl_decomposition(model, x, batch_size=1000)  # eq. 24: all N at once
    np.testing.assert_allclose(terms, [ppca.mutual_information(), 0, 0], atol=0.06)
    rate = evaluation.rate_distortion(model, x).rate
    assert rate == pytest.approx(ppca.mutual_information(), abs=0.06)
    assert sum(terms) == pytest.approx(rate, abs=0.06)
    minibatched = evaluation.kl_decomposition(model, x, batch_size=300)
    np.testing.assert_allclose(minibatched, terms, atol=0.06)


def test_decomposition_needs_a_factorized_prior(ppca):
    exact = ppca.vae()
    model = tfvae.VAE(
        exact.encoder, exact.decoder, priors.MixtureOfGaussians(3, num_components=2, seed=0)
    )
    with pytest.raises(evaluation.UnsupportedDistribution, match="factorized prior"):
        evaluation.kl_decomposition(model, ppca.sample(10))


def test_data_entropy_counts_distinct_datapoints():
    x = np.array([[0, 1], [0, 1], [1, 1], [0, 0]], np.float32)
    assert evaluation.data_entropy(x) == pytest.approx(
        -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    )
    assert evaluation.data_entropy(np.eye(5)) == pytest.approx(math.log(5))


def test_mutual_information_lower_bound_only_for_probability_mass_functions(
    ppca, small_bernoulli_vae
):
    binary = (np.random.default_rng(0).uniform(size=(40, 3, 5)) > 0.5).astype(np.float32)
    assert evaluation.has_discrete_likelihood(small_bernoulli_vae(), binary)
    assert not evaluation.has_discrete_likelihood(small_bernoulli_vae(), binary * 0.9)
    assert not evaluation.has_discrete_likelihood(ppca.vae(), ppca.sample(3))
    assert evaluation.mutual_information_bounds(2.0, 90.0, None) == (None, 2.0)
    assert evaluation.mutual_information_bounds(2.0, 90.0, math.log(40)) == (
        pytest.approx(math.log(40) - 90.0),
        2.0,
    )
