"""The VAE's Keras contract, shapes, bounds and serialization."""

import numpy as np
import pytest
import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import priors

tfd = tfp.distributions

# Distinct sizes on every axis: batch, two event axes, latent, samples.
B, H, W, LATENT, S = 5, 7, 3, 4, 6


def binary_data(n=60, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, H, W)) > 0.6).astype(np.float32)


def small_vae(**kwargs):
    return tfvae.VAE(tfvae.gaussian_mlp_encoder(LATENT, (16,), seed=1),
                     tfvae.bernoulli_mlp_decoder((H, W), (16,), seed=2), seed=3, **kwargs)


@pytest.fixture
def vae():
    model = small_vae()
    model.build((None, H, W))
    return model


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
    assert predictions["z_stddev"].shape == (B, LATENT)
    assert predictions["reconstruction"].shape == (B, H, W)


def test_elbo_is_rate_plus_distortion_and_seeded(vae):
    x = binary_data(B)
    terms = vae.bound_terms(x, num_samples=S, seed=7)
    np.testing.assert_allclose(terms.elbo, -terms.rate - terms.distortion, rtol=1e-6)
    assert np.all(terms.rate.numpy() >= 0)
    np.testing.assert_array_equal(vae.elbo(x, S, seed=7), vae.elbo(x, S, seed=7))
    assert not np.array_equal(vae.elbo(x, S, seed=7), vae.elbo(x, S, seed=8))


def clustered_data(n=200, seed=0):
    """Noisy copies of three binary prototypes: data with a latent structure."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(size=(3, H, W)) > 0.5
    flips = rng.uniform(size=(n, H, W)) < 0.1
    return (prototypes[rng.integers(3, size=n)] ^ flips).astype(np.float32)


def test_iwae_bound_is_above_the_elbo_and_grows_with_k(vae):
    x = clustered_data()
    vae.compile(keras.optimizers.Adam(0.01))
    vae.fit(x, batch_size=20, epochs=20, verbose=0)  # A posterior worth weighting.
    elbo = vae.elbo(x, 100, seed=1).numpy()
    iwae = {k: vae.iwae_bound(x, k, seed=2).numpy() for k in (1, 10, 100)}

    def gain(k):  # Mean gain over the ELBO on the same data, and its MC error.
        difference = iwae[k] - elbo
        return difference.mean(), difference.std() / np.sqrt(len(difference))

    mean_1, stderr_1 = gain(1)
    assert abs(mean_1) < 4 * stderr_1  # IWAE with k = 1 is the ELBO.
    mean_10, stderr_10 = gain(10)
    assert mean_10 > 4 * stderr_10 and gain(100)[0] > mean_10


def test_monte_carlo_kl_estimator_agrees_with_analytic(vae):
    x = binary_data(B)
    analytic = vae.bound_terms(x, num_samples=1, seed=1).rate
    mc_model = small_vae(kl_estimator="monte_carlo")
    mc_model.build((None, H, W))
    mc_model.set_weights(vae.get_weights())
    estimate = mc_model.bound_terms(x, num_samples=20_000, seed=1).rate
    np.testing.assert_allclose(estimate, analytic, atol=0.05)


def test_one_train_step_changes_weights_and_gives_finite_metrics(vae):
    before = [w.numpy().copy() for w in vae.trainable_weights]
    vae.compile(keras.optimizers.Adagrad(0.05))
    logs = vae.train_on_batch(binary_data(20), return_dict=True)
    assert set(logs) == {"loss", "elbo", "rate", "distortion"}
    assert all(np.isfinite(v) for v in logs.values())
    np.testing.assert_allclose(logs["loss"], -logs["elbo"], rtol=1e-5)
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, vae.trainable_weights)]
    assert all(changed)


def test_fit_with_validation_evaluate_and_predict():
    vae = small_vae()
    vae.compile(keras.optimizers.Adam(0.01))
    x = binary_data(100)
    history = vae.fit(x, batch_size=10, epochs=4, validation_data=(binary_data(30, 1),),
                      verbose=0).history
    assert {"val_loss", "val_elbo", "val_rate", "val_distortion"} <= set(history)
    assert history["elbo"][-1] > history["elbo"][0]
    results = vae.evaluate(binary_data(30, 1), batch_size=10, return_dict=True, verbose=0)
    assert np.isfinite(results["elbo"]) and results["loss"] == pytest.approx(-results["elbo"])
    assert vae.predict(x, batch_size=10, verbose=0)["z_mean"].shape == (100, LATENT)


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
    vae.compile(keras.optimizers.Adam(0.01))
    vae.fit(binary_data(20), batch_size=10, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="Wrap it in a keras.layers.Layer"):
        vae.save(tmp_path / "vae.keras")


class MixturePrior(keras.layers.Layer):
    """A trainable two-component Gaussian mixture: no closed-form KL."""

    def build(self, input_shape=None):
        self.locs = self.add_weight(shape=(2, LATENT), initializer="random_normal")
        self.built = True

    def call(self):
        components = tfd.Independent(tfd.Normal(self.locs, 1.0), reinterpreted_batch_ndims=1)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]), components)


def test_a_prior_without_analytic_kl_uses_monte_carlo():
    prior = MixturePrior()
    prior.build()
    vae = small_vae(prior=prior)
    vae.build((None, H, W))
    terms = vae.bound_terms(binary_data(B), num_samples=S, seed=1)
    assert np.all(np.isfinite(terms.rate.numpy()))
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
        return tfd.MultivariateNormalDiag(self.loc(z), tf.exp(self.log_scale) * tf.ones(
            [tf.shape(z)[0], self.loc.units]))


def test_user_defined_linear_gaussian_networks_train_unchanged():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 2))
    x = (z @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(500, 6))).astype(np.float32)
    vae = tfvae.VAE(LinearGaussianEncoder(2), LinearGaussianDecoder(6), seed=0)
    vae.compile(keras.optimizers.Adam(0.05))
    history = vae.fit(x, batch_size=50, epochs=15, verbose=0).history
    assert history["elbo"][-1] > history["elbo"][0] + 5
    assert vae.sample(3, seed=1).shape == (3, 6)


def test_loss_is_minus_the_elbo_also_with_a_partial_last_batch(vae):
    vae.compile(keras.optimizers.Adagrad(0.05))
    results = vae.evaluate(binary_data(25), batch_size=10, return_dict=True, verbose=0)
    assert results["loss"] == pytest.approx(-results["elbo"], rel=1e-6)


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


def test_the_reconstruction_objective_points_to_the_autoencoder():
    with pytest.raises(ValueError, match="autoencoder"):
        small_vae(objective="reconstruction")
