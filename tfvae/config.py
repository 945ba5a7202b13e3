"""Typed, frozen configurations for models, data and training.

Every artifact tfvae writes carries its `RunConfig` as JSON, so a run directory
always knows how to rebuild its model (the nanoGPT habit, without `exec`).
Command-line flags are generated from the dataclass fields
(`add_arguments` / `from_arguments`), so a default lives in exactly one place.

Defaults are the paper's (Kingma & Welling 2014, section 5 and appendix C):
tanh MLPs with one hidden layer, weights drawn from N(0, 0.01^2), Adagrad,
minibatches of M = 100, L = 1 sample per datapoint, analytic KL.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any, Optional

LIKELIHOODS = ("bernoulli", "gaussian")
OBJECTIVES = ("elbo", "iwae", "reconstruction")
KL_ESTIMATORS = ("auto", "analytic", "monte_carlo")
BINARIZATIONS = ("none", "dynamic")
OPTIMIZERS = ("adagrad", "adam", "sgd", "rmsprop")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model: networks, likelihood and the bound that trains them.

    Attributes:
        latent_dim: Size J of the latent code z.
        hidden_units: Hidden layer sizes of encoder and decoder MLPs.
        likelihood: `bernoulli` (binary pixels) or `gaussian` (sigmoid means,
            per-pixel variance output by the decoder, the Frey Face model).
        activation: Hidden activation of both MLPs.
        init_stddev: Standard deviation of the N(0, s^2) weight initialiser.
        weight_decay: L2 coefficient on kernels, per datapoint. `None` means the
            paper's N(0, I) prior on the weights: 1 / (2 N) for N training points.
        objective: `elbo` (the SGVB bound), `iwae` (importance weighted), or
            `reconstruction`: the plain autoencoder baseline (z = f(x), a point,
            trained on log p(x|z) alone, no KL term).
        num_samples: Samples of z per datapoint: L for `elbo`, k for `iwae`.
        kl_estimator: `analytic` (the paper's estimator B), `monte_carlo`
            (estimator A) or `auto` (analytic where TFP registers a KL).
        event_shape: Shape of one datapoint x; set from the data when `None`.
    """

    latent_dim: int = 20
    hidden_units: tuple[int, ...] = (500,)
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    init_stddev: float = 0.01
    weight_decay: Optional[float] = None
    objective: str = "elbo"
    num_samples: int = 1
    kl_estimator: str = "auto"
    event_shape: Optional[tuple[int, ...]] = None

    def __post_init__(self):
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _check_positive("latent_dim", self.latent_dim)
        _check_positive("num_samples", self.num_samples)
        _check_positive("init_stddev", self.init_stddev)
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be 0 or more (or None for 1/(2N)), "
                             f"got {self.weight_decay!r}.")
        for units in self.hidden_units:
            _check_positive("hidden_units", units)
        _check_activation(self.activation)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how they are batched.

    Attributes:
        dataset: `frey_face`, `mnist`, `binarized_mnist`, or `tfds:<name>` for
            any tensorflow-datasets image set.
        data_dir: Folder holding the raw files; `None` reads `TFVAE_DATA_DIR`,
            then the Keras cache (downloading there with a sha256 check).
        batch_size: Minibatch size M.
        binarization: `dynamic` draws x ~ Bernoulli(pixel intensity) afresh
            every epoch; `none` keeps intensities in [0, 1].
        limit: Use only the first `limit` training examples (quick runs, tests).
    """

    dataset: str = "frey_face"
    data_dir: Optional[str] = None
    batch_size: int = 100
    binarization: str = "none"
    limit: Optional[int] = None

    def __post_init__(self):
        _check_choice("binarization", self.binarization, BINARIZATIONS)
        _check_positive("batch_size", self.batch_size)
        if self.limit is not None:
            _check_positive("limit", self.limit)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long and how to optimise, and where the run is written.

    Attributes:
        epochs: Passes over the training set.
        optimizer: `adagrad` (the paper), `adam`, `sgd` or `rmsprop`.
        learning_rate: Step size; the paper picked from {0.01, 0.02, 0.1}.
        seed: Seeds weights, data order, binarization and the noise of z.
        jit_compile: Compile the train step with XLA.
        steps_per_execution: Train steps per call into the compiled graph.
        checkpoint_every: Save a resumable checkpoint every this many epochs.
        output_dir: Parent folder of run folders.
        run_name: Folder name of this run; derived from the config when `None`.
    """

    epochs: int = 100
    optimizer: str = "adagrad"
    learning_rate: float = 0.02
    seed: int = 0
    jit_compile: bool = True
    steps_per_execution: int = 16
    checkpoint_every: int = 10
    output_dir: str = "saved_models"
    run_name: Optional[str] = None

    def __post_init__(self):
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_positive("epochs", self.epochs)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("steps_per_execution", self.steps_per_execution)
        _check_positive("checkpoint_every", self.checkpoint_every)
        _check_name("run_name", self.run_name)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as `config.json`."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        binary = self.data.binarization == "dynamic" or self.data.dataset == "binarized_mnist"
        if binary and self.model.likelihood == "gaussian":
            # The density of a Gaussian at its own mean grows without bound as
            # its scale shrinks: on 0/1 pixels the "bound" climbs forever.
            raise ValueError(
                f"likelihood='gaussian' on binary pixels ({self.data.dataset}"
                f"{', binarization=dynamic' if self.data.binarization == 'dynamic' else ''}) "
                "has an unbounded likelihood: its scales shrink to their floor and the ELBO "
                "climbs without limit. Use --likelihood bernoulli"
                + (", or --binarization none for grey values."
                   if self.data.binarization == "dynamic" else "."))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        return cls(**{f.name: _from_dict(f.type, values.get(f.name, {}))
                      for f in dataclasses.fields(cls)})

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> "RunConfig":
        """The paper's run for `dataset`, with any field overridden by its name.

        Example: `RunConfig.for_dataset("frey_face", latent_dim=10, epochs=300)`.
        """
        merged = {**dataset_defaults(dataset), **overrides, "dataset": dataset}
        sections = {section.name: {f.name for f in dataclasses.fields(_resolve(section.type))}
                    for section in dataclasses.fields(cls)}
        unknown = set(merged) - set().union(*sections.values())
        if unknown:
            raise ValueError(f"Unknown config fields: {sorted(unknown)}")
        return cls.from_dict({name: {k: v for k, v in merged.items() if k in fields}
                              for name, fields in sections.items()})


