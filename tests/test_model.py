"""The VAE's Keras contract, shapes, bounds and serialization.

The bounds are checked against values computed without the model: its weights are
set by hand and read back into numpy, where q(z|x) = N(mu, diag(sigma^2)) follows
from the documented heads, the rate is the closed-form Gaussian KL, and with a
linear decoder (logits l = z K + c, so each l_i ~ N(m_i, v_i) under q) the
distortion E_q[sum_i softplus(l_i) - x_i l_i] is a one-dimensional Gauss-Hermite
quadrature per pixel.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.polynomial.hermite_e import hermegauss

import tfvae
from tfvae import priors

tfd = tfp.distributions

# Distinct sizes on every axis: batch, two event axes, latent, samples.
B, H, W, LATENT, S = 5, 7, 3, 4, 6
MIN_SCALE = 1e-4  # posteriors.DiagonalGaussian's documented default floor.


def binary_data(n=60, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, H, W)) > 0.6).astype(np.float32)


def small_vae(**kwargs):
    return tfvae.VAE(
        tfvae.gaussian_mlp_encoder(LATENT, (16,), seed=1),
        tfvae.bernoulli_mlp_decoder((H, W), (16,), seed=2),
        seed=3,
        **kwargs,
    )


@pytest.fixture
def vae():
    model = small_vae()
    model.build((None, H, W))
    return model


# numpy replicas of the documented networks, and models with hand-set weights.


def softplus(a):
    return np.logaddexp(0.0, a)


def affine(dense, h):
    return h @ dense.kernel.numpy().astype(np.float64) + dense.bias.numpy().astype(np.float64)


def tanh_trunk(mlp, h):
    for layer in mlp.hidden:
        h = np.tanh(affine(layer, h))
    return h


def numpy_posterior(model, x):
    """(mu, sigma) `[N, LATENT]` of the paper's Gaussian MLP encoder, in numpy."""
    h = tanh_trunk(model.encoder.trunk, np.reshape(x, (len(x), -1)).astype(np.float64))
    loc, scale = model.encoder.head.parameter_layers
    return affine(loc, h), MIN_SCALE + softplus(affine(scale, h) + math.log(math.e - 1))


def numpy_logits(model, z):
    """Logits `[N, H * W]` of the Bernoulli MLP decoder at z `[N, LATENT]`."""
    return affine(model.decoder.head.parameter_layers[0], tanh_trunk(model.decoder.trunk, z))


def gaussian_kl(mu, sigma):
    """KL(N(mu, diag(sigma^2)) || N(0, I)) per row."""
    return 0.5 * np.sum(mu**2 + sigma**2 - 1.0 - 2.0 * np.log(sigma), axis=-1)


def hand_set_vae(decoder_kernel_scale=0.5, seed=0, **kwargs):
    """A VAE with a tanh encoder and a linear Bernoulli decoder, weights drawn by hand.

    The encoder's weights are large enough that q(z|x) differs from example to
    example; `decoder_kernel_scale=0` makes p(x|z) independent of z, so that the
    distortion is exact whatever the noise.
    """
    model = tfvae.VAE(
        tfvae.gaussian_mlp_encoder(LATENT, (8,), seed=1),
        tfvae.bernoulli_mlp_decoder((H, W), (), seed=2),
        seed=3,
        **kwargs,
    )
    model.build((None, H, W))
    rng = np.random.default_rng(seed)
    for w in model.weights:
        scale = decoder_kernel_scale if w.path.endswith("logits/kernel") else 0.4
        w.assign(scale * rng.normal(size=w.shape).astype(np.float32))
    return model


