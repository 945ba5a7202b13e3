"""Models from the config's network and structure options: convolutional trunks, two
stochastic layers, a conditional VAE; trained, saved, reloaded and exported.

(The conditional VAE's export, with labels in its signatures, is in
`test_conditional_export.py`; the parts' math in `test_networks.py` and
`test_hierarchical.py`.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import (
    builders,
    config,
    datasets,
    evaluation,
    export,
    hierarchical,
    networks,
    reports,
    training,
)

EVENT = (8, 6)
SEED = tf.constant([7, 1], tf.int32)


def binary(n=40, event=EVENT, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, *event)) > 0.5).astype(np.float32)


def trained(model_config, x, y=None):
    model = tfvae.build_vae(model_config, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    before = model.elbo(x, seed=SEED, labels=y).numpy().mean()
    model.fit(x, y, batch_size=10, epochs=3, verbose=0)
    assert model.elbo(x, seed=SEED, labels=y).numpy().mean() > before
    return model


def assert_round_trip(model, tmp_path, x, y=None):
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(
        reloaded.elbo(x, seed=SEED, labels=y).numpy(), model.elbo(x, seed=SEED, labels=y).numpy()
    )
    return reloaded


CONV = config.NetworkConfig("conv", conv_filters=(4, 8), kernel_size=3)


@pytest.mark.parametrize(
    "event, likelihood", [((8, 6), "bernoulli"), ((8, 8, 3), "discretized_logistic")]
)
def test_a_convolutional_vae_trains_reloads_and_exports_with_parity(event, likelihood, tmp_path):
    x = binary(event=event)
    if likelihood == "discretized_logistic":
        x = np.round(np.random.default_rng(1).uniform(size=x.shape) * 255) / 255
        x = x.astype(np.float32)
    model = trained(
        config.ModelConfig(
            latent_dim=3,
            hidden_units=(16,),
            event_shape=event,
            network=CONV,
            activation="relu",
            likelihood=likelihood,
        ),
        x,
    )
    assert isinstance(model.decoder.trunk, networks.ConvolutionalDecoder)
    assert model.decoder.head.spatial
    assert_round_trip(model, tmp_path, x[:6])
    report = export.export_model(model, tmp_path / "export", x[:8], quantizations=("float32",))
    assert report["parity"]["saved_model"]["failures"] == []


def test_two_stochastic_layers_from_the_config(tmp_path):
    x = binary()
    model = trained(
        config.ModelConfig(
            latent_dim=3,
            top_latent_dim=2,
            hidden_units=(16,),
            top_hidden_units=(8,),
            event_shape=EVENT,
            objective="iwae",
            num_samples=3,
        ),
        x,
    )
    assert model.latent_shape == (5,)
    assert isinstance(model.prior_model, hierarchical.TwoLayerPrior)
    assert isinstance(model.decoder.trunk, hierarchical.FirstLatents)
    assert_round_trip(model, tmp_path, x[:6])
    with pytest.raises(ValueError, match="no closed-form KL"):
        config.ModelConfig(top_latent_dim=2, kl_estimator="analytic")


def test_burdas_two_layer_builder_has_their_sizes():
    model = builders.two_layer_vae((28, 28), seed=0)
    assert model.latent_shape == (150,) and model.objective.name == "iwae"
    assert model.encoder.trunk.hidden_units == (100, 100)
    assert model.posterior_head().top.hidden_units == (50, 50)


def test_a_conditional_vae_trains_on_labels_and_samples_by_label(tmp_path):
    x, y = binary(), np.arange(40) % 4
    model = trained(
        config.ModelConfig(
            latent_dim=3, hidden_units=(16,), event_shape=EVENT, conditional=True, num_classes=4
        ),
        x,
        y,
    )
    assert_round_trip(model, tmp_path, x[:6], y[:6])
    # The label changes the decoder's output for the same z.
    z = np.zeros((2, 3), np.float32)
    means = model.likelihood_mean(z, labels=[0, 3]).numpy()
    assert not np.allclose(means[0], means[1])
    assert model.sample(5, labels=2, seed=SEED).shape == (5, *EVENT)
    predicted = model.predict((x, y), batch_size=10, verbose=0)
    np.testing.assert_allclose(
        predicted["reconstruction"], model.reconstruct(x, y).numpy(), atol=1e-6
    )
    with pytest.raises(ValueError, match="pass labels"):
        model.elbo(x[:2])
    with pytest.raises(ValueError, match="Labels must be 0..3"):
        model.elbo(x[:2], labels=[0, 4])
    with pytest.raises(ValueError, match="y must be integer labels 0..3"):
        model.fit(x, y + 1, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="labels of validation_data"):
        model.fit(x, y, validation_data=(x, y * 0.5), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="vamp|VampPrior"):
        config.ModelConfig(conditional=True, prior="vamp")


def test_training_a_conditional_run_reads_the_labels_and_draws_by_label(data_dir, tmp_path):
    run = config.RunConfig.for_dataset(
        "mnist",
        data_dir=data_dir,
        limit=200,
        epochs=1,
        conditional=True,
        latent_dim=2,
        hidden_units=(16,),
        output_dir=str(tmp_path),
        jit_compile=False,
    )
    result = training.train(run, verbose=0)
    saved = config.RunConfig.from_json((result.run_dir / "config.json").read_text())
    assert saved.model.num_classes == 10 and "conditional" in result.run_dir.name
    assert (result.run_dir / "samples.png").exists()
    with pytest.raises(ValueError, match="no labels"):
        datasets.load(config.DataConfig("frey_face", data_dir=data_dir), labels=True)


def test_a_conditional_vae_is_evaluated_on_its_labels():
    x, y = binary(), np.arange(40) % 4
    model = trained(
        config.ModelConfig(
            latent_dim=3, hidden_units=(16,), event_shape=EVENT, conditional=True, num_classes=4
        ),
        x,
        y,
    )
    report = reports.evaluate(model, x, num_samples=50, iwae_samples=(5,), labels=y)
    elbo = model.elbo(x, seed=SEED, labels=y).numpy().mean()
    # log p(x|y) >= the ELBO: the estimate with k = 50 sits above a one-draw ELBO.
    assert report["log_likelihood"]["mean"] > elbo - 1.0
    assert np.isfinite(report["kl_decomposition"]["stratified"]["total_correlation"])
    with pytest.raises(ValueError, match="pass labels"):
        evaluation.log_likelihood(model, x, 5)
