"""The training function and the CLI on a few hundred real Frey Face images."""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfvae import config, data_files, datasets, flags, training

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import train as train_script  # noqa: E402

PICTURES = ("samples.png", "reconstructions.png", "training_curve.png", "manifold.png")


def frey_args(data_dir, output_dir, *extra):
    return [
        "--dataset",
        "frey_face",
        "--data-dir",
        data_dir,
        "--limit",
        "300",
        "--batch-size",
        "50",
        "--hidden-units",
        "32",
        "--output-dir",
        str(output_dir),
        "--run-name",
        "run",
        *extra,
    ]


def history_rows(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_every_artifact(data_dir, tmp_path, capsys):
    assert train_script.main(frey_args(data_dir, tmp_path, "--epochs", "3")) == 0
    run_dir = tmp_path / "run"
    for name in ("config.json", "model.keras", "history.csv", *PICTURES):
        assert (run_dir / name).stat().st_size > 0, name
    assert any((run_dir / "logs").rglob("events.out.tfevents*"))
    saved = config.RunConfig.from_json((run_dir / "config.json").read_text())
    assert saved.model.event_shape == (28, 20) and saved.model.latent_dim == 2
    assert saved.model.weight_decay == pytest.approx(0.5 / 300)
    rows = history_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [int(float(r["samples"])) for r in rows] == [300, 600, 900]
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("elbo", "val_elbo"))
    model = keras.models.load_model(run_dir / "model.keras")
    x = datasets.load_arrays("frey_face", data_dir).x_test[:4]
    assert model.reconstruct(x).shape == (4, 28, 20)
    assert "test ELBO" in capsys.readouterr().out