def exact_terms(model, x):
    """(rate, distortion) `[N]` of a `hand_set_vae`: closed-form KL, Gauss-Hermite E_q."""
    mu, sigma = numpy_posterior(model, x)
    logits = model.decoder.head.parameter_layers[0]
    kernel, bias = (v.numpy().astype(np.float64) for v in (logits.kernel, logits.bias))
    mean, stddev = mu @ kernel + bias, np.sqrt(sigma**2 @ kernel**2)
    nodes, weights = hermegauss(60)  # E f(l) = sum_i w_i f(m + s t_i) / sqrt(2 pi)
    expected_softplus = softplus(mean[..., None] + stddev[..., None] * nodes) @ weights
    expected_softplus /= math.sqrt(2 * math.pi)
    x = np.reshape(x, (len(x), -1))
    return gaussian_kl(mu, sigma), np.sum(expected_softplus - x * mean, axis=-1)


def monte_carlo_stderr(model, x, num_samples, num_draws=4000):
    """Standard errors `[N]` of S-sample means of -log p(x|z) and of log q - log p."""
    mu, sigma = numpy_posterior(model, x)
    z = mu + sigma * np.random.default_rng(99).normal(size=(num_draws, *mu.shape))
    logits = numpy_logits(model, z)
    x = np.reshape(x, (len(x), -1))
    distortion = np.sum(softplus(logits) - x * logits, axis=-1)
    log_ratio = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) + 0.5 * z**2, axis=-1)
    return (
        distortion.std(axis=0) / math.sqrt(num_samples),
        log_ratio.std(axis=0) / math.sqrt(num_samples),
    )


# Shapes, and the bounds against closed forms.


def test_shapes(vae):
    x = binary_data(B)
    posterior = vae.encode(x)
    assert posterior.batch_shape == (B,) and posterior.event_shape == (LATENT,)
    likelihood = vae.decode(posterior.sample(seed=(1, 1)))
    assert likelihood.batch_shape == (B,) and likelihood.event_shape == (H, W)
    assert vae(x).event_shape == (H, W)
    assert vae.log_likelihood(x, posterior.sample(S, seed=(1, 2))).shape == (S, B)
    for value in vae.bound_terms(x, num_samples=S):
        assert value.shape == (B,)
    assert vae.elbo(x, S).shape == (B,) and vae.iwae_bound(x, S).shape == (B,)
    assert vae.sample(S, seed=1).shape == (S, H, W)
    assert vae.reconstruct(x).shape == (B, H, W)
    predictions = vae.predict(x, verbose=0)
    assert predictions["z_mean"].shape == (B, LATENT)
    assert predictions["posterior_scale"].shape == (B, LATENT)
    assert predictions["reconstruction"].shape == (B, H, W)


def test_bound_terms_match_the_closed_form_kl_and_a_quadrature_of_the_distortion():
    model = hand_set_vae()
    x = binary_data(B)
    rate, distortion = exact_terms(model, x)
    num_samples = 50_000
    distortion_stderr, _ = monte_carlo_stderr(model, x, num_samples)
    terms = model.bound_terms(x, num_samples=num_samples, seed=7)
    np.testing.assert_allclose(terms.rate, rate, rtol=1e-5)
    assert np.all(np.abs(terms.distortion - distortion) < 4 * distortion_stderr + 1e-4)
    assert np.all(np.abs(terms.elbo + rate + distortion) < 4 * distortion_stderr + 1e-4)
    assert np.ptp(rate) > 1.0  # The examples' posteriors really differ.


def test_bounds_are_seeded():
    model = hand_set_vae()
    x = binary_data(B)
    np.testing.assert_array_equal(model.elbo(x, S, seed=7), model.elbo(x, S, seed=7))
    assert not np.array_equal(model.elbo(x, S, seed=7), model.elbo(x, S, seed=8))


def test_monte_carlo_kl_estimator_agrees_with_the_closed_form():
    model = hand_set_vae(kl_estimator="monte_carlo")
    x = binary_data(B)
    rate, _ = exact_terms(model, x)
    num_samples = 20_000
    _, rate_stderr = monte_carlo_stderr(model, x, num_samples)
    estimate = model.bound_terms(x, num_samples=num_samples, seed=1).rate
    assert np.all(np.abs(estimate - rate) < 4 * rate_stderr)
    assert np.all(rate_stderr > 1e-4)  # A Monte Carlo estimate, not the closed form.


