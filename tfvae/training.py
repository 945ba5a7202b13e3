"""Training: the one function that the CLI and notebooks call.

`train(config)` loads the data, builds the paper's model, fits it with Keras
and writes a run folder:

    <output_dir>/<run_name>/
        config.json          the resolved RunConfig (rebuilds the model)
        model.keras          the trained model (the last finite epoch)
        history.csv          per-epoch metrics, with `samples` seen
        logs/                TensorBoard
        checkpoint.keras     resumable state, every `checkpoint_every` epochs
        samples.png, reconstructions.png, training_curve.png,
        manifold.png         (2-D latent only: the paper's Figure 4)

Running the same configuration again resumes from `checkpoint.keras`. Files are
written to a temporary name and renamed, so a crash never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from tfvae import aevb, datasets, plots
from tfvae.config import RunConfig
from tfvae.autoencoder import Autoencoder, build_autoencoder
from tfvae.model import VAE

METRICS = ("loss", "elbo", "rate", "distortion")

CHECKPOINT = "checkpoint.keras"
CHECKPOINT_STATE = "checkpoint.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last finite model was kept."""


class RunExists(ValueError):
    """The run folder holds a run of a different configuration."""


class TrainResult(NamedTuple):
    model: VAE | Autoencoder
    history: dict[str, list[float]]
    run_dir: Path


