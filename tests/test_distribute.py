"""tf.distribute: replicas give the step of one device, workers write one run folder.

The strategies need logical devices or collective ops set up before TensorFlow
starts, so each distributed run is a fresh process: `distributed_job.py` for
the Keras-level checks, `scripts/train.py` for the CLI's.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfvae import distribute, export, training
from tfvae.config import DataConfig, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
JOB = Path(__file__).with_name("distributed_job.py")
TRAIN = ROOT / "scripts" / "train.py"


def run_job(name: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(JOB), name], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


@pytest.mark.slow
def test_one_sgd_step_on_two_replicas_is_the_one_device_step():
    # Plain SGD shows a gradient N times too large (Adam would hide it): the
    # distributed step must equal the step on the mean loss over the global batch.
    result = run_job("vae_sgd_step")
    assert result["replicas"] == 2
    moved = max_difference(result["expected"], result["initial"])
    assert moved > 1e-3  # A step twice too long would be off by this much.
    assert max_difference(result["distributed"], result["expected"]) < 1e-6


@pytest.mark.slow
def test_autoencoder_on_two_replicas_trains_and_evaluates_as_on_one_device():
    result = run_job("autoencoder_fit")
    two, one = result["two"], result["one"]
    assert max_difference(two["weights"], one["weights"]) < 1e-6
    # The logged means are over examples, across replicas.
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
    np.testing.assert_allclose(two["evaluate_loss"], one["evaluate_loss"], rtol=1e-6)


@pytest.mark.slow
def test_a_non_finite_value_on_one_replica_skips_the_step_on_all():
    # Were only the replica that saw the NaN to skip, the other's all-reduce would
    # wait for it; were the count summed over replicas, it would read 2.
    result = run_job("non_finite_on_one_replica")
    assert result["skipped_steps"] == [1.0]
    assert max_difference(result["after_nan"], result["initial"]) == 0.0
    assert max_difference(result["after_finite"], result["initial"]) > 0.0
    assert result["iterations"] == 1


def test_under_a_strategy_xla_or_several_steps_per_call_are_refused_and_one_replica_trains():
    import tensorflow as tf

    import tfvae

    config = tfvae.ModelConfig(latent_dim=2, hidden_units=(4,), event_shape=(3,))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # One device: no set-up.
        model = tfvae.build_vae(config, seed=0)
        with pytest.raises(ValueError, match="jit_compile=False and steps_per_execution=1"):
            model.compile(jit_compile=True)
        with pytest.raises(ValueError, match="without XLA"):
            model.compile(jit_compile=False, steps_per_execution=8)
        model.compile()
    assert model.jit_compile is False and model.steps_per_execution == 1
    # One replica still merges across replicas to apply a step: it trains.
    x = (np.random.default_rng(0).uniform(size=(8, 3)) > 0.5).astype(np.float32)
    before = [w.numpy().copy() for w in model.trainable_variables]
    history = model.fit(x, batch_size=4, epochs=1, verbose=0).history
    assert history["skipped_steps"] == [0.0] and int(model.optimizer.iterations.numpy()) == 2
    assert max_difference([w.numpy() for w in model.trainable_variables], before) > 0


# The CLI on Frey Face, small: each run a few seconds of training.


def cli_flags(output_dir: Path, epochs: int, run_name: str = "run") -> list[str]:
    return [
        "--dataset",
        "frey_face",
        "--limit",
        "400",
        "--batch-size",
        "50",
        "--hidden-units",
        "16",
        "--epochs",
        str(epochs),
        "--checkpoint-every",
        "1",
        "--optimizer",
        "sgd",
        "--learning-rate",
        "0.01",
        "--output-dir",
        str(output_dir),
        "--run-name",
        run_name,
    ]


def train_cli(flags: list[str], env: dict | None = None) -> subprocess.Popen:
    """scripts/train.py with `flags`, started (see `finish`)."""
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *flags],
        cwd=ROOT,
        text=True,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process) -> str:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return out


def history(run_dir: Path) -> dict[str, list[float]]:
    return training.read_history(run_dir / "history.csv")


def final_weights(run_dir: Path) -> list[np.ndarray]:
    return training.load_model(run_dir / "model.keras").get_weights()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory, data_dir):
    """A 3-epoch run on 2 logical CPU devices, straight through."""
    out = tmp_path_factory.mktemp("mirrored")
    finish(
        train_cli(
            cli_flags(out, 3) + ["--strategy", "mirrored", "--cpu-devices", "2"],
            {"TFVAE_DATA_DIR": data_dir},
        )
    )
    return out / "run"


@pytest.mark.slow
def test_mirrored_run_resumes_to_the_same_weights(mirrored_run, tmp_path, data_dir):
    flags = ["--strategy", "mirrored", "--cpu-devices", "2"]
    env = {"TFVAE_DATA_DIR": data_dir}
    finish(train_cli(cli_flags(tmp_path, 2) + flags, env))
    finish(train_cli(cli_flags(tmp_path, 3) + flags, env))  # Resumes at epoch 2.
    resumed = tmp_path / "run"
    np.testing.assert_allclose(history(resumed)["loss"], history(mirrored_run)["loss"], rtol=1e-6)
    for a, b in zip(final_weights(resumed), final_weights(mirrored_run)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def train_two_workers(output_dir: Path, epochs: int, data_dir: str) -> None:
    """The CLI as a cluster of two workers on 127.0.0.1, each in its own process."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        train_cli(
            cli_flags(output_dir, epochs) + ["--strategy", "multi_worker"],
            {
                "TFVAE_DATA_DIR": data_dir,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
        )
        for i in range(2)
    ]
    for worker in workers:
        finish(worker)


