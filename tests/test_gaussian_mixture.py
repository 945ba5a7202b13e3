"""The matrix-product mixture log-density against scipy in float64 and against
`tfd.MixtureSameFamily`'s elementwise one: values where the expanded square
cancels badly, gradients, event shapes of rank 2, and the fallback for
components that are not diagonal Gaussians.
"""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.gaussian_mixture import DiagonalGaussianMixture, diagonal_gaussian_log_prob_matrix

tfd = tfp.distributions

K, D = 7, 5  # distinct sizes on every axis


def parameters(seed=0, log_scale_shift=-2.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=K)
    loc = rng.normal(size=(K, D))
    scale = np.exp(rng.normal(size=(K, D)) + log_scale_shift)
    return logits, loc, scale


def scipy_log_prob(z, logits, loc, scale):
    """logsumexp_k [log softmax(logits)_k + sum_d log N(z_d; loc_kd, scale_kd)], float64."""
    per_component = scipy.stats.norm.logpdf(z[..., None, :], loc, scale).sum(-1)
    return scipy.special.logsumexp(per_component + scipy.special.log_softmax(logits), axis=-1)


def mixture(cls, logits, loc, scale, dtype=tf.float32, family=tfd.Normal):
    # tf.cast, not tf.constant: the gradient test passes variables.
    components = tfd.Independent(
        family(tf.cast(loc, dtype), tf.cast(scale, dtype)), reinterpreted_batch_ndims=1
    )
    return cls(tfd.Categorical(logits=tf.cast(logits, dtype)), components)


def test_matrix_is_every_component_log_density():
    _, loc, scale = parameters()
    z = np.random.default_rng(1).normal(size=(3, D))
    expected = scipy.stats.norm.logpdf(z[:, None, :], loc, scale).sum(-1)
    got = diagonal_gaussian_log_prob_matrix(tf.constant(z), tf.constant(loc), tf.constant(scale))
    assert got.shape == (3, K)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_log_prob_matches_scipy_over_sample_dims():
    logits, loc, scale = parameters()
    z = 2.0 * np.random.default_rng(2).normal(size=(3, 4, D))
    log_p = mixture(DiagonalGaussianMixture, logits, loc, scale).log_prob(
        tf.constant(z, tf.float32)
    )
    assert log_p.shape == (3, 4)
    # z rounds to float32 (6e-8 |z|) and the result is float32 (|log p| up to ~1e3 here).
    np.testing.assert_allclose(log_p, scipy_log_prob(np.float32(z), logits, loc, scale), rtol=2e-6)


def test_narrow_components_far_from_the_origin_keep_their_precision():
    """At loc = 30 and scale = 0.01 each expanded term is ~1e7 and their sum ~1: in
    float32 the expansion would be off by whole nats; float64 keeps it exact."""
    logits, loc, scale = parameters(seed=3)
    # Every input is a float32 number, so that scipy scores the same mixture.
    loc, scale = (
        np.float64(np.float32(loc + 30.0)),
        np.float64(np.float32(np.full_like(scale, 0.01))),
    )
    z = np.float64(np.float32(loc[:2] + scale[:2] * np.random.default_rng(4).normal(size=(2, D))))
    log_p = mixture(DiagonalGaussianMixture, logits, loc, scale).log_prob(
        tf.constant(z, tf.float32)
    )
    np.testing.assert_allclose(log_p, scipy_log_prob(z, logits, loc, scale), atol=2e-4)


def test_gradients_match_the_elementwise_mixture():
    logits, loc, scale = parameters(seed=5, log_scale_shift=0.0)
    z = tf.constant(np.random.default_rng(6).normal(size=(4, D)))

    def gradients(cls):
        variables = [tf.Variable(v) for v in (logits, loc, scale)]
        with tf.GradientTape() as tape:
            tape.watch(z)
            log_p = tf.reduce_sum(mixture(cls, *variables, dtype=tf.float64).log_prob(z))
        return tape.gradient(log_p, [z, *variables])

    for fast, reference in zip(
        gradients(DiagonalGaussianMixture), gradients(tfd.MixtureSameFamily), strict=True
    ):
        np.testing.assert_allclose(fast, reference, rtol=1e-9, atol=1e-12)


def test_event_of_rank_two_is_flattened():
    rng = np.random.default_rng(7)
    loc, scale = rng.normal(size=(K, 2, 3)), np.exp(rng.normal(size=(K, 2, 3)))
    logits = rng.normal(size=K)
    components = tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=2)
    fast = DiagonalGaussianMixture(tfd.Categorical(logits=logits), components)
    z = rng.normal(size=(4, 2, 3))
    expected = scipy_log_prob(z.reshape(4, 6), logits, loc.reshape(K, 6), scale.reshape(K, 6))
    np.testing.assert_allclose(fast.log_prob(z), expected, rtol=1e-10)


def test_other_components_fall_back_to_the_elementwise_density():
    logits, loc, scale = parameters()
    z = tf.constant(np.random.default_rng(8).normal(size=(3, D)), tf.float32)
    fast = mixture(DiagonalGaussianMixture, logits, loc, scale, family=tfd.Laplace)
    reference = mixture(tfd.MixtureSameFamily, logits, loc, scale, family=tfd.Laplace)
    np.testing.assert_array_equal(fast.log_prob(z), reference.log_prob(z))


def test_it_stays_a_composite_tensor_mixture():
    logits, loc, scale = parameters()
    fast = mixture(DiagonalGaussianMixture, logits, loc, scale)
    assert isinstance(fast, tf.__internal__.CompositeTensor)
    z = tf.constant(np.random.default_rng(9).normal(size=(2, D)), tf.float32)
    traced = tf.function(lambda distribution, z: distribution.log_prob(z))(fast, z)
    np.testing.assert_allclose(traced, fast.log_prob(z), rtol=1e-6)
    assert fast.sample([2, 3], seed=[1, 2]).shape == (2, 3, D)
    assert fast.log_prob(z[0]).shape == ()


@pytest.mark.parametrize("dtype", (tf.float32, tf.float64))
def test_result_dtype_is_the_mixture_dtype(dtype):
    fast = mixture(DiagonalGaussianMixture, *parameters(), dtype=dtype)
    assert fast.log_prob(tf.zeros([D], dtype)).dtype == dtype
