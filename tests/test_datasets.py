"""Tests for tfvae.datasets on the real files and on small synthetic arrays."""

import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from tfvae import data_files, datasets
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

    monkeypatch.setattr(data_files, "download_file", fail)
    return attempts


def epoch(dataset) -> np.ndarray:
    return np.concatenate([batch.numpy() for batch in dataset])


def test_frey_face_split(data_dir):
    arrays = datasets.load_arrays("frey_face", data_dir)
    assert arrays.x_train.shape == (1605, 28, 20)
    assert arrays.x_test.shape == (180, 28, 20)
    assert arrays.x_train.dtype == arrays.x_test.dtype == np.float32
    assert arrays.y_train is arrays.y_test is arrays.x_valid is None
    frames = scipy.io.loadmat(Path(data_dir) / "frey_rawface.mat")["ff"].T.reshape(-1, 28, 20)
    # Pixel range 8..238 and mean 154.4609 (all 1965 frames) are stated in the data README.
    assert frames.min() == 8 and frames.max() == 238
    assert frames.mean() == pytest.approx(154.4609, abs=1e-4)
    # Test: frames 180-199 of every 200; train: all but those and 10 on each side.
    test_frames = [i for i in range(1965) if i % 200 >= 180]
    gap = {i for t in test_frames for i in range(t - 10, t + 11)} - set(test_frames)
    train_frames = [i for i in range(1965) if i not in gap and i not in test_frames]
    np.testing.assert_array_equal(arrays.x_test * 255, frames[test_frames])
    np.testing.assert_array_equal(arrays.x_train * 255, frames[train_frames])
    # No training frame within 10 frames of a test frame.
    distance = np.abs(np.subtract.outer(train_frames, test_frames)).min()
    assert distance == 11


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


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 1 2" + " 0" * 781 + "\n", "other than 0 and 1"),
        ("10" + " 0" * 782 + " \n", "784 single-space"),  # Right length, a 2-digit value.
        ("0 1\n", "whole number"),
    ],
)
def test_read_amat_rejects_corrupt_file(tmp_path, text, message):
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        datasets.read_amat(path)


@pytest.mark.parametrize(
    "content",
    [
        gzip.compress((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2)),
        gzip.compress((2051).to_bytes(4, "big") + bytes(8)),  # Truncated header.
        gzip.compress(
            (2051).to_bytes(4, "big")
            + (2).to_bytes(4, "big")
            + (28).to_bytes(4, "big") * 2
            + bytes(784)
        ),  # Second image missing.
        b"not a gzip file",
    ],
)
def test_read_idx_rejects_corrupt_file(tmp_path, content):
    path = tmp_path / "images.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        datasets.read_idx(path, datasets.IDX_IMAGES_MAGIC, (28, 28))