def train(config: RunConfig, *, verbose: int | str = "auto") -> TrainResult:
    """Trains the model `config` describes (a VAE, or the plain autoencoder) and
    writes its run folder.

    Args:
        config: The run. `model.event_shape` and a `None` `weight_decay` are
            filled in from the data; `train.run_name` defaults to a name made
            of the dataset, latent size and objective.
        verbose: Keras' progress display (1: progress bar, 2: a line per epoch).

    Returns:
        The trained model, its history (all epochs, also resumed ones) and the
        run folder.

    Raises:
        TrainingDiverged: the loss was not finite; `model.keras` holds the last
            finite epoch.
        RunExists: the run folder belongs to another configuration.
    """
    data = datasets.load(config.data, seed=config.train.seed)
    config = resolve(config, data)
    run_dir = Path(config.train.output_dir) / config.train.run_name
    model, initial_epoch = _start_or_resume(config, data, run_dir)
    history_path = run_dir / "history.csv"
    _truncate_history(history_path, initial_epoch)
    guard = KeepLastFinite()
    callbacks = [
        SamplesSeen(data.num_train // config.data.batch_size * config.data.batch_size),
        guard,
        keras.callbacks.CSVLogger(str(history_path), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        Checkpoint(run_dir, config.train.checkpoint_every),
    ]
    if initial_epoch < config.train.epochs:
        model.fit(data.train, validation_data=data.test, epochs=config.train.epochs,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # The pipeline shuffles, seeded.
    save_atomic(model, run_dir / "model.keras")
    history = read_history(history_path)
    if guard.diverged_at is not None:
        raise TrainingDiverged(
            f"The loss became {guard.bad_value} in epoch {guard.diverged_at + 1}. "
            f"{run_dir / 'model.keras'} holds the model of the last finite epoch (or the "
            "starting weights). "
            "Try a smaller --learning-rate.")
    write_pictures(model, data, history, run_dir)
    return TrainResult(model, history, run_dir)


def resolve(config: RunConfig, data: datasets.DataSplits) -> RunConfig:
    """Fills in what the data determine: event shape, weight decay, run name."""
    model = dataclasses.replace(
        config.model, event_shape=tuple(data.event_shape),
        weight_decay=aevb.resolved_weight_decay(config.model, data.num_train))
    name = config.train.run_name or (
        f"{config.data.dataset.replace(':', '_')}-latent{model.latent_dim}"
        f"-{model.objective}{model.num_samples}")
    return dataclasses.replace(config, model=model,
                               train=dataclasses.replace(config.train, run_name=name))


def build_compiled(config: RunConfig, num_train: int) -> VAE | Autoencoder:
    """The paper's VAE for `config` (or the plain autoencoder), compiled."""
    build = (build_autoencoder if config.model.objective == "reconstruction"
             else aevb.build_vae)
    model = build(config.model, num_train=num_train, seed=config.train.seed)
    optimizer = keras.optimizers.get({"class_name": config.train.optimizer,
                                      "config": {"learning_rate": config.train.learning_rate}})
    model.compile(optimizer, jit_compile=config.train.jit_compile,
                  steps_per_execution=config.train.steps_per_execution)
    return model


def _start_or_resume(config: RunConfig, data, run_dir: Path) -> tuple[VAE, int]:
    """Returns the model and the epoch to start from (0, or the checkpoint's)."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = RunConfig.from_json(config_path.read_text())
        if _comparable(saved) != _comparable(config):
            raise RunExists(
                f"{run_dir} holds a run with another configuration. Pass a new "
                "--run-name (or another --output-dir), or delete that folder.")
        state_path = run_dir / CHECKPOINT_STATE
        if state_path.exists():
            epoch = json.loads(state_path.read_text())["epoch"]
            return keras.models.load_model(run_dir / CHECKPOINT), epoch
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_path, config.to_json())
    return build_compiled(config, data.num_train), 0


def _comparable(config: RunConfig) -> RunConfig:
    """What must match to resume: all but the epochs (a run may be extended) and
    where the folder is (it may have been moved or renamed)."""
    train = dataclasses.replace(config.train, epochs=1, output_dir="", run_name="")
    return dataclasses.replace(config, train=train)


class SamplesSeen(keras.callbacks.Callback):
    """Adds `samples` (training examples evaluated so far) and `seconds` (the
    epoch's wall time, validation included) to the logs.

    `samples` is the x-axis of Kingma & Welling's Figure 2. Must come before
    the loggers.
    """

    def __init__(self, samples_per_epoch: int):
        super().__init__()
        self.samples_per_epoch = samples_per_epoch
        self.start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["samples"] = (epoch + 1) * self.samples_per_epoch
            logs["seconds"] = time.perf_counter() - self.start


class KeepLastFinite(keras.callbacks.Callback):
    """Stops on a non-finite loss and restores the weights of the last good epoch."""

    def __init__(self):
        super().__init__()
        self.good_weights = None  # Set at the start of training.
        self.diverged_at = None
        self.bad_value = None

    def on_train_begin(self, logs=None):
        self.good_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.diverged_at, self.bad_value = epoch, loss
            self.model.stop_training = True
            self.model.set_weights(self.good_weights)
        else:
            self.good_weights = self.model.get_weights()


class Checkpoint(keras.callbacks.Callback):
    """Saves model and optimizer every `every` epochs and at the end, with the epoch.

    The save at the end marks a finished run as finished, so running its
    command again trains nothing.
    """

    def __init__(self, run_dir: Path, every: int):
        super().__init__()
        self.run_dir, self.every = Path(run_dir), every
        self.epochs_done = self.epochs_saved = None

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1
        if not (epoch + 1) % self.every:
            self._save()

    def on_train_end(self, logs=None):
        if self.epochs_done != self.epochs_saved:
            self._save()

    def _save(self):
        if self.model.stop_training:  # Diverged: the weights are the restored ones.
            return
        save_atomic(self.model, self.run_dir / CHECKPOINT)
        write_text_atomic(self.run_dir / CHECKPOINT_STATE,
                          json.dumps({"epoch": self.epochs_done}))
        self.epochs_saved = self.epochs_done


def save_atomic(model: keras.Model, path: Path) -> None:
    """`model.save(path)` through a temporary file, so `path` is never partial."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _truncate_history(path: Path, epochs: int) -> None:
    """Keeps the first `epochs` rows: those after a checkpoint are redone."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    write_text_atomic(path, "".join(",".join(r) + "\n" for r in rows[:1 + epochs]))


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as {column: values}, the shape of `History.history`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def write_pictures(model: VAE | Autoencoder, data: datasets.DataSplits, history, run_dir: Path,
                   *, seed: int = 0) -> None:
    """Reconstructions and the training curve; for a VAE also samples and (2-D z)
    the manifold. A plain autoencoder has no prior to sample from."""
    x = data.arrays.x_test[:20]
    plots.reconstructions(x, model.reconstruct(x).numpy(), run_dir / "reconstructions.png",
                          title="test images (top) and their reconstructions (bottom)")
    curves = {k: v for k, v in history.items() if k.removeprefix("val_") in METRICS}
    if history.get("samples"):
        plots.training_curves(curves, run_dir / "training_curve.png",
                              x=history["samples"], xlabel="training samples evaluated",
                              log_x=True, title="per datapoint (nats)")
    if not isinstance(model, VAE):
        return
    samples = model.sample(100, seed=seed, mean=True).numpy()
    plots.image_grid(samples, run_dir / "samples.png", ncols=10, title="E[x|z], z ~ p(z)")
    if model.latent_shape == (2,):
        plots.manifold(lambda z: model.decode(z.astype(np.float32)).mean().numpy(),
                       run_dir / "manifold.png", grid_size=20,
                       image_shape=tuple(data.event_shape),
                       title="decoded prior quantiles (Kingma & Welling, Fig. 4)")