@pytest.mark.slow
def test_two_workers_write_one_run_folder_resume_and_match_two_local_replicas(
    mirrored_run, tmp_path, data_dir
):
    train_two_workers(tmp_path, 2, data_dir)
    train_two_workers(tmp_path, 3, data_dir)  # Both resume from the chief's checkpoint.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # Only the chief wrote.
    run_dir = tmp_path / "run"
    assert (run_dir / "model.keras").exists() and (run_dir / "config.json").exists()
    # Two workers of one replica each split every global batch as two local
    # replicas do and fold in the same replica indices: the same arithmetic, so
    # the curves agree to float rounding (1e-5 covers the all-reduce's order of
    # summation over 3 epochs), where a change of noise alone moved the epoch-3
    # loss of these small runs by 0.1 nat (test below).
    np.testing.assert_allclose(history(run_dir)["loss"], history(mirrored_run)["loss"], rtol=1e-5)
    with open(run_dir / "history.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    # The model loads and exports like any other (the export checks its own parity).
    model = training.load_model(run_dir / "model.keras")
    x = np.random.default_rng(0).uniform(size=(8, 28, 20)).astype(np.float32)
    assert np.all(np.isfinite(model.elbo(x).numpy()))
    report = export.export_model(model, tmp_path / "export", x, quantizations=("float32",))
    assert report["parity"]["saved_model"]["failures"] == []
    assert (tmp_path / "export" / "decoder_float32.tflite").exists()


@pytest.mark.slow
def test_one_device_curve_is_within_noise_of_two_replicas(mirrored_run, tmp_path, data_dir):
    # Same data, init and global batch; only the noise differs (each replica draws
    # its own). Measured here: 0.001, 0.01 and 0.10 nats apart after epochs 1-3, about
    # what another --seed moves them (0.09 at epoch 3). 0.5 nats is 5 times that; a
    # step twice too long (gradients summed, not averaged: --learning-rate 0.02 on
    # one device) is 7, 28 and 153 nats away.
    finish(train_cli(cli_flags(tmp_path, 3), {"TFVAE_DATA_DIR": data_dir}))
    one, two = history(tmp_path / "run")["loss"], history(mirrored_run)["loss"]
    assert np.max(np.abs(np.asarray(one) - np.asarray(two))) < 0.5


def test_batch_that_does_not_split_across_replicas_is_refused():
    config = RunConfig(data=DataConfig(batch_size=101), train=TrainConfig(strategy="mirrored"))
    with pytest.raises(ValueError, match="multiple of 2"):
        training._check_replicas(config, 2)
    training._check_replicas(config, 1)


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        ({}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["c:0"], "worker": ["a:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["c:0"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
    ],
)
def test_chief_is_the_chief_task_or_worker_0(tf_config, chief):
    assert distribute.is_chief_task(tf_config) is chief


def test_unknown_strategy_and_bad_device_counts_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="parameter_server")
    with pytest.raises(ValueError, match="cpu_devices"):
        TrainConfig(cpu_devices=0)
    with pytest.raises(ValueError, match="strategy="):
        distribute.make_strategy("tpu")


def test_logical_devices_after_tensorflow_started_say_what_to_do():
    import tensorflow as tf

    tf.constant(1.0)  # The runtime has started, with one CPU device.
    with pytest.raises(ValueError, match="fresh process"):
        distribute.make_strategy("mirrored", cpu_devices=8)


def test_one_device_keeps_its_seeds_and_share():
    import tensorflow as tf

    seed = tf.constant([3, 4], tf.int32)
    assert distribute.replica_seed(seed).numpy().tolist() == [3, 4]
    assert float(distribute.replica_share(tf.constant(6.0))) == 6.0
    assert bool(distribute.all_replicas(tf.constant(False))) is False
