"""The plain autoencoder baseline: training, metrics and serialization."""

import keras
import numpy as np
import pytest

import tfvae
from tfvae import autoencoder

H, W, LATENT = 7, 3, 2


def data(n=60):
    return (np.random.default_rng(0).uniform(size=(n, H, W)) > 0.6).astype(np.float32)


@pytest.fixture
def model():
    config = tfvae.ModelConfig(latent_dim=LATENT, hidden_units=(16,), event_shape=(H, W))
    return autoencoder.build_autoencoder(config, seed=0)


def test_shapes_and_distortion(model):
    x = data(5)
    assert model.encode(x).shape == (5, LATENT)
    assert model.distortion(x).shape == (5,)
    assert model.reconstruct(x).shape == (5, H, W)
    predictions = model.predict(x, verbose=0)
    assert predictions["z"].shape == (5, LATENT)


def test_fit_lowers_the_distortion_and_round_trips(model, tmp_path):
    model.compile(keras.optimizers.Adam(0.01))
    x = data()
    history = model.fit(x, batch_size=10, epochs=5, validation_data=(x,), verbose=0).history
    assert history["distortion"][-1] < history["distortion"][0]
    assert history["val_loss"][-1] == pytest.approx(history["val_distortion"][-1])
    model.save(tmp_path / "ae.keras")
    loaded = keras.models.load_model(tmp_path / "ae.keras")
    np.testing.assert_array_equal(loaded.encode(x), model.encode(x))
