"""Likelihood heads against mathematics: closed forms, integrals, sums over levels
and the sampling distributions of draws from explicit noise.

Many tests use a "transparent" head: its Dense kernels select slices of the
features, so that the features are the raw parameters (raw loc, raw scale or
logits) and a test can drive them anywhere, yet every value and gradient still
flows through the head's own layers and weights.

References are computed in float64 (or numpy's longdouble, 64-bit mantissa on
x86, where float64 itself underflows) with numpy and scipy, never by restating
the head's own formulas. Tolerances: EPS is float32's machine epsilon (1.2e-7)
and EPS64 float64's (2.2e-16); a sum of n terms may lose (n - 1) EPS of the
sum of their magnitudes, and each term a few EPS of its own.
"""

import functools
import inspect
import math

import keras
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfvae import likelihoods, networks, parts

# Distinct sizes on every axis: batch, two event axes, features.
B, H, W, F = 5, 4, 3, 6
EVENT = (H, W)
SIZE = H * W
EPS = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
MIN_SCALE = 1e-4
LEVELS = 256
# References whose float64 form would cancel or underflow use numpy's longdouble.
needs_longdouble = pytest.mark.skipif(
    np.finfo(np.longdouble).eps > 1e-18, reason="longdouble is float64 on this platform"
)

HEADS = {
    "bernoulli": lambda **kw: likelihoods.Bernoulli(EVENT, **kw),
    "gaussian": lambda **kw: likelihoods.Gaussian(EVENT, **kw),
    "gaussian_per_pixel": lambda **kw: likelihoods.Gaussian(EVENT, scale="per_pixel", **kw),
    "gaussian_global": lambda **kw: likelihoods.Gaussian(EVENT, scale="global", **kw),
    "gaussian_fixed": lambda **kw: likelihoods.Gaussian(
        EVENT, scale="fixed", fixed_scale=0.3, **kw
    ),
    "continuous_bernoulli": lambda **kw: likelihoods.ContinuousBernoulli(EVENT, **kw),
    "discretized_logistic": lambda **kw: likelihoods.DiscretizedLogistic(EVENT, **kw),
}
FAMILIES = ("bernoulli", "gaussian", "continuous_bernoulli", "discretized_logistic")


def data_for(head, rng, shape=(B, H, W), dtype=np.float32):
    """x in the head's support, of `shape`."""
    u = rng.uniform(size=shape)
    x = {
        "binary": np.round(u),
        "real": rng.normal(0.5, 0.3, size=shape),
        "unit_interval": u,
        "grey_levels": np.round(u * (LEVELS - 1)) / (LEVELS - 1),
    }[head.support]
    return x.astype(dtype)


def parameters_for(head, rng, dtype=np.float64):
    """Ordinary parameters `[B, H, W]` of `head`'s family, as `dtype` tensors."""
    shape = (B, H, W)
    if "logits" in head.parameter_names:
        values = {"logits": rng.normal(0, 3, size=shape)}
    else:
        values = {
            "loc": rng.uniform(-0.2, 1.2, size=shape),
            "scale": np.exp(rng.uniform(np.log(0.01), np.log(2.0), size=shape)),
        }
    return {name: tf.constant(value, dtype) for name, value in values.items()}


def noise_for(head, rng, batch=B, dtype=np.float32):
    draw = {"normal": rng.standard_normal, "uniform": rng.uniform}
    return {
        name: tf.constant(draw[kind](size=(batch, *shape)), dtype)
        for name, (kind, shape) in head.noise_spec().items()
    }


def transparent(head):
    """Builds `head` so that its i-th raw parameter is the i-th `SIZE` slice of the features."""
    width = SIZE * len(head.parameter_layers)
    head.build((None, width))
    for i, layer in enumerate(head.parameter_layers):
        kernel = np.zeros((width, SIZE), np.float32)
        kernel[i * SIZE : (i + 1) * SIZE] = np.eye(SIZE)
        layer.set_weights([kernel, np.zeros(SIZE, np.float32)])
    return head


def features_of(*raw):
    """`[B, H, W]` arrays -> `[B, len(raw) * SIZE]` float32 features."""
    return tf.constant(np.concatenate([np.reshape(r, (B, SIZE)) for r in raw], axis=1), tf.float32)


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


def pixel(dtype=np.float64, **values):
    """Parameters of one pixel per value, broadcast to `[n, 1, 1]` (n values)."""
    return {name: tf.constant(np.reshape(v, (-1, 1, 1)), dtype) for name, v in values.items()}


def ks_bound(n, p_value=1e-4):
    """The Kolmogorov-Smirnov statistic that n exact draws exceed with probability p_value."""
    return scipy.stats.kstwo.ppf(1 - p_value, n)


# The interface, for every head.

EXPECTED_ATTRIBUTES = {  # (is_discrete, support, noise kind)
    "bernoulli": (True, "binary", "uniform"),
    "gaussian": (False, "real", "normal"),
    "continuous_bernoulli": (False, "unit_interval", "uniform"),
    "discretized_logistic": (True, "grey_levels", "uniform"),
}


@pytest.mark.parametrize("name", HEADS)
def test_shapes_attributes_and_registration(name):
    head = HEADS[name](seed=0)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(B, F)), tf.float32)
    distribution = head(features)
    assert distribution.batch_shape == (B,) and distribution.event_shape == EVENT
    parameters = head.parameters(features)
    assert set(parameters) == set(head.parameter_names)
    assert all(value.shape == (B, H, W) for value in parameters.values())
    assert head.mean(parameters).shape == (B, H, W)
    assert head.draw(parameters, noise_for(head, rng)).shape == (B, H, W)
    assert distribution.log_prob(data_for(head, rng)).shape == (B,)
    assert distribution.sample(2, seed=(1, 2)).shape == (2, B, H, W)
    family = name.split("_")[0] if name.startswith("gaussian") else name
    is_discrete, support, kind = EXPECTED_ATTRIBUTES[family]
    assert (head.is_discrete, head.support, head.has_density) == (is_discrete, support, True)
    assert support in parts.SUPPORTS
    assert list(head.noise_spec().values()) == [(kind, EVENT)]
    assert keras.saving.get_registered_name(type(head)) == f"tfvae>{type(head).__name__}"


