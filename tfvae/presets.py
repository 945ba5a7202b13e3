"""The papers' settings: what each dataset's run defaults to.

Flag names (`tfvae.config.flag_paths`) -> values; `RunConfig.for_dataset`
starts from these and lets any flag override them.
"""

from __future__ import annotations

from typing import Any

# The paper's setting per dataset (Kingma & Welling 2014, section 5):
# 200 hidden units and a Gaussian decoder for Frey Face, 500 and Bernoulli for MNIST.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # 1605 training images: an epoch is 16 steps, so 1000 epochs are 1.6e6 samples.
    "frey_face": {
        "hidden_units": (200,),
        "likelihood": "gaussian",
        "latent_dim": 2,
        "binarization": "none",
        "learning_rate": 0.01,
        "epochs": 1000,
        "checkpoint_every": 100,
    },
    "mnist": {
        "hidden_units": (500,),
        "likelihood": "bernoulli",
        "latent_dim": 20,
        "binarization": "dynamic",
        "learning_rate": 0.02,
        "epochs": 20,
    },
    "binarized_mnist": {
        "hidden_units": (500,),
        "likelihood": "bernoulli",
        "latent_dim": 20,
        "binarization": "none",
        "learning_rate": 0.02,
        "epochs": 20,
    },
}
TFDS_DEFAULTS: dict[str, Any] = DATASET_DEFAULTS["mnist"]


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """Returns the paper's defaults for `dataset`, keyed by config field name."""
    if dataset.startswith("tfds:"):
        return dict(TFDS_DEFAULTS)
    return dict(DATASET_DEFAULTS.get(dataset, {}))
