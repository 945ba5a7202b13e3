"""Priors against mathematics: normalisation on grids, explicit mixtures in
float64 (scipy), draws from explicit noise against the weights and the moments,
gradients under XLA, and `.keras` round trips.

Every prior is read, for the checks, as an explicit mixture of diagonal
Gaussians (weights `[K]`, locations and scales `[K, J]`) taken from its
parameters alone: N(0, I) is one component; the mixture of Gaussians has
weights softmax(logits); the VampPrior has weights 1/K and the encoder's
posterior parameters at its pseudo-inputs. Everything else (densities, CDFs,
moments, component choice) is written here from that definition, in numpy.

Weights are random and unequal, so that a prior that ignored them, or an
inverse CDF that picked the wrong interval, would fail.
"""

import functools

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import priors
from tfvae.networks import MLP, ProbabilisticNetwork
from tfvae.posteriors import DiagonalGaussian

tfd = tfp.distributions

# Distinct sizes on every axis: batch, latent (1 and 2), components, pseudo-inputs,
# the pseudo-inputs' two event axes, the encoder's hidden width.
B, J, K_MIXTURE, K_VAMP, X_EVENT, HIDDEN = 7, 2, 3, 5, (4, 6), 8
KINDS = ("standard_normal", "mixture", "vamp")
# Strongly unequal mixture weights: every wrong assignment of intervals to
# components moves some frequency by at least 0.15.
MIXTURE_WEIGHTS = np.array([0.55, 0.3, 0.15])


def encoder_of(latent_dim: int, *, init_stddev: float = 0.5, seed: int = 0):
    """An MLP encoder with a diagonal-Gaussian head, built for x `[B, *X_EVENT]`.

    init_stddev 0.5 (not the paper's 0.01) spreads the posteriors' locations
    and scales over the pseudo-inputs, so the VampPrior is a real mixture.
    """
    encoder = ProbabilisticNetwork(
        MLP((HIDDEN,), init_stddev=init_stddev, seed=seed),
        DiagonalGaussian(latent_dim, init_stddev=init_stddev, seed=seed + 1),
    )
    encoder.build((None, *X_EVENT))
    return encoder


@functools.cache
def make(kind: str, latent_dim: int = J):
    """(prior, encoder or None) with random, non-trivial weights (never mutated)."""
    rng = np.random.default_rng(latent_dim)
    if kind == "standard_normal":
        return priors.StandardNormal(latent_dim), None
    if kind == "mixture":
        prior = priors.MixtureOfGaussians(latent_dim, K_MIXTURE, seed=3)
        prior.logits.assign(np.log(MIXTURE_WEIGHTS) + 0.7)  # softmax ignores the shift
        prior.loc.assign(rng.normal(scale=2.0, size=(K_MIXTURE, latent_dim)))
        prior.raw_scale.assign(rng.normal(scale=0.6, size=(K_MIXTURE, latent_dim)))
        return prior, None
    encoder = encoder_of(latent_dim)
    prior = priors.VampPrior(latent_dim, K_VAMP, seed=4)
    prior.build((None, *X_EVENT))
    prior.raw_pseudo_inputs.assign(rng.normal(scale=2.0, size=(K_VAMP, *X_EVENT)))
    return prior, encoder


def mixture_of(prior, encoder):
    """p(z) as an explicit mixture, float64: (weights `[K]`, loc `[K, J]`, scale `[K, J]`)."""
    p = {name: np.float64(value) for name, value in prior.parameters(encoder).items()}
    if isinstance(prior, priors.StandardNormal):
        return np.ones(1), p["loc"][None], p["scale"][None]
    if isinstance(prior, priors.MixtureOfGaussians):
        return scipy.special.softmax(p["logits"]), p["loc"], p["scale"]
    posterior = encoder.parameters(tf.constant(p["pseudo_inputs"], tf.float32))
    loc, scale = np.float64(posterior["loc"]), np.float64(posterior["scale"])
    return np.full(len(loc), 1.0 / len(loc)), loc, scale


def mixture_log_density(z, weights, loc, scale):
    """log sum_k w_k prod_j N(z_j; loc_kj, scale_kj) for z `[N, J]`, float64 `[N]`."""
    per_component = scipy.stats.norm.logpdf(z[:, None, :], loc, scale).sum(axis=-1)
    return scipy.special.logsumexp(per_component + np.log(weights), axis=1)


def mixture_moments(weights, loc, scale):
    """Mean and per-dimension variance `[J]` of the mixture (law of total variance)."""
    mean = weights @ loc
    return mean, weights @ (scale**2 + loc**2) - mean**2


