"""Tests for tfvae.plots, on the PNGs read back: each tile in its place with its grey level
or colour, curves straight on a log axis, one colour per run or class, the manifold's
quantile grid; and atomic writes."""

import os
import warnings

import numpy as np
import pytest
from matplotlib import colormaps, colors
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


def canvas_from_png(pixels, canvas_shape, ink):
    """The PNG resampled at the centres of a `[rows, cols]` canvas, RGB `[rows, cols, 3]`.

    The canvas is located as the bounding box of the pixels where `ink` `[H, W]` holds,
    so its first and last rows and columns must be inked.
    """
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    r = top + (np.arange(canvas_shape[0]) + 0.5) * (bottom - top) / canvas_shape[0]
    c = left + (np.arange(canvas_shape[1]) + 0.5) * (right - left) / canvas_shape[1]
    return pixels[r.astype(int)[:, None], c.astype(int)[None, :], :3]


def tile_of(canvas, k, ncols, height, width, gap=1):
    top, left = (k // ncols) * (height + gap), (k % ncols) * (width + gap)
    return canvas[top : top + height, left : left + width]


def colour_mask(pixels, colour, tol=0.06):
    """Where a PNG `[H, W, 4]` shows `colour` (a matplotlib colour spec)."""
    return np.all(np.abs(pixels[..., :3] - np.array(colors.to_rgb(colour))) < tol, axis=-1)


def test_image_grid_shape_follows_ncols(tmp_path, rng):
    images = rng.uniform(size=(6, HEIGHT, WIDTH))
    wide = plots.image_grid(images, tmp_path / "wide.png", ncols=3, title="samples")
    tall = plots.image_grid(images, tmp_path / "tall.png", ncols=1)
    assert wide == tmp_path / "wide.png"
    assert aspect(wide) < 1 < aspect(tall)


# One byte per channel: a grey level comes back within 1/255 (+ rounding).
QUANTUM = 1.5 / 255


def marked_tiles(levels, height, width, channels=()):
    """Constant tiles of `levels` `[N, *channels]`, each with a black top-left 3 x 3 block."""
    tiles = np.broadcast_to(
        np.asarray(levels)[:, None, None], (len(levels), height, width, *channels)
    ).copy()
    tiles[:, :3, :3] = 0.0
    return tiles


def test_image_grid_shows_each_image_in_its_place(tmp_path):
    # 5 images in 3 columns: 2 rows, the last slot blank; grey levels below white.
    levels, ncols, height, width = np.linspace(0.1, 0.8, 5), 3, 9, 6
    path = plots.image_grid(marked_tiles(levels, height, width), tmp_path / "grid.png", ncols=ncols)
    pixels = read_png(path)
    canvas_shape = (2 * (height + 1) - 1, ncols * (width + 1) - 1)
    ink = np.any(pixels[..., :3] < 0.95, axis=-1)
    canvas = canvas_from_png(pixels, canvas_shape, ink)[..., 0]  # Grey: R = G = B.
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert (rows[-1] - rows[0]) / (cols[-1] - cols[0]) == pytest.approx(
        canvas_shape[0] / canvas_shape[1], rel=0.02
    )
    for k, level in enumerate(levels):
        tile = tile_of(canvas, k, ncols, height, width)
        np.testing.assert_allclose(tile[:3, :3], 0.0, atol=QUANTUM)
        np.testing.assert_allclose(tile[3:, 3:], level, atol=QUANTUM)
    np.testing.assert_allclose(tile_of(canvas, 5, ncols, height, width), 1.0)  # The blank.
    np.testing.assert_allclose(canvas[height], 1.0)  # The gap between the rows.
    np.testing.assert_allclose(canvas[:, width], 1.0)  # The gap between columns.


def test_image_grid_rgb_shows_each_colour_in_its_place(tmp_path):
    colours = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.8], [0.6, 0.5, 0.1]])
    height, width = 5, 8
    path = plots.image_grid(marked_tiles(colours, height, width, (3,)), tmp_path / "rgb.png")
    pixels = read_png(path)
    canvas = canvas_from_png(
        pixels, (2 * height + 1, 2 * width + 1), np.any(pixels[..., :3] < 0.95, axis=-1)
    )
    for k, colour in enumerate(colours):  # ncols defaults to ceil(sqrt(4)) = 2.
        tile = tile_of(canvas, k, 2, height, width)
        np.testing.assert_allclose(
            tile[3:, 3:], np.broadcast_to(colour, tile[3:, 3:].shape), atol=QUANTUM
        )
        np.testing.assert_allclose(tile[:3, :3], 0.0, atol=QUANTUM)
    np.testing.assert_allclose(canvas[height], 1.0)  # The gap, transparent on white.


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