@pytest.mark.parametrize("name", HEADS)
def test_config_covers_every_constructor_argument(name):
    head = HEADS[name](seed=3, init_stddev=0.2)
    config = head.get_config()
    for cls in type(head).__mro__[:2]:  # The head and tfvae.parts.Head.
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        assert arguments <= set(config), arguments - set(config)
    copy = type(head).from_config(config)
    assert copy.get_config() == config


@pytest.mark.parametrize("name", FAMILIES)
def test_float64_parameters_give_float64_results_and_elementwise_sums_to_log_prob(name):
    head = HEADS[name]()
    rng = np.random.default_rng(1)
    parameters = parameters_for(head, rng, np.float64)
    x = tf.constant(data_for(head, rng, dtype=np.float64))
    noise = noise_for(head, rng, dtype=np.float64)
    distribution = head.distribution(parameters)
    outputs = {
        "mean": head.mean(parameters),
        "draw": head.draw(parameters, noise),
        "elementwise": head.elementwise_log_prob(parameters, x),
        "log_prob": distribution.log_prob(x),
        "distribution_mean": distribution.mean(),
    }
    assert {key: value.dtype for key, value in outputs.items()} == dict.fromkeys(
        outputs, tf.float64
    )
    # Two orders of summing SIZE terms of one float64 computation.
    summed = tf.reduce_sum(outputs["elementwise"], axis=[1, 2]).numpy()
    magnitude = tf.reduce_sum(tf.abs(outputs["elementwise"]), axis=[1, 2]).numpy()
    np.testing.assert_array_less(
        np.abs(summed - outputs["log_prob"].numpy()), SIZE * EPS64 * magnitude + 1e-300
    )
    # TFP's continuous-Bernoulli mean and the head's (exact to 1e-13, tested
    # below) switch to their series at different logits.
    np.testing.assert_allclose(outputs["distribution_mean"], outputs["mean"], atol=1e-13)


@pytest.mark.parametrize("name", HEADS)
def test_keras_round_trip_keeps_every_weight(name, tmp_path):
    network = networks.ProbabilisticNetwork(networks.MLP((8,), seed=0), HEADS[name](seed=1))
    rng = np.random.default_rng(2)
    z = rng.normal(size=(B, 2)).astype(np.float32)
    network(z)
    # Weights away from their initial values: a weight that is not saved (or
    # not created on load) reloads at its initial value and changes log p.
    for weight in network.weights:
        weight.assign(rng.normal(0, 0.5, size=weight.shape).astype(np.float32))
    network.save(tmp_path / "network.keras")
    loaded = keras.saving.load_model(tmp_path / "network.keras")
    assert len(loaded.weights) == len(network.weights)
    x = data_for(network.head, rng)
    np.testing.assert_array_equal(loaded(z).log_prob(x), network(z).log_prob(x))
    for key, value in network.parameters(z).items():
        np.testing.assert_array_equal(loaded.parameters(z)[key], value)


class MaximumLikelihood(networks.ProbabilisticNetwork):
    """A decoder fitted by maximum likelihood: the head's log_prob inside `fit`."""

    def train_step(self, data):
        z, x = data
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self(z).log_prob(x))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return {"loss": loss}


