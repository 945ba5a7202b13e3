"""The plain autoencoder baseline: a VAE with a point-mass posterior, no KL term.

Its distortion is checked against a numpy replica of the documented networks,
z = W2 tanh(W1 x + b1) + b2 and logits l = V2 tanh(V1 z + c1) + c2, and the
Bernoulli log-likelihood -log p(x|z) = sum_i softplus(l_i) - x_i l_i.
"""

import keras
import numpy as np
import pytest

import tfvae
from tfvae import evaluation

H, W, LATENT = 7, 3, 2


def data(n=60, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, H, W)) > 0.6).astype(np.float32)


def build(weight_decay=None):
    config = tfvae.ModelConfig(
        latent_dim=LATENT,
        hidden_units=(16,),
        event_shape=(H, W),
        weight_decay=weight_decay,
        posterior="point_mass",
    )
    return tfvae.build_vae(config, seed=0)


@pytest.fixture
def model():
    return build()


def numpy_distortion(model, x):
    """-log p(x | z = f(x)) `[N]` from the model's weights, in float64 numpy."""
    x = np.reshape(x, (len(x), -1)).astype(np.float64)
    z = affine(
        model.encoder.head.parameter_layers[0], np.tanh(affine(model.encoder.trunk.hidden[0], x))
    )
    g = np.tanh(affine(model.decoder.trunk.hidden[0], z))
    logits = affine(model.decoder.head.parameter_layers[0], g)
    return np.sum(np.logaddexp(0.0, logits) - x * logits, axis=-1)


def affine(dense, h):
    return h @ dense.kernel.numpy().astype(np.float64) + dense.bias.numpy().astype(np.float64)


def set_weights_by_hand(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))


def test_shapes(model):
    x = data(5)
    assert model.posterior_mean(x).shape == (5, LATENT)
    assert model.bound_terms(x).distortion.shape == (5,)
    assert model.reconstruct(x).shape == (5, H, W)
    predictions = model.predict(x, verbose=0)
    assert predictions["z_mean"].shape == (5, LATENT)
    assert predictions["reconstruction"].shape == (5, H, W)
    assert not model.has_density and set(model.metrics_names) >= {"loss"}


def test_distortion_is_the_bernoulli_log_likelihood_of_the_code(model):
    set_weights_by_hand(model)
    x = data(25)
    expected = numpy_distortion(model, x)
    assert np.ptp(expected) > 5.0  # Examples differ, so averaging mistakes would show.
    np.testing.assert_allclose(model.bound_terms(x).distortion, expected, rtol=1e-5)
    model.compile(jit_compile=False)
    results = model.evaluate(x, batch_size=10, return_dict=True, verbose=0)
    assert set(results) == {"loss", "distortion"}  # No rate: the posterior has no density.
    for name in ("loss", "distortion"):  # 10 + 10 + 5: a mean over examples.
        assert results[name] == pytest.approx(expected.mean(), rel=1e-5), name


def test_fit_lowers_the_distortion_and_round_trips(tmp_path):
    # Weight decay is minimised but kept out of `loss`, which stays -log p(x|z) in nats.
    model = build(weight_decay=0.05)
    assert len(model.losses) == 4  # One L2 penalty per kernel.
    with pytest.raises(evaluation.UnsupportedDistribution, match="point mass"):
        evaluation.log_likelihood(model, data(4), 2)
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    x, x_val = data(), data(20, seed=1)
    history = model.fit(x, batch_size=10, epochs=5, validation_data=(x_val,), verbose=0).history
    assert history["distortion"][-1] < history["distortion"][0]
    expected = numpy_distortion(model, x_val).mean()  # The final weights.
    assert history["val_distortion"][-1] == pytest.approx(expected, rel=1e-5)
    assert history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)
    model.save(tmp_path / "ae.keras")
    loaded = keras.models.load_model(tmp_path / "ae.keras")
    np.testing.assert_array_equal(loaded.posterior_mean(x), model.posterior_mean(x))
    np.testing.assert_allclose(
        loaded.bound_terms(x_val).distortion, numpy_distortion(model, x_val), rtol=1e-5
    )


def test_the_point_mass_has_no_bound_to_report(model):
    for method in (model.elbo, model.iwae_bound):
        with pytest.raises(ValueError, match="point mass.*no bound"):
            method(data(3))