def test_an_interrupted_run_resumes_from_its_checkpoint(data_dir, tmp_path):
    args = frey_args(data_dir, tmp_path, "--checkpoint-every", "2", "--no-jit-compile")
    assert train_script.main(args + ["--epochs", "2"]) == 0
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "checkpoint.json").read_text())["epoch"] == 2
    # As if killed during epoch 4: epoch 3 was logged but never checkpointed.
    with open(run_dir / "history.csv") as f:
        lines = f.readlines()
    (run_dir / "history.csv").write_text("".join(lines + [lines[-1].replace("1,", "2,", 1)]))
    (run_dir / "model.keras").unlink()
    assert train_script.main(args + ["--epochs", "5"]) == 0
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2, 3, 4]
    model = keras.models.load_model(run_dir / "model.keras")
    assert int(model.optimizer.iterations) == 5 * (300 // 50)


def test_another_config_in_the_same_run_folder_is_refused(data_dir, tmp_path, capsys):
    assert train_script.main(frey_args(data_dir, tmp_path, "--epochs", "1")) == 0
    code = train_script.main(frey_args(data_dir, tmp_path, "--epochs", "1", "--latent-dim", "3"))
    assert code == 1
    assert "another configuration" in capsys.readouterr().err


def test_missing_data_is_an_error_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    def offline(relative_path, url, sha256):
        raise OSError("network unreachable")

    monkeypatch.setattr(data_files, "download_file", offline)
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    code = train_script.main(frey_args(str(tmp_path / "empty"), tmp_path, "--epochs", "1"))
    err = capsys.readouterr().err
    assert code == 1 and "frey_rawface.mat" in err and "Traceback" not in err


def test_bad_flags_exit_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(["--likelihood", "poisson"])
    assert exit_info.value.code == 2


def test_divergence_stops_and_keeps_the_last_finite_model(data_dir, tmp_path):
    run = config.RunConfig(
        model=config.ModelConfig(latent_dim=2, hidden_units=(32,), likelihood="gaussian"),
        data=config.DataConfig(dataset="frey_face", data_dir=data_dir, limit=300, batch_size=50),
        train=config.TrainConfig(
            epochs=30, learning_rate=1e6, optimizer="sgd", output_dir=str(tmp_path), run_name="nan"
        ),
    )
    with pytest.raises(training.TrainingDiverged, match="last finite step"):
        training.train(run, verbose=0)
    model = keras.models.load_model(tmp_path / "nan" / "model.keras")
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_running_a_finished_run_again_trains_nothing(data_dir, tmp_path):
    args = frey_args(data_dir, tmp_path, "--epochs", "2", "--no-jit-compile")
    assert train_script.main(args) == 0
    model_path = tmp_path / "run" / "model.keras"
    weights = keras.models.load_model(model_path).get_weights()
    assert train_script.main(args) == 0
    assert len(history_rows(tmp_path / "run")) == 2
    for a, b in zip(keras.models.load_model(model_path).get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_the_plain_autoencoder_trains_through_the_same_cli(data_dir, tmp_path):
    args = frey_args(data_dir, tmp_path, "--epochs", "2", "--posterior", "point_mass")
    assert train_script.main(args) == 0
    run_dir = tmp_path / "run"
    assert {"reconstructions.png", "training_curve.png", "model.keras"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert not (run_dir / "samples.png").exists()  # No prior to sample from.
    assert set(history_rows(run_dir)[0]) >= {"loss", "distortion", "val_loss"}
    model = keras.models.load_model(run_dir / "model.keras")
    assert model.posterior_mean(np.zeros((3, 28, 20), np.float32)).shape == (3, 2)


def test_run_names_carry_the_parts_and_options_that_differ_from_the_papers():
    name = training._run_name
    assert name(config.RunConfig.for_dataset("frey_face")) == "frey_face-latent2-elbo1"
    assert name(
        config.RunConfig.for_dataset(
            "frey_face", posterior="student_t", degrees_of_freedom=3, prior="vamp"
        )
    ) == ("frey_face-latent2-elbo1-student_t-degrees_of_freedom=3-vamp")
    assert name(
        config.RunConfig.for_dataset(
            "mnist", likelihood="discretized_logistic", binarization="none"
        )
    ) == ("mnist-latent20-elbo1-discretized_logistic")
    assert name(
        config.RunConfig.for_dataset(
            "mnist", beta=4.0, warmup="linear", network="conv", conditional=True
        )
    ) == ("mnist-latent20-elbo1-beta=4.0-warmup=linear-conditional-conv")
    assert name(
        config.RunConfig.for_dataset("mnist", objective="beta_tcvae", dataset_size=60000)
    ) == ("mnist-latent20-beta_tcvae1")
    assert name(
        config.RunConfig.for_dataset(
            "binarized_mnist", latent_dim=100, top_latent_dim=50, objective="iwae", num_samples=5
        )
    ) == ("binarized_mnist-latent100-top50-iwae5")


def test_a_refused_resume_names_the_nested_field_that_differs():
    there = config.RunConfig.for_dataset("frey_face", posterior="student_t", degrees_of_freedom=3)
    now = config.RunConfig.for_dataset("frey_face", posterior="student_t")
    assert training._differences(there, now) == [
        "model.posterior.degrees_of_freedom: 3 there, 5 now"
    ]


class StopAfter(keras.callbacks.Callback):
    """Raises at the end of epoch `epochs` (1-based), as a kill would stop the run."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_a_decaying_learning_rate_resumes_where_it_stopped(data_dir, tmp_path):
    args = frey_args(
        data_dir,
        tmp_path,
        "--epochs",
        "4",
        "--checkpoint-every",
        "2",
        "--no-jit-compile",
        "--optimizer",
        "adam",
        "--learning-rate",
        "1e-3",
        "--lr-schedule",
        "cosine",
        "--final-learning-rate",
        "1e-4",
    )
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    run = flags.from_arguments(parser.parse_args(args))
    with pytest.raises(KeyboardInterrupt):
        training.train(run, verbose=0, callbacks=[StopAfter(3)])
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 2
    assert train_script.main(args) == 0
    # 6 steps an epoch, 24 in all: after epoch e the next step is t = 6 (e + 1),
    # at 1e-4 + 9e-4 (1 + cos(pi t / 24)) / 2.
    expected = [1e-4 + 9e-4 * (1 + math.cos(math.pi * 6 * (e + 1) / 24)) / 2 for e in range(4)]
    rates = [float(r["learning_rate"]) for r in history_rows(tmp_path / "run")]
    assert rates == pytest.approx(expected, rel=1e-5)
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert int(model.optimizer.iterations) == 24


def test_a_decaying_schedule_refuses_to_be_stretched(data_dir, tmp_path, capsys):
    args = frey_args(
        data_dir, tmp_path, "--no-jit-compile", "--optimizer", "adam", "--lr-schedule", "burda"
    )
    assert train_script.main(args + ["--epochs", "1"]) == 0
    assert train_script.main(args + ["--epochs", "2"]) == 1
    assert "spans --epochs 1" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_epoch_and_a_resumed_run_stops_at_the_same_one(
    data_dir, tmp_path
):
    """A step size this large makes the validation ELBO stall within a few epochs;
    the run must stop `patience` epochs after its best one, ship that epoch's
    weights, and stop at the same epoch with the same history when interrupted
    and resumed."""

    def run_args(name):
        args = frey_args(
            data_dir,
            tmp_path,
            "--epochs",
            "40",
            "--validation-size",
            "100",
            "--early-stopping",
            "2",
            "--optimizer",
            "adam",
            "--learning-rate",
            "0.05",
            "--checkpoint-every",
            "3",
            "--no-jit-compile",
        )
        args[args.index("--run-name") + 1] = name
        return args

    assert train_script.main(run_args("whole")) == 0
    whole = history_rows(tmp_path / "whole")
    elbos = [float(r["val_elbo"]) for r in whole]
    best = int(np.argmax(elbos))
    assert len(whole) < 40 and len(whole) - 1 - best == 2
    assert max(elbos[: best + 1]) == elbos[best] > max(elbos[best + 1 :])
    # The shipped weights are the best epoch's, not the last epoch's.
    shipped = keras.models.load_model(tmp_path / "whole" / "model.keras").get_weights()
    last = keras.models.load_model(
        tmp_path / "whole" / f"checkpoint-{len(whole)}.keras", compile=False
    ).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(shipped, last))
    # Interrupted after the best epoch (its last checkpoint before it), then resumed.
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    run = flags.from_arguments(parser.parse_args(run_args("resumed")))
    with pytest.raises(KeyboardInterrupt):
        training.train(run, verbose=0, callbacks=[StopAfter(best + 2)])
    assert train_script.main(run_args("resumed")) == 0
    resumed = history_rows(tmp_path / "resumed")
    assert [r["val_elbo"] for r in resumed] == [r["val_elbo"] for r in whole]
    again = keras.models.load_model(tmp_path / "resumed" / "model.keras").get_weights()
    for a, b in zip(again, shipped):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # A stopped run is finished: its command trains nothing more.
    assert train_script.main(run_args("resumed")) == 0
    assert len(history_rows(tmp_path / "resumed")) == len(whole)


def test_early_stopping_needs_a_validation_set_and_one_host():
    with pytest.raises(ValueError, match="--validation-size"):
        config.RunConfig.for_dataset("frey_face", early_stopping=50)
    with pytest.raises(ValueError, match="multi_worker"):
        config.RunConfig.for_dataset(
            "frey_face", early_stopping=50, validation_size=200, strategy="multi_worker"
        )
