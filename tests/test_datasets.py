"""Tests for tfvae.datasets on the real files and on small synthetic arrays."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from tfvae import datasets
from tfvae.config import DataConfig

# Class counts 0..9 from the data README.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def offline(monkeypatch):
    """Makes every download fail; returns the list of URLs attempted."""
    attempts = []

    def fail(relative_path, url, sha256):
        attempts.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "download_file", fail)
    return attempts


def epoch(dataset) -> np.ndarray:
    return np.concatenate([batch.numpy() for batch in dataset])


def test_frey_face_split(data_dir):
    arrays = datasets.load_arrays("frey_face", data_dir)
    assert arrays.x_train.shape == (1769, 28, 20)
    assert arrays.x_test.shape == (196, 28, 20)
    assert arrays.x_train.dtype == arrays.x_test.dtype == np.float32
    assert arrays.y_train is arrays.y_test is arrays.x_valid is None
    x = np.concatenate([arrays.x_train, arrays.x_test])
    # Pixel range 8..238 and mean 154.4609 are stated in the data README.
    assert x.min() == pytest.approx(8 / 255) and x.max() == pytest.approx(238 / 255)
    assert x.mean() == pytest.approx(154.4609 / 255, abs=1e-4)
    frames = scipy.io.loadmat(Path(data_dir) / "frey_rawface.mat")["ff"].T
    np.testing.assert_array_equal(arrays.x_test[1] * 255, frames[19].reshape(28, 20))
    np.testing.assert_array_equal(arrays.x_train[9] * 255, frames[10].reshape(28, 20))
    train_images = {image.tobytes() for image in arrays.x_train}
    assert not train_images & {image.tobytes() for image in arrays.x_test}


def test_mnist(data_dir):
    arrays = datasets.load_arrays("mnist", data_dir)
    assert arrays.x_train.shape == (60000, 28, 28)
    assert arrays.x_test.shape == (10000, 28, 28)
    assert arrays.x_train.dtype == np.float32
    assert arrays.x_train.min() == 0 and arrays.x_train.max() == 1
    assert np.bincount(arrays.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(arrays.y_test).tolist() == MNIST_TEST_COUNTS
    assert arrays.x_valid is None


def test_binarized_mnist(data_dir):
    arrays = datasets.load_arrays("binarized_mnist", data_dir)
    assert arrays.x_train.shape == (50000, 28, 28)
    assert arrays.x_valid.shape == arrays.x_test.shape == (10000, 28, 28)
    for x in (arrays.x_train, arrays.x_valid, arrays.x_test):
        assert x.dtype == np.float32
        assert np.unique(x).tolist() == [0, 1]
        assert 0.12 < x.mean() < 0.14  # About MNIST's mean grey value, 0.13.
    assert arrays.y_train is arrays.y_test is None


def test_read_amat_matches_text_parser(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    path = tmp_path / "small.amat"
    np.savetxt(path, pixels, fmt="%d")
    np.testing.assert_array_equal(datasets.read_amat(path), pixels.reshape(3, 28, 28))


@pytest.mark.parametrize("text, message", [
    ("0 1 2" + " 0" * 781 + "\n", "other than 0 and 1"),
    ("10" + " 0" * 782 + " \n", "784 single-space"),  # Right length, a 2-digit value.
    ("0 1\n", "whole number"),
])
def test_read_amat_rejects_corrupt_file(tmp_path, text, message):
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        datasets.read_amat(path)


@pytest.mark.parametrize("content", [
    gzip.compress((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2)),
    gzip.compress((2051).to_bytes(4, "big") + bytes(8)),  # Truncated header.
    gzip.compress((2051).to_bytes(4, "big") + (2).to_bytes(4, "big")
                  + (28).to_bytes(4, "big") * 2 + bytes(784)),  # Second image missing.
    b"not a gzip file",
])
def test_read_idx_rejects_corrupt_file(tmp_path, content):
    path = tmp_path / "images.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        datasets.read_idx(path, datasets.IDX_IMAGES_MAGIC, (28, 28))


def test_make_pipeline_batch_shapes():
    x = np.random.default_rng(0).random((23, 5, 3), dtype=np.float32)
    kept = datasets.make_pipeline(x, 4, shuffle=False)
    assert kept.element_spec.shape == (4, 5, 3)
    assert [tuple(b.shape) for b in kept] == [(4, 5, 3)] * 5
    every = datasets.make_pipeline(x, 4, shuffle=False, drop_remainder=False)
    assert [len(b) for b in every] == [4] * 5 + [3]
    np.testing.assert_array_equal(epoch(every), x)


def test_make_pipeline_shuffles_each_epoch_reproducibly():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    dataset = datasets.make_pipeline(x, 5, shuffle=True, seed=1)
    first, second = epoch(dataset), epoch(dataset)
    assert sorted(first[:, 0]) == sorted(x[:, 0]) == sorted(second[:, 0])
    assert not np.array_equal(first, x) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch(datasets.make_pipeline(x, 5, shuffle=True, seed=1)),
                                  first)


def test_dynamic_binarization():
    x = np.random.default_rng(0).random((300, 7, 6), dtype=np.float32)

    def pipeline(seed):
        return datasets.make_pipeline(x, 50, shuffle=False, binarization="dynamic",
                                      seed=seed)

    dataset = pipeline(seed=3)
    first, second = epoch(dataset), epoch(dataset)
    assert np.unique(first).tolist() == [0, 1]
    assert first.mean() == pytest.approx(x.mean(), abs=0.02)
    # Bernoulli(x): bright pixels are mostly on, dark ones mostly off.
    assert first[x > 0.9].mean() > 0.85 and first[x < 0.1].mean() < 0.15
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch(pipeline(seed=3)), first)
    assert not np.array_equal(epoch(pipeline(seed=4)), first)


def test_make_pipeline_rejects_batch_larger_than_data():
    x = np.zeros((7, 2), np.float32)
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        datasets.make_pipeline(x, 8, shuffle=True)
    assert [len(b) for b in datasets.make_pipeline(x, 8, shuffle=True,
                                                   drop_remainder=False)] == [7]


def test_missing_file_names_file_folder_and_url(tmp_path, monkeypatch, offline):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    with pytest.raises(datasets.DataNotFoundError) as info:
        datasets.load_arrays("frey_face", str(tmp_path))
    url = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
    assert offline == [url]
    message = str(info.value)
    for part in ("frey_rawface.mat", str(tmp_path), url, "--data-dir",
                 datasets.DATA_DIR_ENV, "network unreachable"):
        assert part in message
    assert isinstance(info.value, FileNotFoundError)


def test_local_file_with_wrong_sha256_is_rejected(tmp_path, offline):
    (tmp_path / "frey_rawface.mat").write_bytes(b"not the Frey Face file")
    with pytest.raises(ValueError, match="frey_rawface.mat has sha256"):
        datasets.load_arrays("frey_face", str(tmp_path))
    assert offline == []


def test_data_dir_defaults_to_environment(data_dir, monkeypatch, offline):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, data_dir)
    assert datasets.load_arrays("frey_face").x_test.shape == (196, 28, 20)
    assert offline == []


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="frey_face, mnist, binarized_mnist, tfds:<name>"):
        datasets.load_arrays("cifar")


def test_tfds_mnist_matches_idx_layout(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        arrays = datasets.load_arrays("tfds:mnist", str(tmp_path))
    for x, y in ((arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test)):
        assert x.shape == (6, 28, 28) and x.dtype == np.float32
        assert 0 <= x.min() and 0 < x.max() <= 1
        assert y.shape == (6,) and set(y) <= set(range(10))


def test_load_frey_face(data_dir):
    splits = datasets.load(DataConfig(dataset="frey_face", limit=300, batch_size=50,
                                      data_dir=data_dir))
    assert (splits.num_train, splits.num_test, splits.event_shape) == (300, 196, (28, 20))
    full = datasets.load_arrays("frey_face", data_dir)
    np.testing.assert_array_equal(splits.arrays.x_train, full.x_train[:300])
    assert [tuple(b.shape) for b in splits.train] == [(50, 28, 20)] * 6
    assert [len(b) for b in splits.test] == [50, 50, 50, 46]
    np.testing.assert_array_equal(epoch(splits.test), full.x_test)
    train = epoch(splits.train)
    assert len(train) == 300  # Frey Face has no duplicate frames, so sets suffice.
    assert {image.tobytes() for image in train} == {
        image.tobytes() for image in splits.arrays.x_train}


def test_load_binarizes_test_set_once(data_dir):
    splits = datasets.load(DataConfig(dataset="frey_face", limit=100, batch_size=20,
                                      binarization="dynamic", data_dir=data_dir), seed=5)
    test = epoch(splits.test)
    np.testing.assert_array_equal(epoch(splits.test), test)
    np.testing.assert_array_equal(test, datasets.fixed_binarization(
        splits.arrays.x_test, datasets.TEST_BINARIZATION_SEED))
    assert test.mean() == pytest.approx(splits.arrays.x_test.mean(), abs=0.01)
    assert np.unique(epoch(splits.train)).tolist() == [0, 1]
