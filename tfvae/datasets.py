"""Datasets: Frey Face, MNIST, binarized MNIST and tensorflow-datasets images.

`load_arrays` reads a dataset into numpy arrays of shape [N, *event_shape],
float32 in [0, 1]; `load` turns them into the batches of `fit()` (see
`tfvae.pipelines`) from a `DataConfig`.

Raw files are looked up in `data_dir`, else in `$TFVAE_DATA_DIR`, else fetched
into the Keras cache from their canonical URL. Every file must match the sha256
of its canonical download (hashing all of binarized MNIST takes 0.15 s), so a
truncated or different copy fails loudly; the parsers also check sizes and formats.

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
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from tfvae.config import BINARIZATIONS, LIKELIHOODS, DataConfig
from tfvae.pipelines import EpochBatches, make_pipeline

DATA_DIR_ENV = "TFVAE_DATA_DIR"
DATASETS = ("frey_face", "mnist", "binarized_mnist", "tfds:<name>")
# Fixed, not the run's seed: every run is then scored on the same binary test set.
TEST_BINARIZATION_SEED = 0
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_CACHE_SUBDIR = "datasets/tfvae"
_DOWNLOAD_TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 20
_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_BINARIZED_URL = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_FREY_SHAPE = (28 * 20, 1965)  # `ff` in the .mat file: one 28x20 frame per column.
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
            per the config; the last partial batch is dropped. Epoch e's order
            and binarization are functions of (seed, e); see `train_epochs`.
        test: Unshuffled batches, all examples; binarized once (with
            `TEST_BINARIZATION_SEED`) under dynamic binarization.
        train_epochs: The `EpochBatches` behind `train`: pass
            `train_epochs.callback()` to `fit` so that a resumed fit
            (`initial_epoch=e`) starts at epoch e's batches.
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
    train_epochs: EpochBatches


def cache_dir() -> Path:
    """The download cache: `$KERAS_HOME/datasets/tfvae`, by default `~/.keras/datasets/tfvae`."""
    # Read on every call, not once at import as Keras does, so that a
    # KERAS_HOME set later (by a notebook, a test) is honoured.
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / _CACHE_SUBDIR


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (binarized MNIST's train file is 78 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(relative_path: str, url: str, sha256: str) -> Path:
    """Fetches `url` over HTTPS into `cache_dir()`, or reuses a cached copy.

    The bytes go to a temporary file beside the target and are hashed as they
    are written; only a file with the expected sha256 is renamed into place,
    so an interrupted or wrong download leaves nothing in the cache. The only
    function here that touches the network, so tests replace it.

    Args:
        relative_path: Path inside the cache, e.g. `binarized_mnist/binarized_mnist_test.amat`.
        url: An `https://` URL.
        sha256: Hex sha256 the file must have.

    Returns:
        The path of the verified file.

    Raises:
        ValueError: `url`, or a redirect, is not https, or the bytes have
            another sha256.
        OSError: The download failed (`urllib.error.URLError` is one).
        http.client.HTTPException: The server broke off mid-reply.
    """
    _require_https(url)
    path = cache_dir() / relative_path
    if path.is_file() and file_sha256(path) == sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # In the target's folder, so that os.replace is an atomic rename.
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part",
                                           dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            found = _fetch(url, file)
        if found != sha256:
            raise ValueError(
                f"Downloaded {relative_path} has sha256 {found}, expected {sha256} "
                f"(from {url}): the server sent another or a damaged file, and it "
                f"was not kept. Try again later, or download it by hand, check its "
                f"sha256 and pass --data-dir <folder>.")
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)  # Gone already after os.replace.
    return path


def _fetch(url: str, file: BinaryIO) -> str:
    """Streams `url` into the binary file object `file`; returns the bytes' hex sha256."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response:
        # urllib follows redirects, to plain http too: read no such reply.
        _require_https(response.url)
        while chunk := response.read(_CHUNK_BYTES):
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def _require_https(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme != "https":
        raise ValueError(f"Refusing to download {url}: only https:// URLs are fetched "
                         "(plain http can be altered on the way).")


def find_file(relative_path: str, data_dir: str | None = None) -> Path:
    """Returns the path of a raw data file, e.g. `binarized_mnist/binarized_mnist_test.amat`.

    Looks in `data_dir`, else `$TFVAE_DATA_DIR`, then downloads.

    Raises:
        DataNotFoundError: The file is absent and the download failed.
        ValueError: The local or the downloaded file is not the canonical one
            (its sha256 differs).
    """
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    url, sha256 = _SOURCES[relative_path]
    if folder and (Path(folder) / relative_path).is_file():
        path = Path(folder) / relative_path
        _check_sha256(path, sha256, url)
        return path
    try:
        return download_file(relative_path, url, sha256)
    except (OSError, http.client.HTTPException) as error:  # Offline, refused, cut off.
        raise DataNotFoundError(
            _not_found_message(relative_path, folder, error)) from error


def _check_sha256(path: Path, sha256: str, url: str) -> None:
    found = file_sha256(path)
    if found != sha256:
        raise ValueError(
            f"{path} has sha256 {found} ({path.stat().st_size:,} bytes), but the "
            f"canonical file ({url}) has sha256 {sha256}: this copy is truncated, "
            f"damaged or another file. Replace it with a fresh download of {url}, "
            f"or move it away so that tfvae downloads it.")


def _not_found_message(relative_path: str, folder: str | None, error: Exception) -> str:
    url, sha256 = _SOURCES[relative_path]
    searched = f"in neither {folder} nor {cache_dir()}" if folder else f"not in {cache_dir()}"
    if folder:
        where = (f"put it at {Path(folder) / relative_path} (the folder given by "
                 f"--data-dir or {DATA_DIR_ENV})")
    else:
        where = (f"put it at <folder>/{relative_path} and pass --data-dir <folder> "
                 f"or set {DATA_DIR_ENV}=<folder>")
    return (f"Data file {relative_path!r} is {searched}, and downloading it from "
            f"{url} failed ({type(error).__name__}: {error}). On a machine with "
            f"network, download {url} (sha256 {sha256}) and {where}.")


def read_idx(path: str | Path, magic: int, dims: tuple[int, ...]) -> np.ndarray:
    """Reads a gzipped IDX file of uint8 values (the MNIST format).

    Args:
        path: The `.gz` file.
        magic: `IDX_IMAGES_MAGIC` (2051) or `IDX_LABELS_MAGIC` (2049).
        dims: Expected shape of one item: (28, 28) for images, () for labels.

    Returns:
        uint8 array [N, *dims].

    Raises:
        ValueError: The file is not a whole gzip file, or not such an IDX file.
    """
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    # A cut gzip stream ends in EOFError, damaged bytes in BadGzipFile (an
    # OSError) or zlib.error.
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a readable gzip file ({type(error).__name__}: "
                         f"{error}): it is truncated or damaged. Download it again."
                         ) from error
    header_bytes = 4 * (2 + len(dims))  # Magic, N, then one int per item axis.
    # Zero-padding a truncated header makes it fail the checks below, not crash.
    header = np.frombuffer(data[:header_bytes].ljust(header_bytes, b"\0"), ">u4").tolist()
    found_magic, shape = header[0], tuple(header[1:])
    if (found_magic != magic or shape[1:] != dims
            or len(data) != header_bytes + int(np.prod(shape))):
        raise ValueError(
            f"{path} is not a valid IDX file: expected magic {magic}, shape "
            f"(N, {', '.join(map(str, dims))}) and {header_bytes} + N * "
            f"{int(np.prod(dims))} bytes; found magic {found_magic}, shape {shape} and "
            f"{len(data)} bytes. The file is truncated or not this MNIST file: "
            f"download it again.")
    return np.frombuffer(data, np.uint8, offset=header_bytes).reshape(shape)


def read_amat(path: str | Path) -> np.ndarray:
    """Reads a binarized MNIST `.amat` file: lines of 784 space-separated 0/1.

    Returns:
        uint8 array [N, 28, 28] of 0 and 1.

    Raises:
        ValueError: Lines are not 784 single-digit values, or a value is not 0/1;
            the message names the first bad line.
    """
    data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    # 784 digits, 783 spaces and a newline: the digits sit at the even offsets.
    line_bytes = 2 * 28 * 28
    if data.size % line_bytes:
        raise ValueError(
            f"{path}: {data.size:,} bytes is not a whole number of {line_bytes}-byte "
            f"lines of 784 values (a truncated file ends inside line "
            f"{data.size // line_bytes + 1}): the file is truncated or not a binarized "
            f"MNIST .amat file. Download it again.")
    lines = data.reshape(-1, line_bytes)
    pixels = lines[:, 0::2] - np.uint8(ord("0"))  # Other characters wrap above 1.
    bad_separators = np.any(lines[:, 1:-1:2] != ord(" "), axis=1) | (lines[:, -1] != ord("\n"))
    _raise_at_first_bad_line(path, bad_separators, "is not 784 single-space-separated "
                             "values ending in a newline")
    _raise_at_first_bad_line(path, np.any(pixels > 1, axis=1),
                             "holds values other than 0 and 1")
    return pixels.reshape(-1, 28, 28)


def _raise_at_first_bad_line(path: str | Path, bad: np.ndarray, problem: str) -> None:
    """Raises if any of `bad` (bool [N], one per line) is set, naming the first line."""
    if bad.any():
        raise ValueError(f"{path}: line {int(np.argmax(bad)) + 1} {problem} "
                         f"({int(np.count_nonzero(bad)):,} of {len(bad):,} lines are "
                         f"bad). The file is damaged: download it again.")


def read_frey_mat(path: str | Path) -> np.ndarray:
    """Reads Roweis' `frey_rawface.mat`: a variable `ff`, one 28x20 frame per column.

    Returns:
        uint8 array [1965, 560]: one frame per row, its 28x20 pixels row-major.

    Raises:
        ValueError: The file is not a readable MAT-file, or holds no `ff` of
            uint8 [560, 1965].
    """
    url = _SOURCES["frey_rawface.mat"][0]
    try:
        variables = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise
    # A cut or damaged file makes scipy raise almost anything: MatReadError,
    # OSError, TypeError, IndexError, ValueError, even UnboundLocalError.
    except Exception as error:
        raise ValueError(f"{path} is not a readable MAT-file ({type(error).__name__}: "
                         f"{error}): it is truncated or damaged. Download {url} again."
                         ) from error
    faces = variables.get("ff")
    if isinstance(faces, np.ndarray) and faces.shape == _FREY_SHAPE and faces.dtype == np.uint8:
        return np.ascontiguousarray(faces.T)
    found = (f"ff of {faces.dtype} {faces.shape}" if isinstance(faces, np.ndarray)
             else f"variables {sorted(k for k in variables if not k.startswith('__'))}")
    raise ValueError(f"{path} should hold ff, uint8 of shape {_FREY_SHAPE}, but holds "
                     f"{found}: it is truncated or not the Frey Face file. Download "
                     f"{url} again.")


def check_finite(x: np.ndarray, name: str) -> None:
    """Raises if x [N, *event_shape] holds a NaN or an infinity, saying where.

    Raises:
        ValueError: Names the count and the first bad value's example and pixel.
    """
    x = np.asarray(x)
    # min and max propagate NaN and meet any inf: two passes, no [N, ...] mask
    # unless something is wrong.
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    raise ValueError(f"{name} is not finite: {_where(x, ~np.isfinite(x), 'are NaN or inf')}. "
                     f"Every value must be finite: check the file or the preprocessing "
                     f"that made {name}.")


def check_support(x: np.ndarray, likelihood: str, binarization: str,
                  name: str = "the data") -> None:
    """Raises unless x [N, *event_shape] lies where the model's p(x|z) has mass.

    Under `dynamic` binarization the model sees draws of Bernoulli(x), so x
    must be intensities in [0, 1]; otherwise it sees x itself, which must be 0
    or 1 for a `bernoulli` likelihood and finite for a `gaussian` one.

    Raises:
        ValueError: Says which values are outside the support, where the first
            one is, and what to change.
    """
    if likelihood not in LIKELIHOODS or binarization not in BINARIZATIONS:
        raise ValueError(f"likelihood={likelihood!r}, binarization={binarization!r}: "
                         f"expected one of {LIKELIHOODS} and one of {BINARIZATIONS}.")
    check_finite(x, name)
    x = np.asarray(x)
    if x.size == 0:
        return
    if (likelihood == "bernoulli" or binarization == "dynamic") and (
            x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} is not in [0, 1]: {_where(x, (x < 0) | (x > 1), 'are outside')}. A "
            f"{likelihood} likelihood with binarization={binarization!r} needs "
            f"intensities in [0, 1]: scale the data (8-bit pixels / 255).")
    if likelihood == "bernoulli" and binarization == "none":
        grey = (x != 0) & (x != 1)
        if grey.any():
            raise ValueError(
                f"{name} is grey, not binary: {_where(x, grey, 'are neither 0 nor 1')}. "
                f"A bernoulli likelihood has mass only on 0 and 1: pass "
                f"--binarization dynamic (draws binary pixels each epoch), or use "
                f"--likelihood gaussian.")


