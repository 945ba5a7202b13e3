"""Shared fixtures: the real data folder, a tiny VAE with its exports, and a smaller
Bernoulli VAE."""

import os
from pathlib import Path

import numpy as np
import pytest

import tfvae
from tfvae import datasets, export


@pytest.fixture(scope="session")
def data_dir() -> str:
    """TFVAE_DATA_DIR, else ../shared/data beside the checkout (as CI lays it)."""
    candidates = [
        os.environ.get(datasets.DATA_DIR_ENV),
        Path(__file__).parents[2] / "shared" / "data",
    ]
    for folder in candidates:
        if folder and Path(folder).is_dir():
            return str(folder)
    pytest.skip(f"No data: set {datasets.DATA_DIR_ENV} or provide ../shared/data.")


# A tiny VAE, exported once per likelihood for test_export.py and test_parity.py.


def _tiny_vae(likelihood: str, seed: int = 0) -> tfvae.VAE:
    # 32 hidden units: 32 * 35 weights pass the 1024 below which TFLite skips quantizing.
    config = tfvae.ModelConfig(
        latent_dim=2, hidden_units=(32,), likelihood=likelihood, event_shape=(7, 5)
    )
    return tfvae.build_vae(config, seed=seed)


def _images(n: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 7, 5)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_vae():
    """Factory `(likelihood, seed=0) -> VAE`: latent 2, 32 hidden units, 7 x 5 images."""
    return _tiny_vae


@pytest.fixture(scope="session")
def images():
    """Factory `(n=40, seed=0) -> [n, 7, 5]` float32 images, uniform in [0, 1]."""
    return _images


@pytest.fixture(scope="session", params=("bernoulli", "gaussian"))
def exported(request, tmp_path_factory, tiny_vae, images):
    """(likelihood, model, export dir, export.json) with all four variants."""
    model = tiny_vae(request.param)
    x = images()
    if request.param == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    folder = tmp_path_factory.mktemp(request.param) / "export"
    description = export.export_model(model, folder, x, quantizations=export.QUANTIZATIONS)
    return request.param, model, folder, description


# A smaller Bernoulli VAE (8 hidden units), for test_evaluation.py and test_reports.py.


def _small_bernoulli_vae() -> tfvae.VAE:
    model = tfvae.VAE(
        tfvae.gaussian_mlp_encoder(2, (8,)), tfvae.bernoulli_mlp_decoder((3, 5), (8,))
    )
    model.build((None, 3, 5))
    return model


@pytest.fixture(scope="session")
def small_bernoulli_vae():
    """Factory `() -> VAE`: latent 2, 8 hidden units, Bernoulli p(x|z) over 3 x 5 images."""
    return _small_bernoulli_vae
