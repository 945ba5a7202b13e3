"""Heads against closed forms, at ordinary and at extreme parameters.

Most tests use a "transparent" head: its Dense kernels select slices of the
features, so that the features are the raw parameters (loc, raw scale or
logits) and a test can drive them anywhere, yet every value and gradient still
flows through the head's own layers and weights.

Tolerances are float32 rounding bounds: EPS is float32's machine epsilon
(1.2e-7), a sum of n terms may lose (n - 1) EPS of the sum of their magnitudes,
and each term a few EPS of its own.
"""

import functools
import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tfvae import heads
from tfvae.networks import ProbabilisticMLP

# Distinct sizes on every axis: batch, two event axes, features.
B, H, W, F = 5, 4, 3, 6
EVENT = (H, W)
SIZE = H * W
EPS = np.finfo(np.float32).eps
MIN_SCALE = 1e-4


def transparent(head):
    """Builds `head` so that its i-th parameter is the i-th `SIZE` slice of the features."""
    width = SIZE * len(head.parameter_layers)
    head.build((None, width))
    for i, layer in enumerate(head.parameter_layers):
        kernel = np.zeros((width, SIZE), np.float32)
        kernel[i * SIZE:(i + 1) * SIZE] = np.eye(SIZE)
        layer.set_weights([kernel, np.zeros(SIZE, np.float32)])
    return head


@functools.cache
def transparent_gaussian(min_scale=MIN_SCALE):
    return transparent(heads.DiagonalGaussian(EVENT, min_scale=min_scale))


@functools.cache
def transparent_bernoulli():
    return transparent(heads.Bernoulli(EVENT))


def features_of(*parameters):
    """`[B, H, W]` arrays -> `[B, len(parameters) * SIZE]` float32 features."""
    return tf.constant(np.concatenate([np.reshape(p, (B, SIZE)) for p in parameters], axis=1),
                       tf.float32)


def log_prob_and_gradients(head, features, x):
    """log p(x) `[B]` and its gradients w.r.t. the features and the head's weights."""
    with tf.GradientTape() as tape:
        tape.watch(features)
        log_prob = head(features).log_prob(x)
    gradients = tape.gradient(log_prob, [features, *head.trainable_weights])
    return log_prob, gradients


def assert_finite(*tensors):
    for tensor in tensors:
        assert np.all(np.isfinite(np.asarray(tensor))), tensor


def normal_log_prob_tolerance(x, loc, scale):
    """Float32 rounding bound on sum over the event of log N(x; loc, scale), `[B]`.

    log N = -z^2 / 2 - log scale - log(2 pi) / 2 with z = x / scale - loc / scale:
    each division errs by EPS |x| / scale (or |loc|), which z^2 / 2 turns into
    EPS |z| (|x| + |loc|) / scale; the other terms err by EPS of their size.
    """
    x, loc, scale = (np.asarray(a, np.float64) for a in (x, loc, scale))
    z = (x - loc) / scale
    size = (0.5 * z**2 + np.abs(z) * (np.abs(x) + np.abs(loc)) / scale
            + np.abs(np.log(scale)) + 1.0)
    return (SIZE + 4) * EPS * size.sum(axis=(1, 2))


@pytest.mark.parametrize("make_head", [
    lambda: heads.DiagonalGaussian(EVENT, seed=0),
    lambda: heads.DiagonalGaussian(EVENT, mean_activation="sigmoid", seed=0),
    lambda: heads.Bernoulli(EVENT, seed=0)], ids=["gaussian", "sigmoid_gaussian", "bernoulli"])
def test_shapes(make_head):
    distribution = make_head()(tf.ones([B, F]))
    assert distribution.batch_shape == (B,) and distribution.event_shape == EVENT
    assert distribution.sample(2, seed=(1, 2)).shape == (2, B, H, W)
    assert distribution.log_prob(tf.zeros([B, H, W])).shape == (B,)


