"""Datasets: Frey Face, MNIST, binarized MNIST and tensorflow-datasets images.

`load_arrays` reads a dataset into numpy arrays of shape [N, *event_shape],
float32 in [0, 1]; `load` turns them into the batches of `fit()` (see
`tfvae.pipelines`) from a `DataConfig`.

Raw files are found, downloaded and parsed by `tfvae.data_files`; the data are
checked by `tfvae.data_checks` (both re-exported here).

Splits:
    frey_face: 1965 frames of 28x20 from one video, no labels and no official
        split. Neighbouring frames are near copies, so a test frame next to a
        training frame measures interpolation, not generalisation. The test
        set is contiguous blocks: in every period of 200 frames, the last 20
        (frames 180-199, 380-399, ..., 1780-1799); the 10 frames on each side
        of a test block are used by neither split. That gives 180 test and
        1605 training frames (180 left out), and test blocks spread over the
        whole video, so most expressions are seen in training.
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
import difflib
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfvae.config import DataConfig
from tfvae.data_checks import check_finite, check_support
from tfvae.data_files import (
    DATA_DIR_ENV,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    DataNotFoundError,
    find_file,
    read_amat,
    read_frey_mat,
    read_idx,
)
from tfvae.pipelines import EpochBatches, make_pipeline

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DataNotFoundError",
    "ArraySplits",
    "DataSplits",
    "check_finite",
    "check_support",
    "find_file",
    "read_amat",
    "read_frey_mat",
    "read_idx",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "load_arrays",
    "load",
    "frey_face_split",
    "as_scored",
    "fixed_binarization",
]

DATASETS = ("frey_face", "mnist", "binarized_mnist", "tfds:<name>")
# Fixed, not the run's seed: every run is then scored on the same binary test set.
TEST_BINARIZATION_SEED = 0
_BINARIZED_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}


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
            per the config; the last partial batch is dropped. Epoch e's order
            and binarization are functions of (seed, e); see `train_epochs`.
        test: Unshuffled batches, all examples; binarized once (with
            `TEST_BINARIZATION_SEED`) under dynamic binarization.
        validation: The `validation_size` held-out training examples (a
            random subset, the same for every run), batched and binarized as
            `test`; `None` without a validation set.
        train_epochs: The `EpochBatches` behind `train`: pass
            `train_epochs.callback()` to `fit` so that a resumed fit
            (`initial_epoch=e`) starts at epoch e's batches.
        arrays: The unbinarized arrays, training arrays cut to `limit`.
        event_shape: Shape of one datapoint x.
        num_train: Number of training examples.
        num_test: Number of test examples.
        num_classes: 1 + the largest label, or None without labels.
        num_validation: Number of validation examples (0: none).
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    arrays: ArraySplits
    event_shape: tuple[int, ...]
    num_train: int
    num_test: int
    train_epochs: EpochBatches
    num_classes: int | None = None
    validation: tf.data.Dataset | None = None
    num_validation: int = 0

    @property
    def monitored(self) -> tf.data.Dataset:
        """What `fit` reports as val_: the validation set if there is one, else the test set."""
        return self.test if self.validation is None else self.validation


def load_arrays(dataset: str, data_dir: str | None = None) -> ArraySplits:
    """Reads `dataset` (one of `DATASETS`) into float32 arrays in [0, 1].

    Raises:
        ValueError: Unknown dataset name, a corrupt file or an empty split.
        DataNotFoundError: A file is missing and cannot be downloaded.
    """
    if dataset.startswith("tfds:") and dataset != "tfds:":
        return _load_tfds(dataset.removeprefix("tfds:"), data_dir)
    loaders = {
        "frey_face": _load_frey_face,
        "mnist": _load_mnist,
        "binarized_mnist": _load_binarized_mnist,
    }
    if dataset not in loaders:
        raise ValueError(
            f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}." + _tfds_hint(dataset)
        )
    return loaders[dataset](data_dir)


def _tfds_hint(dataset: str) -> str:
    """Points a bare tensorflow-datasets name (`cifar10`) to its `tfds:` spelling."""
    if dataset in tfds.list_builders(with_community_datasets=False):
        return f" {dataset!r} is a tensorflow-datasets name: pass --dataset tfds:{dataset}."
    return " tfds:<name> is any tensorflow-datasets image set, e.g. tfds:fashion_mnist."


def _load_frey_face(data_dir: str | None) -> ArraySplits:
    frames = read_frey_mat(find_file("frey_rawface.mat", data_dir))
    x = frames.reshape(-1, 28, 20).astype(np.float32) / 255
    train, test = frey_face_split(len(x))
    return ArraySplits(x_train=x[train], x_test=x[test])


FREY_FACE_PERIOD, FREY_FACE_TEST_BLOCK, FREY_FACE_GAP = 200, 20, 10


def frey_face_split(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test frames (see the module docstring).

    Returns:
        (train `[1605]`, test `[180]`) int indices for the 1965 frames, in video
        order; the gap frames around each test block are in neither.
    """
    frame = np.arange(num_frames)
    position = frame % FREY_FACE_PERIOD
    test_start = FREY_FACE_PERIOD - FREY_FACE_TEST_BLOCK
    is_test = position >= test_start
    # A gap before each test block, and after it (at the start of the next period).
    is_gap = ((position >= test_start - FREY_FACE_GAP) & ~is_test) | (
        (position < FREY_FACE_GAP) & (frame >= FREY_FACE_PERIOD)
    )
    return np.flatnonzero(~is_test & ~is_gap), np.flatnonzero(is_test)


