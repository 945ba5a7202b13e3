"""Posterior heads against mathematics: normalisation, moments, draws, gradients, KL, pPCA.

Distinct sizes on every axis: B = 5 examples, F = 7 features, S = 11 samples,
latent events [3] and [4, 2], NU = 6 degrees of freedom. Grid checks run in
float64 (the heads are dtype-generic), so their tolerances are set by the
quadrature and stated at each test. Monte Carlo checks allow 4 standard errors
(a false alarm probability of 6e-5 per check; fixed seeds make every run the
same). Helpers used by test_flows.py too are the ones without a `test_` prefix.
"""

import inspect
import math

import keras
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import objectives, posteriors
from tfvae.networks import MLP, ProbabilisticNetwork
from tfvae.parts import SOFTPLUS_INVERSE_OF_ONE

tfd = tfp.distributions

B, F, S, NU = 5, 7, 11, 6
MIN_SCALE = 1e-4

FACTORIZED = {
    "DiagonalGaussian": (posteriors.DiagonalGaussian, scipy.stats.norm),
    "Laplace": (posteriors.Laplace, scipy.stats.laplace),
    "Logistic": (posteriors.Logistic, scipy.stats.logistic),
    "StudentT": (
        lambda shape, **kw: posteriors.StudentT(shape, degrees_of_freedom=NU, **kw),
        scipy.stats.t(NU),
    ),
}
MAKERS = {
    **{name: maker for name, (maker, _) in FACTORIZED.items()},
    "FullCovarianceGaussian": posteriors.FullCovarianceGaussian,
    "PointMass": posteriors.PointMass,
}
WITH_DENSITY = [name for name in MAKERS if name != "PointMass"]
NO_CLOSED_FORM_KL = ["Laplace", "Logistic", "StudentT"]


# Helpers (test_flows.py imports them).


def random_parameters(head, rng, batch=B):
    """Parameters of `head` (float64 tensors): locs around 0, scales in [0.5, 1.2]."""
    shape = (batch, *head.event_shape)
    values = {"loc": rng.normal(scale=0.5, size=shape)}
    if "scale" in head.parameter_names:
        values["scale"] = rng.uniform(0.5, 1.2, size=shape)
    if "scale_tril" in head.parameter_names:
        size = shape[-1]
        values["scale_tril"] = np.tril(
            rng.normal(scale=0.5, size=(batch, size, size)), -1
        ) + np.eye(size) * rng.uniform(0.5, 1.2, size=(batch, 1, size))
    return {name: tf.constant(value, tf.float64) for name, value in values.items()}


def numpy_noise(head, rng, batch, dtype=np.float64):
    """Noise of `head.noise_spec()` from numpy: {name: `[batch, *shape]`}."""
    draw = {"normal": rng.standard_normal, "uniform": rng.uniform}
    return {
        name: draw[kind](size=(batch, *shape)).astype(dtype)
        for name, (kind, shape) in head.noise_spec().items()
    }


def built(head, features=F, seed=0, weight_scale=None):
    """`head` built for `[B, features]` features; with `weight_scale`, all its weights
    ~ N(0, weight_scale^2)."""
    head.build((None, features))
    if weight_scale is not None:
        rng = np.random.default_rng(seed)
        for weight in head.weights:
            weight.assign(rng.normal(scale=weight_scale, size=weight.shape))
    return head


def midpoint_grid(lows, highs, num):
    """Midpoints of a regular grid: points `[num^d, d]` and the cell volume."""
    axes = [np.linspace(lo, hi, num + 1) for lo, hi in zip(lows, highs)]
    centres = [(a[1:] + a[:-1]) / 2 for a in axes]
    points = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, len(lows))
    return points, math.prod((hi - lo) / num for lo, hi in zip(lows, highs))


def grid_moments(distribution, points, volume):
    """Mass `[B]` and mean `[B, d]` of a batch-[B] distribution over the grid points."""
    density = np.exp(distribution.log_prob(points[:, None, :]).numpy())  # [N, B]
    mass = density.sum(axis=0) * volume
    mean = np.einsum("nb,nd->bd", density, points) * volume / mass[:, None]
    return mass, mean


