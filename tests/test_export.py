"""Tests for tfvae.export (with tfvae.endpoints) and the two scripts: endpoints,
builtin-only decoders, export.json, atomicity.

The tiny VAE is exported once per likelihood (`exported` in conftest.py). The
SavedModel is reloaded and the `.tflite` sampled in subprocesses where TFP (resp.
TensorFlow) cannot be imported, as on a server without TFP and on a phone.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from ai_edge_litert.interpreter import Interpreter

import tfvae
from tfvae import endpoints, export, parity

tfd = tfp.distributions

ROOT = Path(__file__).parents[1]
PIXEL_NOISE = {"bernoulli": "uniform_noise", "gaussian": "normal_noise"}
LATENT, H, W = 2, 7, 5  # The tiny VAE of conftest.py.
B = 6


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_layout_and_export_json(exported):
    likelihood, _, folder, description = exported
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "saved_model",
        "export.json",
        "decoder_float32.tflite",
        "decoder_dynamic_int8.tflite",
        "decoder_float16.tflite",
        "decoder_int8.tflite",
    }
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    on_disk = json.loads((folder / "export.json").read_text())
    assert on_disk == json.loads(json.dumps(description))
    assert (on_disk["latent_dim"], on_disk["image_shape"]) == (LATENT, [H, W])
    assert on_disk["likelihood"] == likelihood.capitalize()
    assert on_disk["posterior"] == "DiagonalGaussian"
    assert on_disk["prior"] == {"name": "StandardNormal", "loc": [0.0, 0.0], "scale": [1.0, 1.0]}
    quantizations = {v["quantization"] for v in on_disk["tflite"].values()}
    assert quantizations == set(endpoints.QUANTIZATIONS)
    noise = PIXEL_NOISE[likelihood]
    assert on_disk["noise"]["sample_from_noise"] == {
        "eps": {"kind": "normal", "shape": ["B", LATENT]},
        noise: {"kind": "uniform" if likelihood == "bernoulli" else "normal", "shape": ["B", H, W]},
    }
    signatures = on_disk["signatures"]
    assert signatures["sample_from_noise"]["inputs"]["eps"]["shape"] == [-1, LATENT]
    assert signatures["sample_from_noise"]["inputs"][noise]["shape"] == [-1, H, W]
    assert signatures["sample"]["inputs"]["num_samples"] == {
        "shape": [],
        "dtype": "int32",
        "description": export.DESCRIPTIONS["num_samples"],
    }
    parameters = {"bernoulli": {"logits", "mean"}, "gaussian": {"loc", "scale", "mean"}}[likelihood]
    assert set(signatures["decode"]["outputs"]) == parameters
    assert all(report["passed"] for report in on_disk["parity"].values())
    dtypes = {
        spec["dtype"] for signature in signatures.values() for spec in signature["outputs"].values()
    }
    assert dtypes == {"float32"}  # Bernoulli draws too: apps read float arrays.


def test_tflite_has_builtin_ops_only_and_decoder_signatures(exported):
    _, _, folder, _ = exported
    for quantization in endpoints.QUANTIZATIONS:
        flatbuffer = (folder / endpoints.tflite_name(quantization)).read_bytes()
        ops = parity.tflite_op_names(flatbuffer)
        assert not [op for op in ops if op.startswith("Flex")]
        assert "RANDOM_STANDARD_NORMAL" in ops
        signatures = Interpreter(model_content=flatbuffer).get_signature_list()
        assert set(signatures) == set(endpoints.DECODER_SIGNATURES)


SAVED_MODEL_CLIENT = """
import sys
sys.modules["tensorflow_probability"] = None  # Loading must not need TFP.
sys.modules["tfvae"] = None
import numpy as np, tensorflow as tf
folder, inputs, outputs = sys.argv[1:]
loaded = tf.saved_model.load(folder)
a = dict(np.load(inputs))
results = {}
for name, args in {"encode": ["x"], "decode": ["z"], "sample_from_noise": ["eps", "noise"],
                   "reconstruct": ["x"], "elbo": ["x", "eps"]}.items():
    for key, value in getattr(loaded, name)(*[a[k] for k in args]).items():
        results[f"{name}/{key}"] = value.numpy()
