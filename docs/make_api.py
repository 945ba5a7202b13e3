"""Writes docs/api.md, the public API, from the docstrings: `python docs/make_api.py`.

The public API is what `tfvae` exports (`tfvae.__all__`) and the public classes and
functions of the modules below; tests/test_docs.py checks that docs/api.md is what
this script writes, so a docstring changed without rerunning it fails the suite.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

API = Path(__file__).with_name("api.md")
# In reading order: the model and its parts, then training, evaluation, export.
MODULES = (
    "tfvae.model",
    "tfvae.builders",
    "tfvae.config",
    "tfvae.likelihoods",
    "tfvae.posteriors",
    "tfvae.flows",
    "tfvae.priors",
    "tfvae.gaussian_mixture",
    "tfvae.hierarchical",
    "tfvae.networks",
    "tfvae.objectives",
    "tfvae.schedules",
    "tfvae.datasets",
    "tfvae.training",
    "tfvae.evaluation",
    "tfvae.decomposition",
    "tfvae.reports",
    "tfvae.plots",
    "tfvae.export",
    "tfvae.tflite_sampler",
    "tfvae.web_page",
)


def public_members(module) -> list[tuple[str, object]]:
    """The classes and functions `module` defines, without a leading underscore."""
    return [
        (name, value)
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    ]


def signature(value) -> str:
    try:
        return str(inspect.signature(value))
    except (TypeError, ValueError):
        return "(...)"


def section(module) -> list[str]:
    lines = [f"## `{module.__name__}`", "", inspect.cleandoc(module.__doc__ or ""), ""]
    for name, value in public_members(module):
        kind = "class" if inspect.isclass(value) else "def"
        lines += [f"### `{kind} {name}{signature(value)}`", ""]
        doc = inspect.getdoc(value)
        if doc:
            lines += ["```text", doc, "```", ""]
    return lines


def render() -> str:
    import tfvae

    lines = [
        "# tfvae API reference",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand.",
        "Tensor shapes: B examples, J latent units, `[*image_shape]` one image.",
        "",
        "`import tfvae` gives: " + ", ".join(f"`{name}`" for name in tfvae.__all__) + ".",
        "",
    ]
    for name in MODULES:
        lines += section(importlib.import_module(name))
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    API.write_text(render())
    print(f"Wrote {API}")