@pytest.mark.parametrize("mean_activation", [None, "sigmoid"])
def test_gaussian_log_prob_is_the_normal_density_of_its_own_loc_and_scale(mean_activation):
    # init_stddev=1 spreads loc and scale over a few orders of magnitude.
    head = heads.DiagonalGaussian(EVENT, mean_activation=mean_activation, init_stddev=1.0,
                                  seed=0)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(B, F)).astype(np.float32)
    x = rng.normal(size=(B, H, W)).astype(np.float32)
    likelihood = head(features)
    loc = likelihood.distribution.loc.numpy()
    scale = likelihood.distribution.scale.numpy()
    assert loc.shape == scale.shape == (B, H, W)
    if mean_activation == "sigmoid":
        assert np.all((loc >= 0) & (loc <= 1))
    expected = scipy.stats.norm.logpdf(x, loc.astype(np.float64), scale).sum(axis=(1, 2))
    error = np.abs(likelihood.log_prob(x).numpy() - expected)
    assert np.all(error <= normal_log_prob_tolerance(x, loc, scale))


@pytest.mark.parametrize("min_scale", [MIN_SCALE, 0.05])
def test_scale_has_a_floor_is_one_at_zero_and_grows_linearly(min_scale):
    raw = np.resize(np.array([-1e30, -1e4, -100.0, 0.0, 200.0, 1e6, 1e30], np.float32),
                    (B, H, W))
    head = transparent_gaussian(min_scale)
    features = features_of(np.zeros_like(raw), raw)
    scale = head(features).distribution.scale.numpy()
    floor = np.float32(min_scale)  # The float32 floor the head adds.
    assert np.all(scale >= floor)
    np.testing.assert_allclose(scale[raw <= -100], floor, rtol=EPS)
    # softplus(r + log(e - 1)) = 1 at r = 0.
    np.testing.assert_allclose(scale[raw == 0], 1 + min_scale, rtol=2 * EPS)
    # softplus(r) = r + log1p(exp(-r)): linear, where exp(r / 2) overflowed at 178.
    large = raw >= 200
    np.testing.assert_allclose(scale[large], raw[large] + math.log(math.e - 1) + min_scale,
                               rtol=2 * EPS)
    x = np.full((B, H, W), 0.5, np.float32)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)


@settings(max_examples=60, deadline=None)
@given(loc=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e3, 1e3, width=32)),
       raw=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e4, 1e4, width=32)),
       x=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e3, 1e3, width=32)))
def test_gaussian_head_is_exact_and_finite_over_wide_ranges(loc, raw, x):
    head = transparent_gaussian()
    features = features_of(loc, raw)
    likelihood = head(features)
    scale = likelihood.distribution.scale.numpy()
    assert np.all(scale >= np.float32(MIN_SCALE)) and np.all(np.isfinite(scale))
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    loc = likelihood.distribution.loc.numpy()
    expected = scipy.stats.norm.logpdf(x, loc.astype(np.float64), scale).sum(axis=(1, 2))
    assert np.all(np.abs(log_prob.numpy() - expected) <= normal_log_prob_tolerance(x, loc, scale))


def bernoulli_log_prob(x, logits):
    """sum over the event of x l - log(1 + e^l) in float64, `[B]`.

    Written as -(1 - x) log(1 + e^l) - x log(1 + e^-l), the same function
    (log(1 + e^l) - l = log(1 + e^-l)): x l - log(1 + e^l) cancels catastrophically
    even in float64 for x = 1 and large l (hypothesis found l = 22, x = 1: relative
    error 6e-6, float64 rounding of 22 against a result of 3e-10).
    """
    logits = np.asarray(logits, np.float64)
    terms = (1 - x) * np.logaddexp(0.0, logits) + x * np.logaddexp(0.0, -logits)
    return -np.sum(terms, axis=(1, 2))


