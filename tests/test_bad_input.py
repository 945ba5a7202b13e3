"""Bad input and faults: the CLI answers one line on stderr with exit code 1 and no
traceback, writing nothing that looks like a finished run; the library raises a
ValueError that says what to do; a killed run resumes to the same run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tfvae

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import train as train_script  # noqa: E402

SCRIPT = Path(__file__).parents[1] / "scripts" / "train.py"


def frey_args(data_dir, output_dir, *extra):
    return [
        "--dataset",
        "frey_face",
        "--data-dir",
        str(data_dir),
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
        "--epochs",
        "1",
        *extra,
    ]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "cifar"], "Unknown dataset 'cifar'; valid: frey_face, mnist"),
        (["--latent-dim", "0"], "latent_dim must be positive"),
        (["--learning-rate", "-0.1"], "learning_rate must be positive"),
        (["--epochs", "-3"], "epochs must be positive"),
        (["--limit", "0"], "limit must be positive"),
        (["--limit", "40"], "40 examples are fewer than batch_size=50"),
        (["--likelihood", "bernoulli"], "--binarization dynamic"),
        (["--dataset", "mnist", "--likelihood", "gaussian"], "unbounded density"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_1(data_dir, tmp_path, capsys, extra, message):
    args = frey_args(data_dir, tmp_path) + extra
    assert train_script.main(args) == 1
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_data_file_that_is_not_the_canonical_one(data_dir, tmp_path, capsys):
    bad = tmp_path / "data"
    bad.mkdir()
    original = (Path(data_dir) / "frey_rawface.mat").read_bytes()
    (bad / "frey_rawface.mat").write_bytes(original[: len(original) // 2])  # Truncated.
    assert train_script.main(frey_args(bad, tmp_path / "runs")) == 1
    assert "sha256" in one_line_error(capsys)
    assert (bad / "frey_rawface.mat").stat().st_size == len(original) // 2  # Left alone.


def test_another_config_in_the_run_folder_names_the_fields(data_dir, tmp_path, capsys):
    assert train_script.main(frey_args(data_dir, tmp_path)) == 0
    capsys.readouterr()
    assert (
        train_script.main(
            frey_args(data_dir, tmp_path, "--latent-dim", "3", "--learning-rate", "0.02")
        )
        == 1
    )
    line = one_line_error(capsys)
    assert "model.latent_dim: 2 there, 3 now" in line
    assert "train.learning_rate: 0.01 there, 0.02 now" in line


def test_the_model_refuses_images_of_another_shape_or_no_numbers():
    model = tfvae.build_vae(
        tfvae.ModelConfig(latent_dim=2, hidden_units=(8,), event_shape=(28, 20)), seed=0
    )
    with pytest.raises(ValueError, match=r"takes x of shape \[B, 28, 20\], got \[3, 28, 28\]"):
        model.elbo(np.zeros((3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="numeric images"):
        model.encode(np.full((3, 28, 20), "grey"))
    # Integer pixels are numbers: they are converted, not refused.
    assert model.elbo(np.zeros((3, 28, 20), np.uint8)).shape == (3,)


def history_without_times(run_dir: Path) -> list[str]:
    """history.csv's rows without the wall-time column (the one thing that may differ)."""
    rows = [line.split(",") for line in (run_dir / "history.csv").read_text().splitlines()]
    drop = rows[0].index("seconds")
    return [",".join(v for i, v in enumerate(row) if i != drop) for row in rows]


@pytest.mark.slow
def test_a_run_killed_at_a_random_moment_resumes_to_the_same_run(data_dir, tmp_path):
    """SIGKILL at a random moment after the first checkpoint, then the same
    command again: history and weights equal those of a run never interrupted."""
    args = [sys.executable, str(SCRIPT), *frey_args(data_dir, tmp_path)]
    args[args.index("--epochs") + 1] = "40"
    args += ["--checkpoint-every", "3", "--seed", "5"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    uninterrupted = args[:]
    uninterrupted[uninterrupted.index("--run-name") + 1] = "whole"
    subprocess.run(uninterrupted, check=True, env=env, capture_output=True)

    run_dir = tmp_path / "run"
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run_dir / "checkpoint.json").exists() and process.poll() is None:
        time.sleep(0.05)
    delay = np.random.default_rng().uniform(0, 1.5)  # Random: any moment must do.
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, f"the run ended before the kill ({delay:.2f} s)"
    subprocess.run(args, check=True, env=env, capture_output=True)

    assert history_without_times(run_dir) == history_without_times(tmp_path / "whole")
    resumed = keras.models.load_model(run_dir / "model.keras").get_weights()
    whole = keras.models.load_model(tmp_path / "whole" / "model.keras").get_weights()
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole):
        np.testing.assert_array_equal(
            a, b, err_msg=f"killed {delay:.2f} s after the first checkpoint"
        )
    assert sorted(p.name for p in run_dir.glob("checkpoint-*.keras")) == ["checkpoint-40.keras"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weight-decay", "-1"], "weight_decay must be 0 or more"),
        (["--activation", "foo"], "is not a Keras activation"),
        (["--run-name", "../escape"], "plain folder name"),
    ],
)
def test_a_failed_start_writes_nothing_that_blocks_the_corrected_command(
    data_dir, tmp_path, capsys, extra, message
):
    args = frey_args(data_dir, tmp_path)
    assert train_script.main(args + extra) == 1
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path.parent / "escape").exists()
    assert train_script.main(args) == 0


def test_a_model_without_checkpoint_is_not_trained_over(data_dir, tmp_path, capsys):
    """A shipped or copied model (no optimizer state) keeps its history."""
    assert train_script.main(frey_args(data_dir, tmp_path)) == 0
    run_dir = tmp_path / "run"
    for path in run_dir.glob("checkpoint*"):
        path.unlink()
    history = (run_dir / "history.csv").read_bytes()
    capsys.readouterr()
    assert train_script.main(frey_args(data_dir, tmp_path, "--epochs", "3")) == 1
    assert "no checkpoint" in one_line_error(capsys)
    assert (run_dir / "history.csv").read_bytes() == history


def test_a_run_resumes_with_its_data_in_another_folder(data_dir, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "frey_rawface.mat").write_bytes((Path(data_dir) / "frey_rawface.mat").read_bytes())
    assert train_script.main(frey_args(data_dir, tmp_path)) == 0
    assert (
        train_script.main(frey_args(moved, tmp_path, "--epochs", "2", "--checkpoint-every", "5"))
        == 0
    )
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 3


def test_rerunning_a_finished_run_changes_no_file(data_dir, tmp_path):
    assert train_script.main(frey_args(data_dir, tmp_path)) == 0
    run_dir = tmp_path / "run"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    assert train_script.main(frey_args(data_dir, tmp_path)) == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    assert after == before
