"""Tests for tfvae.plots: valid PNGs, layout, the manifold's quantile grid, atomic writes."""

import os
import warnings

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.figure import Figure
from scipy import stats

from tfvae import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEIGHT, WIDTH = 28, 20


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def read_png(path):
    """Checks `path` is a PNG and returns its pixels `[rows, cols, channels]`."""
    with open(path, "rb") as f:
        assert f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    return mpimg.imread(path)


def aspect(path):
    """Height over width of a written PNG."""
    pixels = read_png(path)
    return pixels.shape[0] / pixels.shape[1]


def test_image_grid_shape_follows_ncols(tmp_path, rng):
    images = rng.uniform(size=(6, HEIGHT, WIDTH))
    wide = plots.image_grid(images, tmp_path / "wide.png", ncols=3, title="samples")
    tall = plots.image_grid(images, tmp_path / "tall.png", ncols=1)
    assert wide == tmp_path / "wide.png"
    assert aspect(wide) < 1 < aspect(tall)


def test_image_grid_rgb(tmp_path, rng):
    path = plots.image_grid(rng.uniform(size=(5, HEIGHT, WIDTH, 3)), tmp_path / "rgb.png")
    assert read_png(path).ndim == 3


@pytest.mark.parametrize("channels", [(), (3,)])
def test_image_grid_clips_out_of_range(tmp_path, rng, channels):
    images = rng.normal(0.5, 2.0, size=(4, HEIGHT, WIDTH, *channels))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when it has to clip RGB itself
        raw = plots.image_grid(images, tmp_path / "raw.png")
    clipped = plots.image_grid(np.clip(images, 0, 1), tmp_path / "clipped.png")
    np.testing.assert_array_equal(read_png(raw), read_png(clipped))


def test_image_grid_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="N, H, W"):
        plots.image_grid(np.zeros((2, HEIGHT, WIDTH, 2)), tmp_path / "bad.png")


def test_reconstructions_wrap_into_row_pairs(tmp_path, rng):
    def draw(n, name):
        x = rng.uniform(size=(n, HEIGHT, WIDTH))
        return plots.reconstructions(x, 1 - x, tmp_path / name, title="reconstructions")

    # 10 pairs fill one row-pair of 10 columns; the 11th wraps to a second row-pair.
    assert aspect(draw(11, "two.png")) > 1.7 * aspect(draw(10, "one.png"))


def test_reconstructions_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="differ"):
        plots.reconstructions(
            np.zeros((3, HEIGHT, WIDTH)), np.zeros((3, WIDTH, HEIGHT)), tmp_path / "bad.png")