@pytest.mark.parametrize(
    "name",
    ["bernoulli", "gaussian", "gaussian_per_pixel", "continuous_bernoulli", "discretized_logistic"],
)
def test_one_xla_fit_step_trains_every_weight(name):
    model = MaximumLikelihood(networks.MLP((8,), seed=0), HEADS[name](seed=1))
    rng = np.random.default_rng(3)
    z = rng.normal(size=(B, 2)).astype(np.float32)
    x = data_for(model.head, rng)
    model(z)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(z, x, batch_size=B, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight, old in zip(model.trainable_weights, before):
        assert not np.array_equal(weight.numpy(), old), weight.path


@pytest.mark.parametrize("name", FAMILIES)
def test_mean_and_draw_convert_to_litert_builtins_and_agree(name):
    from ai_edge_litert.interpreter import Interpreter

    head = transparent(HEADS[name](**({"mean_activation": None} if name == "gaussian" else {})))
    ((noise_name, (_, shape)),) = head.noise_spec().items()
    width = SIZE * len(head.parameter_layers)

    def mean_and_draw(features, noise):
        parameters = head.parameters(features)
        return head.mean(parameters), head.draw(parameters, {noise_name: noise})

    function = tf.function(
        mean_and_draw,
        input_signature=[
            tf.TensorSpec([B, width], tf.float32),
            tf.TensorSpec([B, *shape], tf.float32),
        ],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())  # Raises on any Flex op.
    interpreter.allocate_tensors()
    rng = np.random.default_rng(4)
    # Raw parameters over a wide range: logits to +-20, locs beyond [0, 1].
    features = rng.uniform(-20, 20, size=(B, width)).astype(np.float32)
    noise = noise_for(head, rng)[noise_name].numpy()
    for detail in interpreter.get_input_details():  # Told apart by rank.
        interpreter.set_tensor(detail["index"], features if len(detail["shape"]) == 2 else noise)
    interpreter.invoke()
    # Outputs are named Identity, Identity_1 in the order returned.
    details = sorted(interpreter.get_output_details(), key=lambda d: d["name"])
    mean, draw = (interpreter.get_tensor(d["index"]) for d in details)
    expected_mean, expected_draw = (t.numpy() for t in function(features, noise))
    # Float32 kernels of exp, log and sigmoid differ from TF's by a few EPS; a
    # discretized-logistic draw that lands on a level boundary may move one level.
    np.testing.assert_allclose(mean, expected_mean, atol=1e-5)
    level = 1 / (LEVELS - 1) if name == "discretized_logistic" else 0
    np.testing.assert_allclose(draw, expected_draw, atol=1e-5 + level)


# Bernoulli.


@functools.cache
def transparent_bernoulli():
    return transparent(likelihoods.Bernoulli(EVENT))


def bernoulli_log_prob(x, logits):
    """sum over the event of x l - log(1 + e^l) in float64, `[B]`, written as
    -(1 - x) log(1 + e^l) - x log(1 + e^-l): the direct form cancels even in
    float64 for x = 1 and large l."""
    logits = np.asarray(logits, np.float64)
    terms = (1 - x) * np.logaddexp(0.0, logits) + x * np.logaddexp(0.0, -logits)
    return -np.sum(terms, axis=(1, 2))


def test_bernoulli_mean_is_p_and_draws_have_frequency_p():
    head = likelihoods.Bernoulli(EVENT)
    logits = np.array([-30.0, -3.0, -0.4, 0.0, 1.1, 4.0, 30.0])
    p = scipy.special.expit(logits)
    parameters = pixel(logits=logits)
    np.testing.assert_allclose(head.mean(parameters)[:, 0, 0], p, rtol=2 * EPS64)
    n = 20_000
    u = np.random.default_rng(5).uniform(size=(len(logits), n))
    draws = head.draw(
        pixel(np.float32, logits=logits), {"uniform_noise": tf.constant(u[:, :, None], tf.float32)}
    ).numpy()
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    frequency = draws.mean(axis=(1, 2))
    # 5 binomial standard deviations (plus one draw of rounding in p).
    bound = 5 * np.sqrt(p * (1 - p) / n) + 1 / n
    np.testing.assert_array_less(np.abs(frequency - p), bound)
    # The test could fail: u > p (frequency 1 - p) is outside the bound except at p = 1/2.
    assert np.all((np.abs((1 - p) - p) > bound) | (logits == 0))


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-50, 50, width=32)),
    x=hnp.arrays(np.bool_, (B, H, W)),
)
def test_bernoulli_log_prob_is_exact_and_finite_from_logits(logits, x):
    head = transparent_bernoulli()
    features = features_of(logits)
    x = x.astype(np.float32)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    # Every term is <= 0, so the sum has no cancellation: its relative error is
    # (SIZE - 1) EPS of summing plus a few EPS of each softplus.
    np.testing.assert_allclose(
        log_prob.numpy(), bernoulli_log_prob(x, logits), rtol=(SIZE + 4) * EPS, atol=1e-30
    )


@pytest.mark.parametrize("magnitude", [50.0, 1e4, 1e30])
def test_bernoulli_saturated_logits_give_exact_log_probs_and_gradients(magnitude):
    # Half the pixels agree with the sign of their logit (log p = -softplus(-|l|),
    # which is 0 in float32 for |l| >= 1e4), half disagree (log p = -|l|).
    logits = np.resize(np.array([magnitude, -magnitude], np.float32), (B, H, W))
    x = np.resize(np.array([1, 0, 0, 1], np.float32), (B, H, W))
    head = transparent_bernoulli()
    log_prob, gradients = log_prob_and_gradients(head, features_of(logits), x)
    assert_finite(log_prob, *gradients)
    np.testing.assert_allclose(log_prob.numpy(), bernoulli_log_prob(x, logits), rtol=SIZE * EPS)
    # d log p / d l = x - sigmoid(l), and the features are the logits.
    sigmoid = scipy.special.expit(logits.astype(np.float64))
    np.testing.assert_allclose(np.reshape(gradients[0], (B, H, W)), x - sigmoid, atol=EPS)


# Gaussian.


@functools.cache
def transparent_gaussian(min_scale=MIN_SCALE):
    return transparent(likelihoods.Gaussian(EVENT, mean_activation=None, min_scale=min_scale))


def normal_log_prob_tolerance(x, loc, scale):
    """Float32 rounding bound on sum over the event of log N(x; loc, scale), `[B]`.

    log N = -z^2 / 2 - log scale - log(2 pi) / 2 with z = x / scale - loc / scale:
    each division errs by EPS |x| / scale (or |loc|), which z^2 / 2 turns into
    EPS |z| (|x| + |loc|) / scale; the other terms err by EPS of their size.
    """
    x, loc, scale = (np.asarray(a, np.float64) for a in (x, loc, scale))
    z = (x - loc) / scale
    size = 0.5 * z**2 + np.abs(z) * (np.abs(x) + np.abs(loc)) / scale + np.abs(np.log(scale)) + 1.0
    return (SIZE + 4) * EPS * size.sum(axis=(1, 2))


@pytest.mark.parametrize("mean_activation", [None, "sigmoid"])
def test_gaussian_log_prob_is_the_normal_density_of_its_own_loc_and_scale(mean_activation):
    # init_stddev=1 spreads loc and scale over a few orders of magnitude.
    head = likelihoods.Gaussian(EVENT, mean_activation=mean_activation, init_stddev=1.0, seed=0)
    rng = np.random.default_rng(6)
    features = rng.normal(size=(B, F)).astype(np.float32)
    x = rng.normal(size=(B, H, W)).astype(np.float32)
    parameters = head.parameters(features)
    loc, scale = parameters["loc"].numpy(), parameters["scale"].numpy()
    if mean_activation == "sigmoid":
        assert np.all((loc >= 0) & (loc <= 1))
    expected = scipy.stats.norm.logpdf(x, loc.astype(np.float64), scale).sum(axis=(1, 2))
    error = np.abs(head(features).log_prob(x).numpy() - expected)
    assert np.all(error <= normal_log_prob_tolerance(x, loc, scale))


