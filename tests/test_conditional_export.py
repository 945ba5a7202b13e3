"""Tests for exporting conditional and convolutional VAEs (tfvae.endpoints,
tfvae.export, tfvae.parity, scripts/sample_tflite.py): a label input on every
signature, parity with the Keras model at the same labels, and the `.keras`
round trip.

Each tiny model is trained briefly and exported once per module (`exported`).
"""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfvae import builders, config, datasets, endpoints, export, parity

ROOT = Path(__file__).parents[1]
LATENT, H, W, K = 3, 8, 6, 4
QUANTIZATIONS = ("float32", "dynamic_int8")
CONV = config.NetworkConfig("conv", conv_filters=(4, 8))


def trained_vae(network: str, conditional: bool = True, epochs: int = 2) -> keras.Model:
    """A Bernoulli VAE over 8 x 6 images (K = 4 classes if conditional), trained briefly."""
    conv = network == "conv"
    cfg = config.ModelConfig(
        latent_dim=LATENT,
        hidden_units=(32,),
        event_shape=(H, W),
        network=CONV if conv else config.NetworkConfig("mlp"),
        activation="relu" if conv else "tanh",
        conditional=conditional,
        num_classes=K if conditional else None,
    )
    model = builders.build_vae(cfg, seed=0)
    x, y = data()
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(x, y if conditional else None, batch_size=10, epochs=epochs, verbose=0)
    return model


def data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binary images `[n, 8, 6]` and labels `[n]` in 0..K-1."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, H, W)) > 0.5).astype(np.float32), rng.integers(0, K, n)


@pytest.fixture(scope="module", params=("mlp", "conv"))
def exported(request, tmp_path_factory):
    """(model, export dir, export.json) of a trained conditional VAE."""
    model = trained_vae(request.param)
    folder = tmp_path_factory.mktemp(request.param) / "export"
    description = export.export_model(model, folder, *data(seed=1), quantizations=QUANTIZATIONS)
    return model, folder, description


def runner(folder: Path, signature: str, quantization: str = "float32"):
    path = folder / endpoints.tflite_name(quantization)
    return Interpreter(model_path=str(path)).get_signature_runner(signature)


def test_keras_round_trip_gives_identical_outputs(exported, tmp_path):
    model, _, _ = exported
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras", compile=False)
    x, y = data(seed=2)
    np.testing.assert_array_equal(
        restored.elbo(x, labels=y, seed=1), model.elbo(x, labels=y, seed=1)
    )
    z = np.random.default_rng(0).standard_normal((5, LATENT)).astype(np.float32)
    np.testing.assert_array_equal(
        restored.likelihood_mean(z, y[:5]), model.likelihood_mean(z, y[:5])
    )


def test_export_passes_parity_and_records_the_condition(exported):
    _, folder, description = exported
    assert json.loads((folder / "export.json").read_text()) == json.loads(json.dumps(description))
    assert description["condition"] == {
        "num_classes": K,
        "input": "labels",
        "dtype": "int32",
        "shape": ["B"],
        "encoding": "one_hot",
    }
    assert set(description["tflite"]) == {endpoints.tflite_name(q) for q in QUANTIZATIONS}
    assert all(report["passed"] for report in description["parity"].values())
    assert description["parity"]["decoder_float32.tflite"]["max_abs_diff"] < 1e-5


def test_every_signature_takes_labels(exported):
    _, folder, description = exported
    labels = {"shape": [-1], "dtype": "int32", "description": export.DESCRIPTIONS["labels"]}
    inputs = {name: signature["inputs"] for name, signature in description["signatures"].items()}
    assert inputs["decode"] == {
        "labels": labels,
        "z": {"shape": [-1, LATENT], "dtype": "float32", "description": export.DESCRIPTIONS["z"]},
    }
    assert set(inputs["sample_from_noise"]) == {"eps", "uniform_noise", "labels"}
    assert inputs["sample"] == {"labels": labels}  # n = the number of labels.
    for quantization in QUANTIZATIONS:
        ops = parity.tflite_op_names((folder / endpoints.tflite_name(quantization)).read_bytes())
        assert "ONE_HOT" in ops and not [op for op in ops if op.startswith("Flex")]
    loaded = tf.saved_model.load(str(folder / endpoints.SAVED_MODEL_DIR))
    for name in endpoints.endpoints(exported[0]):
        assert "labels" in loaded.signatures[name].structured_input_signature[1]


def test_the_label_changes_the_tflite_images_as_in_keras(exported):
    model, folder, _ = exported
    rng = np.random.default_rng(3)
    eps = rng.standard_normal((6, LATENT)).astype(np.float32)
    noise = {"eps": eps, "uniform_noise": rng.random((6, H, W), np.float32)}
    means = {}
    for label in (0, 2):
        labels = np.full(6, label, np.int32)
        want = model.likelihood_mean(eps, labels).numpy()  # z = eps under N(0, I).
        decoded = runner(folder, "decode")(z=eps, labels=labels)["mean"]
        drawn = runner(folder, "sample_from_noise")(**noise, labels=labels)
        np.testing.assert_allclose(decoded, want, atol=1e-5)
        np.testing.assert_allclose(drawn["mean"], want, atol=1e-5)
        np.testing.assert_array_equal(drawn["x"], noise["uniform_noise"] < drawn["mean"])
        means[label] = decoded
    assert np.abs(means[0] - means[2]).max() > 1e-3