def grid_of(loc, scale, latent_dim):
    """Points `[N, J]` of a square grid covering every component to 9 scales, and the
    cell volume; the step is a third of the smallest scale (the rectangle rule's
    error on a Gaussian of scale s is about exp(-2 pi^2 s^2 / step^2), nil here)."""
    lo, hi = (loc - 9 * scale).min(), (loc + 9 * scale).max()
    step = scale.min() / 3
    axis = np.arange(lo, hi + step, step)
    points = np.stack(np.meshgrid(*[axis] * latent_dim, indexing="ij"), axis=-1)
    return points.reshape(-1, latent_dim), step**latent_dim


def noise_of(spec, n, rng, *, eps_zero=False):
    """Numpy noise {name: float32 `[n, *shape]`} for a noise spec (zeros for normal
    noise with `eps_zero`: then a mixture's draw is its component's location)."""
    noise = {}
    for name, (kind, shape) in spec.items():
        if kind == "uniform":
            value = rng.uniform(size=(n, *shape))
        else:
            value = np.zeros((n, *shape)) if eps_zero else rng.normal(size=(n, *shape))
        noise[name] = tf.constant(value, tf.float32)
    return noise


def components_of(z, loc):
    """The component whose location each zero-noise draw `z [N, J]` is."""
    distances = np.abs(z[:, None, :] - np.float32(loc)[None]).max(axis=-1)
    assert np.all(distances.min(axis=1) < 1e-6)
    return distances.argmin(axis=1)


# Shapes and the interface.


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_of_distribution_parameters_noise_and_draw(kind):
    prior, encoder = make(kind)
    distribution = prior.distribution(encoder)
    assert distribution.batch_shape == [] and distribution.event_shape == [J]
    assert prior.needs_encoder == (kind == "vamp")
    shapes = {name: tuple(value.shape) for name, value in prior.parameters(encoder).items()}
    assert (
        shapes
        == {
            "standard_normal": {"loc": (J,), "scale": (J,)},
            "mixture": {"logits": (K_MIXTURE,), "loc": (K_MIXTURE, J), "scale": (K_MIXTURE, J)},
            "vamp": {"pseudo_inputs": (K_VAMP, *X_EVENT)},
        }[kind]
    )
    spec = prior.noise_spec(encoder)
    assert (
        spec
        == {
            "standard_normal": {"eps": ("normal", (J,))},
            "mixture": {"eps": ("normal", (J,)), "component_noise": ("uniform", ())},
            "vamp": {"eps": ("normal", (J,)), "component_noise": ("uniform", ())},
        }[kind]
    )
    z = prior.draw(noise_of(spec, B, np.random.default_rng(0)), encoder)
    assert z.shape == (B, J)
    assert distribution.log_prob(z).shape == (B,)
    assert prior.mean(encoder).shape == (J,)


def test_initial_mixture_has_equal_weights_unit_scales_and_distinct_locations():
    prior = priors.MixtureOfGaussians(J, K_MIXTURE, min_scale=1e-3, seed=0)
    p = {name: np.asarray(value) for name, value in prior.parameters().items()}
    np.testing.assert_array_equal(p["logits"], np.zeros(K_MIXTURE))
    np.testing.assert_allclose(p["scale"], 1 + 1e-3, rtol=1e-6)
    assert np.all(np.diff(np.sort(p["loc"], axis=0), axis=0) > 1e-3)
    np.testing.assert_array_equal(
        priors.MixtureOfGaussians(J, K_MIXTURE, seed=0).parameters()["loc"], p["loc"]
    )


def test_initial_pseudo_inputs_lie_near_one_half_and_differ():
    prior = priors.VampPrior(J, K_VAMP, seed=0)
    prior.build((None, *X_EVENT))
    u = np.asarray(prior.parameters()["pseudo_inputs"])
    # sigmoid(r) for r ~ N(0, 0.01^2) is 0.5 + r / 4 to first order.
    assert np.all(np.abs(u - 0.5) < 0.01) and 0.001 < u.std() < 0.004


def test_weights_are_trainable_and_tracked():
    assert priors.StandardNormal(J).weights == []
    mixture = priors.MixtureOfGaussians(J, K_MIXTURE)
    assert [w.name for w in mixture.trainable_weights] == ["logits", "loc", "raw_scale"]
    vamp, _ = make("vamp")
    assert [w.name for w in vamp.trainable_weights] == ["raw_pseudo_inputs"]
    assert not vamp.non_trainable_weights and not mixture.non_trainable_weights


# Densities.


