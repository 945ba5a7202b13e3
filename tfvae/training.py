"""Training: the one function that the CLI and notebooks call.

`train(config)` loads the data, builds the paper's model, fits it with Keras
and writes a run folder:

    <output_dir>/<run_name>/
        config.json          the resolved RunConfig (rebuilds the model)
        model.keras          the trained model (the last finite epoch)
        history.csv          per-epoch metrics, with `samples` seen
        logs/                TensorBoard
        checkpoint-<epoch>.keras, checkpoint.json
                             resumable state, every `checkpoint_every` epochs
        samples.png, reconstructions.png, training_curve.png,
        manifold.png         (2-D latent only: the paper's Figure 4)

Running the same configuration again resumes from the checkpoint that
`checkpoint.json` names, and continues the same run: the noise of every step,
the data order and the binarization of every epoch are functions of the seed
and the step or epoch (`tfvae.seeds`), so on CPU a run killed at any moment
and resumed ends with the same weights and history as one never interrupted.
Files are written to a temporary name and renamed, so a crash never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfvae import builders, datasets, distribute, plots, precision, priors, registry, schedules
from tfvae.base_model import TrainingDiverged
from tfvae.config import RunConfig
from tfvae.model import VAE
from tfvae.presets import dataset_defaults

METRICS = ("loss", "elbo", "rate", "distortion")

CHECKPOINT_STATE = "checkpoint.json"

__all__ = ["train", "TrainingDiverged", "RunExists", "TrainResult"]


class RunExists(ValueError):
    """The run folder holds a run of a different configuration."""


class TrainResult(NamedTuple):
    model: VAE
    history: dict[str, list[float]]
    run_dir: Path


def train(
    config: RunConfig,
    *,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Trains the model `config` describes and writes its run folder.

    Args:
        config: The run. `model.event_shape` and a `None` `weight_decay` are
            filled in from the data; `train.run_name` defaults to a name made
            of the dataset, latent size and objective.
        verbose: Keras' progress display (1: progress bar, 2: a line per epoch).
        callbacks: More Keras callbacks, run after tfvae's own (so their epoch
            logs hold `samples` and `seconds`).

    Returns:
        The trained model, its history (all epochs, also resumed ones) and the
        run folder.

    Under `train.strategy` `multi_worker` every worker runs `train` with the
    same config; only the chief writes the run folder (the others write to a
    temporary folder, deleted at the end), and all of them resume from the
    chief's checkpoint. A run in mixed precision ships a float32 model.

    Raises:
        TrainingDiverged: steps kept giving a non-finite loss; none was applied,
            and `model.keras` holds the last finite weights.
        RunExists: the run folder belongs to another configuration.
        ValueError: the batch does not split evenly across the replicas.
    """
    # First: logical devices and collective ops are set up before any TF op runs.
    strategy = distribute.make_strategy(config.train.strategy, config.train.cpu_devices)
    data = datasets.load(config.data, seed=config.train.seed, labels=config.model.conditional)
    _check_support(config, data)
    config = resolve(config, data)
    _check_replicas(config, strategy.num_replicas_in_sync)
    run_dir = Path(config.train.output_dir) / config.train.run_name
    chief = distribute.is_chief(strategy)
    with strategy.scope(), precision.policy(config.train.precision):
        model, initial_epoch = _start_or_resume(config, data, run_dir, write=chief)
    write_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="tfvae-worker-"))
    try:
        return _fit(config, data, model, initial_epoch, run_dir, write_dir, verbose, callbacks)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _fit(
    config: RunConfig,
    data,
    model: VAE,
    initial_epoch: int,
    run_dir: Path,
    write_dir: Path,
    verbose,
    callbacks,
) -> TrainResult:
    """Fits from `initial_epoch`, writing history, logs and checkpoints to `write_dir`."""
    history_path = write_dir / "history.csv"
    finished = initial_epoch >= config.train.epochs
    if not finished:
        _truncate_history(history_path, initial_epoch)
    patience = config.train.early_stopping
    if history_path.exists() and stopped_early(read_history(history_path), patience):
        finished = True
    if finished and (run_dir / "model.keras").exists():  # Change nothing.
        return TrainResult(model, read_history(run_dir / "history.csv"), run_dir)
    stopping = EarlyStopping(write_dir, patience) if patience else None
    callbacks = [
        data.train_epochs.callback(),
        SamplesSeen(
            data.train_epochs.steps_per_epoch * config.data.batch_size,
            learning_rate=config.train.lr_schedule != "constant",
        ),
        *([stopping.keeper] if stopping else []),
        keras.callbacks.CSVLogger(str(history_path), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(str(write_dir / "logs")),
        Checkpoint(write_dir, config.train.checkpoint_every),
        *([stopping] if stopping else []),
        *(callbacks or []),
    ]
    try:
        if not finished:
            model.fit(
                data.train,
                validation_data=data.monitored,
                epochs=config.train.epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,
            )  # The pipeline shuffles, seeded.
    except TrainingDiverged as error:
        save_atomic(shipped(model, config, data), write_dir / "model.keras")
        raise TrainingDiverged(f"{error} {run_dir / 'model.keras'} holds that model.") from error
    if stopping is not None:  # The best epoch's weights, not the last one's.
        model.load_weights(write_dir / BEST_WEIGHTS)
    model = shipped(model, config, data)
    save_atomic(model, write_dir / "model.keras")
    history = read_history(history_path)
    if write_dir == run_dir:
        write_pictures(model, data, history, run_dir)
    return TrainResult(model, history, run_dir)


def shipped(model: VAE, config: RunConfig, data: datasets.DataSplits) -> VAE:
    """The model as a run ships it: itself, or its float32 copy after mixed precision."""
    return precision.as_float32(
        model, lambda: build_compiled(config, data.num_train, data.train_epochs.steps_per_epoch)
    )


def _check_replicas(config: RunConfig, replicas: int) -> None:
    """Raises ValueError unless the global batch splits evenly across `replicas`."""
    if config.data.batch_size % replicas:
        raise ValueError(
            f"--batch-size {config.data.batch_size} does not split evenly across the "
            f"{replicas} replicas of --strategy {config.train.strategy}: the batch size is "
            f"the global batch. Choose a multiple of {replicas}."
        )


def _check_support(config: RunConfig, data: datasets.DataSplits) -> None:
    """Raises ValueError unless both splits, as the model sees them, are in the
    likelihood's support (e.g. grey pixels for a Bernoulli likelihood)."""
    for split, x in (("train", data.arrays.x_train), ("test", data.arrays.x_test)):
        # The test split is scored binarized once; training data are binarized per epoch.
        binarization = "none" if split == "test" else config.data.binarization
        support = registry.entry("likelihood", config.model.likelihood.name).cls.support
        datasets.check_support(
            datasets.as_scored(x, config.data.binarization),
            support,
            binarization,
            name=f"the {config.data.dataset} {split} split",
        )


def resolve(config: RunConfig, data: datasets.DataSplits) -> RunConfig:
    """Fills in what the data determine: event shape, weight decay, beta-TCVAE's
    dataset size, run name."""
    objective = config.model.objective
    if objective.name == "beta_tcvae" and objective.dataset_size is None:
        objective = dataclasses.replace(objective, dataset_size=data.num_train)
    num_classes = config.model.num_classes
    if config.model.conditional and num_classes is None:
        num_classes = data.num_classes
    model = dataclasses.replace(
        config.model,
        event_shape=tuple(data.event_shape),
        objective=objective,
        num_classes=num_classes,
        weight_decay=builders.resolved_weight_decay(config.model, data.num_train),
    )
    name = config.train.run_name or _run_name(config)
    return dataclasses.replace(
        config, model=model, train=dataclasses.replace(config.train, run_name=name)
    )


def _run_name(config: RunConfig) -> str:
    """dataset-latentJ-<objective><samples>, the objective's options that are not
    the defaults, then the network and the parts that are not the defaults (the
    MLP; the dataset's likelihood, the diagonal Gaussian, N(0, I))."""
    model = config.model
    defaults = {
        "likelihood": dataset_defaults(config.data.dataset).get("likelihood", "bernoulli"),
        "posterior": "diagonal_gaussian",
        "prior": "standard_normal",
    }
    parts = [
        _part_name(getattr(model, kind))
        for kind, default in defaults.items()
        if getattr(model, kind) != type(getattr(model, kind))(default)
    ]
    # dataset_size follows from the data: it names no variant.
    objective = _options(dataclasses.replace(model.objective, dataset_size=None))
    if model.network != type(model.network)():
        parts.insert(0, _part_name(model.network))
    if model.conditional:
        parts.insert(0, "conditional")
    latent = f"latent{model.latent_dim}"
    if model.top_latent_dim:  # Two stochastic layers: latent<J1>-top<J2>.
        latent += f"-top{model.top_latent_dim}"
    return "-".join(
        [
            f"{config.data.dataset.replace(':', '_')}-{latent}"
            f"-{model.objective.name}{model.num_samples}",
            *objective,
            *parts,
        ]
    )


def _part_name(section) -> str:
    """A part's name and its options that differ from their defaults, e.g.
    `student_t-degrees_of_freedom=3`: runs that differ in an option get their own folders."""
    return "-".join([section.name, *_options(section)])


def _options(section) -> list[str]:
    """`field=value` for the fields of `section` (but its name) that differ from the defaults."""
    return [
        f"{field.name}={_flag_value(getattr(section, field.name))}"
        for field in dataclasses.fields(section)
        if field.name != "name" and getattr(section, field.name) != field.default
    ]


def _flag_value(value) -> str:
    return "_".join(map(str, value)) if isinstance(value, tuple) else str(value)


def build_compiled(config: RunConfig, num_train: int, steps_per_epoch: int | None = None) -> VAE:
    """The VAE that `config` describes, compiled (`steps_per_epoch`: for a
    warm-up in epochs and a decaying learning rate)."""
    model = builders.build_vae(
        config.model, num_train=num_train, seed=config.train.seed, steps_per_epoch=steps_per_epoch
    )
    train = config.train
    if train.lr_schedule != "constant" and steps_per_epoch is None:
        raise ValueError(f"lr_schedule={train.lr_schedule!r} needs steps_per_epoch.")
    rate = schedules.learning_rate(
        train.lr_schedule,
        train.learning_rate,
        train.last_learning_rate,
        train.epochs * (steps_per_epoch or 1),
    )
    epsilon = {} if train.optimizer_epsilon is None else {"epsilon": train.optimizer_epsilon}
    optimizer = keras.optimizers.get(
        {"class_name": train.optimizer, "config": {"learning_rate": rate, **epsilon}}
    )
    if tf.distribute.has_strategy():  # No XLA, one step per call (OwnLossModel.compile).
        model.compile(optimizer)
    else:
        model.compile(
            optimizer,
            jit_compile=config.train.jit_compile,
            steps_per_execution=config.train.steps_per_execution,
        )
    return model


def _start_or_resume(config: RunConfig, data, run_dir: Path, write: bool = True) -> tuple[VAE, int]:
    """Returns the model and the epoch to start from (0, or the checkpoint's);
    `write`: write config.json into a new run folder (the chief does)."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = RunConfig.from_json(config_path.read_text())
        differences = _differences(_comparable(saved), _comparable(config))
        if differences:
            raise RunExists(
                f"{run_dir} holds a run with another configuration ({'; '.join(differences)}). "
                "Pass a new --run-name (or another --output-dir), or delete that folder."
            )
        if saved.train.lr_schedule != "constant" and saved.train.epochs != config.train.epochs:
            raise RunExists(
                f"{run_dir} holds a run whose {saved.train.lr_schedule} learning-rate schedule "
                f"spans --epochs {saved.train.epochs}; it resumes with that --epochs only. "
                "To train longer, start a new run (--run-name) with the longer --epochs."
            )
        state_path = run_dir / CHECKPOINT_STATE
        if state_path.exists():
            state = json.loads(state_path.read_text())
            return load_model(run_dir / state["file"]), state["epoch"]
        if (run_dir / "model.keras").exists():
            raise RunExists(
                f"{run_dir} holds a model.keras but no checkpoint to resume from (a shipped "
                "or copied model keeps no optimizer state), so training it again would "
                "start over and overwrite its history. Pass a new --run-name."
            )
    # Built before anything is written, so that a model that cannot be built
    # leaves no config.json to block the corrected command.
    model = build_compiled(config, data.num_train, data.train_epochs.steps_per_epoch)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_path, config.to_json())
    return model, 0


def load_model(path: Path) -> keras.Model:
    """A `.keras` file written by tfvae, in Keras' safe mode: no lambdas or
    arbitrary code are deserialized (a file that holds any is refused)."""
    return keras.models.load_model(path, safe_mode=True)


def _differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """`section.field: saved there, wanted now` for every (nested) field that differs."""

    def walk(there: dict, now: dict, path: str):
        for name, value in there.items():
            if isinstance(value, dict):
                yield from walk(value, now[name], f"{path}{name}.")
            elif now[name] != value:
                yield f"{path}{name}: {value!r} there, {now[name]!r} now"

    return list(walk(saved.to_dict(), wanted.to_dict(), ""))


def _comparable(config: RunConfig) -> RunConfig:
    """What must match to resume: all but the epochs (a run may be extended),
    where the run folder and the data files are (they may move), what does not
    change the numbers (how often to checkpoint, how many steps per call) and
    the devices (a run may move to another machine: with another number of
    replicas its noise from then on differs)."""
    train = dataclasses.replace(
        config.train,
        epochs=1,
        output_dir="",
        run_name=None,
        checkpoint_every=1,
        steps_per_execution=1,
        strategy="default",
        cpu_devices=None,
    )
    return dataclasses.replace(
        config, train=train, data=dataclasses.replace(config.data, data_dir=None)
    )


class SamplesSeen(keras.callbacks.Callback):
    """Adds `samples` (training examples evaluated so far) and `seconds` to the logs.

    `seconds` is the wall time since the previous epoch's logs (the first epoch:
    since training began): the epoch, its validation and the previous epoch's
    logging and checkpoint, so that a run's seconds add up to its time.
    `samples` is the x-axis of Kingma & Welling's Figure 2. With
    `learning_rate`, also the step size the next step takes (for a decaying
    schedule; a constant one adds no column, so older runs resume into the
    same columns). Must come before the loggers.
    """

    def __init__(self, samples_per_epoch: int, learning_rate: bool = False):
        super().__init__()
        self.samples_per_epoch = samples_per_epoch
        self.learning_rate = learning_rate
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if logs is not None:
            logs["samples"] = (epoch + 1) * self.samples_per_epoch
            logs["seconds"] = now - self.start
            if self.learning_rate:
                logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        self.start = now


class Checkpoint(keras.callbacks.Callback):
    """Saves model and optimizer every `every` epochs and at the end, with the epoch.

    Each checkpoint is a new file `checkpoint-<epoch>.keras`; only then does
    `checkpoint.json` point to it, and only then is the previous one deleted,
    so a kill at any moment leaves a pointer to a complete file of the epoch it
    names. The save at the end marks a finished run as finished, so running
    its command again trains nothing.
    """

    def __init__(self, run_dir: Path, every: int):
        super().__init__()
        self.run_dir, self.every = Path(run_dir), every
        self.epochs_done = self.epochs_saved = None
        self.stopped_mid_epoch = False

    def on_epoch_end(self, epoch, logs=None):
        # Stopped during the epoch's steps: its weights are not a whole epoch's
        # state. (EarlyStopping stops after this, at a whole epoch.)
        self.stopped_mid_epoch = self.model.stop_training
        if self.stopped_mid_epoch:
            return
        self.epochs_done = epoch + 1
        if not (epoch + 1) % self.every:
            self._save()

    def on_train_end(self, logs=None):
        if not self.stopped_mid_epoch and self.epochs_done != self.epochs_saved:
            self._save()

    def _save(self):
        name = f"checkpoint-{self.epochs_done}.keras"
        save_atomic(self.model, self.run_dir / name)
        write_text_atomic(
            self.run_dir / CHECKPOINT_STATE, json.dumps({"epoch": self.epochs_done, "file": name})
        )
        for old in self.run_dir.glob("checkpoint-*.keras"):
            if old.name != name:
                old.unlink()
        self.epochs_saved = self.epochs_done


BEST_WEIGHTS = "best.weights.h5"


class EarlyStopping(keras.callbacks.Callback):
    """Stops `patience` epochs after the best validation ELBO (`val_elbo`); its
    weights are kept in `best.weights.h5` for `_fit` to restore.

    Its state, the best epoch so far, is read off the history at the start, so
    a resumed run stops where an uninterrupted one would. Goes after
    `Checkpoint` (which then saves the last epoch's state whole); its `keeper`
    goes before the loggers, so that no history row names a best epoch whose
    weights were not written.
    """

    def __init__(self, run_dir: Path, patience: int):
        super().__init__()
        self.run_dir, self.patience = Path(run_dir), patience
        self.best = self.best_epoch = None
        self.keeper = _KeepBest(self)

    def on_train_begin(self, logs=None):
        path = self.run_dir / "history.csv"
        history = read_history(path) if path.exists() else {}
        self.best_epoch = best_epoch(history)
        self.best = None if self.best_epoch is None else history["val_elbo"][self.best_epoch]

    def on_epoch_end(self, epoch, logs=None):
        if epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True


class _KeepBest(keras.callbacks.Callback):
    """EarlyStopping's half that runs before the loggers: saves a new best."""

    def __init__(self, stopping: EarlyStopping):
        super().__init__()
        self.stopping = stopping

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_elbo")
        if value is None:
            raise ValueError("EarlyStopping needs val_elbo: fit with validation_data.")
        stopping = self.stopping
        if stopping.best is None or float(value) > stopping.best:
            stopping.best, stopping.best_epoch = float(value), epoch
            tmp = stopping.run_dir / f".tmp.{BEST_WEIGHTS}"
            self.model.save_weights(tmp)
            os.replace(tmp, stopping.run_dir / BEST_WEIGHTS)


def best_epoch(history: dict[str, list[float]]) -> int | None:
    """The 0-based epoch of the highest val_elbo (the first of ties), or None."""
    values = history.get("val_elbo") or []
    return int(np.argmax(values)) if values else None


def stopped_early(history: dict[str, list[float]], patience: int) -> bool:
    """Whether a run with `early_stopping=patience` stopped after this history."""
    best = best_epoch(history)
    return bool(patience) and best is not None and len(history["val_elbo"]) - 1 - best >= patience


def save_atomic(model: keras.Model, path: Path) -> None:
    """`model.save(path)` through a temporary file, so `path` is never partial."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """`path.write_text(text)` through a temporary file beside it, so `path` is never partial.

    `os.replace` within one directory is atomic: a reader, or a resume after a
    crash, sees the old file or the new one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _truncate_history(path: Path, epochs: int) -> None:
    """Keeps the first `epochs` rows: those after a checkpoint are redone."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = f.readlines()  # With their own line endings, as CSVLogger wrote them.
    kept = [line for line in lines[: 1 + epochs] if line.endswith("\n")]  # No cut-off row.
    write_text_atomic(path, "".join(kept))


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as {column: values}, the shape of `History.history`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def write_pictures(
    model: VAE,
    data: datasets.DataSplits,
    history: dict[str, list[float]],
    run_dir: Path,
    *,
    seed: int = 0,
) -> None:
    """Reconstructions and the training curve; unless the posterior is a point
    mass (the plain autoencoder: its codes are not shaped to the prior), also
    samples and (2-D z) the manifold."""
    x = data.arrays.x_test[:20]
    labels = data.arrays.y_test[:20] if model.num_classes else None
    plots.reconstructions(
        x,
        model.reconstruct(x, labels).numpy(),
        run_dir / "reconstructions.png",
        title="test images (top) and their reconstructions (bottom)",
    )
    curves = {k: v for k, v in history.items() if k.removeprefix("val_") in METRICS}
    if history.get("samples"):
        plots.training_curves(
            curves,
            run_dir / "training_curve.png",
            x=history["samples"],
            xlabel="training samples evaluated",
            log_x=True,
            title="per datapoint (nats)",
        )
    if not model.has_density:
        return
    if model.num_classes:  # One row per label.
        labels = np.repeat(np.arange(model.num_classes), 10)
        samples = model.sample(len(labels), seed=seed, mean=True, labels=labels).numpy()
        plots.image_grid(
            samples,
            run_dir / "samples.png",
            ncols=10,
            title="E[x|z, y], z ~ p(z), row y = 0, 1, ...",
        )
    else:
        samples = model.sample(100, seed=seed, mean=True).numpy()
        plots.image_grid(samples, run_dir / "samples.png", ncols=10, title="E[x|z], z ~ p(z)")
    # The manifold decodes N(0, I)'s quantiles; they say little about a learned prior.
    if (
        model.latent_shape == (2,)
        and isinstance(model.prior_part(), priors.StandardNormal)
        and not model.num_classes
    ):
        plots.manifold(
            lambda z: model.likelihood_mean(z.astype(np.float32)).numpy(),
            run_dir / "manifold.png",
            grid_size=20,
            image_shape=tuple(data.event_shape),
            title="decoded prior quantiles (Kingma & Welling, Fig. 4)",
        )