def _where(x: np.ndarray, bad: np.ndarray, problem: str) -> str:
    """Describes the set entries of `bad` (bool, x's shape [N, ...]): how many, the first."""
    first = np.unravel_index(int(np.argmax(bad)), x.shape)
    examples = np.count_nonzero(bad.reshape(len(x), -1).any(axis=1))
    pixel = tuple(int(i) for i in first[1:])
    return (f"{np.count_nonzero(bad):,} of {x.size:,} values {problem}, in {examples:,} "
            f"of {len(x):,} examples; the first, {float(x[first]):.6g}, is in example "
            f"{int(first[0])} at pixel {pixel}")


def load_arrays(dataset: str, data_dir: str | None = None) -> ArraySplits:
    """Reads `dataset` (one of `DATASETS`) into float32 arrays in [0, 1].

    Raises:
        ValueError: Unknown dataset name, a corrupt file or an empty split.
        DataNotFoundError: A file is missing and cannot be downloaded.
    """
    if dataset.startswith("tfds:") and dataset != "tfds:":
        return _load_tfds(dataset.removeprefix("tfds:"), data_dir)
    loaders = {"frey_face": _load_frey_face, "mnist": _load_mnist,
               "binarized_mnist": _load_binarized_mnist}
    if dataset not in loaders:
        raise ValueError(f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}."
                         + _tfds_hint(dataset))
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
        (position < FREY_FACE_GAP) & (frame >= FREY_FACE_PERIOD))
    return np.flatnonzero(~is_test & ~is_gap), np.flatnonzero(is_test)


