"""The training plumbing of tfvae.base_model, through a small VAE.

Reproducibility is checked by running `fit` twice in ways that must not matter (grouping
steps per XLA call, validating, evaluating, resuming from a saved file, dropping a
skipped batch) and asking for bit-identical weights; and in ways that must matter (another
seed, noise frozen to that of step 0) and asking for different ones. The weight-decay
gradient is checked against the L2 penalty's derivative, 2 c w per kernel.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import base_model, seeds
from tfvae.base_model import TrainingDiverged

H, W, LATENT, BATCH = 4, 3, 2, 10


def binary_data(n=40, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, H, W)) > 0.5).astype(np.float32)


def make_vae(seed=3, **kwargs):
    """The same initial weights whatever `seed`, which seeds only the noise of z."""
    model = tfvae.VAE(
        tfvae.gaussian_mlp_encoder(LATENT, (8,), seed=1),
        tfvae.bernoulli_mlp_decoder((H, W), (8,), seed=2),
        seed=seed,
        **kwargs,
    )
    model.build((None, H, W))
    return model


def fit(model, x, *, jit_compile=False, steps_per_execution=1, epochs=2, optimizer=None, **kwargs):
    model.compile(
        optimizer or keras.optimizers.Adam(0.01),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    if not isinstance(x, tf.data.Dataset):
        kwargs.update(batch_size=BATCH)
    return model.fit(x, epochs=epochs, shuffle=False, verbose=0, **kwargs).history


def assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def differ(a, b):
    return any(not np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


TRAINING_METRICS = ("loss", "elbo", "rate", "distortion", "skipped_steps")


def training_logs(history):
    return {name: history[name] for name in TRAINING_METRICS}


# Seeds and the noise of each step.


def test_the_same_seeds_give_a_bit_identical_fit_and_another_seed_another():
    x = binary_data()
    first, second, other = make_vae(), make_vae(), make_vae(seed=4)
    assert_same_weights(first, other)  # Only the noise differs.
    history = fit(first, x)
    assert fit(second, x) == history
    assert_same_weights(first, second)
    assert fit(other, x)["elbo"] != history["elbo"]
    assert differ(first, other)


def test_a_fit_resumed_from_a_saved_model_is_the_uninterrupted_fit(tmp_path):
    x = binary_data()
    uninterrupted, interrupted = make_vae(), make_vae()
    history = fit(uninterrupted, x, epochs=2)
    fit(interrupted, x, epochs=1)
    interrupted.save(tmp_path / "vae.keras")
    resumed = keras.models.load_model(tmp_path / "vae.keras")
    second_epoch = resumed.fit(
        x, batch_size=BATCH, shuffle=False, epochs=2, initial_epoch=1, verbose=0
    ).history
    assert_same_weights(resumed, uninterrupted)
    assert second_epoch["elbo"] == history["elbo"][1:]


@pytest.fixture(scope="module")
def xla_fit():
    """(model, history) of a fit under XLA with 4 steps per call into the graph."""
    model = make_vae()
    history = fit(model, binary_data(), jit_compile=True, steps_per_execution=4)
    return model, history


@pytest.mark.slow
def test_steps_per_execution_under_xla_leave_the_noise_of_each_step_unchanged(xla_fit):
    four, history = xla_fit
    one = make_vae()
    assert fit(one, binary_data(), jit_compile=True, steps_per_execution=1) == history
    assert_same_weights(one, four)


@pytest.mark.slow
def test_every_step_under_xla_draws_fresh_noise(xla_fit, monkeypatch):
    fresh, _ = xla_fit
    stream_seed = seeds.stream_seed

    def noise_of_step_zero(seed, stream, *counters):
        return stream_seed(seed, stream, *((0,) if stream == "train" else counters))

    monkeypatch.setattr(seeds, "stream_seed", noise_of_step_zero)
    frozen, frozen_one_step, fresh_one_step = make_vae(), make_vae(), make_vae()
    fit(frozen, binary_data(), jit_compile=True, steps_per_execution=4)
    assert differ(fresh, frozen)
    # The patch changes nothing else: over a single step (step 0) the two runs agree.
    x = binary_data(BATCH)
    fit(frozen_one_step, x, epochs=1)
    monkeypatch.undo()
    fit(fresh_one_step, x, epochs=1)
    assert_same_weights(frozen_one_step, fresh_one_step)


# Evaluation has its own noise and leaves training's alone.


def test_validation_does_not_change_the_training():
    x, x_val = binary_data(), binary_data(30, seed=1)
    plain, validated = make_vae(), make_vae()
    history = fit(plain, x, epochs=2)
    validated_history = fit(validated, x, epochs=2, validation_data=(x_val,))
    assert training_logs(validated_history) == training_logs(history)
    assert_same_weights(validated, plain)


def test_evaluate_gives_the_same_answer_every_time_with_fresh_noise_per_batch():
    model = make_vae()
    rng = np.random.default_rng(0)
    for w in model.weights:  # Weights far from the initial 0.01, so that z matters.
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    model.compile(jit_compile=False)
    x = binary_data(30, seed=1)
    first = model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0)
    model.elbo(x, 3)  # Unseeded draws in between change nothing.
    assert model.evaluate(x, batch_size=BATCH, return_dict=True, verbose=0) == first
    # The same examples in a second batch of the pass get noise of their own.
    once = model.evaluate(x, batch_size=30, return_dict=True, verbose=0)
    twice = model.evaluate(np.concatenate([x, x]), batch_size=30, return_dict=True, verbose=0)
    assert once["rate"] == pytest.approx(twice["rate"], rel=1e-6)  # The rate has no noise.
    assert abs(once["distortion"] - twice["distortion"]) > 1e-3 * once["distortion"]


# The weight penalty.


@pytest.mark.parametrize(
    "weight_decay, num_train, coefficient",
    [(0.05, None, 0.05), (None, 10, 1 / (2 * 10))],
    ids=["explicit", "default_1_over_2N"],
)
def test_weight_decay_reaches_the_gradient_with_its_coefficient(
    weight_decay, num_train, coefficient
):
    def build(decay, n=None):
        config = tfvae.ModelConfig(
            latent_dim=LATENT, hidden_units=(8,), event_shape=(H, W), weight_decay=decay
        )
        return tfvae.build_vae(config, num_train=n, seed=5)

    decayed, plain = build(weight_decay, num_train), build(0.0)
    assert_same_weights(decayed, plain)
    assert len(decayed.losses) == 5 and not plain.losses  # One L2 penalty per kernel.
    initial = {v.path: v.numpy() for v in decayed.trainable_variables}
    learning_rate = 0.5
    x = binary_data(BATCH)
    logs = {}
    for name, model in (("decayed", decayed), ("plain", plain)):
        model.compile(keras.optimizers.SGD(learning_rate), jit_compile=False)
        logs[name] = model.train_on_batch(x, return_dict=True)
    assert logs["decayed"]["loss"] == logs["plain"]["loss"]  # `loss` stays a bound in nats.
    kernels = 0
    for a, b in zip(decayed.trainable_variables, plain.trainable_variables, strict=True):
        w = initial[a.path]
        if a.path.endswith("kernel"):
            # L2(c) adds c sum(w^2), whose gradient 2 c w one SGD step scales by -lr.
            np.testing.assert_allclose(
                a.numpy() - b.numpy(), -learning_rate * 2 * coefficient * w, rtol=2e-3, atol=1e-9
            )
            kernels += 1
        else:
            np.testing.assert_array_equal(a.numpy(), b.numpy())  # Biases carry no penalty.
    assert kernels == 5


# Non-finite steps.


def batches_with_a_bad_value(value, bad_batch=2, num_batches=4):
    x = binary_data(num_batches * BATCH)
    x[bad_batch * BATCH + 5, 1, 1] = value
    kept = np.delete(x, np.s_[bad_batch * BATCH : (bad_batch + 1) * BATCH], axis=0)
    return (
        tf.data.Dataset.from_tensor_slices(x).batch(BATCH),
        tf.data.Dataset.from_tensor_slices(kept).batch(BATCH),
    )


@pytest.mark.parametrize(
    "value, jit_compile",
    [(np.inf, False), pytest.param(np.nan, True, marks=pytest.mark.slow)],
    ids=["inf", "nan_xla"],
)
def test_a_non_finite_batch_is_skipped_as_if_it_were_not_there(value, jit_compile):
    with_bad, without = batches_with_a_bad_value(value)
    skipping, reference = make_vae(), make_vae()
    history = fit(skipping, with_bad, jit_compile=jit_compile, steps_per_execution=2, epochs=1)
    reference_history = fit(
        reference, without, jit_compile=jit_compile, steps_per_execution=2, epochs=1
    )
    assert history["skipped_steps"] == [1.0] and history["skipped_in_a_row"] == [1.0]
    assert reference_history["skipped_steps"] == [0.0]
    assert int(skipping.optimizer.iterations) == 4 - 1
    assert all(np.all(np.isfinite(w)) for w in skipping.get_weights())
    # Neither the weights nor the optimizer's state nor the noise of the later steps
    # (a function of the applied steps) saw the bad batch; the means leave it out.
    assert_same_weights(skipping, reference)
    for name in ("loss", "elbo", "rate", "distortion"):
        assert history[name] == reference_history[name], name


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.mark.parametrize("limit", [5, 3])
def test_all_non_finite_data_stops_after_the_limit_with_the_initial_weights(limit):
    model = make_vae()
    initial = model.get_weights()
    bad = tf.data.Dataset.from_tensor_slices(np.full((12 * BATCH, H, W), np.nan, np.float32)).batch(
        BATCH
    )
    counter = BatchCounter()
    options = {} if limit == 5 else {"max_skipped_in_a_row": limit}  # 5: the default.
    with pytest.raises(TrainingDiverged, match=f"{limit} training steps in a row"):
        fit(model, bad, epochs=1, callbacks=[counter], **options)
    assert counter.batches == limit
    assert int(model.optimizer.iterations) == 0
    for a, b in zip(model.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(a, b)


def test_divergence_is_detected_across_epoch_boundaries():
    # Three steps an epoch, all skipped: 12 steps in a row that never count past 3,
    # because the streak is a metric that every epoch resets.
    model = make_vae()
    bad = tf.data.Dataset.from_tensor_slices(np.full((3 * BATCH, H, W), np.nan, np.float32)).batch(
        BATCH
    )
    with pytest.raises(TrainingDiverged):
        fit(model, bad, epochs=4)


def test_an_epoch_without_an_applied_step_reports_no_bound():
    # Two skipped steps, below the limit: the epoch measured nothing, yet its means
    # read 0 nats, the best bound a Bernoulli model can have.
    model = make_vae()
    bad = tf.data.Dataset.from_tensor_slices(np.full((2 * BATCH, H, W), np.nan, np.float32)).batch(
        BATCH
    )
    history = fit(model, bad, epochs=1)
    assert history["skipped_steps"] == [2.0]
    for name in ("loss", "elbo", "rate", "distortion"):
        assert not np.isfinite(history[name][0]), (name, history[name])


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_a_non_finite_array_is_refused_before_any_step(value):
    model = make_vae()
    initial = model.get_weights()
    x = binary_data()
    x[7, 2, 1] = value
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    with pytest.raises(ValueError, match=r"^x holds 1 NaN .* at index \(7, 2, 1\) \(example 7\)"):
        model.fit(x, batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\] .* \(example 7\)"):
        model.fit(binary_data(), batch_size=BATCH, validation_data=(x,), verbose=0)
    assert int(model.optimizer.iterations) == 0
    for a, b in zip(model.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(a, b)


def test_check_finite_arrays_names_the_array_in_nested_data():
    good = np.zeros((3, 2), np.float32)
    bad = good.copy()
    bad[2, 1] = np.inf
    base_model.check_finite_arrays({"a": good, "b": (good, tf.constant(good))}, "x")
    with pytest.raises(ValueError, match=r"x\['b'\]\[1\] holds 1 NaN or infinite .* \(2, 1\)"):
        base_model.check_finite_arrays({"a": good, "b": (good, tf.constant(bad))}, "x")
    base_model.check_finite_arrays(np.array([1, 2]), "x")  # Integers cannot be NaN.


def test_run_length_is_the_longest_run_of_true_since_the_reset():
    metric = base_model.RunLength()
    for flag in [True, True, False, True, True, True, False, True]:
        metric.update_state(tf.constant(flag))
    assert float(metric.result()) == 3  # The second run, not the last nor the first.
    metric.reset_state()  # As at a new epoch: the run in progress (1) goes on.
    metric.update_state(tf.constant(True))
    assert float(metric.result()) == 2
    metric.update_state(tf.constant(False))
    metric.reset_state()
    assert float(metric.result()) == 0
    metric.update_state(tf.constant(True))
    assert float(metric.result()) == 1


def test_compile_defaults_to_the_papers_adagrad_and_to_xla():
    model = make_vae()
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.Adagrad)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.jit_compile