@pytest.mark.parametrize("latent_dim", (1, 2))
@pytest.mark.parametrize("kind", KINDS)
def test_density_integrates_to_one(kind, latent_dim):
    prior, encoder = make(kind, latent_dim)
    _, loc, scale = mixture_of(prior, encoder)
    points, volume = grid_of(loc, scale, latent_dim)
    log_p = prior.distribution(encoder).log_prob(tf.constant(points, tf.float32))
    assert np.exp(np.float64(log_p)).sum() * volume == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_the_explicit_mixture(kind):
    """log p(z) = logsumexp_k [log w_k + sum_j log N(z_j; loc_kj, scale_kj)], float64;
    for the VampPrior w_k = 1/K and (loc_k, scale_k) are q(z | u_k)'s."""
    prior, encoder = make(kind)
    z = np.random.default_rng(1).normal(scale=3.0, size=(B, J))
    expected = mixture_log_density(z, *mixture_of(prior, encoder))
    log_p = prior.distribution(encoder).log_prob(tf.constant(z, tf.float32))
    # float32: z rounds by 6e-8 |z|, log N by a few ulps of its terms (|log p| < 40 here).
    np.testing.assert_allclose(np.float64(log_p), expected, rtol=1e-5, atol=1e-5)


def test_standard_normal_factorizes_into_scipy_normals():
    prior = priors.StandardNormal(J)
    z = np.random.default_rng(2).normal(scale=2.0, size=(B, J)).astype(np.float32)
    elementwise = prior.elementwise_log_prob(z)
    np.testing.assert_allclose(elementwise, scipy.stats.norm.logpdf(np.float64(z)), rtol=1e-6)
    np.testing.assert_allclose(
        prior.distribution().log_prob(z), np.sum(elementwise, axis=-1), rtol=1e-6
    )
    np.testing.assert_allclose(
        priors.standard_normal([J]).log_prob(z), prior.distribution().log_prob(z), rtol=1e-7
    )


@pytest.mark.parametrize("kind", ("mixture", "vamp"))
def test_mixtures_do_not_factorize(kind):
    prior, _ = make(kind)
    with pytest.raises(NotImplementedError, match="does not factorize over dimensions"):
        prior.elementwise_log_prob(tf.zeros([B, J]))


def test_kl_from_diagonal_gaussian_to_standard_normal_is_analytic():
    """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, summed over dimensions."""
    rng = np.random.default_rng(3)
    mu, s = rng.normal(size=(B, J)), rng.uniform(0.2, 3.0, size=(B, J))
    posterior = tfd.Independent(
        tfd.Normal(tf.constant(mu, tf.float32), tf.constant(s, tf.float32)), 1
    )
    kl = tfd.kl_divergence(posterior, priors.StandardNormal(J).distribution())
    np.testing.assert_allclose(kl, np.sum((mu**2 + s**2 - 1) / 2 - np.log(s), axis=-1), rtol=1e-5)


def test_dtype_follows_the_layer_and_the_noise():
    mixture = priors.MixtureOfGaussians(J, K_MIXTURE, seed=0, dtype="float64")
    assert mixture.distribution().dtype == tf.float64
    assert priors.StandardNormal(J, dtype="float64").distribution().dtype == tf.float64
    noise = noise_of(priors.MixtureOfGaussians(J).noise_spec(), B, np.random.default_rng(0))
    noise64 = {name: tf.cast(value, tf.float64) for name, value in noise.items()}
    assert priors.MixtureOfGaussians(J, K_MIXTURE).draw(noise64).dtype == tf.float64


# Draws from explicit noise.


@pytest.mark.parametrize("kind", ("mixture", "vamp"))
def test_component_noise_inside_an_interval_of_the_cdf_picks_its_component(kind):
    """k is the component with C_{k-1} < u <= C_k: try each interval's midpoint,
    u = 0, and the largest float32 below 1 (possibly above the rounded C_{K-1})."""
    prior, encoder = make(kind)
    weights, loc, _ = mixture_of(prior, encoder)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    u = np.concatenate(
        [(cumulative[:-1] + cumulative[1:]) / 2, [0.0, np.nextafter(np.float32(1), np.float32(0))]]
    )
    noise = noise_of(prior.noise_spec(encoder), len(u), np.random.default_rng(0), eps_zero=True)
    noise["component_noise"] = tf.constant(u, tf.float32)
    z = np.asarray(prior.draw(noise, encoder))
    K = len(weights)
    np.testing.assert_array_equal(components_of(z, loc), [*range(K), 0, K - 1])