def test_gaussian_density_integrates_to_one_around_its_mean():
    head = likelihoods.Gaussian(EVENT)
    density = tf.function(lambda p, x: tf.exp(head.elementwise_log_prob(p, x)))
    for loc, scale in [(0.3, 0.05), (-2.0, 3.0), (0.9, 1e-3)]:
        parameters = pixel(loc=[loc], scale=[scale])

        def at(x, moment):
            return density(parameters, tf.constant([[[x]]], tf.float64)).numpy().item() * x**moment

        # quad's own error estimate is below 1e-10 for these smooth integrands.
        limits = (loc - 40 * scale, loc + 40 * scale)
        mass = scipy.integrate.quad(at, *limits, args=(0,), points=[loc], epsabs=1e-13)[0]
        mean = scipy.integrate.quad(at, *limits, args=(1,), points=[loc], epsabs=1e-13)[0]
        assert mass == pytest.approx(1.0, abs=1e-10)
        assert head.mean(parameters).numpy().item() == pytest.approx(mean, abs=1e-10)


def test_gaussian_draws_follow_the_normal_and_a_wrong_scale_would_not():
    head = likelihoods.Gaussian(EVENT)
    n, loc, scale = 4000, 0.3, 0.5
    noise = np.random.default_rng(7).standard_normal(size=(1, n, 1))
    parameters = pixel(loc=[loc], scale=[scale])
    draws = head.draw(parameters, {"normal_noise": tf.constant(noise)}).numpy().ravel()
    reference = scipy.stats.norm(loc, scale).cdf
    assert scipy.stats.kstest(draws, reference).statistic < ks_bound(n)
    # The test could fail: scale^2 in place of scale.
    assert scipy.stats.kstest(loc + scale**2 * noise.ravel(), reference).statistic > ks_bound(n)


@pytest.mark.parametrize("min_scale", [MIN_SCALE, 0.05])
def test_gaussian_scale_has_a_floor_is_one_at_zero_and_grows_linearly(min_scale):
    raw = np.resize(np.array([-1e30, -1e4, -100.0, 0.0, 200.0, 1e6, 1e30], np.float32), (B, H, W))
    head = transparent_gaussian(min_scale)
    features = features_of(np.zeros_like(raw), raw)
    scale = head.parameters(features)["scale"].numpy()
    floor = np.float32(min_scale)  # The float32 floor the head adds.
    assert np.all(scale >= floor)
    np.testing.assert_allclose(scale[raw <= -100], floor, rtol=EPS)
    # softplus(r + log(e - 1)) = 1 at r = 0.
    np.testing.assert_allclose(scale[raw == 0], 1 + min_scale, rtol=2 * EPS)
    # softplus(r) = r + log1p(exp(-r)): linear, where exp(r / 2) overflowed at 178.
    large = raw >= 200
    np.testing.assert_allclose(
        scale[large], raw[large] + math.log(math.e - 1) + min_scale, rtol=2 * EPS
    )
    log_prob, gradients = log_prob_and_gradients(
        head, features, np.full((B, H, W), 0.5, np.float32)
    )
    assert_finite(log_prob, *gradients)


@settings(max_examples=30, deadline=None)
@given(
    loc=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e3, 1e3, width=32)),
    raw=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e4, 1e4, width=32)),
    x=hnp.arrays(np.float32, (B, H, W), elements=st.floats(-1e3, 1e3, width=32)),
)
def test_gaussian_head_is_exact_and_finite_over_wide_ranges(loc, raw, x):
    head = transparent_gaussian()
    features = features_of(loc, raw)
    scale = head.parameters(features)["scale"].numpy()
    assert np.all(scale >= np.float32(MIN_SCALE)) and np.all(np.isfinite(scale))
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    expected = scipy.stats.norm.logpdf(x, loc.astype(np.float64), scale).sum(axis=(1, 2))
    assert np.all(np.abs(log_prob.numpy() - expected) <= normal_log_prob_tolerance(x, loc, scale))


@pytest.mark.parametrize(
    "scale, dense_layers, extra_parameters",
    [("network", 2, 0), ("per_pixel", 1, SIZE), ("global", 1, 1), ("fixed", 1, 0)],
)
def test_gaussian_scale_modes_own_exactly_their_weights(scale, dense_layers, extra_parameters):
    head = likelihoods.Gaussian(EVENT, scale=scale)
    head.build((None, F))
    dense = dense_layers * (F * SIZE + SIZE)
    assert len(head.parameter_layers) == dense_layers
    assert sum(math.prod(w.shape) for w in head.trainable_weights) == dense + extra_parameters
    assert not head.non_trainable_weights


@pytest.mark.parametrize("scale", ["per_pixel", "global"])
def test_gaussian_shared_scales_start_at_one_ignore_z_and_learn(scale):
    head = likelihoods.Gaussian(EVENT, scale=scale, init_stddev=1.0, seed=0)
    features = tf.constant(np.random.default_rng(8).normal(size=(B, F)), tf.float32)
    x = tf.fill([B, H, W], 0.2)
    with tf.GradientTape() as tape:
        log_prob = head(features).log_prob(x)
    scales = head.parameters(features)["scale"].numpy()
    np.testing.assert_allclose(scales, 1 + MIN_SCALE, rtol=2 * EPS)
    (raw_scale,) = [w for w in head.trainable_weights if "raw_scale" in w.path]
    gradient = tape.gradient(log_prob, raw_scale).numpy()
    assert gradient.shape == ((H, W) if scale == "per_pixel" else ())
    assert np.all(gradient != 0)
    raw_scale.assign(np.linspace(-2, 2, SIZE).reshape(EVENT) if scale == "per_pixel" else 0.7)
    scales = head.parameters(features)["scale"].numpy()
    np.testing.assert_array_equal(scales, np.broadcast_to(scales[0], scales.shape))
    assert len(np.unique(scales)) == (SIZE if scale == "per_pixel" else 1)