@pytest.mark.parametrize("kl_estimator", ["analytic", "monte_carlo"])
def test_the_gradient_of_the_bound_is_the_closed_form_gradient_of_the_kl(kl_estimator):
    # p(x|z) independent of z: the encoder's gradient is the rate's alone. With
    # mu = ... + loc bias and sigma = MIN_SCALE + softplus(raw + log(e - 1)),
    # d KL / d mu = mu and d KL / d raw = (sigma - 1 / sigma) sigmoid(raw + log(e - 1)).
    model = hand_set_vae(decoder_kernel_scale=0.0, kl_estimator=kl_estimator)
    x = binary_data(B)
    mu, sigma = numpy_posterior(model, x)
    dsigma_draw = 1 - np.exp(-(sigma - MIN_SCALE))  # sigmoid(softplus^-1(sigma - floor))
    num_samples = 20_000
    loc, scale = model.encoder.head.parameter_layers
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.bound_terms(x, num_samples=num_samples, seed=4).bound)
    loc_gradient, scale_gradient = tape.gradient(loss, [loc.bias, scale.bias])
    # The reparameterized estimates average z and z * epsilon - 1 / sigma over the draws.
    loc_stderr = np.sqrt(np.sum(sigma**2, axis=0) / num_samples) / B
    scale_stderr = (
        np.sqrt(np.sum(dsigma_draw**2 * (mu**2 + 2 * sigma**2), axis=0) / num_samples) / B
    )
    if kl_estimator == "analytic":
        loc_stderr = scale_stderr = 1e-6
    expected_scale = np.mean((sigma - 1 / sigma) * dsigma_draw, axis=0)
    assert np.all(np.abs(loc_gradient - mu.mean(axis=0)) < 4 * loc_stderr), (
        loc_gradient,
        mu.mean(axis=0),
        loc_stderr,
    )
    assert np.all(np.abs(scale_gradient - expected_scale) < 4 * scale_stderr), (
        scale_gradient,
        expected_scale,
        scale_stderr,
    )