def assert_within_standard_errors(samples, expected, axis=0, k=4.0):
    """The mean of `samples` along `axis` equals `expected` within k standard errors."""
    samples = np.asarray(samples)
    stderr = samples.std(axis=axis) / math.sqrt(samples.shape[axis])
    # <=: a coordinate without variance (an entry of L above the diagonal) must be exact.
    assert np.all(np.abs(samples.mean(axis=axis) - expected) <= k * stderr)


def assert_same_distribution(a, b, threshold=1e-3):
    """Two-sample KS on every coordinate of `[N, d]` draws and on their sum (joint shape)."""
    columns_a = [*np.asarray(a).T, np.asarray(a).sum(-1)]
    columns_b = [*np.asarray(b).T, np.asarray(b).sum(-1)]
    for x, y in zip(columns_a, columns_b):
        assert scipy.stats.ks_2samp(x, y).pvalue > threshold


def random_network(head, rng):
    """`ProbabilisticNetwork(MLP((8,)), head)` for `[B, F]` inputs, all weights ~ N(0, 0.5^2)."""
    network = ProbabilisticNetwork(MLP((8,), seed=0), head)
    network.build((None, F))
    for weight in network.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape))
    return network


def assert_identical_after_round_trip(head, tmp_path):
    """A `.keras` save and load keeps the config, parameters, draws, mean and log_prob."""
    rng = np.random.default_rng(1)
    network = random_network(head, rng)
    network.save(tmp_path / "network.keras")
    reloaded = keras.saving.load_model(tmp_path / "network.keras")
    assert type(reloaded.head) is type(head)
    assert reloaded.head.get_config() == head.get_config()
    x = rng.normal(size=(B, F)).astype(np.float32)
    noise = numpy_noise(head, rng, B, np.float32)
    parameters, reloaded_parameters = network.parameters(x), reloaded.parameters(x)
    for name in parameters:
        np.testing.assert_array_equal(parameters[name], reloaded_parameters[name])
    z = head.draw(parameters, noise).numpy()
    np.testing.assert_array_equal(z, reloaded.head.draw(reloaded_parameters, noise))
    np.testing.assert_array_equal(head.mean(parameters), reloaded.head.mean(reloaded_parameters))
    if head.has_density:
        # Fresh copies of z: neither log_prob may reuse a cached inverse of the draw.
        np.testing.assert_array_equal(
            network(x).log_prob(tf.constant(z)), reloaded(x).log_prob(tf.constant(z))
        )


