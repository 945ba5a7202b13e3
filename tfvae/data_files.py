"""Raw data files: where they are, their canonical downloads, and their parsers.

A file is looked up in `data_dir`, else in `$TFVAE_DATA_DIR`, else fetched into
the download cache from its canonical URL, over HTTPS only. Every file must match
the sha256 of its canonical download (hashing all of binarized MNIST takes
0.15 s), so a truncated or different copy fails loudly, and a download is kept
only when its hash matches. The parsers check sizes and formats, and every error
says which file and what to do.
"""

from __future__ import annotations

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

DATA_DIR_ENV = "TFVAE_DATA_DIR"
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_CACHE_SUBDIR = "datasets/tfvae"
_DOWNLOAD_TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 20
_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_BINARIZED_URL = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_FREY_SHAPE = (28 * 20, 1965)  # `ff` in the .mat file: one 28x20 frame per column.
# Path inside a data folder -> (canonical URL, sha256 of the file).
_SOURCES = {
    "frey_rawface.mat": (
        "https://cs.nyu.edu/~roweis/data/frey_rawface.mat",
        "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
    ),
    **{
        name: (_MNIST_URL + name, sha256)
        for name, sha256 in {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # noqa: E501
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",  # noqa: E501
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",  # noqa: E501
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",  # noqa: E501
        }.items()
    },
    **{
        f"binarized_mnist/binarized_mnist_{split}.amat": (
            f"{_BINARIZED_URL}binarized_mnist_{split}.amat",
            sha256,
        )
        for split, sha256 in {
            "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
            "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
            "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
        }.items()
    },
}


class DataNotFoundError(FileNotFoundError):
    """A data file is neither on disk nor downloadable."""


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
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            found = _fetch(url, file)
        if found != sha256:
            raise ValueError(
                f"Downloaded {relative_path} has sha256 {found}, expected {sha256} "
                f"(from {url}): the server sent another or a damaged file, and it "
                f"was not kept. Try again later, or download it by hand, check its "
                f"sha256 and pass --data-dir <folder>."
            )
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
        raise ValueError(
            f"Refusing to download {url}: only https:// URLs are fetched "
            "(plain http can be altered on the way)."
        )


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
        raise DataNotFoundError(_not_found_message(relative_path, folder, error)) from error


def _check_sha256(path: Path, sha256: str, url: str) -> None:
    found = file_sha256(path)
    if found != sha256:
        raise ValueError(
            f"{path} has sha256 {found} ({path.stat().st_size:,} bytes), but the "
            f"canonical file ({url}) has sha256 {sha256}: this copy is truncated, "
            f"damaged or another file. Replace it with a fresh download of {url}, "
            f"or move it away so that tfvae downloads it."
        )


def _not_found_message(relative_path: str, folder: str | None, error: Exception) -> str:
    url, sha256 = _SOURCES[relative_path]
    searched = f"in neither {folder} nor {cache_dir()}" if folder else f"not in {cache_dir()}"
    if folder:
        where = (
            f"put it at {Path(folder) / relative_path} (the folder given by "
            f"--data-dir or {DATA_DIR_ENV})"
        )
    else:
        where = (
            f"put it at <folder>/{relative_path} and pass --data-dir <folder> "
            f"or set {DATA_DIR_ENV}=<folder>"
        )
    return (
        f"Data file {relative_path!r} is {searched}, and downloading it from "
        f"{url} failed ({type(error).__name__}: {error}). On a machine with "
        f"network, download {url} (sha256 {sha256}) and {where}."
    )


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
        raise ValueError(
            f"{path} is not a readable gzip file ({type(error).__name__}: "
            f"{error}): it is truncated or damaged. Download it again."
        ) from error
    header_bytes = 4 * (2 + len(dims))  # Magic, N, then one int per item axis.
    # Zero-padding a truncated header makes it fail the checks below, not crash.
    header = np.frombuffer(data[:header_bytes].ljust(header_bytes, b"\0"), ">u4").tolist()
    found_magic, shape = header[0], tuple(header[1:])
    if found_magic != magic or shape[1:] != dims or len(data) != header_bytes + int(np.prod(shape)):
        raise ValueError(
            f"{path} is not a valid IDX file: expected magic {magic}, shape "
            f"(N, {', '.join(map(str, dims))}) and {header_bytes} + N * "
            f"{int(np.prod(dims))} bytes; found magic {found_magic}, shape {shape} and "
            f"{len(data)} bytes. The file is truncated or not this MNIST file: "
            f"download it again."
        )
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
            f"MNIST .amat file. Download it again."
        )
    lines = data.reshape(-1, line_bytes)
    pixels = lines[:, 0::2] - np.uint8(ord("0"))  # Other characters wrap above 1.
    bad_separators = np.any(lines[:, 1:-1:2] != ord(" "), axis=1) | (lines[:, -1] != ord("\n"))
    _raise_at_first_bad_line(
        path, bad_separators, "is not 784 single-space-separated values ending in a newline"
    )
    _raise_at_first_bad_line(path, np.any(pixels > 1, axis=1), "holds values other than 0 and 1")
    return pixels.reshape(-1, 28, 28)


def _raise_at_first_bad_line(path: str | Path, bad: np.ndarray, problem: str) -> None:
    """Raises if any of `bad` (bool [N], one per line) is set, naming the first line."""
    if bad.any():
        raise ValueError(
            f"{path}: line {int(np.argmax(bad)) + 1} {problem} "
            f"({int(np.count_nonzero(bad)):,} of {len(bad):,} lines are "
            f"bad). The file is damaged: download it again."
        )


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
        raise ValueError(
            f"{path} is not a readable MAT-file ({type(error).__name__}: "
            f"{error}): it is truncated or damaged. Download {url} again."
        ) from error
    faces = variables.get("ff")
    if isinstance(faces, np.ndarray) and faces.shape == _FREY_SHAPE and faces.dtype == np.uint8:
        return np.ascontiguousarray(faces.T)
    found = (
        f"ff of {faces.dtype} {faces.shape}"
        if isinstance(faces, np.ndarray)
        else f"variables {sorted(k for k in variables if not k.startswith('__'))}"
    )
    raise ValueError(
        f"{path} should hold ff, uint8 of shape {_FREY_SHAPE}, but holds "
        f"{found}: it is truncated or not the Frey Face file. Download "
        f"{url} again."
    )