def test_gaussian_fixed_scale_is_exactly_the_constant():
    head = likelihoods.Gaussian(EVENT, scale="fixed", fixed_scale=0.3)
    features = tf.constant(np.random.default_rng(9).normal(size=(B, F)), tf.float32)
    np.testing.assert_array_equal(
        head.parameters(features)["scale"], np.full((B, H, W), 0.3, np.float32)
    )
    np.testing.assert_array_equal(
        head.constrain({"loc": tf.zeros([B, H, W], tf.float64)})["scale"], np.full((B, H, W), 0.3)
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"scale": "learned"}, "scale must be one of"),
        ({"mean_activation": "relu"}, "mean_activation must be 'sigmoid'"),
        ({"min_scale": 0.0}, "min_scale must be positive"),
        ({"scale": "fixed", "fixed_scale": -1.0}, "fixed_scale must be positive"),
        ({"scale": "fixed", "fixed_scale": math.inf}, "fixed_scale must be positive and finite"),
    ],
)
def test_gaussian_refuses_invalid_arguments_saying_what_is_allowed(arguments, message):
    with pytest.raises(ValueError, match=message):
        likelihoods.Gaussian(EVENT, **arguments)


# Continuous Bernoulli.


def log_normaliser(lam):
    """log C(lambda) = log(2 atanh(1 - 2 lambda) / (1 - 2 lambda)) in float64, C(1/2) = 2."""
    lam = np.asarray(lam, np.float64)
    y = 1 - 2 * lam
    safe = np.where(y == 0, 0.5, y)
    return np.where(y == 0, np.log(2.0), np.log(2 * np.arctanh(safe) / safe))


def continuous_bernoulli_cdf(x, logits):
    """(e^(l x) - 1) / (e^l - 1), in float64 (l != 0)."""
    return np.expm1(logits * x) / np.expm1(logits)


def continuous_bernoulli_quantile(u, logits):
    """F^-1(u) = log(1 + u (e^l - 1)) / l in longdouble (l != 0; any size of l:
    for l > 0 as 1 + log(e^-l + u (1 - e^-l)) / l)."""
    u, t = np.longdouble(u), np.abs(np.longdouble(logits))
    positive = 1 + np.log(np.exp(-t) - u * np.expm1(-t)) / t
    negative = np.log1p(u * np.expm1(-t)) / -t
    return np.where(np.asarray(logits) > 0, positive, negative)


