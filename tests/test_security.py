"""Tests for the downloads of tfvae.datasets: HTTPS only, sha256-checked, atomic.

No test touches the network: `urllib.request.urlopen` is replaced by a fake server.
"""

import hashlib
import http.client
import io
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tfvae import data_files, datasets

PAYLOAD = b"the canonical bytes\n" * 1000
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
URL = "https://example.org/data/file.bin"


class FakeResponse(io.BytesIO):
    """What `urlopen` returns: a body, the URL it ended at, and maybe a cut-off."""

    def __init__(self, body: bytes, url: str, cut_at: int | None = None):
        super().__init__(body[:cut_at])
        self.url = url
        self.cut = cut_at is not None

    def read(self, size=-1):
        chunk = super().read(size)
        if not chunk and self.cut:  # What http.client raises when a reply stops short.
            raise http.client.IncompleteRead(b"")
        return chunk


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty KERAS_HOME, so that the download cache is under tmp_path."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    return home


@pytest.fixture
def server(monkeypatch):
    """Serves `server.body` for every URL (redirected to `server.final_url` if set);
    `server.requests` lists the URLs asked for."""

    class Server:
        def __init__(self):
            self.body, self.final_url, self.cut_at, self.requests = PAYLOAD, None, None, []

        def urlopen(self, url, timeout=None):
            self.requests.append(url)
            return FakeResponse(self.body, self.final_url or url, self.cut_at)

    fake = Server()
    monkeypatch.setattr(urllib.request, "urlopen", fake.urlopen)
    return fake


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_every_source_url_is_https():
    for url, sha256 in data_files._SOURCES.values():
        assert urllib.parse.urlsplit(url).scheme == "https", url
        assert len(sha256) == 64 and int(sha256, 16) >= 0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/file.bin",
        "ftp://example.org/file.bin",
        "file:///etc/passwd",
        "example.org/file.bin",
    ],
)
def test_non_https_url_is_refused_before_any_request(keras_home, server, url):
    with pytest.raises(ValueError, match="only https"):
        data_files.download_file("file.bin", url, PAYLOAD_SHA256)
    assert server.requests == []
    assert not keras_home.exists()


def test_redirect_to_http_is_refused(keras_home, server):
    server.final_url = "http://example.org/data/file.bin"
    with pytest.raises(ValueError, match="Refusing to download http://example.org"):
        data_files.download_file("file.bin", URL, PAYLOAD_SHA256)
    assert files_under(keras_home) == []


def test_right_bytes_land_in_the_cache(keras_home, server):
    path = data_files.download_file("sub/file.bin", URL, PAYLOAD_SHA256)
    assert path == keras_home / "datasets" / "tfvae" / "sub" / "file.bin"
    assert path.read_bytes() == PAYLOAD
    assert files_under(keras_home) == [path]  # No temporary file left beside it.
    assert server.requests == [URL]


def test_wrong_bytes_raise_and_leave_no_file(keras_home, server):
    server.body = PAYLOAD[:-1] + b"!"
    found = hashlib.sha256(server.body).hexdigest()
    with pytest.raises(ValueError) as info:
        data_files.download_file("sub/file.bin", URL, PAYLOAD_SHA256)
    for part in ("sub/file.bin", PAYLOAD_SHA256, found, URL):
        assert part in str(info.value)
    assert files_under(keras_home) == []


def test_interrupted_download_leaves_no_partial_file(keras_home, server, tmp_path):
    server.cut_at = len(PAYLOAD) // 2
    with pytest.raises(http.client.IncompleteRead):
        data_files.download_file("file.bin", URL, PAYLOAD_SHA256)
    assert files_under(keras_home) == []
    # Through find_file, a cut-off is a missing file, not a traceback.
    with pytest.raises(datasets.DataNotFoundError, match="IncompleteRead"):
        datasets.find_file("frey_rawface.mat", str(tmp_path))
    assert files_under(keras_home) == []


def test_cached_copy_is_reused_only_if_its_hash_matches(keras_home, server):
    cached = data_files.cache_dir() / "file.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:100])  # A truncated copy from some earlier run.
    assert data_files.download_file("file.bin", URL, PAYLOAD_SHA256).read_bytes() == PAYLOAD
    assert server.requests == [URL]
    data_files.download_file("file.bin", URL, PAYLOAD_SHA256)
    assert server.requests == [URL]  # The verified copy is not fetched again.


def test_find_file_downloads_a_canonical_file(data_dir, keras_home, server, tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    server.body = (Path(data_dir) / name).read_bytes()
    path = datasets.find_file(name, str(tmp_path / "empty"))
    assert server.requests == [data_files._SOURCES[name][0]]
    assert path == data_files.cache_dir() / name
    labels = datasets.read_idx(path, datasets.IDX_LABELS_MAGIC, ())
    assert labels.shape == (10000,)


def test_find_file_reports_a_wrong_download_as_such(keras_home, server, tmp_path):
    server.body = b"<html>Moved</html>"
    with pytest.raises(ValueError, match="frey_rawface.mat has sha256") as info:
        datasets.find_file("frey_rawface.mat", str(tmp_path))
    assert not isinstance(info.value, datasets.DataNotFoundError)
    assert "https://cs.nyu.edu/~roweis/data/frey_rawface.mat" in str(info.value)
    assert files_under(keras_home) == []


def test_offline_download_is_data_not_found(keras_home, monkeypatch, tmp_path):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(datasets.DataNotFoundError, match="name resolution") as info:
        datasets.find_file("binarized_mnist/binarized_mnist_test.amat", str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "binarized_mnist" / "binarized_mnist_test.amat") in message
    assert "https://www.cs.toronto.edu/~larocheh/" in message
    assert files_under(keras_home) == []


# Loading models: Keras' safe mode, and no pickle.


def lambda_model_file(path: Path) -> Path:
    """A `.keras` file whose Lambda layer carries Python bytecode: what an attacker ships."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(path)
    return path


def test_a_keras_file_carrying_a_lambda_is_refused(tmp_path):
    from tfvae import config, export, training

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(config.RunConfig().to_json())
    lambda_model_file(run_dir / "model.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        export.load_run(run_dir)
    with pytest.raises(ValueError, match="safe_mode"):
        training.load_model(run_dir / "model.keras")


def test_no_pickle_in_the_package_or_scripts():
    root = Path(__file__).parents[1]
    sources = [
        *root.glob("tfvae/**/*.py"),
        *root.glob("scripts/*.py"),
        *root.glob("benchmarks/*.py"),
    ]
    assert sources
    for path in sources:
        text = path.read_text()
        for needle in (
            "import pickle",
            "from pickle",
            "cPickle",
            "allow_pickle=True",
            "joblib",
            "import dill",
            "torch.load",
            "safe_mode=False",
        ):
            assert needle not in text, f"{path.relative_to(root)} uses {needle}"