def copy_prefix(data_dir: str, name: str, folder: Path, num_bytes: int) -> Path:
    """Writes the first `num_bytes` of the real `name` to `folder / name`."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / name, "rb") as file:
        path.write_bytes(file.read(num_bytes))
    return path


@pytest.mark.parametrize(
    "position, error",
    [
        (2000, "error: Error -3"),  # zlib.error inside the deflate stream.
        (4000, "BadGzipFile: CRC check failed"),  # Near the end.
    ],
)
def test_read_idx_rejects_damaged_real_file(data_dir, tmp_path, position, error):
    content = bytearray((Path(data_dir) / "t10k-labels-idx1-ubyte.gz").read_bytes())
    content[position] ^= 0xFF
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=f"not a readable gzip file \\({error}") as info:
        datasets.read_idx(path, datasets.IDX_LABELS_MAGIC, ())
    assert str(path) in str(info.value) and "Download it again" in str(info.value)


def test_read_idx_rejects_truncated_real_file(data_dir, tmp_path):
    path = copy_prefix(data_dir, "t10k-images-idx3-ubyte.gz", tmp_path, 800_000)
    with pytest.raises(ValueError, match="EOFError.*truncated or damaged"):
        datasets.read_idx(path, datasets.IDX_IMAGES_MAGIC, (28, 28))
    # A whole gzip stream of a cut IDX file: the sizes disagree.
    with gzip.open(Path(data_dir) / "t10k-images-idx3-ubyte.gz") as file:
        path.write_bytes(gzip.compress(file.read()[:-784]))
    with pytest.raises(
        ValueError,
        match=r"16 \+ N \* 784 bytes; found magic 2051, "
        r"shape \(10000, 28, 28\) and 7839232 bytes",
    ):
        datasets.read_idx(path, datasets.IDX_IMAGES_MAGIC, (28, 28))


def test_read_amat_rejects_truncated_real_file(data_dir, tmp_path):
    name = "binarized_mnist/binarized_mnist_test.amat"
    line_bytes = 2 * 784
    path = copy_prefix(data_dir, name, tmp_path, 3 * line_bytes + 100)
    with pytest.raises(ValueError, match="4,804 bytes is not a whole number.*ends inside line 4"):
        datasets.read_amat(path)
    whole_lines = copy_prefix(data_dir, name, tmp_path, 3 * line_bytes)
    assert datasets.read_amat(whole_lines).shape == (3, 28, 28)


def test_read_amat_names_the_first_bad_line(tmp_path):
    lines = ["0 " * 783 + "1\n"] * 4
    lines[2] = "0 " * 783 + "1\t"  # A tab where the newline belongs.
    path = tmp_path / "bad.amat"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match="line 3 is not 784 single-space.*1 of 4 lines"):
        datasets.read_amat(path)


def test_read_frey_mat_matches_the_readme(data_dir):
    frames = datasets.read_frey_mat(Path(data_dir) / "frey_rawface.mat")
    assert frames.shape == (1965, 560) and frames.dtype == np.uint8
    # sha256 of ff.T as a C-contiguous (1965, 560) uint8 array, from the data README.
    assert hashlib.sha256(frames.tobytes()).hexdigest() == (
        "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78"
    )


@pytest.mark.parametrize(
    "num_bytes, message",
    [
        (100, "not a readable MAT-file"),  # Inside the 128-byte header.
        (128, r"holds variables \[\]"),  # The header alone: no variables.
        (550_000, r"not a readable MAT-file \(OSError"),  # Half the data.
    ],
)
def test_read_frey_mat_rejects_truncated_file(data_dir, tmp_path, num_bytes, message):
    path = copy_prefix(data_dir, "frey_rawface.mat", tmp_path, num_bytes)
    with pytest.raises(ValueError, match=message) as info:
        datasets.read_frey_mat(path)
    assert str(path) in str(info.value) and "frey_rawface.mat again" in str(info.value)


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"ff": np.zeros((560, 1964), np.uint8)}, r"ff of uint8 \(560, 1964\)"),
        ({"ff": np.zeros((560, 1965))}, r"ff of float64 \(560, 1965\)"),
        ({"faces": np.zeros((560, 1965), np.uint8)}, r"holds variables \['faces'\]"),
    ],
)
def test_read_frey_mat_rejects_other_content(tmp_path, variables, message):
    path = tmp_path / "frey_rawface.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(ValueError, match=message):
        datasets.read_frey_mat(path)


def test_read_frey_mat_rejects_garbage(tmp_path):
    path = tmp_path / "frey_rawface.mat"
    path.write_bytes(b"<html>404 Not Found</html>" * 20)
    with pytest.raises(ValueError, match="not a readable MAT-file"):
        datasets.read_frey_mat(path)


@pytest.mark.parametrize(
    "dataset, name",
    [
        ("frey_face", "frey_rawface.mat"),
        ("mnist", "train-images-idx3-ubyte.gz"),  # The first file _load_mnist reads.
        ("binarized_mnist", "binarized_mnist/binarized_mnist_train.amat"),
    ],
)
def test_truncated_copy_in_data_dir_fails_its_sha256(data_dir, tmp_path, offline, dataset, name):
    path = copy_prefix(data_dir, name, tmp_path, 10_000)
    url, sha256 = data_files._SOURCES[name]
    with pytest.raises(
        ValueError,
        match=f"{path} has sha256 [0-9a-f]{{64}} "
        r"\(10,000 bytes\)",
    ) as info:
        datasets.load_arrays(dataset, str(tmp_path))
    assert url in str(info.value) and sha256 in str(info.value)
    assert "truncated" in str(info.value)
    assert offline == []
    assert path.stat().st_size == 10_000  # The user's file is left as it was.


def test_missing_file_names_file_folder_and_url(tmp_path, monkeypatch, offline):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    with pytest.raises(datasets.DataNotFoundError) as info:
        datasets.load_arrays("frey_face", str(tmp_path))
    url = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
    assert offline == [url]
    message = str(info.value)
    for part in (
        "frey_rawface.mat",
        str(tmp_path),
        url,
        "--data-dir",
        datasets.DATA_DIR_ENV,
        "network unreachable",
        str(tmp_path / "frey_rawface.mat"),
        data_files._SOURCES["frey_rawface.mat"][1],
    ):
        assert part in message
    assert isinstance(info.value, FileNotFoundError)


def test_local_file_with_wrong_sha256_is_rejected(tmp_path, offline):
    (tmp_path / "frey_rawface.mat").write_bytes(b"not the Frey Face file")
    with pytest.raises(ValueError, match="frey_rawface.mat has sha256"):
        datasets.load_arrays("frey_face", str(tmp_path))
    assert offline == []


def test_data_dir_defaults_to_environment(data_dir, monkeypatch, offline):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, data_dir)
    assert datasets.load_arrays("frey_face").x_test.shape == (180, 28, 20)
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
    splits = datasets.load(
        DataConfig(dataset="frey_face", limit=300, batch_size=50, data_dir=data_dir)
    )
    assert (splits.num_train, splits.num_test, splits.event_shape) == (300, 180, (28, 20))
    full = datasets.load_arrays("frey_face", data_dir)
    np.testing.assert_array_equal(splits.arrays.x_train, full.x_train[:300])
    assert [tuple(b.shape) for b in splits.train] == [(50, 28, 20)] * 6
    assert [len(b) for b in splits.test] == [50, 50, 50, 30]
    np.testing.assert_array_equal(epoch(splits.test), full.x_test)
    train = epoch(splits.train)
    assert len(train) == 300  # Frey Face has no duplicate frames, so sets suffice.
    assert {image.tobytes() for image in train} == {
        image.tobytes() for image in splits.arrays.x_train
    }


def test_validation_set_is_held_out_of_the_training_set_and_leaves_the_test_set(data_dir):
    full = datasets.load_arrays("frey_face", data_dir)
    config = DataConfig(dataset="frey_face", batch_size=100, validation_size=200, data_dir=data_dir)
    splits = datasets.load(config)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (1405, 200, 180)
    # Frey Face has no duplicate frames: the two parts split the training frames.
    frames = {image.tobytes() for image in full.x_train}
    validation = {image.tobytes() for image in epoch(splits.validation)}
    train = {image.tobytes() for image in splits.arrays.x_train}
    assert len(validation) == 200 and len(train) == 1405
    assert validation | train == frames and not validation & train
    # Drawn across the video, not one end of it; the same subset every time.
    position = {image.tobytes(): i for i, image in enumerate(full.x_train)}
    index = sorted(position[image] for image in validation)
    assert index[0] < 200 and index[-1] > 1405
    np.testing.assert_array_equal(
        epoch(datasets.load(config, seed=7).validation), epoch(splits.validation)
    )
    np.testing.assert_array_equal(epoch(splits.monitored), epoch(splits.validation))
    np.testing.assert_array_equal(epoch(splits.test), full.x_test)
    assert datasets.load(DataConfig(dataset="frey_face", data_dir=data_dir)).validation is None
    with pytest.raises(ValueError, match="hold out fewer"):
        datasets.load(DataConfig(dataset="frey_face", validation_size=1600, data_dir=data_dir))


def test_validation_blocks_keep_every_validation_frame_ten_frames_from_training(data_dir):
    full = datasets.load_arrays("frey_face", data_dir)
    video_frame = datasets.frey_face_split(1965)[
        0
    ]  # training frame i is video frame video_frame[i]
    config = DataConfig(
        dataset="frey_face", validation_size=200, validation_split="blocks", data_dir=data_dir
    )
    splits = datasets.load(config)
    position = {image.tobytes(): i for i, image in enumerate(full.x_train)}
    validation = np.array(sorted(position[x.tobytes()] for x in epoch(splits.validation)))
    train = np.array([position[x.tobytes()] for x in splits.arrays.x_train])
    assert (len(validation), len(train), splits.num_train, splits.num_test) == (
        200,
        1205,
        1205,
        180,
    )
    # Ten runs of 20 consecutive training frames, one in each tenth of the set.
    runs = np.split(validation, np.flatnonzero(np.diff(validation) > 1) + 1)
    assert [len(run) for run in runs] == [20] * 10
    assert [int(run.mean() // 160.5) for run in runs] == list(range(10))
    # No training frame within 10 frames of the video of a validation frame.
    distance = np.abs(video_frame[validation][:, None] - video_frame[train][None, :])
    assert distance.min() == 11
    assert not set(validation) & set(train)
    np.testing.assert_array_equal(np.sort(train), train)  # still in video order
    np.testing.assert_array_equal(epoch(splits.test), full.x_test)


@pytest.mark.parametrize(
    "size, split, message",
    (
        (210, "blocks", "multiple of 20"),
        (1000, "blocks", "do not fit"),
        (0, "blocks", "give its size"),
    ),
)
def test_bad_validation_blocks_are_refused(data_dir, size, split, message):
    with pytest.raises(ValueError, match=message):
        datasets.load(
            DataConfig(
                dataset="frey_face",
                validation_size=size,
                validation_split=split,
                data_dir=data_dir,
            )
        )


def test_load_binarizes_test_set_once(data_dir):
    splits = datasets.load(
        DataConfig(
            dataset="frey_face", limit=100, batch_size=20, binarization="dynamic", data_dir=data_dir
        ),
        seed=5,
    )
    test = epoch(splits.test)
    np.testing.assert_array_equal(epoch(splits.test), test)
    np.testing.assert_array_equal(
        test, datasets.fixed_binarization(splits.arrays.x_test, datasets.TEST_BINARIZATION_SEED)
    )
    assert test.mean() == pytest.approx(splits.arrays.x_test.mean(), abs=0.01)
    assert np.unique(epoch(splits.train)).tolist() == [0, 1]


def test_unknown_tfds_name_suggests_close_names():
    with pytest.raises(ValueError, match="no dataset 'fashion_mnst'. Close names: fashion_mnist"):
        datasets.load_arrays("tfds:fashion_mnst")


@pytest.mark.parametrize(
    "dataset, hint",
    [
        ("fashion_mnist", "pass --dataset tfds:fashion_mnist"),  # A tfds name without tfds:.
        ("tfds:", "tfds:<name> is any tensorflow-datasets image set"),
    ],
)
def test_unknown_dataset_says_what_to_pass(dataset, hint):
    with pytest.raises(ValueError, match=f"Unknown dataset '{dataset}'; valid: .*{hint}"):
        datasets.load_arrays(dataset)


def test_empty_tfds_split_is_an_error(tmp_path):
    with tfds.testing.mock_data(num_examples=0):
        with pytest.raises(ValueError, match="tfds:mnist train has no examples"):
            datasets.load_arrays("tfds:mnist", str(tmp_path))


def test_tfds_set_without_images_is_an_error(tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="no 'image' feature \\(found: label, text\\)"):
            datasets.load_arrays("tfds:imdb_reviews", str(tmp_path))


def test_check_finite_says_where_the_first_bad_value_is():
    x = np.zeros((5, 4, 3), np.float32)
    datasets.check_finite(x, "x_train")
    x[3, 2, 1], x[3, 0, 0], x[4, 1, 2] = np.nan, -np.inf, np.inf
    with pytest.raises(
        ValueError,
        match=r"x_train is not finite: 3 of 60 values are NaN or "
        r"inf, in 2 of 5 examples; the first, -inf, is in "
        r"example 3 at pixel \(0, 0\)",
    ):
        datasets.check_finite(x, "x_train")


def test_check_finite_is_vectorised():
    x = np.random.default_rng(0).random((60000, 28, 28), dtype=np.float32)
    start = time.perf_counter()
    datasets.check_finite(x, "x")
    x[59999, 27, 27] = np.nan  # The last value: a loop would find it last.
    with pytest.raises(
        ValueError,
        match=r"1 of 47,040,000 values .* example 59999 at "
        r"pixel \(27, 27\)",
    ):
        datasets.check_finite(x, "x")
    # Both checks take ~0.05 s here; a Python loop over the pixels takes minutes.
    assert time.perf_counter() - start < 3


def test_check_support_binary_needs_binary_values():
    binary = np.array([[[0.0, 1.0], [1.0, 0.0]]] * 3, np.float32)
    datasets.check_support(binary, "binary", "none")
    grey = binary.copy()
    grey[1, 0, 1] = 0.5
    with pytest.raises(
        ValueError,
        match=r"x_train is grey, not binary: 1 of 12 values are "
        r"neither 0 nor 1, .* example 1 at pixel \(0, 1\)"
        r".*--binarization dynamic \(draws binary pixels "
        r"each epoch\)",
    ):
        datasets.check_support(grey, "binary", "none", name="x_train")
    datasets.check_support(grey, "binary", "dynamic")  # Intensities are drawn from.


@pytest.mark.parametrize(
    "support, binarization", [("binary", "none"), ("binary", "dynamic"), ("real", "dynamic")]
)
def test_check_support_needs_intensities_in_unit_interval(support, binarization):
    x = np.array([[0, 128, 255]], np.uint8)  # 8-bit pixels, not yet scaled.
    with pytest.raises(
        ValueError,
        match=r"not in \[0, 1\]: 2 of 3 values are outside.*"
        r"the first, 128, .* pixel \(1,\).* / 255",
    ):
        datasets.check_support(x, support, binarization)


def test_check_support_real_takes_any_finite_value():
    x = np.array([[-3.5, 0.25, 7.0]], np.float32)
    datasets.check_support(x, "real", "none")
    x[0, 1] = np.nan
    with pytest.raises(ValueError, match="is not finite: 1 of 3 values are NaN"):
        datasets.check_support(x, "real", "none")


def test_check_support_on_real_mnist(data_dir):
    x = datasets.load_arrays("mnist", data_dir).x_train
    datasets.check_support(x, "binary", "dynamic")
    datasets.check_support(x, "real", "none")
    with pytest.raises(ValueError, match="is grey.*in 59,977 of 60,000 examples"):
        datasets.check_support(x, "binary", "none")


def test_check_support_grey_levels_need_multiples_of_one_over_255():
    levels = np.arange(256, dtype=np.float32)[None] / 255
    datasets.check_support(levels, "grey_levels", "none")
    datasets.check_support(levels, "unit_interval", "none")
    with pytest.raises(ValueError, match="not on the 256 grey levels.*the first, 0.5, "):
        datasets.check_support(np.array([[0.5]], np.float32), "grey_levels", "none")
    with pytest.raises(ValueError, match=r"not in \[0, 1\]"):
        datasets.check_support(np.array([[1.5]], np.float32), "unit_interval", "none")


def test_check_support_rejects_unknown_choices():
    with pytest.raises(ValueError, match="expected one of \\('binary', "):
        datasets.check_support(np.zeros((1, 2)), "poisson", "none")
