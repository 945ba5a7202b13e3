"""Tests for what a command-line user sees: tfvae.startup (TensorFlow's start-up
notes hidden, nothing else lost), tfvae.progress (one bar for a run of short
epochs) and tfvae.cli (console scripts, the closing summary)."""

import importlib.metadata
import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfvae import progress, startup
from tfvae.cli import train as train_cli

NOTE = (
    "I0000 00:00:1796173446.413385    4826 cudart_stub.cc:31] Could not find cuda drivers "
    "on your machine, GPU will not be used.\n"
)
REAL_WARNING = "W0000 00:00:1.0   1 something.cc:9] a warning a user needs\n"


def write_to_descriptor_2(text: str):
    def fn():
        os.write(2, text.encode())
        return 7

    return fn


def test_quietly_hides_start_up_notes_and_writes_back_the_rest(capfd, monkeypatch):
    monkeypatch.delenv("TFVAE_VERBOSE", raising=False)
    monkeypatch.setattr(startup, "hidden_lines", [])
    assert startup.quietly(write_to_descriptor_2(NOTE + REAL_WARNING)) == 7
    err = capfd.readouterr().err
    assert err == REAL_WARNING
    assert startup.hidden_lines == [NOTE.rstrip("\n")]


def test_quietly_shows_everything_when_the_call_fails(capfd, monkeypatch):
    monkeypatch.delenv("TFVAE_VERBOSE", raising=False)

    def fails():
        os.write(2, NOTE.encode())
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        startup.quietly(fails)
    assert NOTE in capfd.readouterr().err


def test_tfvae_verbose_turns_the_filter_off(capfd, monkeypatch):
    monkeypatch.setenv("TFVAE_VERBOSE", "1")
    startup.quietly(write_to_descriptor_2(NOTE))
    assert NOTE in capfd.readouterr().err


def test_importing_tfvae_writes_nothing_to_stderr():
    """TensorFlow alone writes its start-up notes here (see tfvae/startup.py), and
    CUDA's "no GPU" error at the first op."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("TFVAE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")
    }
    done = subprocess.run(
        [sys.executable, "-c", "import tfvae, tensorflow as tf; print(tf.reduce_sum(tf.ones(3)))"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def tiny_fit(callback, epochs: int):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((64, 2), np.float32)
    model.fit(x, x[:, :1], batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])


def test_a_run_of_short_epochs_is_one_bar_after_the_second_epoch():
    out = io.StringIO()
    bar = progress.RunProgress(long_epoch=60.0, stream=out)
    tiny_fit(bar, epochs=7)
    text = out.getvalue()
    assert "Epoch 1/7" in text and "Epoch 2/7" in text
    assert "Epoch 3/7" not in text  # Epochs 3..7 are counted by one bar,
    assert "7/7" in text and "epoch" in text  # which ends full,
    assert "loss" in text  # and shows the loss where there is no bound.
    assert bar.per_epoch is False


def test_long_epochs_keep_a_bar_each():
    out = io.StringIO()
    bar = progress.RunProgress(long_epoch=0.0, stream=out)
    tiny_fit(bar, epochs=4)
    text = out.getvalue()
    assert all(f"Epoch {epoch}/4" in text for epoch in range(1, 5))
    assert "epochs:" not in text
    assert bar.per_epoch is True


def test_the_run_bar_shows_the_bound_of_train_and_test_data():
    assert progress._postfix({"loss": 1.0, "elbo": -92.754, "val_elbo": -93.1}) == (
        "ELBO -92.75, test -93.10"
    )
    assert progress._postfix({"loss": 3.0, "val_loss": 4.0}) == "loss 3.00, test 4.00"


@pytest.mark.parametrize(
    "command, target",
    [
        ("tfvae-train", "tfvae.cli.train:main"),
        ("tfvae-evaluate", "tfvae.cli.evaluate:main"),
        ("tfvae-export", "tfvae.cli.export:main"),
        ("tfvae-sample", "tfvae.tflite_sampler:main"),
    ],
)
def test_console_scripts_are_installed(command, target):
    scripts = {e.name: e for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts[command].value == target
    assert callable(scripts[command].load())


def test_training_ends_with_where_everything_went(data_dir, tmp_path, capsys):
    args = ["--dataset", "frey_face", "--data-dir", str(data_dir), "--limit", "300"]
    args += ["--batch-size", "50", "--hidden-units", "8", "--epochs", "3"]
    args += ["--output-dir", str(tmp_path), "--run-name", "run"]
    assert train_cli.main(args) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "run"
    assert f"Wrote {run_dir}/:" in out
    for name in ("model.keras", "config.json", "history.csv", "samples.png"):
        assert (run_dir / name).is_file() and f"  {name}" in out
    assert f"tensorboard --logdir {run_dir / 'logs'}" in out
    assert f"tfvae-export {run_dir}" in out
    assert "Epoch 3/3" not in out  # Epoch 3 on the run's bar.
