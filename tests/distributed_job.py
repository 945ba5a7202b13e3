"""Jobs that tests/test_distribute.py runs in a fresh process each: logical CPU
devices can only be set up before TensorFlow starts, which in the test process
it has.

    python tests/distributed_job.py JOB    prints one JSON line
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np

from tfvae import distribute

LEARNING_RATE = 0.1


def _tiny(posterior: str = "diagonal_gaussian"):
    import tfvae

    return tfvae.ModelConfig(
        latent_dim=2,
        hidden_units=(8,),
        event_shape=(6,),
        weight_decay=0.01,
        posterior=tfvae.PosteriorConfig(posterior),
    )


def _binary(n: int) -> np.ndarray:
    return (np.random.default_rng(0).uniform(size=(n, 6)) > 0.5).astype(np.float32)


def _compiled(config, strategy=None):
    import keras

    import tfvae

    with strategy.scope() if strategy else contextlib.nullcontext():
        model = tfvae.build_vae(config, seed=0)
        model.compile(keras.optimizers.SGD(LEARNING_RATE))
    return model


def _weights(model) -> list:
    return [v.numpy().tolist() for v in model.trainable_variables]


def vae_sgd_step() -> dict:
    """One SGD step of a VAE on 2 replicas, and the same step computed by hand on one
    device: the mean over both halves of the batch of the per-example loss, each
    half with its replica's noise (the step's seed with the replica index folded
    in), plus the weight penalty once."""
    strategy = distribute.make_strategy("mirrored", 2)
    import tensorflow as tf

    from tfvae import seeds

    x = _binary(8)
    model = _compiled(_tiny(), strategy)
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)

    reference = _compiled(_tiny())
    reference(x[:1])
    initial = [v.numpy() for v in reference.trainable_variables]
    with tf.GradientTape() as tape:
        means = []
        for replica, half in enumerate((x[:4], x[4:])):
            seed = tf.random.experimental.stateless_fold_in(
                seeds.stream_seed(reference.seed, "train", 0), replica
            )
            loss, _ = reference.objective.loss(reference, tf.constant(half), seed, 0, None)
            means.append(tf.reduce_mean(loss))
        objective = (means[0] + means[1]) / 2 + tf.add_n(reference.losses)
    gradients = tape.gradient(objective, reference.trainable_variables)
    expected = [w - LEARNING_RATE * g.numpy() for w, g in zip(initial, gradients)]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "distributed": _weights(model),
        "expected": [w.tolist() for w in expected],
        "initial": [w.tolist() for w in initial],
    }


def autoencoder_fit() -> dict:
    """The plain autoencoder (no noise) fitted for 3 SGD steps and evaluated on 2
    replicas and on one device: the same arithmetic up to the order of sums."""
    strategy = distribute.make_strategy("mirrored", 2)
    x = _binary(24)
    results = {}
    for name, scope in (("two", strategy), ("one", None)):
        model = _compiled(_tiny("point_mass"), scope)
        history = model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        evaluation = model.evaluate(x[:20], batch_size=8, verbose=0, return_dict=True)
        results[name] = {
            "weights": _weights(model),
            "loss": history["loss"],
            "evaluate_loss": evaluation["loss"],
        }
    return results


def non_finite_on_one_replica() -> dict:
    """Two steps on 2 replicas, the first with a NaN pixel in replica 1's half only."""
    strategy = distribute.make_strategy("mirrored", 2)
    import tensorflow as tf

    x = _binary(16)
    x[5, 2] = np.nan  # Batch 0, second half: replica 1.
    model = _compiled(_tiny(), strategy)
    model(x[:1])
    initial = _weights(model)
    history = model.fit(
        tf.data.Dataset.from_tensor_slices(x[:8]).batch(8), epochs=1, verbose=0
    ).history
    after_nan = _weights(model)
    model.fit(tf.data.Dataset.from_tensor_slices(x[8:]).batch(8), epochs=1, verbose=0)
    return {
        "initial": initial,
        "after_nan": after_nan,
        "after_finite": _weights(model),
        "skipped_steps": history["skipped_steps"],
        "iterations": int(model.optimizer.iterations.numpy()),
    }


if __name__ == "__main__":
    print(
        json.dumps(
            {
                "vae_sgd_step": vae_sgd_step,
                "autoencoder_fit": autoencoder_fit,
                "non_finite_on_one_replica": non_finite_on_one_replica,
            }[sys.argv[1]]()
        )
    )
