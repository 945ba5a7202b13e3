"""Shared fixtures: the real data folder and tiny training configurations."""

import os
from pathlib import Path

import pytest

from tfvae import datasets


@pytest.fixture(scope="session")
def data_dir() -> str:
    """TFVAE_DATA_DIR, else ../shared/data beside the checkout (as CI lays it)."""
    candidates = [os.environ.get(datasets.DATA_DIR_ENV),
                  Path(__file__).parents[2] / "shared" / "data"]
    for folder in candidates:
        if folder and Path(folder).is_dir():
            return str(folder)
    pytest.skip(f"No data: set {datasets.DATA_DIR_ENV} or provide ../shared/data.")