results["sample/x"] = loaded.sample(tf.constant(4))["x"].numpy()
np.savez(outputs, **results)
"""


def test_saved_model_reloads_without_tfp(exported, images, tmp_path):
    likelihood, model, folder, _ = exported
    rng = np.random.default_rng(5)
    x = images(B)
    inputs = {
        "x": x,
        "z": rng.standard_normal((B, LATENT), np.float32),
        "eps": rng.standard_normal((B, LATENT), np.float32),
        "noise": (rng.random if likelihood == "bernoulli" else rng.standard_normal)(
            (B, H, W), np.float32
        ),
    }
    np.savez(tmp_path / "in.npz", **inputs)
    result = run_python(
        SAVED_MODEL_CLIENT, folder / "saved_model", tmp_path / "in.npz", tmp_path / "out.npz"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = dict(np.load(tmp_path / "out.npz"))

    posterior = model.encode(x)
    np.testing.assert_allclose(got["encode/z_mean"], posterior.mean(), atol=1e-5)
    np.testing.assert_allclose(got["encode/posterior_scale"], posterior.stddev(), atol=1e-5)
    np.testing.assert_allclose(got["decode/mean"], model.decode(inputs["z"]).mean(), atol=1e-5)
    np.testing.assert_allclose(got["reconstruct/mean"], model.reconstruct(x), atol=1e-5)
    mean = model.decode(inputs["eps"]).mean().numpy()  # z = eps under N(0, I).
    np.testing.assert_allclose(got["sample_from_noise/mean"], mean, atol=1e-5)
    if likelihood == "bernoulli":
        assert got["sample_from_noise/x"].dtype == np.float32
        np.testing.assert_array_equal(got["sample_from_noise/x"], inputs["noise"] < mean)
        assert set(np.unique(got["sample/x"])) <= {0.0, 1.0}
    assert got["sample/x"].shape == (4, H, W)

    # The ELBO from closed forms: Gaussian KL to N(0, I) and log p(x|z) at z = m + s eps.
    m, s = got["encode/z_mean"], got["encode/posterior_scale"]
    rate = 0.5 * np.sum(m**2 + s**2 - 1 - 2 * np.log(s), axis=1)
    distortion = -model.decode(m + s * inputs["eps"]).log_prob(x).numpy()
    np.testing.assert_allclose(got["elbo/rate"], rate, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["elbo/distortion"], distortion, rtol=1e-5)
    np.testing.assert_allclose(got["elbo/elbo"], -rate - distortion, rtol=1e-4)


def test_sample_signature_draws_fresh_noise_per_interpreter(exported):
    likelihood, _, folder, _ = exported
    model_path = str(folder / "decoder_float32.tflite")
    draws = [
        Interpreter(model_path=model_path).get_signature_runner("sample")(
            num_samples=np.array(5, np.int32)
        )
        for _ in range(2)
    ]
    assert draws[0]["mean"].shape == (5, H, W)
    assert not np.array_equal(draws[0]["mean"], draws[1]["mean"])


def test_failed_export_leaves_previous_export_alone(exported, images, monkeypatch):
    _, model, folder, _ = exported
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    convert = export.convert_decoder

    def fail_midway(saved_model_dir, quantization, *args):
        if quantization == "dynamic_int8":  # After the SavedModel and float32 file.
            raise RuntimeError("injected")
        return convert(saved_model_dir, quantization, *args)

    monkeypatch.setattr(export, "convert_decoder", fail_midway)
    for target in (folder, folder.parent / "fresh"):
        with pytest.raises(RuntimeError, match="injected"):
            export.export_model(model, target, images())
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not (folder.parent / "fresh").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


class PoissonDecoder(keras.Model):
    """A user's decoder with no tfvae part head: Poisson counts per pixel."""

    def __init__(self):
        super().__init__()
        self.log_rate = self.add_weight(shape=(H, W), initializer="zeros")

    def call(self, z):
        rate = tf.exp(self.log_rate) * tf.ones((tf.shape(z)[0], H, W))
        return tfd.Independent(tfd.Poisson(rate=rate), reinterpreted_batch_ndims=2)


def test_a_decoder_without_a_part_head_is_named(images):
    model = tfvae.VAE(tfvae.gaussian_mlp_encoder(LATENT, (8,), seed=0), PoissonDecoder())
    model.build((None, H, W))
    with pytest.raises(endpoints.UnsupportedModelError, match="tfvae.likelihoods head"):
        endpoints.endpoints(model)


