"""The registry: part names (as in configs and flags) -> the classes that build them.

A likelihood, posterior or prior is registered here once, with the config
fields it takes as constructor options; `tfvae.builders` builds any
combination from a `ModelConfig`. Names are those of `tfvae.config`
(`LIKELIHOODS`, `POSTERIORS`, `PRIORS`), so that `--help` lists them without
importing TensorFlow; `tests/test_registry.py` keeps the two in step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tfvae import flows, likelihoods, posteriors, priors


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered part: its class, {config field: constructor argument}, and
    whether it has weights to seed."""

    cls: type
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    seeded: bool = True


LIKELIHOODS = {
    "bernoulli": Entry(likelihoods.Bernoulli),
    "gaussian": Entry(
        likelihoods.Gaussian,
        {
            "gaussian_scale": "scale",
            "fixed_scale": "fixed_scale",
            "mean_activation": "mean_activation",
        },
    ),
    "continuous_bernoulli": Entry(likelihoods.ContinuousBernoulli),
    "discretized_logistic": Entry(likelihoods.DiscretizedLogistic),
}
_FLOW_OPTIONS = {"num_flows": "num_flows", "flow_hidden_units": "hidden_units"}
POSTERIORS = {
    "diagonal_gaussian": Entry(posteriors.DiagonalGaussian),
    "full_covariance_gaussian": Entry(posteriors.FullCovarianceGaussian),
    "laplace": Entry(posteriors.Laplace),
    "logistic": Entry(posteriors.Logistic),
    "student_t": Entry(posteriors.StudentT, {"degrees_of_freedom": "degrees_of_freedom"}),
    "iaf": Entry(flows.InverseAutoregressiveFlow, _FLOW_OPTIONS),
    "affine_coupling": Entry(flows.AffineCoupling, _FLOW_OPTIONS),
    "point_mass": Entry(posteriors.PointMass),
}
PRIORS = {
    "standard_normal": Entry(priors.StandardNormal, seeded=False),
    "mixture_of_gaussians": Entry(priors.MixtureOfGaussians, {"num_components": "num_components"}),
    "vamp": Entry(priors.VampPrior, {"num_pseudo_inputs": "num_pseudo_inputs"}),
}
KINDS = {"likelihood": LIKELIHOODS, "posterior": POSTERIORS, "prior": PRIORS}


def entry(kind: str, name: str) -> Entry:
    """The registered `kind` part called `name`.

    Raises:
        ValueError: Unknown kind or name; the message lists the valid names.
    """
    if kind not in KINDS:
        raise ValueError(f"No part kind {kind!r}; the kinds are {sorted(KINDS)}.")
    if name not in KINDS[kind]:
        raise ValueError(f"No {kind} called {name!r}; the {kind}s are {', '.join(KINDS[kind])}.")
    return KINDS[kind][name]


def build(kind: str, section, event_shape: Sequence[int], **kwargs: Any):
    """The part that `section` (a `LikelihoodConfig`, `PosteriorConfig` or
    `PriorConfig`) names, with its options and `kwargs` (init, seed)."""
    registered = entry(kind, section.name)
    if not registered.seeded:
        kwargs.pop("seed", None)
    options = {
        argument: _option_value(getattr(section, field))
        for field, argument in registered.options.items()
    }
    return registered.cls(tuple(event_shape), **options, **kwargs)


def _option_value(value):
    # Flags spell "no activation" as "none"; the parts take None.
    return None if value == "none" else value