def test_sample_draws_one_image_per_label(exported):
    _, folder, _ = exported
    drawn = runner(folder, "sample", "dynamic_int8")(labels=np.array([0, 1, 2, 3, 3], np.int32))
    assert drawn["x"].shape == (5, H, W) and drawn["z"].shape == (5, LATENT)
    assert set(np.unique(drawn["x"])) <= {0.0, 1.0}


def test_calibration_yields_labels():
    model = builders.build_vae(
        config.ModelConfig(
            latent_dim=LATENT,
            hidden_units=(8,),
            event_shape=(H, W),
            conditional=True,
            num_classes=K,
        ),
        seed=0,
    )
    batches = list(export.calibration_data(model, seed=0, num_batches=1, batch_size=5)())
    inputs = dict(batches)
    assert set(inputs) == {"decode", "sample_from_noise", "sample"}
    assert set(inputs["decode"]) == {"z", "labels"} and set(inputs["sample"]) == {"labels"}
    for values in inputs.values():
        assert values["labels"].dtype == np.int32 and values["labels"].shape == (5,)
        assert 0 <= values["labels"].min() and values["labels"].max() < K


def test_labels_are_required_exactly_for_a_conditional_model(exported, tmp_path):
    model, _, _ = exported
    x, y = data()
    with pytest.raises(ValueError, match="y_test"):
        export.export_model(model, tmp_path / "export", x)
    with pytest.raises(ValueError, match="integers in 0..3"):
        export.export_model(model, tmp_path / "export", x, y + 1)
    unconditional = builders.build_vae(
        config.ModelConfig(latent_dim=LATENT, hidden_units=(8,), event_shape=(H, W)), seed=0
    )
    with pytest.raises(ValueError, match="not conditional"):
        export.export_model(unconditional, tmp_path / "export", x, y)
    assert not list(tmp_path.iterdir())


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_tflite_script_takes_a_label(exported, tmp_path, capsys):
    _, folder, _ = exported
    script, model_path = load_script("sample_tflite"), folder / "decoder_dynamic_int8.tflite"
    pngs = []
    for label in (1, 3):
        pngs.append(tmp_path / f"label{label}.png")
        assert (
            script.main(
                [
                    str(model_path),
                    "--num-samples",
                    "4",
                    "--label",
                    str(label),
                    "--out",
                    str(pngs[-1]),
                ]
            )
            == 0
        )
    assert pngs[0].read_bytes() != pngs[1].read_bytes()  # Same noise, other class.
    assert script.main([str(model_path), "--out", str(tmp_path / "none.png")]) == 1
    assert "conditional: give the class" in capsys.readouterr().err
    assert (
        script.main([str(model_path), "--label", str(K), "--out", str(tmp_path / "none.png")]) == 1
    )
    assert "0..3" in capsys.readouterr().err and not (tmp_path / "none.png").exists()


def test_an_unconditional_conv_vae_exports_with_parity(tmp_path):
    model = trained_vae("conv", conditional=False, epochs=1)
    description = export.export_model(
        model, tmp_path / "export", data(seed=1)[0], quantizations=QUANTIZATIONS
    )
    assert description["condition"] is None
    assert all(report["passed"] for report in description["parity"].values())
    signatures = description["signatures"]
    assert set(signatures["decode"]["inputs"]) == {"z"}
    assert set(signatures["sample"]["inputs"]) == {"num_samples"}
    assert set(signatures["sample_from_noise"]["inputs"]) == {"eps", "uniform_noise"}


def test_a_conditional_mnist_run_exports_with_its_test_labels(tmp_path, data_dir):
    run_config = config.RunConfig(
        model=config.ModelConfig(
            latent_dim=2, hidden_units=(16,), event_shape=(28, 28), conditional=True, num_classes=10
        ),
        data=config.DataConfig(dataset="mnist", data_dir=data_dir, binarization="dynamic"),
    )
    x, y = export.load_test_set(run_config, limit=50)
    arrays = datasets.load_arrays("mnist", data_dir)
    np.testing.assert_array_equal(y, arrays.y_test[:50])
    np.testing.assert_array_equal(x, datasets.as_scored(arrays.x_test, "dynamic")[:50])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(run_config.to_json())
    builders.build_vae(run_config.model, seed=0).save(run_dir / "model.keras")
    assert load_script("export").main([str(run_dir), "--quantizations", "float32"]) == 0
    description = json.loads((run_dir / "export" / "export.json").read_text())
    assert description["condition"]["num_classes"] == 10
    assert description["parity"]["saved_model"]["passed"]