@pytest.mark.parametrize("kind", ("mixture", "vamp"))
def test_component_frequencies_match_the_weights(kind):
    prior, encoder = make(kind)
    weights, loc, _ = mixture_of(prior, encoder)
    n = 4000
    noise = noise_of(prior.noise_spec(encoder), n, np.random.default_rng(5), eps_zero=True)
    counts = np.bincount(
        components_of(np.asarray(prior.draw(noise, encoder)), loc), minlength=len(weights)
    )
    standard_error = np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(counts / n - weights) < 4 * standard_error)
    if kind == "mixture":  # the test's power: reversed or shifted intervals fail it
        for wrong in (weights[::-1], np.roll(weights, 1), np.roll(weights, -1)):
            assert np.max(np.abs(wrong - weights) / standard_error) > 15


@pytest.mark.parametrize("kind", KINDS)
def test_draws_have_the_mixture_mean_and_variance(kind):
    prior, encoder = make(kind)
    n = 20000
    z = np.float64(
        prior.draw(noise_of(prior.noise_spec(encoder), n, np.random.default_rng(6)), encoder)
    )
    mean, variance = mixture_moments(*mixture_of(prior, encoder))
    squared = (z - z.mean(axis=0)) ** 2
    assert np.all(np.abs(z.mean(axis=0) - mean) < 4 * np.sqrt(variance / n))
    assert np.all(np.abs(squared.mean(axis=0) - variance) < 4 * squared.std(axis=0) / np.sqrt(n))


@pytest.mark.parametrize("kind", KINDS)
def test_draws_follow_the_mixture_cdf_in_one_dimension(kind):
    """Kolmogorov-Smirnov against F(z) = sum_k w_k Phi((z - loc_k) / scale_k)."""
    prior, encoder = make(kind, 1)
    weights, loc, scale = mixture_of(prior, encoder)
    z = np.float64(
        prior.draw(noise_of(prior.noise_spec(encoder), 5000, np.random.default_rng(7)), encoder)
    )[:, 0]

    def cdf(t):
        return scipy.stats.norm.cdf((t[:, None] - loc[:, 0]) / scale[:, 0]) @ weights

    assert scipy.stats.kstest(z, cdf).pvalue > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_sample_mean_and_mean_are_the_density_weighted_grid_mean(kind):
    prior, encoder = make(kind)
    weights, loc, scale = mixture_of(prior, encoder)
    points, volume = grid_of(loc, scale, J)
    density = np.exp(
        np.float64(prior.distribution(encoder).log_prob(tf.constant(points, tf.float32)))
    )
    grid_mean = density @ points * volume
    grid_variance = density @ (points - grid_mean) ** 2 * volume
    n = 20000
    z = np.float64(
        prior.draw(noise_of(prior.noise_spec(encoder), n, np.random.default_rng(8)), encoder)
    )
    assert np.all(np.abs(z.mean(axis=0) - grid_mean) < 4 * np.sqrt(grid_variance / n))
    np.testing.assert_allclose(prior.mean(encoder), grid_mean, atol=1e-4)


# Gradients, XLA, errors, saving.


@pytest.mark.parametrize("kind", ("mixture", "vamp"))
def test_gradients_reach_every_weight_under_xla(kind):
    prior, encoder = make(kind)
    variables = prior.trainable_weights + (encoder.trainable_weights if encoder else [])
    assert len(variables) == {"mixture": 3, "vamp": 1 + 6}[kind]
    z = np.random.default_rng(9).normal(scale=2.0, size=(B, J))
    z[0] = 40.0  # far in every component's tail
    noise = noise_of(prior.noise_spec(encoder), B, np.random.default_rng(10))

    @tf.function(jit_compile=True)
    def log_prob_gradients_and_draw(z, noise):
        with tf.GradientTape() as tape:
            log_p = prior.distribution(encoder).log_prob(z)
            total = tf.reduce_sum(log_p)
        return log_p, tape.gradient(total, variables), prior.draw(noise, encoder)

    log_p, gradients, draws = log_prob_gradients_and_draw(tf.constant(z, tf.float32), noise)
    np.testing.assert_allclose(log_p, prior.distribution(encoder).log_prob(z), rtol=1e-5)
    np.testing.assert_allclose(draws, prior.draw(noise, encoder), rtol=1e-5, atol=1e-6)
    for variable, gradient in zip(variables, gradients):
        assert gradient is not None, variable.path
        assert np.all(np.isfinite(gradient)) and np.any(gradient != 0), variable.path