def test_reconstructions_put_each_reconstruction_under_its_input(tmp_path):
    # 12 pairs: a row of inputs 0-9, their reconstructions, inputs 10-11, theirs.
    # Saturated colours, so that the grey tick labels are not mistaken for the canvas.
    n, height, width = 12, 6, 5
    shade = np.linspace(0.1, 0.6, n)
    inputs = np.stack([np.full(n, 0.9), shade, np.full(n, 0.1)], axis=-1)  # reds
    outputs = np.stack([np.full(n, 0.1), shade, np.full(n, 0.9)], axis=-1)  # blues
    path = plots.reconstructions(
        marked_tiles(inputs, height, width, (3,)),
        marked_tiles(outputs, height, width, (3,)),
        tmp_path / "pairs.png",
    )
    pixels = read_png(path)
    saturated = np.ptp(pixels[..., :3], axis=-1) > 0.5
    ncols = plots.RECONSTRUCTIONS_PER_ROW
    canvas = canvas_from_png(pixels, (4 * (height + 1) - 1, ncols * (width + 1) - 1), saturated)
    for k in range(n):
        pair, column = divmod(k, ncols)
        for row, colours in ((2 * pair, inputs), (2 * pair + 1, outputs)):
            tile = tile_of(canvas, row * ncols + column, ncols, height, width)
            np.testing.assert_allclose(
                tile[3:, 3:], np.broadcast_to(colours[k], (3, 2, 3)), atol=QUANTUM
            )
            np.testing.assert_allclose(tile[:3, :3], 0.0, atol=QUANTUM)
    blank = tile_of(canvas, 3 * ncols + 2, ncols, height, width)  # After the 12th output.
    np.testing.assert_allclose(blank, 1.0)
    np.testing.assert_allclose(canvas[height], 1.0)  # A gap between inputs and outputs.
    np.testing.assert_allclose(canvas[:, width], 1.0)


def test_reconstructions_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="differ"):
        plots.reconstructions(
            np.zeros((3, HEIGHT, WIDTH)), np.zeros((3, WIDTH, HEIGHT)), tmp_path / "bad.png"
        )


def test_manifold_decodes_the_quantile_grid_once(tmp_path):
    grid_size, image_shape = 5, (HEIGHT, 12)
    calls = []

    def decode_fn(z):
        calls.append(z)
        # Brightness follows the prior CDF of z2 (kept below white, the page colour).
        brightness = 0.8 * stats.norm.cdf(z[:, 1])
        return np.broadcast_to(brightness[:, None, None], (len(z), *image_shape))

    path = plots.manifold(
        decode_fn, tmp_path / "manifold.png", grid_size=grid_size, image_shape=image_shape
    )

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


def test_interpolation_decodes_equally_spaced_codes_left_to_right(tmp_path):
    num_steps, height, width = 6, 7, 5
    z_start, z_end = np.array([-1.0, 2.0, 0.5]), np.array([3.0, -2.0, 0.5])
    calls = []

    def decode_fn(z):
        calls.append(z)
        # Saturated reds whose green channel follows z1, so that the tick labels (grey)
        # are not mistaken for the strip.
        green = 0.1 + 0.15 * (z[:, 0] + 1.0)
        colours = np.stack([np.full(len(z), 0.9), green, np.full(len(z), 0.1)], axis=-1)
        return np.broadcast_to(colours[:, None, None], (len(z), height, width, 3))

    path = plots.interpolation(
        decode_fn,
        z_start,
        z_end,
        tmp_path / "strip.png",
        num_steps=num_steps,
        image_shape=(height, width, 3),
        title="interpolation",
    )

    assert len(calls) == 1
    z = calls[0]
    assert z.shape == (num_steps, 3)
    np.testing.assert_allclose(z[0], z_start)
    np.testing.assert_allclose(z[-1], z_end)
    steps = np.diff(z, axis=0)
    np.testing.assert_allclose(
        steps, np.broadcast_to((z_end - z_start) / 5, steps.shape), atol=1e-6
    )

    pixels = read_png(path)
    saturated = np.ptp(pixels[..., :3], axis=-1) > 0.5
    canvas = canvas_from_png(pixels, (height, num_steps * (width + 1) - 1), saturated)
    for k, green in enumerate(0.1 + 0.15 * (z[:, 0] + 1.0)):
        tile = tile_of(canvas, k, num_steps, height, width)
        np.testing.assert_allclose(
            tile, np.broadcast_to([0.9, green, 0.1], tile.shape), atol=QUANTUM
        )
    np.testing.assert_allclose(canvas[:, width], 1.0)  # The gap after the first tile.


def test_interpolation_rejects_bad_arguments(tmp_path):
    def decode_fn(z):
        return np.zeros((len(z), WIDTH, HEIGHT))

    with pytest.raises(ValueError, match="decode_fn returned shape"):
        plots.interpolation(
            decode_fn, np.zeros(2), np.ones(2), tmp_path / "bad.png", image_shape=(HEIGHT, WIDTH)
        )
    with pytest.raises(ValueError, match="codes"):
        plots.interpolation(
            decode_fn, np.zeros(2), np.ones(3), tmp_path / "bad.png", image_shape=(WIDTH, HEIGHT)
        )
    with pytest.raises(ValueError, match="num_steps"):
        plots.interpolation(
            decode_fn,
            np.zeros(2),
            np.ones(2),
            tmp_path / "bad.png",
            num_steps=1,
            image_shape=(WIDTH, HEIGHT),
        )
    assert not (tmp_path / "bad.png").exists()