def clustered_data(n=200, seed=0):
    """Noisy copies of three binary prototypes: data with a latent structure."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(size=(3, H, W)) > 0.5
    flips = rng.uniform(size=(n, H, W)) < 0.1
    return (prototypes[rng.integers(3, size=n)] ^ flips).astype(np.float32)


def mean_and_stderr(values):
    return values.mean(), values.std() / math.sqrt(len(values))


def test_iwae_bound_is_above_the_elbo_and_grows_with_k(vae):
    x = clustered_data()
    vae.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    vae.fit(x, batch_size=20, epochs=20, shuffle=False, verbose=0)  # A posterior worth weighting.
    elbo = vae.elbo(x, 100, seed=1).numpy()
    iwae = {k: vae.iwae_bound(x, k, seed=2).numpy() for k in (1, 10, 100)}
    mean_1, stderr_1 = mean_and_stderr(iwae[1] - elbo)
    assert abs(mean_1) < 4 * stderr_1  # IWAE with k = 1 is the ELBO.
    mean_10, stderr_10 = mean_and_stderr(iwae[10] - elbo)
    assert mean_10 > 4 * stderr_10 and mean_and_stderr(iwae[100] - elbo)[0] > mean_10


@pytest.mark.parametrize(
    "options",
    [{"objective": "iwae", "num_samples": 5}, {"kl_estimator": "monte_carlo", "num_samples": 2}],
    ids=["iwae", "monte_carlo_kl"],
)
def test_fit_on_the_other_bounds_improves_the_elbo(options):
    x = clustered_data()
    model = small_vae(**options)
    model.build((None, H, W))
    before = model.elbo(x, 50, seed=1).numpy()
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    history = model.fit(x, batch_size=20, epochs=15, shuffle=False, verbose=0).history
    gain, gain_stderr = mean_and_stderr(model.elbo(x, 50, seed=1).numpy() - before)
    assert gain > 2.0 and gain > 4 * gain_stderr
    # The ELBO from 500 draws is all but exact; IWAE with k = 100 must clear its error.
    iwae_gain, iwae_stderr = mean_and_stderr(
        model.iwae_bound(x, 100, seed=2).numpy() - model.elbo(x, 500, seed=3).numpy()
    )
    assert iwae_gain > 4 * iwae_stderr
    if options.get("objective") == "iwae":
        # On the very draws of a step, log mean exp(w) >= mean(w) (Jensen): the trained
        # bound, -loss, lies above the ELBO logged beside it, strictly once q is no
        # longer the prior.
        bound, elbo = -np.array(history["loss"]), np.array(history["elbo"])
        assert np.all(bound >= elbo - 1e-5) and bound[-1] - elbo[-1] > 0.01


def test_one_train_step_logs_the_exact_terms_of_the_weights_before_it():
    # A decoder independent of z: distortion exact, rate in closed form, any noise.
    model = hand_set_vae(decoder_kernel_scale=0.0)
    x = binary_data(20)
    rate, distortion = exact_terms(model, x)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(keras.optimizers.Adagrad(0.05))
    logs = model.train_on_batch(x, return_dict=True)
    assert set(logs) == {
        "loss",
        "elbo",
        "rate",
        "distortion",
        "kl_weight",
        "skipped_steps",
        "skipped_in_a_row",
    }
    expected = {
        "rate": rate.mean(),
        "distortion": distortion.mean(),
        "elbo": -(rate + distortion).mean(),
        "loss": (rate + distortion).mean(),
    }
    for name, value in expected.items():
        assert logs[name] == pytest.approx(value, rel=1e-5), name
    assert logs["skipped_steps"] == 0 and logs["skipped_in_a_row"] == 0
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)


def test_fit_with_validation_evaluate_and_predict():
    vae = small_vae()
    vae.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    x, x_val = binary_data(100), binary_data(30, 1)
    history = vae.fit(
        x, batch_size=10, epochs=4, validation_data=(x_val,), shuffle=False, verbose=0
    ).history
    assert {"val_loss", "val_elbo", "val_rate", "val_distortion"} <= set(history)
    assert history["elbo"][-1] > history["elbo"][0]
    results = vae.evaluate(x_val, batch_size=10, return_dict=True, verbose=0)
    # The last validation pass ran on the final weights with evaluation's own noise.
    for name in ("loss", "elbo", "rate", "distortion"):
        assert results[name] == pytest.approx(history[f"val_{name}"][-1], rel=1e-6), name
    mu, sigma = numpy_posterior(vae, x_val)
    assert results["rate"] == pytest.approx(gaussian_kl(mu, sigma).mean(), rel=1e-5)
    predictions = vae.predict(x_val, batch_size=10, verbose=0)
    np.testing.assert_allclose(predictions["z_mean"], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictions["posterior_scale"], sigma, rtol=1e-5, atol=1e-6)
    mean_image = 1 / (1 + np.exp(-numpy_logits(vae, mu)))
    np.testing.assert_allclose(
        predictions["reconstruction"].reshape(30, -1), mean_image, rtol=1e-5, atol=1e-6
    )


def test_evaluate_averages_over_examples_also_with_a_partial_last_batch():
    model = hand_set_vae(decoder_kernel_scale=0.0)
    model.decoder.head.parameter_layers[0].bias.assign(np.full(H * W, 3.0, np.float32))
    x = binary_data(25)
    x[20:] = 1.0  # A last batch of 5 far likelier than the others.
    rate, distortion = exact_terms(model, x)
    model.compile(jit_compile=False)
    results = model.evaluate(x, batch_size=10, return_dict=True, verbose=0)
    assert results["rate"] == pytest.approx(rate.mean(), rel=1e-5)
    assert results["distortion"] == pytest.approx(distortion.mean(), rel=1e-5)
    assert results["loss"] == pytest.approx((rate + distortion).mean(), rel=1e-5)
    # The mean of the three batch means is far off: the test tells the two apart.
    batch_means = np.mean([(rate + distortion)[i : i + 10].mean() for i in (0, 10, 20)])
    assert abs(batch_means - (rate + distortion).mean()) > 0.1 * (rate + distortion).mean()


def test_keras_round_trip_of_a_model_trained_only_through_fit(tmp_path):
    vae = small_vae()  # Never built by hand: fit() is its first call.
    vae.compile(keras.optimizers.Adagrad(0.05))
    x = binary_data(40)
    vae.fit(x, batch_size=10, epochs=2, verbose=0)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras")
    assert len(loaded.weights) == len(vae.weights)
    for a, b in zip(loaded.get_weights(), vae.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.reconstruct(x), vae.reconstruct(x))
    np.testing.assert_array_equal(loaded.elbo(x, 3, seed=2), vae.elbo(x, 3, seed=2))
    assert loaded.optimizer.iterations.numpy() == vae.optimizer.iterations.numpy()
    loaded.fit(x, batch_size=10, epochs=1, verbose=0)  # Still trainable after reload.


def test_compile_rejects_a_loss_and_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="own loss"):
        small_vae().compile("adam", loss="mse")
    with pytest.raises(ValueError, match="objective"):
        small_vae(objective="elbow")
    with pytest.raises(RuntimeError, match="latent size is unknown"):
        small_vae().sample(2)


def test_distribution_prior_trains_but_is_refused_by_save(tmp_path):
    vae = small_vae(prior=priors.standard_normal([LATENT]))
    vae.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    vae.fit(binary_data(20), batch_size=10, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="tfvae.priors"):
        vae.save(tmp_path / "vae.keras")


class MixturePrior(priors.Prior):
    """A user's trainable two-component Gaussian mixture: no closed-form KL."""

    def build(self, input_shape=None):
        self.locs = self.add_weight(shape=(2, LATENT), initializer="random_normal")
        self.built = True

    def distribution(self, encoder=None):
        components = tfd.Independent(tfd.Normal(self.locs, 1.0), reinterpreted_batch_ndims=1)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]), components)