def test_manifold_decodes_the_quantile_grid_once(tmp_path):
    grid_size, image_shape = 5, (HEIGHT, 12)
    calls = []

    def decode_fn(z):
        calls.append(z)
        # Brightness follows the prior CDF of z2 (kept below white, the page colour).
        brightness = 0.8 * stats.norm.cdf(z[:, 1])
        return np.broadcast_to(brightness[:, None, None], (len(z), *image_shape))

    path = plots.manifold(
        decode_fn, tmp_path / "manifold.png", grid_size=grid_size, image_shape=image_shape)

    assert len(calls) == 1
    z = calls[0]
    assert z.shape == (grid_size**2, 2)
    low, high = stats.norm.ppf([0.05, 0.95])
    np.testing.assert_allclose(z[0], [low, high])  # top left
    np.testing.assert_allclose(z[grid_size - 1], [high, high])  # top right
    np.testing.assert_allclose(z[-1], [high, low])  # bottom right
    quantiles = np.linspace(0.05, 0.95, grid_size)
    np.testing.assert_allclose(z[:grid_size, 0], stats.norm.ppf(quantiles))

    pixels = read_png(path)
    assert aspect(path) > 1
    column = pixels[:, pixels.shape[1] // 2, 0]
    inside = np.flatnonzero(column < 0.99)
    top, bottom = column[inside[len(inside) // 4]], column[inside[3 * len(inside) // 4]]
    assert top > bottom  # z2 increases upwards


def test_manifold_rejects_wrong_decoded_shape(tmp_path):
    def decode_fn(z):
        return np.zeros((len(z), WIDTH, HEIGHT))

    with pytest.raises(ValueError, match="decode_fn returned shape"):
        plots.manifold(decode_fn, tmp_path / "bad.png", grid_size=3, image_shape=(HEIGHT, WIDTH))
    assert not (tmp_path / "bad.png").exists()


def test_training_curves_second_panel_for_rate_and_distortion(tmp_path):
    epochs = 7
    def curve(start):
        return np.linspace(start, start / 2, epochs).tolist()

    elbo = {"elbo": curve(-200.0), "val_elbo": curve(-210.0)}
    terms = {"rate": curve(30.0), "distortion": curve(150.0),
             "val_rate": curve(31.0), "val_distortion": curve(155.0)}
    one = plots.training_curves(elbo, tmp_path / "one.png")
    two = plots.training_curves({**elbo, **terms}, tmp_path / "two.png", title="MNIST")
    assert aspect(two) < 0.75 * aspect(one)


def test_training_curves_log_x_against_samples(tmp_path):
    samples = np.logspace(5, 8, 6)
    path = plots.training_curves({"elbo": [-150, -130, -120, -110, -105, -103]},
                                 tmp_path / "fig2.png", x=samples, xlabel="samples", log_x=True)
    assert read_png(path).size


def test_training_curves_without_elbo_plots_numeric_series(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9], "note": ["a", "b", "c"]}
    assert read_png(plots.training_curves(history, tmp_path / "loss.png")).size
    with pytest.raises(ValueError, match="no numeric series"):
        plots.training_curves({"note": ["a"]}, tmp_path / "none.png")


def test_training_curves_reject_x_of_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="positions"):
        plots.training_curves({"elbo": [-3.0, -2.0]}, tmp_path / "bad.png", x=[1, 2, 3])


def test_latent_scatter(tmp_path, rng):
    z = rng.normal(size=(300, 2))
    labels = rng.integers(0, 10, size=300)
    assert read_png(plots.latent_scatter(z, labels, tmp_path / "z.png", title="VAE")).size
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plots.latent_scatter(z[:, :1], labels, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="integers"):
        plots.latent_scatter(z, labels.astype(float), tmp_path / "bad.png")


def test_writes_create_folders_and_leave_no_temporary_files(tmp_path, rng):
    folder = tmp_path / "run" / "figures"
    plots.image_grid(rng.uniform(size=(4, HEIGHT, WIDTH)), folder / "samples.png")
    plots.image_grid(rng.uniform(size=(4, HEIGHT, WIDTH)), folder / "samples.png")  # overwrite
    plots.latent_scatter(rng.normal(size=(10, 2)), np.arange(10), str(folder / "z.png"))
    assert sorted(os.listdir(folder)) == ["samples.png", "z.png"]


def test_crash_while_writing_keeps_the_old_file(tmp_path, rng, monkeypatch):
    path = tmp_path / "samples.png"
    plots.image_grid(rng.uniform(size=(4, HEIGHT, WIDTH)), path)
    before = path.read_bytes()

    def crash(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)  # a truncated PNG
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(OSError, match="disk full"):
        plots.image_grid(rng.uniform(size=(4, HEIGHT, WIDTH)), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["samples.png"]


def test_bound_curves_draws_two_lines_per_run(tmp_path):
    history = {"samples": [1e3, 1e4, 1e5], "elbo": [-300.0, -150.0, -120.0],
               "val_elbo": [-310.0, -160.0, -125.0]}
    path = plots.bound_curves({"latent 2": history, "latent 10": history},
                              tmp_path / "figure2.png", title="Figure 2")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(KeyError):
        plots.bound_curves({"broken": {"samples": [1.0]}}, tmp_path / "broken.png")