def assert_litert_matches(head, tmp_path):
    """`draw` and `mean` of the encoder convert to builtin-only LiteRT and agree with Keras."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(2)
    network = random_network(head, rng)
    names = list(head.noise_spec())
    x_spec = tf.TensorSpec((None, F), tf.float32, name="x")
    noise_specs = [
        tf.TensorSpec((None, *shape), tf.float32, name=name)
        for name, (_, shape) in head.noise_spec().items()
    ]
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "draw",
        lambda x, *noise: {"z": head.draw(network.parameters(x), dict(zip(names, noise)))},
        input_signature=[x_spec, *noise_specs],
    )
    archive.add_endpoint(
        "mean", lambda x: {"z": head.mean(network.parameters(x))}, input_signature=[x_spec]
    )
    archive.write_out(str(tmp_path / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "saved_model"), signature_keys=["draw", "mean"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    x = rng.normal(size=(B, F)).astype(np.float32)
    noise = numpy_noise(head, rng, B, np.float32)
    parameters = network.parameters(x)
    # float32 kernels of different fusion: a few float32 roundings of |z| ~ 1.
    np.testing.assert_allclose(
        interpreter.get_signature_runner("draw")(x=x, **noise)["z"],
        head.draw(parameters, noise),
        atol=1e-5,
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        interpreter.get_signature_runner("mean")(x=x)["z"],
        head.mean(parameters),
        atol=1e-5,
        rtol=1e-5,
    )


def assert_runs_under_xla(head):
    """Sampling, log_prob and gradients compile with XLA; given z, they match eager execution.

    (XLA's stateless sampler is another implementation: its draws differ from
    eager ones for the same seed, so the comparison takes z as an input.)
    """
    built(head, weight_scale=0.3)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(B, F)), tf.float32)

    def sampled_step(x, seed):
        with tf.GradientTape() as tape:
            posterior = head(x)
            z = posterior.sample(S, seed=seed)
            loss = tf.reduce_mean(tf.square(z))
            if head.has_density:
                loss -= tf.reduce_mean(posterior.log_prob(z))
        return loss, tape.gradient(loss, head.trainable_weights)

    def given_step(x, z):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(head(x).log_prob(z))
        return loss, tape.gradient(loss, head.trainable_weights)

    loss, gradients = tf.function(sampled_step, jit_compile=True)(x, tf.constant([4, 5]))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in gradients)
    if not head.has_density:
        return
    z = tf.constant(rng.normal(size=(S, B, *head.event_shape)), tf.float32)
    compiled = tf.function(given_step, jit_compile=True)(x, z)
    eager = given_step(x, z)
    # float32 sums in another order: a few roundings of terms of size ~10.
    for value, eager_value in zip(tf.nest.flatten(compiled), tf.nest.flatten(eager)):
        np.testing.assert_allclose(value, eager_value, rtol=1e-4, atol=1e-4)


def inverse_positive_scale(scale, min_scale=MIN_SCALE):
    """raw with `parts.positive_scale(raw, min_scale) = scale`:
    softplus^-1(scale - min_scale) - log(e - 1)."""
    excess = np.asarray(scale, np.float64) - min_scale
    return np.log(np.expm1(excess)) - SOFTPLUS_INVERSE_OF_ONE


def set_dense(layer, kernel, bias):
    layer.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])


def head_for(name, shape=(3,)):
    return MAKERS[name](shape)


# Interface and shapes.


@pytest.mark.parametrize("name", MAKERS)
def test_shapes_of_every_tensor_method(name):
    shape = (3,) if name == "FullCovarianceGaussian" else (4, 2)
    head = built(head_for(name, shape), weight_scale=0.3)
    features = tf.constant(np.random.default_rng(0).normal(size=(B, F)), tf.float32)
    parameters = head.parameters(features)
    posterior = head(features)
    assert posterior.batch_shape == (B,) and posterior.event_shape == shape
    assert head.mean(parameters).shape == (B, *shape)
    noise = numpy_noise(head, np.random.default_rng(1), B, np.float32)
    assert head.draw(parameters, noise).shape == (B, *shape)
    z = posterior.sample(S, seed=[0, 1])
    assert z.shape == (S, B, *shape)
    if head.has_density:
        assert posterior.log_prob(z).shape == (S, B)
    if name in FACTORIZED:
        elementwise = head.elementwise_log_prob(parameters, z)
        assert elementwise.shape == (S, B, *shape)
        np.testing.assert_allclose(
            tf.reduce_sum(elementwise, [-2, -1]), posterior.log_prob(z), rtol=1e-5, atol=1e-5
        )
    else:
        with pytest.raises(NotImplementedError, match="does not factorize"):
            head.elementwise_log_prob(parameters, z)


@pytest.mark.parametrize("name", MAKERS)
def test_float64_parameters_give_float64_results(name):
    head = head_for(name)
    rng = np.random.default_rng(0)
    parameters = random_parameters(head, rng)
    outputs = [
        head.mean(parameters),
        head.draw(parameters, numpy_noise(head, rng, B)),
        head.distribution(parameters).sample(seed=[0, 1]),
    ]
    if head.has_density:
        outputs.append(head.distribution(parameters).log_prob(outputs[-1]))
    assert all(output.dtype == tf.float64 for output in outputs)


@pytest.mark.parametrize("name", MAKERS)
def test_config_holds_every_constructor_argument(name):
    head = built(head_for(name))
    config = head.get_config()
    arguments = {
        parameter
        for cls in type(head).__mro__
        if cls is not object and "__init__" in vars(cls)
        for parameter in inspect.signature(cls.__init__).parameters
    }
    arguments -= {
        "self",
        "kwargs",
        "args",
        "trainable",
        "dtype",
        "autocast",
        "activity_regularizer",
        "input_shape",
        "input_dim",
    }
    assert arguments <= set(config), arguments - set(config)
    assert type(head).from_config(config).get_config() == config


def test_non_default_arguments_survive_the_config():
    head = posteriors.StudentT(
        [4, 2], degrees_of_freedom=9, min_scale=0.01, init_stddev=0.1, weight_decay=0.5, seed=3
    )
    copy = posteriors.StudentT.from_config(head.get_config())
    assert (
        copy.event_shape,
        copy.degrees_of_freedom,
        copy.min_scale,
        copy.init_stddev,
        copy.weight_decay,
        copy.seed,
    ) == ((4, 2), 9, 0.01, 0.1, 0.5, 3)


def test_bad_arguments_are_refused_with_reasons():
    with pytest.raises(ValueError, match="integer >= 2"):
        posteriors.StudentT(3, degrees_of_freedom=1)
    with pytest.raises(ValueError, match="integer >= 2"):
        posteriors.StudentT(3, degrees_of_freedom=2.5)
    with pytest.raises(ValueError, match="rank-1"):
        posteriors.FullCovarianceGaussian([3, 2])
    for maker in (posteriors.Laplace, posteriors.FullCovarianceGaussian):
        with pytest.raises(ValueError, match="min_scale must be positive"):
            maker(3, min_scale=0.0)


# Normalisation and moments on a grid.


def grid_box(parameters, half_width):
    """A common box [lo, hi]^d around every example: loc +- half_width marginal scales."""
    loc = parameters["loc"].numpy()
    if "scale_tril" in parameters:
        spread = np.sqrt(np.sum(parameters["scale_tril"].numpy() ** 2, axis=-1))
    else:
        spread = parameters["scale"].numpy()
    lows = np.min(loc - half_width * spread, axis=0)
    highs = np.max(loc + half_width * spread, axis=0)
    return lows, highs


def box_moments(name, parameters, lows, highs):
    """Mass `[B]` and mean `[B, d]` of the box under the exact family, by scipy.

    Product families: per coordinate, the CDF difference and loc + scale times
    the integral of e f(e) over the standardized interval (scipy.integrate.quad,
    split at 0 for Laplace's kink). Gaussian families: mass 1 and mean loc
    (the box reaches 9 marginal sds: mass outside < 2 d Phi(-9) < 1e-18).
    """
    loc = parameters["loc"].numpy()
    if name not in FACTORIZED or name == "DiagonalGaussian":
        return np.ones(len(loc)), loc
    family = FACTORIZED[name][1]
    scale = parameters["scale"].numpy()
    a, b = (lows - loc) / scale, (highs - loc) / scale
    masses = family.cdf(b) - family.cdf(a)
    first = np.vectorize(
        lambda lo, hi: scipy.integrate.quad(
            lambda e: e * family.pdf(e), lo, hi, points=[0.0], limit=200
        )[0]
    )(a, b)
    return np.prod(masses, axis=-1), loc + scale * first / masses


@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("name", WITH_DENSITY)
def test_density_integrates_to_one_and_mean_matches(name, size):
    """Midpoint rule on a grid, in float64, against the box's exact mass and mean.

    The box is loc +- 9 marginal scales of every example (B = 3 at once); the
    heavy-tailed families leave mass outside it (about 3e-4), so the grid is
    compared with the box's mass and mean under the exact family
    (`box_moments`), i.e. with 1 less the tails. Spacing: 2000 cells (1-D) or
    300 per axis (2-D), a cell at most 0.02 (2-D: 0.14) of the smallest scale.
    For smooth densities the midpoint rule's error then decays faster than any
    power of h (the Euler-Maclaurin terms vanish with the derivatives at the
    box's edges): measured < 1e-7, tolerance 1e-6. Laplace's kink at loc costs
    O(h^2 / scale^2): measured 4e-6 (1-D) and 5e-4 (2-D), tolerances 2e-5 and
    2e-3. The same for the mass and the mean.
    """
    head = head_for(name, (size,))
    parameters = random_parameters(head, np.random.default_rng(size), batch=3)
    lows, highs = grid_box(parameters, 9.0)
    points, volume = midpoint_grid(lows, highs, 2000 if size == 1 else 300)
    mass, mean = grid_moments(head.distribution(parameters), points, volume)
    expected_mass, expected_mean = box_moments(name, parameters, lows, highs)
    tolerance = 1e-6 if name != "Laplace" else 2e-5 if size == 1 else 2e-3
    np.testing.assert_allclose(mass, expected_mass, atol=tolerance)
    np.testing.assert_allclose(mean, expected_mean, atol=tolerance)
    np.testing.assert_array_equal(head.mean(parameters), parameters["loc"])


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_sample_mean_and_draws_follow_the_density(name):
    """distribution.sample and draw(numpy noise) agree with each other and with the
    family's mean and covariance."""
    head = head_for(name, (2,))
    rng = np.random.default_rng(7)
    parameters = random_parameters(head, rng, batch=1)
    num = 4000
    samples = head.distribution(parameters).sample(num, seed=[8, 9]).numpy()[:, 0]
    tiled = {key: tf.repeat(value, num, axis=0) for key, value in parameters.items()}
    draws = head.draw(tiled, numpy_noise(head, rng, num)).numpy()
    loc = parameters["loc"].numpy()[0]
    if name == "FullCovarianceGaussian":
        tril = parameters["scale_tril"].numpy()[0]
        covariance = tril @ tril.T
    else:
        covariance = np.diag(parameters["scale"].numpy()[0] ** 2 * FACTORIZED[name][1].var())
    for z in (samples, draws):
        assert_within_standard_errors(z, loc)
        # E[(z - loc)_i (z - loc)_j] = covariance_ij (Student t: finite 4th moment, NU > 4).
        assert_within_standard_errors(np.einsum("ni,nj->nij", z - loc, z - loc), covariance)
    assert_same_distribution(samples, draws)


# Draws from explicit noise.


@pytest.mark.parametrize("name", ["Laplace", "Logistic"])
def test_uniform_noise_draw_is_the_inverse_cdf(name):
    head = head_for(name, (4,))
    u = np.array(
        [[1e-6, 0.1, 0.5, 0.999999], [0.25, 0.5 + 1e-9, 0.75, 0.9], [0.01, 0.3, 0.6, 0.99]]
    )
    parameters = {
        "loc": tf.fill((3, 4), tf.constant(0.3, tf.float64)),
        "scale": tf.fill((3, 4), tf.constant(2.0, tf.float64)),
    }
    expected = 0.3 + 2.0 * FACTORIZED[name][1].ppf(u)
    np.testing.assert_allclose(head.draw(parameters, {"eps": u}), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["Laplace", "Logistic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_noise_at_zero_and_one_gives_symmetric_finite_draws(name, dtype):
    head = head_for(name, (2,))
    parameters = {"loc": tf.zeros((1, 2), dtype), "scale": tf.ones((1, 2), dtype)}
    z = head.draw(parameters, {"eps": np.array([[0.0, 1.0]], dtype)}).numpy()
    assert np.all(np.isfinite(z)) and z[0, 0] == -z[0, 1] and z[0, 1] > 10


def test_student_t_draw_from_normal_noise_is_student_t():
    head = head_for("StudentT", (2,))
    rng = np.random.default_rng(4)
    num = 20000
    parameters = {"loc": tf.zeros((num, 2), tf.float64), "scale": tf.ones((num, 2), tf.float64)}
    noise = numpy_noise(head, rng, num)
    assert noise["chi2_noise"].shape == (num, NU, 2)
    z = head.draw(parameters, noise).numpy()
    for column in z.T:
        assert scipy.stats.kstest(column, scipy.stats.t(NU).cdf).pvalue > 1e-3


# Reparameterization gradients.


@pytest.mark.parametrize("name", MAKERS)
def test_reparameterized_gradients_match_their_expectations(name):
    """d/dloc E[sum z] = 1 exactly; d/dscale E[(z - loc)^2] = 2 scale Var(e) (scipy's
    variance of the standard family); d/dL E[|z - loc|^2] = 2 L (E[|L eps|^2] = |L|_F^2)."""
    head = head_for(name, (3,))
    parameters = random_parameters(head, np.random.default_rng(5), batch=1)
    variables = {key: tf.Variable(value) for key, value in parameters.items()}
    num = 20000
    with tf.GradientTape(persistent=True) as tape:
        z = head.distribution(variables).sample(num, seed=[6, 7])
        first = tf.reduce_mean(tf.reduce_sum(z, -1))
        centred = z - tf.stop_gradient(variables["loc"])
        second = tf.reduce_mean(tf.reduce_sum(tf.square(centred), -1))
    np.testing.assert_allclose(tape.gradient(first, variables["loc"]), 1.0, rtol=1e-12)
    if name == "PointMass":
        return
    key = "scale_tril" if name == "FullCovarianceGaussian" else "scale"
    gradient = tape.gradient(second, variables[key])
    assert gradient is not None and np.all(np.isfinite(gradient))
    value = parameters[key].numpy()
    if name == "FullCovarianceGaussian":
        eps = tf.linalg.triangular_solve(
            parameters[key], tf.transpose(centred[:, 0])[None], lower=True
        ).numpy()[0]  # [J, num]
        per_sample = 2 * np.einsum("ij,jn,kn->nik", value[0], eps, eps)  # 2 L eps eps^T
        assert_within_standard_errors(np.tril(per_sample), np.tril(2 * value[0]))
        np.testing.assert_allclose(np.tril(per_sample.mean(0)), np.tril(gradient[0]), rtol=1e-6)
    else:
        e = (centred.numpy() / value)[:, 0]
        np.testing.assert_allclose(2 * value[0] * np.mean(e**2, 0), gradient[0], rtol=1e-6)
        assert_within_standard_errors(2 * value[0] * e**2, 2 * value[0] * FACTORIZED[name][1].var())


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_extreme_raw_parameters_give_finite_log_prob_and_gradients(name):
    """Raw outputs (loc, raw scales, L's entries) of -1e4, -50, 50 and 1e4."""
    head = built(head_for(name, (3,)), features=3)
    for layer in head.parameter_layers:  # output k copies feature k mod 3
        set_dense(layer, np.eye(3)[:, np.arange(layer.units) % 3], np.zeros(layer.units))
    features = tf.constant([[-1e4, 0.0, 1e4], [50.0, -50.0, 0.0]], tf.float32)
    z = tf.constant([[1e3, -1e3, 0.0], [0.0, 1.0, 2.0]], tf.float32)
    with tf.GradientTape() as tape:
        log_prob = head(features).log_prob(z)
    gradients = tape.gradient(log_prob, head.trainable_weights)
    assert np.all(np.isfinite(log_prob)) and all(np.all(np.isfinite(g)) for g in gradients)


# The KL term.


@pytest.mark.parametrize("name", NO_CLOSED_FORM_KL)
def test_rate_has_no_closed_form_and_its_monte_carlo_estimate_matches_quadrature(name):
    """KL(q || N(0, 1)) in 1-D by scipy.integrate.quad (split at loc, Laplace's kink)."""
    head = head_for(name, (1,))
    parameters = random_parameters(head, np.random.default_rng(6), batch=3)
    posterior = head.distribution(parameters)
    prior = tfd.Independent(tfd.Normal(tf.zeros((1,), tf.float64), 1.0), 1)
    assert objectives.analytic_rate(posterior, prior) is None
    num = 20000
    z = posterior.sample(num, seed=[1, 2])
    rate = objectives.monte_carlo_rate(posterior, prior, z).numpy()
    log_ratios = (posterior.log_prob(z) - prior.log_prob(z)).numpy()
    family = FACTORIZED[name][1]
    for b in range(3):
        loc, scale = parameters["loc"].numpy()[b, 0], parameters["scale"].numpy()[b, 0]
        q = lambda t: family.pdf((t - loc) / scale) / scale
        integrand = lambda t: (
            q(t) * (family.logpdf((t - loc) / scale) - math.log(scale) - scipy.stats.norm.logpdf(t))
            if q(t) > 0
            else 0.0
        )
        kl = sum(
            scipy.integrate.quad(integrand, a, c, limit=200)[0]
            for a, c in ((-np.inf, loc), (loc, np.inf))
        )
        assert abs(rate[b] - kl) < 4 * log_ratios[:, b].std() / math.sqrt(num)
        assert rate[b] > 0


def test_full_covariance_rate_is_the_gaussian_closed_form():
    head = head_for("FullCovarianceGaussian", (3,))
    parameters = random_parameters(head, np.random.default_rng(7))
    prior = tfd.MultivariateNormalDiag(tf.zeros((3,), tf.float64))
    rate = objectives.analytic_rate(head.distribution(parameters), prior).numpy()
    loc, tril = parameters["loc"].numpy(), parameters["scale_tril"].numpy()
    covariance = tril @ np.swapaxes(tril, -1, -2)
    expected = 0.5 * (
        np.trace(covariance, axis1=-2, axis2=-1)
        + np.sum(loc**2, -1)
        - 3
        - np.linalg.slogdet(covariance)[1]
    )
    np.testing.assert_allclose(rate, expected, rtol=1e-10)


# The full-covariance parameterisation.


def test_full_covariance_constrains_raw_outputs_row_by_row():
    head = built(head_for("FullCovarianceGaussian", (3,)), features=6)
    loc_layer, tril_layer = head.parameter_layers
    assert tril_layer.units == 6  # J (J + 1) / 2
    set_dense(loc_layer, np.zeros((6, 3)), np.zeros(3))
    set_dense(tril_layer, np.eye(6), np.zeros(6))
    raw = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.3, -2.0, -1.0, 4.0, 5.0, 0.7]])
    tril = head.parameters(tf.constant(raw, tf.float32))["scale_tril"].numpy()
    np.testing.assert_allclose(tril[0], (1 + MIN_SCALE) * np.eye(3), rtol=1e-6)
    scale = lambda r: MIN_SCALE + np.log1p(np.exp(r + SOFTPLUS_INVERSE_OF_ONE))
    expected = np.array([[scale(0.3), 0, 0], [-2.0, scale(-1.0), 0], [4.0, 5.0, scale(0.7)]])
    np.testing.assert_allclose(tril[1], expected, rtol=1e-6)


# Point mass.


def test_point_mass_is_its_location():
    head = built(head_for("PointMass", (3,)), weight_scale=0.3)
    features = tf.constant(np.random.default_rng(8).normal(size=(B, F)), tf.float32)
    parameters = head.parameters(features)
    assert head.has_density is False and head.noise_spec() == {}
    for z in (head.mean(parameters), head.draw(parameters, {}), head(features).sample(seed=[0, 1])):
        np.testing.assert_array_equal(z, parameters["loc"])


# The exactly solvable model: probabilistic PCA with non-orthogonal loadings.


class LinearGaussianModel:
    """p(z) = N(0, I_J), p(x|z) = N(W z + mu, s^2 I_D) with random (non-orthogonal) W.

    Exact: p(x) = N(mu, W W^T + s^2 I); p(z|x) = N(M^-1 W^T (x - mu), s^2 M^-1),
    M = W^T W + s^2 I (Tipping & Bishop 1999; tfvae.ppca's docstring).
    """

    D, J, NOISE = 4, 3, 0.5

    def __init__(self, seed=1):
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(self.D, self.J))
        self.mean = rng.normal(size=self.D)
        self.m = self.weights.T @ self.weights + self.NOISE**2 * np.eye(self.J)
        self.precision = self.m / self.NOISE**2  # Lambda, of p(z|x)
        self.gain = self.weights @ np.linalg.inv(self.m)  # [D, J]: loc = (x - mu) @ gain
        self.x = (
            rng.normal(size=(B, self.J)) @ self.weights.T
            + self.mean
            + self.NOISE * rng.normal(size=(B, self.D))
        )

    def log_evidence(self):
        covariance = self.weights @ self.weights.T + self.NOISE**2 * np.eye(self.D)
        return scipy.stats.multivariate_normal(self.mean, covariance).logpdf(self.x)

    def encoder(self, head):
        """An encoder with `head` on x itself (a trunk without hidden layers): loc exact."""
        network = ProbabilisticNetwork(MLP(()), head)
        network.build((None, self.D))
        loc_layer, scale_layer = head.parameter_layers
        set_dense(loc_layer, self.gain, -self.mean @ self.gain)
        set_dense(scale_layer, np.zeros((self.D, scale_layer.units)), self.raw_scale(head))
        return network

    def raw_scale(self, head):
        if isinstance(head, posteriors.FullCovarianceGaussian):
            tril = np.linalg.cholesky(self.NOISE**2 * np.linalg.inv(self.m))
            rows, columns = np.tril_indices(self.J)
            entries = tril[rows, columns]
            diagonal = rows == columns
            entries[diagonal] = inverse_positive_scale(entries[diagonal])
            return entries
        # The mean-field optimum: variances 1 / diag(Lambda).
        return inverse_positive_scale(1 / np.sqrt(np.diag(self.precision)))

    def log_weights(self, head, num, seed):
        """log p(x, z) - log q(z|x) `[num, B]` for z ~ q, and the objectives' ELBO `[B]`."""
        encoder = self.encoder(head)
        x = self.x.astype(np.float32)
        # float64 from here: only the float32 rounding of the weights stays.
        parameters = {k: tf.cast(v, tf.float64) for k, v in encoder.parameters(x).items()}
        posterior = head.distribution(parameters)
        z = posterior.sample(num, seed=seed)
        likelihood = tfd.Independent(
            tfd.Normal(tf.linalg.matvec(tf.constant(self.weights), z) + self.mean, self.NOISE), 1
        )
        log_likelihood = likelihood.log_prob(self.x)
        prior = tfd.MultivariateNormalDiag(tf.zeros((self.J,), tf.float64))
        bound = objectives.elbo(log_likelihood, objectives.monte_carlo_rate(posterior, prior, z))
        log_weights = log_likelihood + prior.log_prob(z) - posterior.log_prob(z)
        return log_weights.numpy(), bound.elbo.numpy()