def _load_mnist(data_dir: str | None) -> ArraySplits:
    def read(prefix):
        images = read_idx(
            find_file(f"{prefix}-images-idx3-ubyte.gz", data_dir), IDX_IMAGES_MAGIC, (28, 28)
        )
        labels = read_idx(
            find_file(f"{prefix}-labels-idx1-ubyte.gz", data_dir), IDX_LABELS_MAGIC, ()
        )
        if len(images) != len(labels):
            raise ValueError(
                f"MNIST {prefix}: {len(images)} images but {len(labels)} "
                f"labels; expected one label per image. Download both "
                f"{prefix} files again."
            )
        return images.astype(np.float32) / 255, labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = read("train"), read("t10k")
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _load_binarized_mnist(data_dir: str | None) -> ArraySplits:
    def read(split):
        x = read_amat(find_file(f"binarized_mnist/binarized_mnist_{split}.amat", data_dir))
        if len(x) != _BINARIZED_SIZES[split]:
            raise ValueError(
                f"binarized_mnist_{split}.amat: {len(x):,} images, "
                f"expected {_BINARIZED_SIZES[split]:,}: the file is "
                f"truncated. Download it again."
            )
        return x.astype(np.float32)

    return ArraySplits(x_train=read("train"), x_valid=read("valid"), x_test=read("test"))