def test_a_prior_without_analytic_kl_uses_monte_carlo():
    prior = MixturePrior(LATENT)
    prior.build()
    model = hand_set_vae(prior=prior)
    x = binary_data(B)
    mu, sigma = numpy_posterior(model, x)
    # log q - log p(z) under the mixture, averaged over numpy draws of z ~ q.
    z = mu + sigma * np.random.default_rng(5).normal(size=(20_000, *mu.shape))
    locs = prior.locs.numpy().astype(np.float64)
    log_q = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma), axis=-1)
    log_components = -0.5 * np.sum((z[..., None, :] - locs) ** 2, axis=-1)
    log_p = np.logaddexp(log_components[..., 0], log_components[..., 1]) - math.log(2)
    samples = log_q - log_p
    rate = model.bound_terms(x, num_samples=20_000, seed=1).rate.numpy()
    stderr = samples.std(axis=0) / math.sqrt(len(samples))
    assert np.all(np.abs(rate - samples.mean(axis=0)) < 4 * math.sqrt(2) * stderr)
    with pytest.raises(ValueError, match="no closed-form KL"):
        small_vae(prior=prior, kl_estimator="analytic").bound_terms(binary_data(B))


class LinearGaussianEncoder(keras.Model):
    """A user's own encoder: q(z|x) = N(A x + b, diag(exp(s))), nothing from tfvae."""

    def __init__(self, latent_dim):
        super().__init__()
        self.loc = keras.layers.Dense(latent_dim)
        self.log_scale = self.add_weight(shape=(latent_dim,), initializer="zeros")

    def call(self, x):
        return tfd.MultivariateNormalDiag(self.loc(x), tf.exp(self.log_scale))


class LinearGaussianDecoder(keras.Model):
    """p(x|z) = N(W z + c, sigma^2 I): probabilistic PCA."""

    def __init__(self, data_dim):
        super().__init__()
        self.loc = keras.layers.Dense(data_dim)
        self.log_scale = self.add_weight(shape=(), initializer="zeros")

    def call(self, z):
        return tfd.MultivariateNormalDiag(
            self.loc(z), tf.exp(self.log_scale) * tf.ones([tf.shape(z)[0], self.loc.units])
        )