def test_training_curves_second_panel_for_rate_and_distortion(tmp_path):
    epochs = 7

    def curve(start):
        return np.linspace(start, start / 2, epochs).tolist()

    elbo = {"elbo": curve(-200.0), "val_elbo": curve(-210.0)}
    terms = {
        "rate": curve(30.0),
        "distortion": curve(150.0),
        "val_rate": curve(31.0),
        "val_distortion": curve(155.0),
    }
    one = plots.training_curves(elbo, tmp_path / "one.png")
    two = plots.training_curves({**elbo, **terms}, tmp_path / "two.png", title="MNIST")
    assert aspect(two) < 0.75 * aspect(one)


def straight_fraction(pixels, colour, tolerance=3.0):
    """Share of a curve's columns within `tolerance` pixels of its robust straight-line fit."""
    mask = colour_mask(pixels, colour)
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.array([np.median(np.flatnonzero(mask[:, c])) for c in cols])
    slope = stats.theilslopes(rows, cols).slope  # Robust to the legend's sample line.
    intercept = np.median(rows - slope * cols)
    return np.mean(np.abs(rows - intercept - slope * cols) < tolerance)


def test_training_curves_log_x_against_samples(tmp_path):
    # A bound linear in log(samples) is a straight line on a log axis, and is bent on a
    # linear one.
    samples = np.logspace(5, 8, 30)
    history = {"elbo": list(-150 + 10 * np.log10(samples))}
    log_x = plots.training_curves(
        history, tmp_path / "log.png", x=samples, xlabel="samples", log_x=True
    )
    linear = plots.training_curves(history, tmp_path / "linear.png", x=samples)
    assert straight_fraction(read_png(log_x), "C0") > 0.85
    assert straight_fraction(read_png(linear), "C0") < 0.6


def test_training_curves_without_elbo_plots_numeric_series(tmp_path):
    # One quantity, loss, drawn solid and its val_ version dashed in the same colour;
    # the strings of "note" are skipped.
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9], "note": ["a", "b", "c"]}
    pixels = read_png(plots.training_curves(history, tmp_path / "loss.png"))
    assert colour_mask(pixels, "C0").sum() > 200 and colour_mask(pixels, "C1").sum() == 0
    with pytest.raises(ValueError, match="no numeric series"):
        plots.training_curves({"note": ["a"]}, tmp_path / "none.png")


def test_training_curves_reject_x_of_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="positions"):
        plots.training_curves({"elbo": [-3.0, -2.0]}, tmp_path / "bad.png", x=[1, 2, 3])


def test_latent_scatter(tmp_path, rng):
    # Class 0 to the upper left, class 3 to the lower right, coloured tab10[0] and [3].
    z = np.concatenate([rng.normal([-3, 2], 0.5, (150, 2)), rng.normal([3, -2], 0.5, (150, 2))])
    labels = np.repeat([0, 3], 150)
    pixels = read_png(plots.latent_scatter(z, labels, tmp_path / "z.png", title="VAE"))
    palette = colormaps["tab10"]
    (rows_0, cols_0), (rows_3, cols_3) = (
        np.nonzero(colour_mask(pixels, palette(k))) for k in (0, 3)
    )
    assert len(rows_0) > 200 and len(rows_3) > 200
    assert np.median(cols_0) < np.median(cols_3) and np.median(rows_0) < np.median(rows_3)
    assert colour_mask(pixels, palette(1)).sum() == 0  # No class 1 in the data.
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
    def history(offset):
        return {
            "samples": [1e3, 1e4, 1e5],
            "elbo": [offset - 300.0, offset - 150.0, offset - 120.0],
            "val_elbo": [offset - 310.0, offset - 160.0, offset - 125.0],
        }

    # Run C0 lies 100 nats above run C1; a third colour would be a stray line.
    path = plots.bound_curves(
        {"latent 10": history(0.0), "latent 2": history(-100.0)},
        tmp_path / "figure2.png",
        title="Figure 2",
    )
    pixels = read_png(path)
    rows_0, rows_1 = (np.nonzero(colour_mask(pixels, f"C{k}"))[0] for k in (0, 1))
    assert len(rows_0) > 300 and len(rows_1) > 300
    assert np.median(rows_0) < np.median(rows_1)
    assert colour_mask(pixels, "C2").sum() == 0
    with pytest.raises(KeyError):
        plots.bound_curves({"broken": {"samples": [1.0]}}, tmp_path / "broken.png")