def _load_tfds(name: str, data_dir: str | None) -> ArraySplits:
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    try:
        train, test = tfds.load(name, split=["train", "test"], data_dir=folder)
    except tfds.core.DatasetNotFoundError:
        raise _unknown_tfds_name(name) from None  # tfds' message lists all ~450 names.
    except Exception as error:  # Offline, preparing fails in many ways (network, extras).
        raise DataNotFoundError(
            f"tensorflow-datasets {name!r} is not prepared in "
            f"{folder or 'the tfds default folder'} and preparing it failed "
            f"({type(error).__name__}: {error}). On a machine with network run "
            f"`tfds build {name} --data_dir <folder>`, copy <folder> here and pass "
            f"--data-dir <folder> or set {DATA_DIR_ENV}=<folder>."
        ) from error
    x_train, y_train = _tfds_arrays(train, f"tfds:{name} train")
    x_test, y_test = _tfds_arrays(test, f"tfds:{name} test")
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _unknown_tfds_name(name: str) -> ValueError:
    # Community datasets would need the network to list.
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(name, known, n=5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return ValueError(
        f"tensorflow-datasets has no dataset {name!r}.{hint} "
        f"`tfds.list_builders()` lists all {len(known)}; pass "
        f"--dataset tfds:<name>."
    )


def _tfds_arrays(split: tf.data.Dataset, description: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Image features [N, H, W(, C)] -> (float32 [N, H, W(, C > 1)], labels or None).

    Raises:
        ValueError: The split is empty or infinite, or has no integer `image`.
    """
    size = int(split.cardinality())
    if size == tf.data.UNKNOWN_CARDINALITY:
        size = int(split.reduce(0, lambda count, _: count + 1))
    if size <= 0:
        raise ValueError(
            f"{description} has {'no' if size == 0 else 'endless'} "
            f"examples; expected a finite, non-empty split. Rebuild it "
            f"(`tfds build`) or choose another dataset."
        )
    # One batch of the whole split. tfds' own batch_size=-1 aborts the process
    # under tfds.testing.mock_data: with no split sizes it batches by sys.maxsize.
    features = tfds.as_numpy(split.batch(size).get_single_element())
    if "image" not in features:
        raise ValueError(
            f"{description} has no 'image' feature (found: "
            f"{', '.join(sorted(features))}): only image sets are supported."
        )
    images = features["image"]
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"{description}: expected integer pixels, got {images.dtype}.")
    x = images.astype(np.float32) / np.iinfo(images.dtype).max
    if x.shape[-1] == 1:  # Grey images: match the IDX loader's (28, 28).
        x = x[..., 0]
    labels = features.get("label")
    return x, None if labels is None else labels.astype(np.int64)


def fixed_binarization(x: np.ndarray, seed: int) -> np.ndarray:
    """Draws x_bin ~ Bernoulli(x) once, reproducibly: float32 of x's shape."""
    u = np.random.default_rng(seed).random(x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


# Picks the validation subset: the same examples for every run and training seed.
VALIDATION_SEED = 20180101


def as_scored(x: np.ndarray, binarization: str) -> np.ndarray:
    """x `[N, *event]` as evaluation sees it: under dynamic binarization, binarized
    once with `TEST_BINARIZATION_SEED`, so every run is scored on the same data."""
    return fixed_binarization(x, TEST_BINARIZATION_SEED) if binarization == "dynamic" else x


def load(config: DataConfig, seed: int = 0, *, labels: bool = False) -> DataSplits:
    """Loads `config.dataset` and builds its train and test pipelines.

    Args:
        config: Dataset, folder, batch size, binarization and `limit` (the
            first `limit` training examples are kept).
        seed: Seeds the training order and dynamic binarization.
        labels: Yield (x, y) pairs, y int32 `[batch_size]`: a conditional
            VAE's input.

    Returns:
        `DataSplits` whose pipelines yield float32 [batch_size, *event_shape]
        (with `labels`, pairs with the labels).

    Raises:
        ValueError: A split holds NaN or inf, is empty, or is smaller than
            the batch; labels asked of a dataset without; and as `load_arrays`.
    """
    arrays = load_arrays(config.dataset, config.data_dir)
    if labels and (arrays.y_train is None or arrays.y_test is None):
        raise ValueError(
            f"{config.dataset} has no labels, so a conditional VAE cannot "
            "train on it: drop --conditional, or use mnist or a labelled "
            "tfds:<name> dataset."
        )
    for split in ("train", "test"):
        check_finite(getattr(arrays, f"x_{split}"), f"{config.dataset} {split} images")
    if config.limit is not None:
        arrays = dataclasses.replace(
            arrays,
            x_train=arrays.x_train[: config.limit],
            y_train=None if arrays.y_train is None else arrays.y_train[: config.limit],
        )
    arrays, validation = _hold_out(arrays, config, labels)
    x_test = as_scored(arrays.x_test, config.binarization)
    train = EpochBatches(
        arrays.x_train,
        config.batch_size,
        binarization=config.binarization,
        seed=seed,
        labels=arrays.y_train if labels else None,
    )
    return DataSplits(
        train=train.dataset,
        test=make_pipeline(x_test, config.batch_size, labels=arrays.y_test if labels else None),
        arrays=arrays,
        event_shape=tuple(arrays.x_train.shape[1:]),
        num_train=len(arrays.x_train),
        num_test=len(x_test),
        train_epochs=train,
        num_classes=None if arrays.y_train is None else int(arrays.y_train.max()) + 1,
        validation=validation,
        num_validation=config.validation_size,
    )


def _hold_out(
    arrays: ArraySplits, config: DataConfig, labels: bool
) -> tuple[ArraySplits, tf.data.Dataset | None]:
    """Splits `config.validation_size` training examples off as a validation
    pipeline (binarized once, as the test set): drawn with `VALIDATION_SEED`,
    or in blocks whose gaps leave training (`validation_blocks`); the rest stay
    in order."""
    size = config.validation_size
    if not size:
        return arrays, None
    num_examples = len(arrays.x_train)
    if size + config.batch_size > num_examples:
        raise ValueError(
            f"validation_size={size} leaves {num_examples - size} of the "
            f"{num_examples} training examples, fewer than one batch of "
            f"{config.batch_size}: hold out fewer."
        )
    if config.validation_split == "blocks":
        held, dropped = validation_blocks(num_examples, size)
    else:
        held, dropped = np.zeros(num_examples, bool), np.zeros(num_examples, bool)
        held[np.random.default_rng(VALIDATION_SEED).permutation(num_examples)[:size]] = True
    train = ~held & ~dropped
    if train.sum() < config.batch_size:
        raise ValueError(
            f"validation_size={size} in blocks with their gaps leaves {train.sum()} of "
            f"the {num_examples} training examples, fewer than one batch of "
            f"{config.batch_size}: hold out fewer."
        )
    y_train = arrays.y_train
    validation = make_pipeline(
        as_scored(arrays.x_train[held], config.binarization),
        config.batch_size,
        labels=y_train[held] if labels else None,
    )
    kept = dataclasses.replace(
        arrays,
        x_train=arrays.x_train[train],
        y_train=None if y_train is None else y_train[train],
    )
    return kept, validation


def validation_blocks(num_examples: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks `[num_examples]` of the validation blocks and of the gaps around them.

    `size` / 20 blocks of 20 consecutive examples (Frey Face's test block),
    centred in equal stretches of the set; the 10 examples on either side of
    each block (its gap) are dropped from training.

    Raises:
        ValueError: `size` is not a multiple of 20, or the blocks and their gaps
            do not fit apart in the set.
    """
    block, gap = FREY_FACE_TEST_BLOCK, FREY_FACE_GAP
    if size % block:
        raise ValueError(
            f"validation_size={size} is not a whole number of blocks of {block}: "
            f"choose a multiple of {block} with validation_split='blocks'."
        )
    count, stretch = size // block, num_examples / (size // block)
    if stretch < block + 2 * gap:
        raise ValueError(
            f"{count} validation blocks of {block} with gaps of {gap} do not fit in "
            f"{num_examples} examples: hold out fewer."
        )
    held, near = np.zeros(num_examples, bool), np.zeros(num_examples, bool)
    for i in range(count):
        start = int(round((i + 0.5) * stretch)) - block // 2
        held[start : start + block] = True
        near[max(start - gap, 0) : start + block + gap] = True
    return held, near & ~held