@settings(max_examples=60, deadline=None)
@given(logits=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-50, 50, width=32)),
       x=hnp.arrays(np.bool_, (B, H, W)))
def test_bernoulli_log_prob_is_exact_and_finite_from_logits(logits, x):
    head = transparent_bernoulli()
    features = features_of(logits)
    x = x.astype(np.float32)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    # Every term is <= 0, so the sum has no cancellation: its relative error is
    # (SIZE - 1) EPS of summing plus a few EPS of each softplus.
    expected = bernoulli_log_prob(x, head(features).distribution.logits.numpy())
    np.testing.assert_allclose(log_prob.numpy(), expected, rtol=(SIZE + 4) * EPS, atol=1e-30)


@pytest.mark.parametrize("magnitude", [50.0, 1e4, 1e30])
def test_bernoulli_saturated_logits_give_exact_log_probs_and_gradients(magnitude):
    # Half the pixels agree with the sign of their logit (log p = -softplus(-|l|),
    # which is 0 in float32 for |l| >= 1e4), half disagree (log p = -|l|).
    logits = np.resize(np.array([magnitude, -magnitude], np.float32), (B, H, W))
    x = np.resize(np.array([1, 0, 0, 1], np.float32), (B, H, W))
    head = transparent_bernoulli()
    features = features_of(logits)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    np.testing.assert_allclose(log_prob.numpy(), bernoulli_log_prob(x, logits), rtol=SIZE * EPS)
    # d log p / d l = x - sigmoid(l), and the features are the logits.
    sigmoid = scipy.special.expit(logits.astype(np.float64))
    np.testing.assert_allclose(np.reshape(gradients[0], (B, H, W)), x - sigmoid, atol=EPS)


def test_min_scale_must_be_positive():
    for min_scale in (0.0, -1e-3):
        with pytest.raises(ValueError, match="min_scale must be positive"):
            heads.DiagonalGaussian(EVENT, min_scale=min_scale)


def test_config_round_trip_keeps_min_scale_and_mean_activation():
    head = heads.DiagonalGaussian(EVENT, mean_activation="sigmoid", min_scale=0.05, seed=3)
    config = head.get_config()
    assert config["min_scale"] == 0.05
    copy = heads.DiagonalGaussian.from_config(config)
    assert (copy.min_scale, copy.mean_activation, copy.event_shape) == (0.05, "sigmoid", EVENT)


def test_a_head_saved_with_log_variance_scales_is_refused():
    config = heads.DiagonalGaussian(EVENT, name="likelihood").get_config()
    del config["min_scale"]  # What heads saved before softplus scales hold.
    with pytest.raises(ValueError, match="'likelihood' was saved with log-variance"):
        heads.DiagonalGaussian.from_config(config)


def test_keras_round_trip_of_a_gaussian_decoder_keeps_its_floor(tmp_path):
    head = heads.DiagonalGaussian(EVENT, mean_activation="sigmoid", min_scale=0.05, seed=1)
    decoder = ProbabilisticMLP(head, (16,), seed=0, name="decoder")
    z = np.random.default_rng(0).normal(size=(B, 2)).astype(np.float32)
    decoder(z)
    # A scale bias of -1e4 pins every scale to the floor: only a reloaded
    # min_scale of 0.05 (not the default) reproduces these scales.
    kernel, bias = head.parameter_layers[1].get_weights()
    head.parameter_layers[1].set_weights([kernel, np.full_like(bias, -1e4)])
    decoder.save(tmp_path / "decoder.keras")
    loaded = keras.models.load_model(tmp_path / "decoder.keras")
    assert loaded.head.min_scale == 0.05
    before, after = decoder(z).distribution, loaded(z).distribution
    np.testing.assert_allclose(after.scale.numpy(), np.float32(0.05), rtol=EPS)
    np.testing.assert_array_equal(after.scale.numpy(), before.scale.numpy())
    np.testing.assert_array_equal(after.loc.numpy(), before.loc.numpy())
