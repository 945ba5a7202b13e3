"""Datasets: Frey Face, MNIST, binarized MNIST and tensorflow-datasets images.

`load_arrays` reads a dataset into numpy arrays of shape [N, *event_shape],
float32 in [0, 1]; `make_pipeline` turns one array into batches for `fit()`;
`load` does both from a `DataConfig`.

Raw files are looked up in `data_dir`, else in `$TFVAE_DATA_DIR`, else fetched
into the Keras cache from their canonical URL. Every file must match the sha256
of its canonical download (hashing all of binarized MNIST takes 0.15 s), so a
truncated or different copy fails loudly; the parsers also check sizes and formats.

Splits:
    frey_face: 1965 frames of 28x20, no labels and no official split. Frame i
        is a test image when i % 10 == 9 (196 test, 1769 train). The file is a
        video, so a contiguous split would hold out whole expressions;
        interleaving keeps every expression in both splits.
    mnist: the official 60k/10k IDX files, grey values / 255, with labels.
    binarized_mnist: the fixed binarization of Salakhutdinov & Murray (2008)
        in Larochelle's 50k/10k/10k files, no labels; valid is kept apart.
    tfds:<name>: the "train" and "test" splits of a tensorflow-datasets image
        set, integer pixels scaled to [0, 1], a channel axis of size 1 dropped,
        labels kept. The same data folder serves as the tfds `data_dir`.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Salakhutdinov & Murray (2008). On the Quantitative Analysis of Deep
        Belief Networks. ICML.
    Larochelle & Murray (2011). The Neural Autoregressive Distribution
        Estimator. AISTATS.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path, PurePosixPath

import keras
import numpy as np
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from tfvae.config import BINARIZATIONS, DataConfig

DATA_DIR_ENV = "TFVAE_DATA_DIR"
DATASETS = ("frey_face", "mnist", "binarized_mnist", "tfds:<name>")
# Fixed, not the run's seed: every run is then scored on the same binary test set.
TEST_BINARIZATION_SEED = 0
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_CACHE_SUBDIR = "datasets/tfvae"
_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_BINARIZED_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
# Path inside a data folder -> (canonical URL, sha256 of the file).
_SOURCES = {
    "frey_rawface.mat": (
        "https://cs.nyu.edu/~roweis/data/frey_rawface.mat",
        "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64"),
    **{name: (_MNIST_URL + name, sha256) for name, sha256 in {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }.items()},
    **{f"binarized_mnist/binarized_mnist_{split}.amat":
       (f"{_BINARIZED_URL}binarized_mnist_{split}.amat", sha256)
       for split, sha256 in {
        "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
        "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
        "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
    }.items()},
}


class DataNotFoundError(FileNotFoundError):
    """A data file is neither on disk nor downloadable."""


# eq=False: numpy arrays have no single truth value, so field-wise == fails.
@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplits:
    """A dataset in memory: x float32 [N, *event_shape] in [0, 1], y int64 [N]."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class DataSplits:
    """Batched pipelines and the arrays behind them.

    Attributes:
        train: Shuffled float32 batches [batch_size, *event_shape], binarized
            per the config; the last partial batch is dropped.
        test: Unshuffled batches, all examples; binarized once (with
            `TEST_BINARIZATION_SEED`) under dynamic binarization.
        arrays: The unbinarized arrays, training arrays cut to `limit`.
        event_shape: Shape of one datapoint x.
        num_train: Number of training examples.
        num_test: Number of test examples.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    arrays: ArraySplits
    event_shape: tuple[int, ...]
    num_train: int
    num_test: int


def download_file(relative_path: str, url: str, sha256: str) -> Path:
    """Fetches `url` into the Keras cache (or reuses a cached copy), checking sha256.

    The only function here that touches the network, so tests replace it.
    """
    subdir = PurePosixPath(_CACHE_SUBDIR, PurePosixPath(relative_path).parent)
    return Path(keras.utils.get_file(PurePosixPath(relative_path).name, url,
                                     file_hash=sha256, cache_subdir=str(subdir)))


def find_file(relative_path: str, data_dir: str | None = None) -> Path:
    """Returns the path of a raw data file, e.g. `binarized_mnist/binarized_mnist_test.amat`.

    Looks in `data_dir`, else `$TFVAE_DATA_DIR`, then downloads.

    Raises:
        DataNotFoundError: The file is absent and the download failed.
        ValueError: The local file is not the canonical one (sha256 differs).
    """
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    url, sha256 = _SOURCES[relative_path]
    if folder and (Path(folder) / relative_path).is_file():
        path = Path(folder) / relative_path
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != sha256:
            raise ValueError(f"{path} has sha256 {found}, but the canonical file "
                             f"({url}) has {sha256}: replace it with that download.")
        return path
    try:
        return download_file(relative_path, url, sha256)
    except Exception as error:  # get_file raises bare Exceptions for network errors.
        searched = ([str(folder)] if folder else []) + [
            f"the Keras cache ({_CACHE_SUBDIR} under KERAS_HOME, default ~/.keras)"]
        raise DataNotFoundError(
            f"Data file {relative_path!r} was not found in {' or '.join(searched)}, "
            f"and downloading it from {url} failed ({error}). Put the file in a "
            f"folder (as <folder>/{relative_path}) and pass --data-dir <folder> "
            f"or set {DATA_DIR_ENV}=<folder>.") from error


def read_idx(path: str | Path, magic: int, dims: tuple[int, ...]) -> np.ndarray:
    """Reads a gzipped IDX file of uint8 values (the MNIST format).

    Args:
        path: The `.gz` file.
        magic: `IDX_IMAGES_MAGIC` (2051) or `IDX_LABELS_MAGIC` (2049).
        dims: Expected shape of one item: (28, 28) for images, () for labels.

    Returns:
        uint8 array [N, *dims].

    Raises:
        ValueError: The file is not such an IDX file, or is truncated.
    """
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable gzip file: {error}") from error
    header_bytes = 4 * (2 + len(dims))  # Magic, N, then one int per item axis.
    # Zero-padding a truncated header makes it fail the checks below, not crash.
    header = np.frombuffer(data[:header_bytes].ljust(header_bytes, b"\0"), ">u4").tolist()
    found_magic, shape = header[0], tuple(header[1:])
    if (found_magic != magic or shape[1:] != dims
            or len(data) != header_bytes + int(np.prod(shape))):
        raise ValueError(
            f"{path} is not a valid IDX file: expected magic {magic} and shape "
            f"(N, {', '.join(map(str, dims))}), found magic {found_magic}, shape "
            f"{shape} and {len(data)} bytes.")
    return np.frombuffer(data, np.uint8, offset=header_bytes).reshape(shape)


def read_amat(path: str | Path) -> np.ndarray:
    """Reads a binarized MNIST `.amat` file: lines of 784 space-separated 0/1.

    Returns:
        uint8 array [N, 28, 28] of 0 and 1.

    Raises:
        ValueError: Lines are not 784 single-digit values, or a value is not 0/1.
    """
    data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    # 784 digits, 783 spaces and a newline: the digits sit at the even offsets.
    line_bytes = 2 * 28 * 28
    if data.size % line_bytes:
        raise ValueError(f"{path}: {data.size} bytes is not a whole number of "
                         f"{line_bytes}-byte lines of 784 values.")
    separators = data[1::2].reshape(-1, 28 * 28)
    if np.any(separators[:, :-1] != ord(" ")) or np.any(separators[:, -1] != ord("\n")):
        raise ValueError(f"{path}: lines are not 784 single-space-separated values.")
    pixels = data[0::2] - np.uint8(ord("0"))  # Other characters wrap above 1.
    if pixels.size and pixels.max() > 1:
        raise ValueError(f"{path}: values other than 0 and 1.")
    return pixels.reshape(-1, 28, 28)


def load_arrays(dataset: str, data_dir: str | None = None) -> ArraySplits:
    """Reads `dataset` (one of `DATASETS`) into float32 arrays in [0, 1].

    Raises:
        ValueError: Unknown dataset name, or a corrupt file.
        DataNotFoundError: A file is missing and cannot be downloaded.
    """
    if dataset.startswith("tfds:"):
        return _load_tfds(dataset.removeprefix("tfds:"), data_dir)
    loaders = {"frey_face": _load_frey_face, "mnist": _load_mnist,
               "binarized_mnist": _load_binarized_mnist}
    if dataset not in loaders:
        raise ValueError(f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}.")
    return loaders[dataset](data_dir)


def _load_frey_face(data_dir: str | None) -> ArraySplits:
    faces = scipy.io.loadmat(find_file("frey_rawface.mat", data_dir))["ff"]
    if faces.shape != (28 * 20, 1965):
        raise ValueError(f"frey_rawface.mat: ff has shape {faces.shape}, not (560, 1965).")
    x = faces.T.reshape(-1, 28, 20).astype(np.float32) / 255
    is_test = np.arange(len(x)) % 10 == 9
    return ArraySplits(x_train=x[~is_test], x_test=x[is_test])


def _load_mnist(data_dir: str | None) -> ArraySplits:
    def read(prefix):
        images = read_idx(find_file(f"{prefix}-images-idx3-ubyte.gz", data_dir),
                          IDX_IMAGES_MAGIC, (28, 28))
        labels = read_idx(find_file(f"{prefix}-labels-idx1-ubyte.gz", data_dir),
                          IDX_LABELS_MAGIC, ())
        if len(images) != len(labels):
            raise ValueError(f"MNIST {prefix}: {len(images)} images, {len(labels)} labels.")
        return images.astype(np.float32) / 255, labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = read("train"), read("t10k")
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _load_binarized_mnist(data_dir: str | None) -> ArraySplits:
    def read(split):
        x = read_amat(find_file(f"binarized_mnist/binarized_mnist_{split}.amat", data_dir))
        if len(x) != _BINARIZED_SIZES[split]:
            raise ValueError(f"binarized_mnist_{split}.amat: {len(x)} images, "
                             f"expected {_BINARIZED_SIZES[split]}.")
        return x.astype(np.float32)

    return ArraySplits(x_train=read("train"), x_valid=read("valid"), x_test=read("test"))


def _load_tfds(name: str, data_dir: str | None) -> ArraySplits:
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    try:
        train, test = tfds.load(name, split=["train", "test"], data_dir=folder)
    except tfds.core.DatasetNotFoundError:
        raise
    except Exception as error:  # Offline, preparing fails in many ways (network, extras).
        raise DataNotFoundError(
            f"tensorflow-datasets {name!r} is not prepared in "
            f"{folder or 'the tfds default folder'} and preparing it failed "
            f"({type(error).__name__}: {error}). On a machine with network run "
            f"`tfds build {name} --data_dir <folder>`, copy <folder> here and pass "
            f"--data-dir <folder> or set {DATA_DIR_ENV}=<folder>.") from error
    (x_train, y_train), (x_test, y_test) = map(_tfds_arrays, (train, test))
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _tfds_arrays(split: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Image features [N, H, W(, C)] -> (float32 [N, H, W(, C > 1)], labels or None)."""
    # One batch of the whole split. tfds' own batch_size=-1 aborts the process
    # under tfds.testing.mock_data: with no split sizes it batches by sys.maxsize.
    features = tfds.as_numpy(split.batch(int(split.cardinality())).get_single_element())
    images = features["image"]
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"Expected integer pixels, got {images.dtype}.")
    x = images.astype(np.float32) / np.iinfo(images.dtype).max
    if x.shape[-1] == 1:  # Grey images: match the IDX loader's (28, 28).
        x = x[..., 0]
    labels = features.get("label")
    return x, None if labels is None else labels.astype(np.int64)