DEVICE_CLIENT = """
import runpy, sys
# What runs on a device: no TensorFlow, no TFP, no tfvae.
for name in ("tensorflow", "tensorflow_probability", "keras", "tfvae"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sample_tflite_script_runs_without_tensorflow(exported, tmp_path):
    _, _, folder, _ = exported
    outputs = [tmp_path / f"samples{i}.png" for i in range(2)]
    for out in outputs:
        result = run_python(
            DEVICE_CLIENT,
            ROOT / "scripts" / "sample_tflite.py",
            folder / "decoder_dynamic_int8.tflite",
            "--num-samples",
            6,
            "--seed",
            1,
            "--zoom",
            2,
            "--out",
            out,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    png = outputs[0].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = np.frombuffer(png[16:24], ">u4")
    # 6 images of 7x5 zoomed 2x: 3 per row, 2 rows, 1-pixel gaps.
    assert (height, width) == (2 * (2 * H + 1) + 1, 3 * (2 * W + 1) + 1)
    assert outputs[1].read_bytes() == png  # Same seed, same picture.


def test_export_script_reports_missing_run_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "export.py", tmp_path / "no_such_run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_export_script_exports_a_run_folder(tmp_path, data_dir):
    config = tfvae.RunConfig(
        model=tfvae.ModelConfig(
            latent_dim=LATENT, hidden_units=(32,), likelihood="gaussian", event_shape=(28, 20)
        ),
        data=tfvae.DataConfig(dataset="frey_face", data_dir=data_dir),
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(config.to_json())
    tfvae.build_vae(config.model, seed=0).save(run_dir / "model.keras")
    spec = importlib.util.spec_from_file_location("export_script", ROOT / "scripts" / "export.py")
    export_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_script)
    assert export_script.main([str(run_dir), "--quantizations", "int4"]) == 1
    assert not (run_dir / "export").exists()
    assert export_script.main([str(run_dir), "--web"]) == 0
    description = json.loads((run_dir / "export" / "export.json").read_text())
    page = (run_dir / "export" / "web" / "index.html").read_text()
    assert '<meta name="tfvae-model" content="../decoder_float32.tflite">' in page
    assert description["image_shape"] == [28, 20]
    assert description["model_config"]["hidden_units"] == [32]
    assert "decoder_int8.tflite" not in description["tflite"]


@pytest.mark.slow
def test_a_two_epoch_frey_face_model_exports(tmp_path, data_dir):
    """The user's path that failed in tfvae 0.1: the paper's Frey Face model after
    2 epochs (per-image distortions near 0) through both CLIs."""
    env = {**os.environ, "TFVAE_DATA_DIR": data_dir, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [
            sys.executable,
            ROOT / "scripts" / "train.py",
            "--dataset",
            "frey_face",
            "--epochs",
            "2",
            "--output-dir",
            tmp_path,
            "--run-name",
            "short",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "export.py", tmp_path / "short"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    description = json.loads((tmp_path / "short" / "export" / "export.json").read_text())
    assert all(report["passed"] for report in description["parity"].values())


def test_export_and_evaluate_refuse_an_autoencoder_run(tmp_path, data_dir):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train as train_script

    assert (
        train_script.main(
            [
                "--dataset",
                "frey_face",
                "--data-dir",
                data_dir,
                "--limit",
                "300",
                "--batch-size",
                "50",
                "--hidden-units",
                "8",
                "--epochs",
                "1",
                "--posterior",
                "point_mass",
                "--output-dir",
                str(tmp_path),
                "--run-name",
                "ae",
            ]
        )
        == 0
    )
    env = {**os.environ, "TFVAE_DATA_DIR": data_dir, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for script in ("export.py", "evaluate.py"):
        result = subprocess.run(
            [sys.executable, ROOT / "scripts" / script, tmp_path / "ae"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 1, result.stderr[-2000:]
        assert "plain autoencoder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ae" / "export").exists()


@pytest.mark.parametrize("flag", ["--num-samples", "--zoom"])
def test_sample_script_refuses_sizes_below_one(exported, tmp_path, flag):
    _, _, folder, _ = exported
    result = subprocess.run(
        [
            sys.executable,
            ROOT / "scripts" / "sample_tflite.py",
            folder / "decoder_float32.tflite",
            flag,
            "0",
            "--out",
            tmp_path / "x.png",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_what_a_killed_export_left_behind_is_removed(exported, images, tmp_path):
    _, model, _, _ = exported
    stale = tmp_path / ".export.tmp-killed"  # As a SIGKILLed export leaves it.
    stale.mkdir()
    (stale / "decoder_float32.tflite").write_bytes(b"half")
    export.export_model(model, tmp_path / "export", images(), quantizations=["float32"])
    assert not stale.exists() and (tmp_path / "export" / "export.json").exists()
