"""Command-line flags generated from the config dataclasses and their docstrings.

One `--flag-name` per field of `tfvae.config.RunConfig` (a part's name goes by
its section: `--likelihood`, `--posterior`, `--prior`), with the help text of
the field's `Attributes:` entry and its choices, so that no default or
description is written twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from tfvae.config import (
    BASELINES,
    BINARIZATIONS,
    GAUSSIAN_SCALES,
    GRADIENT_ESTIMATORS,
    KL_ESTIMATORS,
    LIKELIHOODS,
    LR_SCHEDULES,
    MEAN_ACTIVATIONS,
    NETWORKS,
    OBJECTIVES,
    OPTIMIZERS,
    POSTERIORS,
    PRECISIONS,
    PRIORS,
    SECTIONS,
    STRATEGIES,
    TC_ESTIMATORS,
    VALIDATION_SPLITS,
    WARMUP_UNITS,
    WARMUPS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    flag_paths,
    resolve_annotation,
    unwrap_optional,
)
from tfvae.presets import dataset_defaults


def add_arguments(parser: argparse.ArgumentParser, dataset: str | None = None) -> None:
    """Adds one `--flag-name` per field of the model (and its parts), data and train
    configs, with the help text of the field's docstring.

    Every flag defaults to `None`, meaning: the dataset's paper default, else
    the dataclass default. `from_arguments` resolves them.

    Args:
        parser: Gets one argument group per config section.
        dataset: Whose paper defaults the help text shows (the default dataset's
            when `None`); the values themselves are resolved by `from_arguments`.
    """
    presets = dataset_defaults(dataset or DataConfig.dataset)
    groups = {}
    for flag, path in flag_paths().items():
        if flag == "event_shape":
            continue  # Always read off the data.
        section = " ".join(path[:-1])
        if section not in groups:
            groups[section] = parser.add_argument_group(
                section, _first_line(_section_class(path[:-1]).__doc__)
            )
        _add_argument(groups[section], flag, _field(path), presets, dataset or DataConfig.dataset)


class _NoneGiven:
    """`none` typed for a field whose `None` is a choice (`--init-stddev none`);
    an unset flag is `None` itself."""

    def __repr__(self):
        return "none"


NONE_GIVEN = _NoneGiven()


def _or_none(kind: type):
    """argparse type: `kind`, or `NONE_GIVEN` for the word none."""

    def parse(text: str):
        return NONE_GIVEN if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def from_arguments(args: argparse.Namespace) -> RunConfig:
    """Builds a `RunConfig` from parsed flags and the dataset's defaults."""
    values = {k: v for k, v in vars(args).items() if v is not None}
    values = {k: None if v is NONE_GIVEN else v for k, v in values.items()}
    return RunConfig.for_dataset(values.pop("dataset", DataConfig.dataset), **values)


def _section_class(path: tuple[str, ...]):
    """The dataclass of the section at `path` in `RunConfig`."""
    cls = RunConfig
    for name in path:
        cls = resolve_annotation({f.name: f for f in dataclasses.fields(cls)}[name].type)
    return cls


def _field(path: tuple[str, ...]) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(_section_class(path[:-1]))}[path[-1]]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def field_help(cls, name: str) -> str:
    """The text of `name` in the `Attributes:` section of `cls`'s docstring."""
    lines = (cls.__doc__ or "").splitlines()
    text, collecting, indent = [], False, 0
    for line in lines:
        stripped = line.strip()
        if collecting and (
            not stripped or (":" in stripped and len(line) - len(line.lstrip()) <= indent)
        ):
            break
        if collecting:
            text.append(stripped)
        elif stripped.startswith(f"{name}:"):
            collecting, indent = True, len(line) - len(line.lstrip())
            text.append(stripped[len(name) + 1 :].strip())
    return " ".join(text)


def _add_argument(group, flag: str, field: dataclasses.Field, presets: dict, dataset: str) -> None:
    option = "--" + flag.replace("_", "-")
    kind, optional = unwrap_optional(field.type)
    cls = next(
        c
        for c in (*SECTIONS.values(), ModelConfig, DataConfig, TrainConfig)
        if field in dataclasses.fields(c)
    )
    if flag in presets:
        shown = f"Default for --dataset {dataset}: {_shown(presets[flag])}."
    elif flag == "dataset":
        shown = f"Default: {DataConfig.dataset}."
    else:
        default = field.default if field.default is not dataclasses.MISSING else None
        shown = f"Default: {_shown(default)}."
    help_text = f"{field_help(cls, field.name)} {shown}".replace("%", "%%")
    if kind is bool:
        group.add_argument(
            option, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
    elif typing.get_origin(kind) is tuple:
        group.add_argument(option, type=int, nargs="+", default=None, help=help_text)
    else:
        default = field.default if field.default is not dataclasses.MISSING else None
        # A None that differs from the default must be typeable: --init-stddev none.
        typed = (
            _or_none(kind) if optional and default is not None and kind in (int, float) else kind
        )
        group.add_argument(
            option, type=typed, choices=_CHOICES.get(flag), default=None, help=help_text
        )


def _shown(value) -> str:
    """A default as it is typed on the command line: `200 200` for a tuple."""
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


_CHOICES = {
    "network": NETWORKS,
    "likelihood": LIKELIHOODS,
    "posterior": POSTERIORS,
    "prior": PRIORS,
    "gaussian_scale": GAUSSIAN_SCALES,
    "mean_activation": MEAN_ACTIVATIONS,
    "objective": OBJECTIVES,
    "kl_estimator": KL_ESTIMATORS,
    "binarization": BINARIZATIONS,
    "validation_split": VALIDATION_SPLITS,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "warmup": WARMUPS,
    "warmup_unit": WARMUP_UNITS,
    "tc_estimator": TC_ESTIMATORS,
    "gradient_estimator": GRADIENT_ESTIMATORS,
    "baseline": BASELINES,
    "strategy": STRATEGIES,
    "precision": PRECISIONS,
}