def _load_mnist(data_dir: str | None) -> ArraySplits:
    def read(prefix):
        images = read_idx(find_file(f"{prefix}-images-idx3-ubyte.gz", data_dir),
                          IDX_IMAGES_MAGIC, (28, 28))
        labels = read_idx(find_file(f"{prefix}-labels-idx1-ubyte.gz", data_dir),
                          IDX_LABELS_MAGIC, ())
        if len(images) != len(labels):
            raise ValueError(f"MNIST {prefix}: {len(images)} images but {len(labels)} "
                             f"labels; expected one label per image. Download both "
                             f"{prefix} files again.")
        return images.astype(np.float32) / 255, labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = read("train"), read("t10k")
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _load_binarized_mnist(data_dir: str | None) -> ArraySplits:
    def read(split):
        x = read_amat(find_file(f"binarized_mnist/binarized_mnist_{split}.amat", data_dir))
        if len(x) != _BINARIZED_SIZES[split]:
            raise ValueError(f"binarized_mnist_{split}.amat: {len(x):,} images, "
                             f"expected {_BINARIZED_SIZES[split]:,}: the file is "
                             f"truncated. Download it again.")
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
            f"--data-dir <folder> or set {DATA_DIR_ENV}=<folder>.") from error
    x_train, y_train = _tfds_arrays(train, f"tfds:{name} train")
    x_test, y_test = _tfds_arrays(test, f"tfds:{name} test")
    return ArraySplits(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def _unknown_tfds_name(name: str) -> ValueError:
    # Community datasets would need the network to list.
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(name, known, n=5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return ValueError(f"tensorflow-datasets has no dataset {name!r}.{hint} "
                      f"`tfds.list_builders()` lists all {len(known)}; pass "
                      f"--dataset tfds:<name>.")


def _tfds_arrays(split: tf.data.Dataset, description: str
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Image features [N, H, W(, C)] -> (float32 [N, H, W(, C > 1)], labels or None).

    Raises:
        ValueError: The split is empty or infinite, or has no integer `image`.
    """
    size = int(split.cardinality())
    if size == tf.data.UNKNOWN_CARDINALITY:
        size = int(split.reduce(0, lambda count, _: count + 1))
    if size <= 0:
        raise ValueError(f"{description} has {'no' if size == 0 else 'endless'} "
                         f"examples; expected a finite, non-empty split. Rebuild it "
                         f"(`tfds build`) or choose another dataset.")
    # One batch of the whole split. tfds' own batch_size=-1 aborts the process
    # under tfds.testing.mock_data: with no split sizes it batches by sys.maxsize.
    features = tfds.as_numpy(split.batch(size).get_single_element())
    if "image" not in features:
        raise ValueError(f"{description} has no 'image' feature (found: "
                         f"{', '.join(sorted(features))}): only image sets are supported.")
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


def as_scored(x: np.ndarray, binarization: str) -> np.ndarray:
    """x `[N, *event]` as evaluation sees it: under dynamic binarization, binarized
    once with `TEST_BINARIZATION_SEED`, so every run is scored on the same data."""
    return fixed_binarization(x, TEST_BINARIZATION_SEED) if binarization == "dynamic" else x


def load(config: DataConfig, seed: int = 0) -> DataSplits:
    """Loads `config.dataset` and builds its train and test pipelines.

    Args:
        config: Dataset, folder, batch size, binarization and `limit` (the
            first `limit` training examples are kept).
        seed: Seeds the training order and dynamic binarization.

    Returns:
        `DataSplits` whose pipelines yield float32 [batch_size, *event_shape].

    Raises:
        ValueError: A split holds NaN or inf, is empty, or is smaller than
            the batch; and as `load_arrays`.
    """
    arrays = load_arrays(config.dataset, config.data_dir)
    for split in ("train", "test"):
        check_finite(getattr(arrays, f"x_{split}"), f"{config.dataset} {split} images")
    if config.limit is not None:
        arrays = dataclasses.replace(
            arrays, x_train=arrays.x_train[:config.limit],
            y_train=None if arrays.y_train is None else arrays.y_train[:config.limit])
    x_test = as_scored(arrays.x_test, config.binarization)
    train = EpochBatches(arrays.x_train, config.batch_size,
                         binarization=config.binarization, seed=seed)
    return DataSplits(
        train=train.dataset,
        test=make_pipeline(x_test, config.batch_size),
        arrays=arrays,
        event_shape=tuple(arrays.x_train.shape[1:]),
        num_train=len(arrays.x_train),
        num_test=len(x_test),
        train_epochs=train)
