"""Gradient variance per parameter group, on a tiny Bernoulli VAE and random binary data."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import gradient_variance, objectives

REPEATS = 50


@pytest.fixture(scope="module")
def model_and_x():
    x = (np.random.default_rng(0).uniform(size=(16, 4, 3)) < 0.5).astype(np.float32)
    model = tfvae.VAE(
        tfvae.gaussian_mlp_encoder(3, (8,), seed=1),
        tfvae.bernoulli_mlp_decoder((4, 3), (8,), seed=2),
        seed=3,
    )
    model(x)
    return model, x


@pytest.fixture(scope="module")
def rows(model_and_x):
    model, x = model_and_x
    estimators = {
        "rp": objectives.ELBO(),
        "sf": objectives.ELBO(gradient_estimator="score_function"),
    }
    return {row["group"]: row for row in gradient_variance.compare(model, x, estimators, REPEATS)}


def test_groups_cover_every_trainable_variable_once(model_and_x):
    model, _ = model_and_x
    groups = gradient_variance.parameter_groups(model)
    assert list(groups) == ["encoder_trunk", "encoder_head", "decoder_trunk", "decoder_head"]
    grouped = [id(v) for variables in groups.values() for v in variables]
    assert sorted(grouped) == sorted(id(v) for v in model.trainable_variables)
    assert all("posterior" in v.path for v in groups["encoder_head"])
    assert all("likelihood" in v.path for v in groups["decoder_head"])


def test_decoder_gradients_are_identical_under_the_same_seeds(rows):
    # Both estimators differentiate log p(x|z) at the same z in the decoder's parameters.
    for group in ("decoder_trunk", "decoder_head"):
        row = rows[group]
        assert row["variance"]["rp"] > 0
        assert row["variance_ratio"] == pytest.approx(1.0, rel=1e-5)
        assert row["max_abs_z"] < 1e-3


def test_the_score_function_is_noisier_in_the_encoder(rows):
    for group in ("encoder_trunk", "encoder_head"):
        assert rows[group]["variance_ratio"] > 2


def test_the_means_agree_within_their_standard_errors(rows):
    # 50-70 coordinates per group: the largest |z| of that many standard normals is ~2.5.
    for row in rows.values():
        assert row["max_abs_z"] < 5
    head = rows["encoder_head"]["signal"]
    assert head["rp"] > 0


def test_moments_of_a_constant_gradient_have_no_variance():
    draws = gradient_variance.Moments(np.ones(3), np.zeros(3), repeats=4)
    assert draws.total_variance == 0 and draws.signal == 3
    assert gradient_variance.max_abs_z(draws, draws) == 0
    shifted = gradient_variance.Moments(np.full(3, 2.0), np.zeros(3), repeats=4)
    assert gradient_variance.max_abs_z(draws, shifted) == np.inf


def test_leave_one_out_needs_two_samples(model_and_x):
    model, x = model_and_x
    objective = objectives.ELBO(gradient_estimator="score_function", baseline="leave_one_out")
    with pytest.raises(ValueError, match="num_samples >= 2"):
        gradient_variance.gradient_moments(model, x, objective, repeats=2)


def test_moments_are_the_mean_and_variance_of_the_seeded_gradients(model_and_x):
    model, x = model_and_x
    objective = objectives.ELBO(gradient_estimator="score_function")
    head = gradient_variance.parameter_groups(model)["decoder_head"]
    draws = []
    for r in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(objective.loss(model, x, tf.constant([r, 0]), 0)[0])
        draws.append(np.concatenate([np.ravel(g) for g in tape.gradient(loss, head)]))
    moments = gradient_variance.gradient_moments(model, x, objective, repeats=3)
    np.testing.assert_allclose(
        moments["decoder_head"].mean, np.mean(draws, axis=0), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        moments["decoder_head"].variance, np.var(draws, axis=0, ddof=1), rtol=1e-4, atol=1e-10
    )


def _benchmark():
    path = Path(__file__).parents[1] / "benchmarks" / "gradient_variance.py"
    spec = importlib.util.spec_from_file_location("gradient_variance_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv", [["--model", "no/such/model.keras"], ["--dataset", "no_such_dataset"]]
)
def test_the_benchmark_answers_bad_input_in_one_line(argv, capsys, tmp_path):
    if argv[0] == "--dataset":  # A real model, so that the dataset is what fails.
        model = tfvae.VAE(
            tfvae.gaussian_mlp_encoder(2, (4,), seed=1),
            tfvae.bernoulli_mlp_decoder((3, 2), (4,), seed=2),
            seed=3,
        )
        model(np.zeros((1, 3, 2), np.float32))
        model.save(tmp_path / "model.keras")
        argv = argv + ["--model", str(tmp_path / "model.keras")]
    assert _benchmark().main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