def test_ppca_full_covariance_posterior_attains_log_evidence():
    """With q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: zero variance.

    What remains is the float32 rounding of the encoder's weights (relative
    6e-8 per weight), which moves q by O(1e-7) and each log weight by less
    than 1e-5; tolerance 1e-4.
    """
    model = LinearGaussianModel()
    assert abs(model.weights[:, 0] @ model.weights[:, 1]) > 0.5  # not orthogonal
    log_weights, elbo = model.log_weights(posteriors.FullCovarianceGaussian(model.J), 64, [1, 2])
    np.testing.assert_allclose(
        log_weights, np.broadcast_to(model.log_evidence(), (64, B)), atol=1e-4
    )
    np.testing.assert_allclose(elbo, model.log_evidence(), atol=1e-4)


def test_ppca_mean_field_gaussian_falls_short_by_the_closed_form_gap():
    """KL(N(m, diag(1 / Lambda_jj)) || N(m, Lambda^-1)) = (sum log Lambda_jj - log det Lambda) / 2.

    The Monte Carlo gap log p(x) - ELBO, averaged over 4000 draws per datapoint,
    must match within 4 standard errors, and the gap must exceed 10 of them (the
    check can tell a correlated posterior from a diagonal one).
    """
    model = LinearGaussianModel()
    gap = 0.5 * (np.sum(np.log(np.diag(model.precision))) - np.linalg.slogdet(model.precision)[1])
    num = 4000
    log_weights, elbo = model.log_weights(posteriors.DiagonalGaussian(model.J), num, [3, 4])
    estimated_gap = model.log_evidence() - elbo
    stderr = log_weights.std(axis=0) / math.sqrt(num)
    np.testing.assert_array_less(np.abs(estimated_gap - gap), 4 * stderr)
    assert np.all(gap > 10 * stderr)


# Saving and running elsewhere.


@pytest.mark.parametrize("name", MAKERS)
def test_keras_round_trip_keeps_every_output(name, tmp_path):
    assert_identical_after_round_trip(head_for(name, (3,)), tmp_path)


@pytest.mark.parametrize("name", MAKERS)
def test_sampling_log_prob_and_gradients_compile_with_xla(name):
    assert_runs_under_xla(head_for(name, (3,)))


@pytest.mark.parametrize("name", MAKERS)
def test_draw_and_mean_run_on_litert_builtins(name, tmp_path):
    assert_litert_matches(head_for(name, (3,)), tmp_path)
