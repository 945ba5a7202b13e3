"""Pictures a person looks at: samples, reconstructions, the latent manifold and paths
through it, curves.

Pure matplotlib on numpy arrays. Figures are `matplotlib.figure.Figure` objects on
the non-interactive Agg canvas, never `pyplot` and its global state, so plotting is
safe in threads and on headless CI. Every function writes one PNG atomically (a
temporary file in the same folder, then `os.replace`), so a crash never leaves a
truncated file that looks complete, and returns its path. Pixel intensities live in
[0, 1]; values outside are clipped.

References:
    Kingma, D. P. and Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.
    Figure 2 (lower bound against training samples evaluated) and Figure 4
    (learned 2-D manifolds).
"""

from __future__ import annotations

import math
import os
import pathlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Optional

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

PathLike = str | os.PathLike
RECONSTRUCTIONS_PER_ROW = 10


def image_grid(
    images: np.ndarray,
    path: PathLike,
    *,
    ncols: Optional[int] = None,
    title: Optional[str] = None,
) -> pathlib.Path:
    """Tiles images in a grid with thin gaps, e.g. samples from the model.

    Args:
        images: `[N, H, W]` grey or `[N, H, W, 3]` RGB intensities in [0, 1].
        path: Where to write the PNG; parent folders are created.
        ncols: Images per row; defaults to `ceil(sqrt(N))`.
        title: Optional title above the grid.

    Returns:
        The path of the written PNG.
    """
    images = _as_images(images)
    ncols = ncols or int(np.ceil(np.sqrt(len(images))))
    fig, ax = _image_figure(_tile(images, ncols, gap=1), title)
    ax.set_axis_off()
    return _save(fig, path)


