"""tfvae.step_loop: K steps in one XLA call compute what K calls of one step compute.

The reference is Keras' own path (`steps_per_execution=1`, one compiled step per
call), which shares the step but not the loop: the same seeds, metrics and updates
must give the same weights and history, also across a short last batch, a dataset
of unknown length, validation and `evaluate`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae

H, W, LATENT, BATCH = 4, 3, 2, 10
pytestmark = pytest.mark.slow  # Each test compiles the step under XLA.


def binary_data(n, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, H, W)) > 0.5).astype(np.float32)


def make_vae(steps_per_execution):
    model = tfvae.VAE(
        tfvae.gaussian_mlp_encoder(LATENT, (8,), seed=1),
        tfvae.bernoulli_mlp_decoder((H, W), (8,), seed=2),
        seed=3,
    )
    model.build((None, H, W))
    model.compile(
        keras.optimizers.Adam(0.01), jit_compile=True, steps_per_execution=steps_per_execution
    )
    return model


def assert_close_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def assert_close_history(a, b, names=("loss", "elbo", "rate", "distortion", "skipped_steps")):
    for name in names:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, err_msg=name)


class ExecutionCounter(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(batch)


def test_k_steps_per_call_train_as_one_step_per_call_with_a_short_last_batch():
    x = binary_data(7 * BATCH + 3)  # 8 steps an epoch, the last of 3 examples.
    val = binary_data(2 * BATCH + 4, seed=1)
    histories, models = [], []
    for k in (1, 3):
        model, counter = make_vae(k), ExecutionCounter()
        history = model.fit(
            x,
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            verbose=0,
            validation_data=(val,),
            callbacks=[counter],
        ).history
        histories.append(history)
        models.append(model)
        assert int(model.optimizer.iterations) == 2 * 8
        assert len(counter.ends) == 2 * -(-8 // k)  # Callbacks once per call.
    assert_close_weights(*models)
    assert_close_history(*histories)
    np.testing.assert_allclose(histories[0]["val_elbo"], histories[1]["val_elbo"], rtol=1e-5)


def test_evaluate_with_k_steps_per_call_is_evaluate_with_one():
    x = binary_data(5 * BATCH)
    one, several = make_vae(1), make_vae(4)
    several.set_weights(one.get_weights())
    a = one.evaluate(x, batch_size=BATCH, verbose=0, return_dict=True)
    b = several.evaluate(x, batch_size=BATCH, verbose=0, return_dict=True)
    for name in ("loss", "elbo", "rate", "distortion"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)


def test_a_dataset_of_unknown_length_ends_each_epoch():
    x = binary_data(5 * BATCH)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(x), output_signature=tf.TensorSpec((H, W), tf.float32)
    ).batch(BATCH)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    models = []
    for k in (1, 3):
        model = make_vae(k)
        model.fit(dataset, epochs=2, verbose=0)
        assert int(model.optimizer.iterations) == 2 * 5
        models.append(model)
    assert_close_weights(*models)


def test_train_on_batch_runs_one_step():
    model = make_vae(4)
    logs = model.train_on_batch(binary_data(BATCH), return_dict=True)
    assert int(model.optimizer.iterations) == 1
    assert np.isfinite(logs["elbo"])
