"""A plain autoencoder: the deterministic baseline of the VAE.

z = f(x) is a point, not a distribution, and training maximises only the
reconstruction term log p(x | z = f(x)), with no KL term. It shares the VAE's
decoders, so the two differ in exactly what seed 000 (problem 2) compares: the
posterior is a point and nothing pulls the codes towards a prior. Its latent
space is not shaped for sampling, so it has no `sample`.

Metrics (per datapoint, nats): `loss` = `distortion` = -log p(x | f(x)).
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from tfvae import aevb
from tfvae.base_model import ExampleMean, OwnLossModel, update_means
from tfvae.networks import MLP, child_seed, dense

METRIC_NAMES = ("loss", "distortion")


@keras.saving.register_keras_serializable(package="tfvae")
class Autoencoder(OwnLossModel):
    """x -> z = encoder(x) -> p(x|z) = decoder(z).

    Args:
        encoder: A Keras model mapping x `[B, *event]` to codes z `[B, latent_dim]`.
        decoder: A Keras model mapping z `[B, latent_dim]` to a distribution with
            batch shape `[B]` and event shape `event` (a VAE decoder).

    Call arguments:
        x: `[B, *event]` float tensor.

    Returns:
        p(x | z = encoder(x)), batch shape `[B]`.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.trackers = {name: ExampleMean(name=name) for name in METRIC_NAMES}

    def encode(self, x) -> tf.Tensor:
        """The codes z `[B, latent_dim]` of x `[B, *event]`."""
        return self.encoder(tf.convert_to_tensor(x, self.compute_dtype))

    def call(self, x, training=None):
        return self.decoder(self.encode(x))

    def distortion(self, x) -> tf.Tensor:
        """-log p(x | z = encoder(x)), `[B]` nats."""
        x = tf.convert_to_tensor(x, self.compute_dtype)
        return -self(x).log_prob(x)

    def reconstruct(self, x) -> tf.Tensor:
        """E[x | z = encoder(x)], `[B, *event]`."""
        return self(x).mean()

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        distortion, applied = self.minimise(lambda: self._loss_and_distortion(x))
        return {**self._update_metrics(distortion, applied), **self.step_logs()}

    def _loss_and_distortion(self, x):
        distortion = self.distortion(x)
        return tf.reduce_mean(distortion), distortion

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._update_metrics(self.distortion(x))

    def predict_step(self, data):
        """Returns `z` `[B, latent_dim]` and `reconstruction` `[B, *event]`."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        z = self.encode(x)
        return {"z": z, "reconstruction": self.decoder(z).mean()}

    def _update_metrics(self, distortion, applied=None) -> dict:
        """Adds `distortion` `[B]` to every mean; see `base_model.update_means`."""
        return update_means(self.trackers, dict.fromkeys(self.trackers, distortion), applied)

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        networks = [keras.saving.deserialize_keras_object(config.pop(key))
                    for key in ("encoder", "decoder")]
        return cls(*networks, **config)


def mlp_encoder(latent_dim: int, hidden_units: Sequence[int] = (500,), *,
                activation: str = "tanh", init_stddev: float = 0.01,
                weight_decay: float = 0.0, seed: int | None = None) -> keras.Sequential:
    """z = W h(x) + b with a tanh MLP h: the VAE encoder's trunk, without the noise."""
    return keras.Sequential([
        MLP(hidden_units, activation, init_stddev, weight_decay, child_seed(seed, 0)),
        dense(latent_dim, init_stddev=init_stddev, weight_decay=weight_decay,
              seed=child_seed(seed, 1), name="code")], name="encoder")


def build_autoencoder(config, *, num_train: int | None = None,
                      seed: int | None = None) -> Autoencoder:
    """The plain autoencoder with the networks a `ModelConfig` gives the VAE."""
    trunk = {"activation": config.activation, "init_stddev": config.init_stddev,
             "weight_decay": aevb.resolved_weight_decay(config, num_train)}
    encoder = mlp_encoder(config.latent_dim, config.hidden_units, seed=child_seed(seed, 0),
                          **trunk)
    decoder = aevb.DECODERS[config.likelihood](config.event_shape, config.hidden_units,
                                               seed=child_seed(seed, 1), **trunk)
    model = Autoencoder(encoder, decoder)
    model(tf.zeros((1,) + tuple(config.event_shape)))  # Creates the weights.
    return model