def reconstructions(
    inputs: np.ndarray, outputs: np.ndarray, path: PathLike, *, title: Optional[str] = None
) -> pathlib.Path:
    """Draws a row of inputs above the row of their reconstructions, 10 pairs per row.

    Args:
        inputs: `[N, H, W]` (or `[N, H, W, 3]`) intensities in [0, 1].
        outputs: Reconstructions of `inputs`, same shape.
        path: Where to write the PNG; parent folders are created.
        title: Optional title above the grid.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If `inputs` and `outputs` differ in shape.
    """
    inputs, outputs = _as_images(inputs), _as_images(outputs)
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs {inputs.shape} and outputs {outputs.shape} differ in shape")
    image_shape = inputs.shape[1:]
    ncols = min(len(inputs), RECONSTRUCTIONS_PER_ROW)
    blank = np.full((-len(inputs) % ncols, *image_shape), np.nan)
    rows = [np.concatenate([x, blank]).reshape(-1, ncols, *image_shape) for x in (inputs, outputs)]
    # Interleaved: a row of inputs, the row of their reconstructions, the next inputs, ...
    pairs = np.stack(rows, axis=1).reshape(-1, *image_shape)
    fig, ax = _image_figure(_tile(pairs, ncols, gap=1), title)
    num_rows, height = len(pairs) // ncols, image_shape[0]
    row_centres = np.arange(num_rows) * (height + 1) + (height - 1) / 2
    ax.set_yticks(row_centres, ["input", "reconstruction"] * (num_rows // 2))
    ax.set_xticks([])
    ax.tick_params(left=False)
    ax.spines[:].set_visible(False)
    return _save(fig, path)


def manifold(
    decode_fn: Callable[[np.ndarray], np.ndarray],
    path: PathLike,
    *,
    grid_size: int = 20,
    image_shape: Sequence[int],
    title: Optional[str] = None,
) -> pathlib.Path:
    """Decodes a grid over a 2-D latent space into one image (Kingma & Welling, Figure 4).

    The grid is equally spaced in probability, not in z: each coordinate takes the
    values `norm.ppf(linspace(0.05, 0.95, grid_size))`, the inverse CDF of the
    standard normal prior, so every tile stands for the same prior mass. The
    quantiles avoid 0 and 1, where the inverse CDF is infinite. z1 runs along x,
    z2 along y, increasing upwards.

    Args:
        decode_fn: Maps z `[grid_size**2, 2]` to mean images
            `[grid_size**2, *image_shape]`; called once. Row `i * grid_size + j`
            of z is the tile in row i (counted from the top) and column j.
        path: Where to write the PNG; parent folders are created.
        grid_size: Tiles per side.
        image_shape: `(H, W)` (or `(H, W, 3)`) of one decoded image.
        title: Optional title above the manifold.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If `decode_fn` returns an array of the wrong shape.
    """
    z_axis = stats.norm.ppf(np.linspace(0.05, 0.95, grid_size))
    z1, z2 = np.meshgrid(z_axis, z_axis[::-1])
    images = np.asarray(decode_fn(np.stack([z1.ravel(), z2.ravel()], axis=-1)))
    expected = (grid_size**2, *image_shape)
    if images.shape != expected:
        raise ValueError(f"decode_fn returned shape {images.shape}, expected {expected}")
    fig, ax = _image_figure(_tile(_as_images(images), grid_size, gap=0), title)
    # Tick the centres of the outermost tiles with their z.
    height, width = image_shape[:2]
    ends = np.array([0, grid_size - 1])
    ax.set_xticks(ends * width + (width - 1) / 2, [f"{z:.2f}" for z in z_axis[ends]])
    ax.set_yticks(ends * height + (height - 1) / 2, [f"{z:.2f}" for z in z_axis[::-1][ends]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return _save(fig, path)


def interpolation(
    decode_fn: Callable[[np.ndarray], np.ndarray],
    z_start: np.ndarray,
    z_end: np.ndarray,
    path: PathLike,
    *,
    num_steps: int = 10,
    image_shape: Sequence[int],
    title: Optional[str] = None,
) -> pathlib.Path:
    """Decodes equally spaced codes on the segment from `z_start` to `z_end` into a strip.

    Code t of the strip is `(1 - t) z_start + t z_end` for t in
    `linspace(0, 1, num_steps)`, drawn left to right: the first tile decodes
    `z_start`, the last `z_end`.

    Args:
        decode_fn: Maps z `[num_steps, J]` to mean images `[num_steps, *image_shape]`;
            called once.
        z_start: The code `[J]` at the left end, e.g. a posterior mean.
        z_end: The code `[J]` at the right end.
        path: Where to write the PNG; parent folders are created.
        num_steps: Tiles in the strip, the two ends included (at least 2).
        image_shape: `(H, W)` (or `(H, W, 3)`) of one decoded image.
        title: Optional title above the strip.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If the codes are not two vectors of one length, `num_steps`
            is below 2, or `decode_fn` returns an array of the wrong shape.
    """
    z_start, z_end = np.asarray(z_start, dtype=float), np.asarray(z_end, dtype=float)
    if z_start.ndim != 1 or z_start.shape != z_end.shape:
        raise ValueError(f"expected codes [J] and [J], got {z_start.shape} and {z_end.shape}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2 (the two ends), got {num_steps}")
    t = np.linspace(0.0, 1.0, num_steps)[:, None]
    z = ((1.0 - t) * z_start + t * z_end).astype(np.float32)
    images = np.asarray(decode_fn(z))
    expected = (num_steps, *image_shape)
    if images.shape != expected:
        raise ValueError(f"decode_fn returned shape {images.shape}, expected {expected}")
    fig, ax = _image_figure(_tile(_as_images(images), num_steps, gap=1), title)
    width = image_shape[1]
    ends = np.array([0, num_steps - 1])
    ax.set_xticks(ends * (width + 1) + (width - 1) / 2, ["$t = 0$", "$t = 1$"])
    ax.set_yticks([])
    return _save(fig, path)


def training_curves(
    history: Mapping[str, Sequence[float]],
    path: PathLike,
    *,
    x: Optional[Sequence[float]] = None,
    xlabel: str = "epoch",
    log_x: bool = False,
    title: Optional[str] = None,
) -> pathlib.Path:
    """Plots the lower bound per datapoint, and rate and distortion, over training.

    With an `elbo` key, one panel shows `elbo` and `val_elbo` (train and test
    bound) and a second, if any is present, `rate`, `distortion` and their `val_`
    versions. Without `elbo`, one panel shows every numeric series. Missing keys
    and non-numeric entries are skipped. Validation curves are dashed.

    Args:
        history: Series name to values `[T]`, e.g. `keras.callbacks.History.history`.
        path: Where to write the PNG; parent folders are created.
        x: Positions `[T]` of the values; defaults to epochs 1..T.
        xlabel: Label of the x axis.
        log_x: Logarithmic x axis: the paper's Figure 2, with `x` the number of
            training samples evaluated.
        title: Optional title above the panels.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If nothing numeric is left to plot, or `x` differs in length
            from a series.
    """
    series = {}
    for key, values in history.items():
        values = np.asarray(values)
        if values.ndim == 1 and values.size and np.issubdtype(values.dtype, np.number):
            series[key] = values.astype(float)
    if not series:
        raise ValueError(f"no numeric series to plot in history keys {sorted(history)}")
    if "elbo" in series:
        panels = [
            ("lower bound per datapoint", ["elbo", "val_elbo"]),
            ("nats per datapoint", ["rate", "val_rate", "distortion", "val_distortion"]),
        ]
    else:
        panels = [(None, sorted(series))]
    panels = [(ylabel, [key for key in keys if key in series]) for ylabel, keys in panels]
    panels = [(ylabel, keys) for ylabel, keys in panels if keys]
    fig = _figure((5.0 * len(panels), 3.5))
    for ax, (ylabel, keys) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        quantities = dict.fromkeys(key.removeprefix("val_") for key in keys)
        for color, quantity in enumerate(quantities):
            for name, linestyle in ((quantity, "-"), (f"val_{quantity}", "--")):
                if name in keys:
                    ax.plot(
                        _positions(x, series[name], name),
                        series[name],
                        linestyle,
                        color=f"C{color}",
                        label=name,
                    )
        ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if log_x else "linear")
        # Label only the decades: labelled minor ticks overlap on a log axis.
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def latent_scatter(
    z: np.ndarray, labels: np.ndarray, path: PathLike, *, title: Optional[str] = None
) -> pathlib.Path:
    """Scatters 2-D latent codes coloured by class.

    Label k is always coloured `tab10[k % 10]`, so two plots (an autoencoder's
    codes and a VAE's) colour a class alike. Points are drawn in the given order,
    so with shuffled data no class systematically hides another.

    Args:
        z: Latent codes `[N, 2]`.
        labels: Integer class labels `[N]`.
        path: Where to write the PNG; parent folders are created.
        title: Optional title above the scatter.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If `z` is not `[N, 2]` or `labels` is not integer `[N]`.
    """
    z, labels = np.asarray(z, dtype=float), np.asarray(labels)
    if z.ndim != 2 or z.shape[1] != 2 or labels.shape != z.shape[:1]:
        raise ValueError(f"expected z [N, 2] and labels [N], got {z.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        # A colormap reads floats as positions in [0, 1], not as classes.
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    palette = colormaps["tab10"]
    fig = _figure((6.0, 5.0))
    ax = fig.add_subplot()
    ax.scatter(z[:, 0], z[:, 1], c=palette(labels % 10), s=4, linewidths=0)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=palette(k % 10), label=str(k))
        for k in np.unique(labels)
    ]
    ax.legend(handles=handles, title="label", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set(xlabel="$z_1$", ylabel="$z_2$", title=title or "")
    return _save(fig, path)


def bound_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    path: PathLike,
    *,
    title: Optional[str] = None,
) -> pathlib.Path:
    """Kingma & Welling's Figure 2: train and test bound against samples, per run.

    Args:
        histories: {label: history} with `samples`, `elbo` and `val_elbo` series.
        path: PNG to write.
        title: Figure title.

    Returns:
        `path`. Train bounds are solid, test bounds dashed, one colour per run.
    """
    fig = _figure((6.5, 4.5))
    ax = fig.add_subplot()
    for color, (label, history) in enumerate(histories.items()):
        ax.plot(
            history["samples"], history["elbo"], "-", color=f"C{color}", label=f"{label}, train"
        )
        ax.plot(
            history["samples"], history["val_elbo"], "--", color=f"C{color}", label=f"{label}, test"
        )
    ax.set(
        xscale="log",
        xlabel="training samples evaluated",
        ylabel="lower bound per datapoint (nats)",
        title=title or "",
    )
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def _as_images(images: np.ndarray) -> np.ndarray:
    """Returns `[N, H, W]` or `[N, H, W, 3]` as floats clipped to [0, 1]."""
    images = np.asarray(images, dtype=float)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"expected images [N, H, W] or [N, H, W, 3], got {images.shape}")
    return np.clip(images, 0.0, 1.0)


def _tile(images: np.ndarray, ncols: int, gap: int) -> np.ndarray:
    """Tiles `[N, H, W(, 3)]` row by row into one canvas, with NaN in gaps and blanks."""
    n, height, width = images.shape[:3]
    nrows = -(-n // ncols)
    canvas_shape = (nrows * (height + gap) - gap, ncols * (width + gap) - gap)
    canvas = np.full(canvas_shape + images.shape[3:], np.nan)
    for k, image in enumerate(images):
        top, left = (k // ncols) * (height + gap), (k % ncols) * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return canvas


def _image_figure(canvas: np.ndarray, title: Optional[str]) -> tuple[Figure, Axes]:
    """Shows a canvas, 8 inches on its long side, grey from 0 to 1; NaN is transparent."""
    height, width = canvas.shape[:2]
    # At least two screen pixels per image pixel, so that large grids stay sharp.
    dpi = max(100, math.ceil(2.5 * max(height, width) / 8.0))
    fig = _figure((8.0 * width / max(height, width), 8.0 * height / max(height, width)), dpi)
    ax = fig.add_subplot()
    if canvas.ndim == 3:
        # RGB has no colormap whose "bad" colour would hide NaN, so gaps get alpha 0.
        opaque = ~np.isnan(canvas[..., :1])
        rgba = np.concatenate([np.nan_to_num(canvas), opaque], axis=-1)
        ax.imshow(rgba, interpolation="nearest")
    else:
        ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title or "")
    return fig, ax


def _positions(x: Optional[Sequence[float]], values: np.ndarray, name: str) -> np.ndarray:
    """Returns the x positions of a series: `x` if given, else epochs 1..T."""
    if x is None:
        return np.arange(1, len(values) + 1)
    if len(x) != len(values):
        raise ValueError(f"x has {len(x)} positions but {name!r} has {len(values)} values")
    return np.asarray(x, dtype=float)


def _figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """Returns a figure on its own Agg canvas, untouched by pyplot's global state."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike) -> pathlib.Path:
    """Writes `fig` as a PNG to a temporary file beside `path`, then renames it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Our own name rather than mkstemp's, whose 0600 mode would survive the rename.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fig.savefig(temporary, format="png", bbox_inches="tight", pad_inches=0.05)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
