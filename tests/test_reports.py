"""Reports: every measure on a tiny Bernoulli VAE, and a run folder of a tiny Frey
Face model through `evaluate_run` and scripts/evaluate.py."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import tfvae
from tfvae import datasets, reports
from tfvae.config import DataConfig, ModelConfig, RunConfig


def test_evaluate_reports_every_measure(small_bernoulli_vae):
    binary = (np.random.default_rng(1).uniform(size=(12, 3, 5)) > 0.5).astype(np.float32)
    report = reports.evaluate(small_bernoulli_vae(), binary, num_samples=20, iwae_samples=(5,))
    json.dumps(report)  # JSON-ready
    assert report["elbo"] == pytest.approx(-report["rate"] - report["distortion"], rel=1e-5)
    assert set(report["iwae"]) == {"5"} and report["log_likelihood"]["num_samples"] == 20
    assert report["mutual_information_bounds"]["data_entropy"] == pytest.approx(math.log(12))
    decomposition = report["kl_decomposition"]
    assert decomposition["num_data"] == 12 and set(decomposition) >= {"stratified", "weighted"}
    assert len(report["active_units"]["activities"]) == 2


@pytest.fixture
def frey_face_run(tmp_path, data_dir):
    config = RunConfig(
        model=ModelConfig(
            latent_dim=2, hidden_units=(8,), likelihood="gaussian", event_shape=(28, 20)
        ),
        data=DataConfig(dataset="frey_face", data_dir=data_dir),
    )
    tfvae.build_vae(config.model, seed=0).save(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text(config.to_json())
    return tmp_path


def test_evaluate_run_writes_json_and_markdown(frey_face_run):
    path = reports.evaluate_run(frey_face_run, num_samples=10, limit=6)
    report = json.loads(path.read_text())
    assert path == frey_face_run / "evaluation.json"
    assert report["num_examples"] == 6 and report["split"] == "test"
    assert report["mutual_information_bounds"]["lower"] is None  # densities, not masses
    markdown = (frey_face_run / "evaluation.md").read_text()
    assert "log p(x), k = 10" in markdown and "| stratified |" in markdown


def load_script():
    path = Path(__file__).parents[1] / "scripts" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("evaluate_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_script_writes_the_report_and_explains_user_mistakes(frey_face_run, tmp_path, capsys):
    script = load_script()
    assert script.main([str(frey_face_run), "--num-samples", "10", "--limit", "6"]) == 0
    assert capsys.readouterr().out.strip() == str(frey_face_run / "evaluation.json")
    (frey_face_run / "model.keras").unlink()
    for run_dir in (tmp_path / "no_such_run", frey_face_run):
        assert script.main([str(run_dir)]) == 1
        assert "error:" in capsys.readouterr().err
    assert script.main([str(frey_face_run), "--limit", "1"]) == 1


def test_dynamic_binarization_test_set_is_binarized_once_with_the_fixed_seed(data_dir):
    config = RunConfig(data=DataConfig(dataset="mnist", binarization="dynamic", data_dir=data_dir))
    x = reports.load_split(config, "test")
    images = datasets.read_idx(
        datasets.find_file("t10k-images-idx3-ubyte.gz", data_dir),
        datasets.IDX_IMAGES_MAGIC,
        (28, 28),
    )
    expected = datasets.fixed_binarization(
        images.astype(np.float32) / 255, datasets.TEST_BINARIZATION_SEED
    )
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(ValueError, match="no valid split"):
        reports.load_split(config, "valid")