def fixed_binarization(x: np.ndarray, seed: int) -> np.ndarray:
    """Draws x_bin ~ Bernoulli(x) once, reproducibly: float32 of x's shape."""
    u = np.random.default_rng(seed).random(x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def as_scored(x: np.ndarray, binarization: str) -> np.ndarray:
    """x `[N, *event]` as evaluation sees it: under dynamic binarization, binarized
    once with `TEST_BINARIZATION_SEED`, so every run is scored on the same data."""
    return fixed_binarization(x, TEST_BINARIZATION_SEED) if binarization == "dynamic" else x


def make_pipeline(x: np.ndarray, batch_size: int, *, shuffle: bool,
                  binarization: str = "none", seed: int = 0,
                  drop_remainder: bool = True) -> tf.data.Dataset:
    """Batches x [N, *event_shape] into float32 [batch_size, *event_shape].

    Args:
        x: Intensities in [0, 1].
        batch_size: Minibatch size M.
        shuffle: Reshuffle every epoch (seeded).
        binarization: `dynamic` draws each x ~ Bernoulli(intensity) afresh every
            epoch, reproducibly from `seed`; `none` keeps intensities.
        seed: Seeds the order and the binarization.
        drop_remainder: Drop the last batch if smaller than `batch_size`.

    Raises:
        ValueError: Unknown binarization, or fewer than `batch_size` examples
            with `drop_remainder` (the pipeline would be empty).
    """
    if binarization not in BINARIZATIONS:
        raise ValueError(f"binarization={binarization!r} is not one of {BINARIZATIONS}.")
    if drop_remainder and len(x) < batch_size:
        raise ValueError(f"{len(x)} examples are fewer than batch_size={batch_size}: "
                         "with drop_remainder the pipeline would yield no batch.")
    dataset = tf.data.Dataset.from_tensor_slices(np.asarray(x, np.float32)).cache()
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if binarization == "dynamic":
        # A fresh seed pair per element, new each epoch, same for the same `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            _bernoulli, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _bernoulli(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    u = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    return tf.cast(u < x, tf.float32)


def load(config: DataConfig, seed: int = 0) -> DataSplits:
    """Loads `config.dataset` and builds its train and test pipelines.

    Args:
        config: Dataset, folder, batch size, binarization and `limit` (the
            first `limit` training examples are kept).
        seed: Seeds the training order and dynamic binarization.

    Returns:
        `DataSplits` whose pipelines yield float32 [batch_size, *event_shape].
    """
    arrays = load_arrays(config.dataset, config.data_dir)
    if config.limit is not None:
        arrays = dataclasses.replace(
            arrays, x_train=arrays.x_train[:config.limit],
            y_train=None if arrays.y_train is None else arrays.y_train[:config.limit])
    x_test = as_scored(arrays.x_test, config.binarization)
    return DataSplits(
        train=make_pipeline(arrays.x_train, config.batch_size, shuffle=True,
                            binarization=config.binarization, seed=seed),
        test=make_pipeline(x_test, config.batch_size, shuffle=False,
                           drop_remainder=False),
        arrays=arrays,
        event_shape=tuple(arrays.x_train.shape[1:]),
        num_train=len(arrays.x_train),
        num_test=len(x_test))
