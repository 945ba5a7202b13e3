"""Mixed precision: 16-bit trunks, float32 probability, a float32 model shipped."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import precision, training
from tfvae.config import RunConfig


def test_policy_applies_inside_the_block_only():
    with precision.policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="precision="):
        with precision.policy("float8"):
            pass


def test_mixed_model_computes_its_trunk_in_bfloat16_and_its_distributions_in_float32():
    config = tfvae.ModelConfig(latent_dim=2, hidden_units=(8,), event_shape=(6,))
    with precision.policy("mixed_bfloat16"):
        model = tfvae.build_vae(config, seed=0)
    x = np.full((3, 6), 1.0, np.float32)
    posterior = model.encode(x)
    assert posterior.dtype == tf.float32
    assert model.decode(posterior.mean()).dtype == tf.float32
    assert model.elbo(x).dtype == tf.float32
    trunk = [
        layer for layer in model.encoder._flatten_layers() if isinstance(layer, keras.layers.Dense)
    ]
    compute = {layer.compute_dtype for layer in trunk}
    assert compute == {"bfloat16", "float32"}  # Hidden layers, then the head's.
    assert all(w.dtype == "float32" for w in model.weights if "seed" not in w.path)


def tiny_run(tmp_path, data_dir, precision_name: str) -> RunConfig:
    return RunConfig.for_dataset(
        "frey_face",
        latent_dim=2,
        hidden_units=(16,),
        data_dir=data_dir,
        batch_size=50,
        limit=200,
        epochs=2,
        optimizer="adam",
        learning_rate=1e-3,
        output_dir=str(tmp_path),
        run_name="run",
        precision=precision_name,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_run_trains_to_a_finite_loss_and_ships_a_float32_model(tmp_path, data_dir, name):
    result = training.train(tiny_run(tmp_path, data_dir, name), verbose=0)
    assert np.all(np.isfinite(result.history["loss"]))
    assert keras.config.dtype_policy().name == "float32"
    shipped = training.load_model(result.run_dir / "model.keras")
    assert {layer.dtype_policy.name for layer in shipped._flatten_layers()} == {"float32"}
    assert all(w.dtype == "float32" for w in shipped.weights)
    x = np.random.default_rng(0).uniform(size=(5, 28, 20)).astype(np.float32)
    np.testing.assert_allclose(shipped.reconstruct(x), result.model.reconstruct(x), atol=1e-6)
    checkpoint = training.load_model(next(result.run_dir.glob("checkpoint-*.keras")))
    # float16 needs loss scaling (Keras wraps the optimizer); bfloat16 has float32's range.
    scaled = isinstance(checkpoint.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled is (name == "mixed_float16")
    # The optimizer's state came along. 2 epochs of 4 steps: all applied in bfloat16;
    # in float16 the loss scale starts at 2^15 and steps that overflow are skipped.
    steps = int(shipped.optimizer.iterations)
    assert steps == int(checkpoint.optimizer.iterations)
    assert steps == 8 if name == "mixed_bfloat16" else 3 <= steps <= 8