def ppca_maximum_log_likelihood(x, latent_dim):
    """max over (W, c, sigma) of the mean log N(x; c, W W^T + sigma^2 I) (Tipping & Bishop)."""
    n, d = x.shape
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    noise = eigenvalues[latent_dim:].mean()
    return -0.5 * (
        d * math.log(2 * math.pi)
        + np.sum(np.log(eigenvalues[:latent_dim]))
        + (d - latent_dim) * math.log(noise)
        + d
    )


def test_user_defined_linear_gaussian_networks_train_unchanged():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 2))
    x = (z @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(500, 6))).astype(np.float32)
    vae = tfvae.VAE(LinearGaussianEncoder(2), LinearGaussianDecoder(6), seed=0)
    vae.compile(keras.optimizers.Adam(0.05), jit_compile=False)
    history = vae.fit(x, batch_size=50, epochs=15, shuffle=False, verbose=0).history
    assert history["elbo"][-1] > history["elbo"][0] + 5
    # No ELBO of a linear-Gaussian model exceeds the pPCA maximum likelihood.
    best = ppca_maximum_log_likelihood(x.astype(np.float64), 2)
    # Monte Carlo error of the 100-sample mean over 500 examples: about 0.01 nats.
    elbo = vae.elbo(x, 100, seed=1).numpy().mean()
    assert best - 1.5 < elbo < best + 0.05
    assert vae.sample(3, seed=1).shape == (3, 6)
    # Without tfvae heads, reconstructions are the networks' own means: W (A x + b) + c.
    encoder, decoder = vae.encoder, vae.decoder
    code = x[:4] @ encoder.loc.kernel.numpy() + encoder.loc.bias.numpy()
    expected = code @ decoder.loc.kernel.numpy() + decoder.loc.bias.numpy()
    np.testing.assert_allclose(vae.reconstruct(x[:4]).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_building_is_seeded_without_touching_global_randomness():
    config = tfvae.ModelConfig(latent_dim=LATENT, hidden_units=(16,), event_shape=(H, W))
    first = tfvae.build_vae(config, seed=5).get_weights()
    tf.random.set_seed(1)
    expected = tf.random.uniform([3]).numpy()
    tf.random.set_seed(1)
    second = tfvae.build_vae(config, seed=5).get_weights()
    np.testing.assert_array_equal(tf.random.uniform([3]).numpy(), expected)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], tfvae.build_vae(config, seed=6).get_weights()[0])
    # Distinct layers of one model get distinct seeds.
    kernels = [w for w in first if w.shape == (16, LATENT)]
    assert len(kernels) == 2 and not np.array_equal(kernels[0], kernels[1])


def test_the_reconstruction_objective_points_to_the_point_mass_posterior():
    with pytest.raises(ValueError, match="PointMass"):
        small_vae(objective="reconstruction")


def test_a_model_saved_by_tfvae_0_2_is_refused_with_what_to_do():
    # What a 0.2 .keras file's config holds for its networks.
    old = {
        "encoder": {
            "module": "tfvae.networks",
            "class_name": "ProbabilisticMLP",
            "config": {"name": "encoder"},
        },
        "decoder": {
            "module": "tfvae.networks",
            "class_name": "ProbabilisticMLP",
            "config": {"name": "decoder"},
        },
    }
    with pytest.raises(ValueError, match="saved by tfvae 0.2 or older.*retrain"):
        tfvae.VAE.from_config(old)


def test_fit_and_log_likelihood_refuse_data_outside_the_likelihood_support():
    vae = small_vae()
    vae.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    grey = np.full((10, H, W), 0.5, np.float32)
    with pytest.raises(ValueError, match="is grey, not binary"):
        vae.fit(grey, batch_size=5, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_data is grey"):
        vae.fit(binary_data(10), validation_data=(grey,), batch_size=5, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="is grey, not binary"):
        tfvae.log_likelihood(vae, grey, 2)