# The paper's setting per dataset (Kingma & Welling 2014, section 5):
# 200 hidden units and a Gaussian decoder for Frey Face, 500 and Bernoulli for MNIST.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # 1605 training images: an epoch is 16 steps, so 1000 epochs are 1.6e6 samples.
    "frey_face": {"hidden_units": (200,), "likelihood": "gaussian", "latent_dim": 2,
                  "binarization": "none", "learning_rate": 0.01, "epochs": 1000,
                  "checkpoint_every": 100},
    "mnist": {"hidden_units": (500,), "likelihood": "bernoulli", "latent_dim": 20,
              "binarization": "dynamic", "learning_rate": 0.02, "epochs": 20},
    "binarized_mnist": {"hidden_units": (500,), "likelihood": "bernoulli",
                        "latent_dim": 20, "binarization": "none",
                        "learning_rate": 0.02, "epochs": 20},
}
TFDS_DEFAULTS: dict[str, Any] = DATASET_DEFAULTS["mnist"]


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """Returns the paper's defaults for `dataset`, keyed by config field name."""
    if dataset.startswith("tfds:"):
        return dict(TFDS_DEFAULTS)
    return dict(DATASET_DEFAULTS.get(dataset, {}))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one `--flag-name` per field of the model, data and train configs.

    Every flag defaults to `None`, meaning: the dataset's paper default, else
    the dataclass default. `from_arguments` resolves them.
    """
    for section in dataclasses.fields(RunConfig):
        group = parser.add_argument_group(section.name)
        for field in dataclasses.fields(_resolve(section.type)):
            if field.name == "event_shape":
                continue  # Always read off the data.
            _add_argument(group, field)


def from_arguments(args: argparse.Namespace) -> RunConfig:
    """Builds a `RunConfig` from parsed flags and the dataset's defaults."""
    values = {k: v for k, v in vars(args).items() if v is not None}
    return RunConfig.for_dataset(values.pop("dataset", DataConfig.dataset), **values)


def _add_argument(group, field: dataclasses.Field) -> None:
    flag = "--" + field.name.replace("_", "-")
    kind, optional = _unwrap(field.type)
    help_text = f"default: {field.default!r} (or the dataset's paper default)"
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
    elif typing.get_origin(kind) is tuple:
        group.add_argument(flag, type=int, nargs="+", default=None, help=help_text)
    else:
        choices = _CHOICES.get(field.name)
        group.add_argument(flag, type=kind, choices=choices, default=None,
                           help=help_text)


_CHOICES = {"likelihood": LIKELIHOODS, "objective": OBJECTIVES,
            "kl_estimator": KL_ESTIMATORS, "binarization": BINARIZATIONS,
            "optimizer": OPTIMIZERS}


def _resolve(annotation):
    """Turns a string annotation (from `__future__` annotations) into a type."""
    if isinstance(annotation, str):
        return eval(annotation, globals())  # Our own annotations only.
    return annotation


def _unwrap(annotation) -> tuple[Any, bool]:
    """Returns (type, is_optional) for `T` or `Optional[T]`."""
    annotation = _resolve(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _from_dict(cls, values: dict[str, Any]):
    cls = _resolve(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        kind, _ = _unwrap(known[name].type)
        if value is not None and typing.get_origin(kind) is tuple:
            value = tuple(value)  # JSON has lists; frozen configs hold tuples.
        kwargs[name] = value
    return cls(**kwargs)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}.")


def _check_activation(name: str) -> None:
    import keras  # Here, not at the top: `--help` should not wait for TensorFlow.
    try:
        keras.activations.get(name)
    except ValueError:
        raise ValueError(f"activation={name!r} is not a Keras activation; use e.g. 'tanh' "
                         "(the paper's), 'relu' or 'softplus'.") from None


def _check_name(name: str, value: str | None) -> None:
    if value is not None and (not value or "/" in value or "\\" in value
                              or value in (".", "..")):
        raise ValueError(f"{name}={value!r} must be a plain folder name, not a path.")


def _check_positive(name: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