def test_vamp_prior_refuses_use_before_build_without_encoder_or_with_another_latent_size():
    prior = priors.VampPrior(J, K_VAMP)
    with pytest.raises(RuntimeError, match="build it with the shape of x"):
        prior.distribution(encoder_of(J))
    with pytest.raises(ValueError, match="every event axis known"):
        prior.build((None,))
    prior.build((None, *X_EVENT))
    for method in (prior.distribution, prior.mean, prior.noise_spec):
        with pytest.raises(ValueError, match="pass the VAE's encoder"):
            method()
    with pytest.raises(ValueError, match="pass the VAE's encoder"):
        prior.draw({"component_noise": tf.zeros([B]), "eps": tf.zeros([B, J])})
    with pytest.raises(ValueError, match=r"latent shape \(3,\)"):
        prior.distribution(encoder_of(3))


@pytest.mark.parametrize(
    "make_prior, message",
    [
        (lambda: priors.MixtureOfGaussians(J, 0), "num_components"),
        (lambda: priors.MixtureOfGaussians(J, K_MIXTURE, min_scale=0.0), "min_scale"),
        (lambda: priors.VampPrior(J, 0), "num_pseudo_inputs"),
    ],
)
def test_invalid_arguments_are_refused(make_prior, message):
    with pytest.raises(ValueError, match=message):
        make_prior()


@pytest.mark.parametrize(
    "make_prior",
    [
        lambda: priors.StandardNormal(J, name="p"),
        lambda: priors.MixtureOfGaussians([J], K_MIXTURE, min_scale=1e-3, seed=5, name="p"),
        lambda: priors.VampPrior(J, K_VAMP, seed=6, name="p"),
    ],
    ids=KINDS,
)
def test_config_rebuilds_the_same_prior(make_prior):
    prior = make_prior()
    config = prior.get_config()
    assert type(prior).from_config(config).get_config() == config
    assert config["event_shape"] == (J,)


@keras.saving.register_keras_serializable(package="tfvae_tests")
class PriorHolder(keras.Model):
    """A model that owns a prior (and an encoder): log p(z) for z `[B, J]`."""

    def __init__(self, prior, encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.prior = prior
        self.encoder = encoder

    def build(self, input_shape):
        self.built = True  # the parts arrive built, from their own build configs

    def call(self, z):
        return self.prior.distribution(self.encoder).log_prob(z)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "prior": serialize(self.prior),
            "encoder": serialize(self.encoder) if self.encoder else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = config.pop("encoder")
        return cls(
            keras.saving.deserialize_keras_object(config.pop("prior")),
            keras.saving.deserialize_keras_object(encoder) if encoder else None,
            **config,
        )


@pytest.mark.parametrize("kind", KINDS)
def test_keras_round_trip_keeps_every_weight(kind, tmp_path):
    if kind == "vamp":
        encoder = ProbabilisticNetwork(MLP((HIDDEN,), seed=0), DiagonalGaussian(J, seed=1))
        encoder.build((None, *X_EVENT))
        prior = priors.VampPrior(J, K_VAMP, seed=2)
        prior.build((None, *X_EVENT))
    else:
        prior, encoder = make(kind)[0], None
    model = PriorHolder(prior, encoder)
    z = tf.constant(np.random.default_rng(11).normal(size=(B, J)), tf.float32)
    log_p = model(z)
    model.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert type(loaded.prior) is type(prior)
    assert len(loaded.weights) == len(model.weights)
    for before, after in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(loaded(z), log_p)


@pytest.mark.parametrize("kind", ("mixture", "vamp"))
def test_draw_converts_to_builtin_litert_ops(kind, tmp_path):
    """The draw runs in LiteRT without Flex ops and gives the same z."""
    from ai_edge_litert.interpreter import Interpreter

    prior, encoder = make(kind)
    spec = prior.noise_spec(encoder)
    signature = [
        tf.TensorSpec((None, *shape), tf.float32, name=name)
        for name, (_, shape) in sorted(spec.items())
    ]
    archive = keras.export.ExportArchive()
    for part in (prior, encoder) if encoder else (prior,):
        archive.track(part)
    archive.add_endpoint(
        "draw",
        lambda *noise: {"z": prior.draw(dict(zip(sorted(spec), noise)), encoder)},
        input_signature=signature,
    )
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "saved"), signature_keys=["draw"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = Interpreter(model_content=converter.convert()).get_signature_runner("draw")
    noise = noise_of(spec, B, np.random.default_rng(12))
    z = runner(**{name: np.asarray(value) for name, value in noise.items()})["z"]
    np.testing.assert_allclose(z, prior.draw(noise, encoder), rtol=1e-5, atol=1e-6)