# lambda = 1/2, 1e-4 either side of it, and near 0 and 1.
NORMALISER_LOGITS = np.concatenate(
    [[0.0], scipy.special.logit([0.5 - 1e-4, 0.5 + 1e-4]), [-15.0, 15.0]]
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_continuous_bernoulli_normaliser_is_the_closed_form(dtype):
    head = likelihoods.ContinuousBernoulli(EVENT)
    logits = NORMALISER_LOGITS.astype(dtype)
    x = np.array([0.0, 0.3, 1.0])
    log_density = head.elementwise_log_prob(
        pixel(dtype, logits=logits), tf.constant(x.reshape(1, 1, 3), dtype)
    )
    # The density's log-normaliser: log p(x) - x log lambda - (1 - x) log(1 - lambda).
    exact = logits.astype(np.float64)[:, None, None]
    bernoulli_part = x * scipy.special.log_expit(exact) + (1 - x) * scipy.special.log_expit(-exact)
    normaliser = log_density.numpy().astype(np.float64) - bernoulli_part
    expected = log_normaliser(scipy.special.expit(exact))
    assert expected[0, 0, 0] == math.log(2.0)
    # float64: the reference computes 1 - 2 lambda from a rounded lambda, 1e-16
    # absolute, which at lambda near 1 - 3e-7 is 3e-10 relative in 1 - |1 - 2 lambda|
    # and 1e-11 in log C. float32: a few EPS of log p's terms (each at most 15).
    tolerance = 1e-10 if dtype == np.float64 else 8 * EPS * 15
    np.testing.assert_allclose(
        normaliser, np.broadcast_to(expected, normaliser.shape), atol=tolerance
    )


CB_LOGITS = [-15.0, -3.0, -1e-3, 0.0, 1e-4, 0.7, 2.0, 15.0]


def test_continuous_bernoulli_density_integrates_to_one_and_mean_is_its_first_moment():
    head = likelihoods.ContinuousBernoulli(EVENT)
    density = tf.function(lambda p, x: tf.exp(head.elementwise_log_prob(p, x)))
    for logit in CB_LOGITS:
        parameters = pixel(logits=[logit])

        def at(x, moment):
            return density(parameters, tf.constant([[[x]]], tf.float64)).numpy().item() * x**moment

        mass = scipy.integrate.quad(at, 0, 1, args=(0,), epsabs=1e-13)[0]
        mean = scipy.integrate.quad(at, 0, 1, args=(1,), epsabs=1e-13)[0]
        assert mass == pytest.approx(1.0, abs=1e-10), logit
        assert head.mean(parameters).numpy().item() == pytest.approx(mean, abs=1e-10), logit
        # float32: each term of the closed form or series a few EPS of the result.
        mean32 = head.mean(pixel(np.float32, logits=[logit])).numpy().item()
        assert mean32 == pytest.approx(mean, abs=4 * EPS), logit


@needs_longdouble
def test_continuous_bernoulli_mean_is_exact_on_a_dense_grid_of_logits():
    # Near 0 the closed form cancels and a series takes over: at, below and
    # above each dtype's switch point. The reference 1/(1 - e^-l) - 1/l in
    # longdouble (64-bit mantissa) loses 1e-19 / l^2, below 1e-13 for |l| >= 1e-3;
    # below that its Laurent series 1/2 + l/12 - l^3/720 is exact to 1e-17.
    logits = np.concatenate([np.geomspace(1e-6, 80, 3000), -np.geomspace(1e-6, 80, 3000)])
    for dtype, tolerance in [(np.float64, 1e-13), (np.float32, 2 * EPS)]:
        logits = logits.astype(dtype)
        mean = likelihoods.continuous_bernoulli_mean(tf.constant(logits)).numpy()
        exact = logits.astype(np.longdouble)
        expected = np.where(
            np.abs(exact) < 1e-3,
            0.5 + exact / 12 - exact**3 / 720,
            1 / -np.expm1(-exact) - 1 / exact,
        )
        np.testing.assert_allclose(mean, expected.astype(np.float64), atol=tolerance, rtol=0)


@pytest.mark.parametrize("logit", [-8.0, -0.05, 1e-4, 0.7, 30.0])
def test_continuous_bernoulli_draws_follow_its_cdf(logit):
    head = likelihoods.ContinuousBernoulli(EVENT)
    n = 4000
    u = np.random.default_rng(10).uniform(size=(1, n, 1))
    draws = head.draw(pixel(logits=[logit]), {"uniform_noise": tf.constant(u)})
    draws = draws.numpy().ravel()
    assert np.all((draws >= 0) & (draws <= 1))
    statistic = scipy.stats.kstest(draws, lambda x: continuous_bernoulli_cdf(x, logit)).statistic
    assert statistic < ks_bound(n)
    if abs(logit) >= 0.7:
        # The test could fail: the quantile of -l (a sign error) is rejected.
        wrong = np.log1p(u.ravel() * np.expm1(-logit)) / -logit
        assert scipy.stats.kstest(
            wrong, lambda x: continuous_bernoulli_cdf(x, logit)
        ).statistic > ks_bound(n)


@needs_longdouble
def test_continuous_bernoulli_float32_draws_are_within_1e_6_of_the_exact_quantile():
    # Near l = 0 the closed form loses EPS / |l| and the series |l|^4 / 900:
    # both are 7e-7 where the head switches (|l| = 0.16). Sweep through it.
    # Noise uniform, and crowded at 0 and 1, where a form that computes 1 - u
    # first loses digits (2e-5 at l = 9, u = 2.5e-4).
    rng = np.random.default_rng(11)
    logits = np.concatenate([np.geomspace(1e-7, 60, 2000), -np.geomspace(1e-7, 60, 2000)])
    ends = np.geomspace(1e-7, 0.5, logits.size)
    u = np.concatenate(
        [rng.uniform(size=logits.size), rng.permutation(ends), 1 - rng.permutation(ends)]
    ).astype(np.float32)
    logits = np.tile(logits, 3).astype(np.float32)
    draws = likelihoods.continuous_bernoulli_draw(tf.constant(logits), tf.constant(u)).numpy()
    expected = continuous_bernoulli_quantile(u.astype(np.float64), logits.astype(np.float64))
    np.testing.assert_allclose(draws, expected.astype(np.float64), atol=1e-6, rtol=0)


def test_continuous_bernoulli_draws_at_extreme_logits_and_noise():
    logits = np.array([-1e30, -1e4, -100.0, 100.0, 1e4, 1e30], np.float32)
    for u, expected in [(0.0, 0.0), (1.0, 1.0)]:  # F^-1(0) = 0, F^-1(1) = 1.
        draws = likelihoods.continuous_bernoulli_draw(
            tf.constant(logits), tf.fill(logits.shape, u)
        ).numpy()
        np.testing.assert_array_equal(draws, expected)
    u = np.full(logits.shape, 0.5, np.float32)
    draws = likelihoods.continuous_bernoulli_draw(tf.constant(logits), tf.constant(u)).numpy()
    expected = continuous_bernoulli_quantile(0.5, logits.astype(np.float64)).astype(np.float64)
    np.testing.assert_allclose(draws, expected, rtol=4 * EPS, atol=1e-37)


# Not 1e30: TFP's log-normaliser squares the logits in an unselected series
# branch, inf (and a NaN gradient) beyond |l| = 1.8e19 in float32.
@pytest.mark.parametrize("magnitude", [50.0, 1e4, 1e15])
def test_continuous_bernoulli_extreme_logits_give_finite_values_and_gradients(magnitude):
    head = transparent(likelihoods.ContinuousBernoulli(EVENT))
    logits = np.resize(np.array([magnitude, -magnitude, 1e-6, 0.0], np.float32), (B, H, W))
    x = np.resize(np.array([1e-3, 0.5, 1.0, 0.0, 0.9], np.float32), (B, H, W))
    features = features_of(logits)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    # The head's own mean and draw are finite however large the logits.
    features = features_of(
        np.where(np.abs(logits) == magnitude, np.sign(logits) * 1e30, logits).astype(np.float32)
    )
    with tf.GradientTape() as tape:
        tape.watch(features)
        parameters = head.parameters(features)
        mean = head.mean(parameters)
        draw = head.draw(parameters, {"uniform_noise": tf.fill([B, H, W], 0.3)})
    assert_finite(mean, tape.gradient(mean, features), draw)
    assert np.all((mean.numpy() >= 0) & (mean.numpy() <= 1))


# Discretized logistic.


def logistic_masses(loc, scale, num_bins=LEVELS):
    """The n level masses in float64 from scipy's logistic CDF: `[n]`."""
    edges = (np.arange(num_bins - 1) + 0.5) / (num_bins - 1)
    cdf = scipy.stats.logistic.cdf(edges, loc, scale)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def logistic_log_masses_longdouble(x, loc, scale, num_bins=LEVELS):
    """log of F(x + h) - F(x - h) (tails to the end levels) in longdouble, whose
    range reaches e^-11000: the masses of far levels that float64 flushes to 0.
    Each difference is taken on the side of loc where both terms are small, so
    it does not cancel."""
    x, loc, scale = (np.longdouble(v) for v in (x, loc, scale))
    h = np.longdouble(0.5) / (num_bins - 1)
    a, b = (x + h - loc) / scale, (x - h - loc) / scale
    a = np.where(x > 1 - h, np.longdouble(np.inf), a)
    b = np.where(x < h, -np.longdouble(np.inf), b)

    def cdf(t):  # sigmoid, from the side where exp does not overflow
        return np.where(
            t < 0,
            np.exp(np.minimum(t, 0)) / (1 + np.exp(np.minimum(t, 0))),
            1 / (1 + np.exp(-np.maximum(t, 0))),
        )

    below = (a + b) < 0
    mass = np.where(below, cdf(a) - cdf(b), cdf(-b) - cdf(-a))
    return np.log(mass)


DL_CASES = [
    (0.5, 0.3),
    (0.0, 0.01),
    (1.0, 0.01),
    (-0.3, 0.2),
    (1.4, 0.5),
    (0.37, 1e-4),
    (0.5, 10.0),
    (0.123, 1e-4),
    (1.0 + 1e-3, 1e-4),
]


@pytest.mark.parametrize("num_bins", [2, 5, LEVELS])
def test_discretized_logistic_masses_sum_to_one(num_bins):
    head = likelihoods.DiscretizedLogistic(EVENT, num_bins=num_bins)
    levels = np.arange(num_bins) / (num_bins - 1)
    loc, scale = np.array(DL_CASES).T
    for dtype, tolerance in [(np.float64, 4 * num_bins * EPS64), (np.float32, 4 * num_bins * EPS)]:
        parameters = {
            "loc": tf.constant(np.broadcast_to(loc[:, None], (len(loc), num_bins)), dtype),
            "scale": tf.constant(np.broadcast_to(scale[:, None], (len(loc), num_bins)), dtype),
        }
        # Rank-2 parameters: the tensor functions are shape-generic.
        log_masses = head.elementwise_log_prob(parameters, tf.constant(levels, dtype)).numpy()
        assert np.all(np.isfinite(log_masses))
        # Summing n masses in `dtype`: (n - 1) eps of their total, 1.
        total = np.exp(log_masses.astype(np.float64)).sum(axis=1)
        np.testing.assert_allclose(total, 1.0, atol=tolerance)


@needs_longdouble
def test_discretized_logistic_log_probs_are_logistic_cdf_differences():
    head = likelihoods.DiscretizedLogistic(EVENT)
    levels = np.arange(LEVELS) / (LEVELS - 1)
    for loc, scale in DL_CASES:
        masses = logistic_masses(loc, scale)
        parameters = pixel(loc=[loc], scale=[scale])
        log_masses = (
            head.elementwise_log_prob(parameters, tf.constant(levels.reshape(1, 1, -1)))
            .numpy()
            .ravel()
        )
        # Where scipy's float64 difference is at least 1e-6, it is accurate to
        # 1e-16 / 1e-6 = 1e-10 relative.
        large = masses >= 1e-6
        np.testing.assert_allclose(log_masses[large], np.log(masses[large]), atol=1e-9)
        # Everywhere, against the longdouble difference: float64 rounding of a
        # sum of three non-positive terms, relative.
        expected = logistic_log_masses_longdouble(levels, loc, scale).astype(np.float64)
        np.testing.assert_allclose(log_masses, expected, rtol=16 * EPS64, atol=1e-14)


@needs_longdouble
def test_discretized_logistic_float32_log_probs_never_round_to_minus_infinity():
    # Levels thousands of scales from loc, where F(x + h) - F(x - h) is 0 in
    # float32 (and in float64): their log is a large finite number.
    head = transparent(likelihoods.DiscretizedLogistic(EVENT))
    levels = np.arange(LEVELS) / (LEVELS - 1)
    rng = np.random.default_rng(12)
    x = rng.choice(levels, size=(B, H, W)).astype(np.float32)
    raw_loc = rng.uniform(-3, 3, size=(B, H, W)).astype(np.float32)
    raw_scale = np.resize(np.array([-1e4, -30.0, 0.0, 5.0], np.float32), (B, H, W))
    features = features_of(raw_loc, raw_scale)
    parameters = {k: v.numpy() for k, v in head.parameters(features).items()}
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    expected = logistic_log_masses_longdouble(x, parameters["loc"], parameters["scale"])
    expected = expected.astype(np.float64)
    # x - loc and the divisions by scale each round by EPS, which moves log P by
    # EPS times |a| + |b| (its slope is at most 1 in a and b); summing the
    # three non-positive terms and the SIZE pixels adds (SIZE + 3) EPS |log P|.
    h = 0.5 / (LEVELS - 1)
    a = np.abs((x - parameters["loc"] + h) / parameters["scale"])
    b = np.abs((x - parameters["loc"] - h) / parameters["scale"])
    tolerance = (SIZE + 3) * EPS * np.abs(expected).sum(axis=(1, 2)) + 4 * EPS * (a + b).sum(
        axis=(1, 2)
    )
    assert np.all(np.abs(log_prob.numpy() - expected.sum(axis=(1, 2))) <= tolerance)


@pytest.mark.parametrize("magnitude", [50.0, 1e4, 1e30])
def test_discretized_logistic_extreme_parameters_give_finite_values_and_gradients(magnitude):
    head = transparent(likelihoods.DiscretizedLogistic(EVENT))
    raw_loc = np.resize(np.array([magnitude, -magnitude, 0.0], np.float32), (B, H, W))
    raw_scale = np.resize(np.array([-magnitude, magnitude, 0.0, -magnitude], np.float32), (B, H, W))
    x = np.resize(np.array([0.0, 1 / 255, 0.5, 254 / 255, 1.0], np.float32), (B, H, W))
    features = features_of(raw_loc, raw_scale)
    log_prob, gradients = log_prob_and_gradients(head, features, x)
    assert_finite(log_prob, *gradients)
    with tf.GradientTape() as tape:
        tape.watch(features)
        mean = head.mean(head.parameters(features))
    assert_finite(mean, tape.gradient(mean, features))


def test_discretized_logistic_mean_is_the_sum_over_levels():
    head = likelihoods.DiscretizedLogistic(EVENT)
    levels = np.arange(LEVELS) / (LEVELS - 1)
    loc, scale = np.array(DL_CASES).T
    expected = np.array([levels @ logistic_masses(m, s) for m, s in DL_CASES])
    np.testing.assert_allclose(
        head.mean(pixel(loc=loc, scale=scale)).numpy().ravel(), expected, rtol=1e-12, atol=1e-14
    )
    # float32: a sum of n - 1 terms, each in [0, 1], divided by n - 1: at most
    # (n - 1) EPS of the mean, plus each sigmoid's EPS.
    mean32 = head.mean(pixel(np.float32, loc=loc, scale=scale)).numpy().ravel()
    np.testing.assert_allclose(mean32, expected, atol=LEVELS * EPS * expected.max())


def floor_masses(loc, scale, num_bins=LEVELS):
    """The level masses if draws were floored instead of rounded (a wrong formula)."""
    edges = np.arange(1, num_bins) / (num_bins - 1)
    cdf = scipy.stats.logistic.cdf(edges, loc, scale)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


# Levels spread wide, on a few levels (a floor would shift them half a level),
# and piled into the top level.
@pytest.mark.parametrize(
    "loc, scale, floor_detectable",
    [(0.5, 3.0, False), (0.4, 0.02, False), (0.4, 2e-3, True), (0.99, 0.01, True)],
)
def test_discretized_logistic_draws_have_the_level_masses(loc, scale, floor_detectable):
    head = likelihoods.DiscretizedLogistic(EVENT)
    n = 20_000
    u = np.random.default_rng(13).uniform(size=(1, n, 1)).astype(np.float32)
    draws = (
        head.draw(pixel(np.float32, loc=[loc], scale=[scale]), {"uniform_noise": tf.constant(u)})
        .numpy()
        .ravel()
    )
    levels = np.arange(LEVELS) / (LEVELS - 1)
    k = np.round(draws * (LEVELS - 1)).astype(int)
    np.testing.assert_array_equal(draws, levels[k].astype(np.float32))  # Exactly on levels.
    masses = logistic_masses(loc, scale)
    bound = chi_square_bound(masses, n)
    assert chi_square(np.bincount(k, minlength=LEVELS), masses, n) < bound
    if floor_detectable:
        # The test could fail: the counts a floor would give on average are far
        # above the bound.
        assert chi_square(n * floor_masses(loc, scale), masses, n) > 4 * bound


def chi_square(counts, masses, n):
    """Pearson's statistic over the levels expected >= 5 times, the rest pooled."""
    expected = n * masses
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    used = expected > 0
    return np.sum((observed[used] - expected[used]) ** 2 / expected[used])


def chi_square_bound(masses, n, p_value=1e-4):
    cells = np.sum(n * masses >= 5) + 1
    return scipy.stats.chi2.ppf(1 - p_value, cells - 1)


def test_discretized_logistic_draws_at_the_floor_scale_are_the_nearest_level():
    head = likelihoods.DiscretizedLogistic(EVENT)
    loc = np.array([0.2, 0.51, 0.0, 1.0, -0.5, 1.5])
    u = np.random.default_rng(14).uniform(0.01, 0.99, size=(len(loc), 50, 1))
    draws = head.draw(
        pixel(loc=loc, scale=[MIN_SCALE] * len(loc)), {"uniform_noise": tf.constant(u)}
    ).numpy()
    # scale 1e-4 moves a draw by at most 5e-4 for u in [0.01, 0.99]: within
    # a level of half-width 2e-3 when loc is at least 3e-3 from a boundary.
    nearest = np.clip(np.round(loc * (LEVELS - 1)), 0, LEVELS - 1) / (LEVELS - 1)
    np.testing.assert_array_equal(draws, np.broadcast_to(nearest[:, None, None], draws.shape))
    # Noise of exactly 0 or 1 (a U[0, 1) generator's end points) stays finite.
    ends = head.draw(
        pixel(loc=[0.5, 0.5], scale=[0.1, 0.1]),
        {"uniform_noise": tf.constant([[[0.0]], [[1.0]]], tf.float64)},
    ).numpy()
    np.testing.assert_array_equal(ends.ravel(), [0.0, 1.0])


def test_discretized_logistic_distribution_crosses_an_xla_function_boundary():
    # A composite tensor: returned from a compiled function with its num_bins.
    head = likelihoods.DiscretizedLogistic(EVENT, num_bins=17)
    distribution = tf.function(head.distribution, jit_compile=True)(
        {"loc": tf.fill([B, H, W], 0.5), "scale": tf.fill([B, H, W], 0.1)}
    )
    assert distribution.distribution.num_bins == 17
    # Every pixel at level 0: log sigmoid((1/32 - 1/2) / 0.1) each.
    expected = SIZE * scipy.special.log_expit((1 / 32 - 0.5) / 0.1)
    np.testing.assert_allclose(
        distribution.log_prob(tf.zeros([B, H, W])), expected, rtol=SIZE * EPS
    )


def test_discretized_logistic_refuses_invalid_arguments():
    for num_bins in (1, 2.5, "256"):
        with pytest.raises(ValueError, match="num_bins must be an integer >= 2"):
            likelihoods.DiscretizedLogistic(EVENT, num_bins=num_bins)
    with pytest.raises(ValueError, match="min_scale must be positive"):
        likelihoods.DiscretizedLogistic(EVENT, min_scale=0.0)


def test_bits_per_dimension_is_minus_log2_probability_per_dimension():
    dimensions = 560
    # A uniform distribution over 256 levels costs exactly 8 bits per pixel.
    assert likelihoods.bits_per_dimension(-dimensions * math.log(256), dimensions) == pytest.approx(
        8.0, rel=EPS64
    )
    log_prob = np.array([-1234.5, -0.0, -3e4])
    expected = -log_prob / dimensions / math.log(2)
    np.testing.assert_allclose(
        likelihoods.bits_per_dimension(log_prob, dimensions), expected, rtol=2 * EPS64
    )
    bits = likelihoods.bits_per_dimension(tf.constant(log_prob), dimensions)
    assert bits.dtype == tf.float64
    np.testing.assert_allclose(bits, expected, rtol=2 * EPS64)
