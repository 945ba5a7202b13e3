"""Sample as a phone would: `tfvae-sample MODEL.tflite`.

This file needs only numpy and ai-edge-litert, no TensorFlow and not the rest
of tfvae: copied to a device, `python tflite_sampler.py MODEL.tflite` runs. It
draws eps ~ N(0, I) and the pixel noise from a seeded numpy generator, runs the model's
`sample_from_noise` signature and writes a PNG grid of E[x|z] (or of the
draws x ~ p(x|z) with --draws). The signature's input names and shapes say
what to feed (`eps`, and `uniform_noise` or `normal_noise`), so export.json
is not needed. A conditional model's signature also takes `labels`: give the
class of every image with --label (checked against export.json's
num_classes when it lies beside the model).
"""

import argparse
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = "labels"  # A conditional model's input: int32 class labels [B].


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """The `tfvae-sample` command: writes a PNG grid of a decoder's samples.

    Args:
        argv: The arguments after the program name (`None`: `sys.argv[1:]`).

    Returns:
        The exit status: 0 once the PNG is written; 1 (with a message on
        stderr) for a missing model, a file that is not a tfvae decoder, or a
        `--label` the model cannot take.
    """
    parser = argparse.ArgumentParser(
        prog="tfvae-sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, help="a decoder_*.tflite written by tfvae-export")
    parser.add_argument("--num-samples", type=positive_int, default=64, help="how many images")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise")
    parser.add_argument(
        "--out", type=Path, default=None, help="PNG to write; default: MODEL with suffix .png"
    )
    parser.add_argument(
        "--draws", action="store_true", help="show draws x ~ p(x|z) instead of the means E[x|z]"
    )
    parser.add_argument("--zoom", type=positive_int, default=3, help="pixels per image pixel")
    parser.add_argument(
        "--label", type=int, default=None, help="the class of every image, for a conditional model"
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"error: {args.model} not found.", file=sys.stderr)
        return 1
    try:
        runner = Interpreter(model_path=str(args.model)).get_signature_runner("sample_from_noise")
    except ValueError as error:  # Not a tfvae decoder, or not a .tflite at all.
        print(f"error: {args.model}: {error}", file=sys.stderr)
        return 1
    inputs = noise(runner.get_input_details(), args.num_samples, args.seed)
    problem = label_problem(
        LABELS in runner.get_input_details(), args.label, num_classes(args.model)
    )
    if problem:
        print(f"error: {args.model}: {problem}", file=sys.stderr)
        return 1
    if args.label is not None:
        inputs[LABELS] = np.full(args.num_samples, args.label, np.int32)
    outputs = runner(**inputs)
    images = outputs["x" if args.draws else "mean"]
    out = args.out or args.model.with_suffix(".png")
    write_png(tile(images, args.zoom), out)
    print(f"Wrote {out}: {len(images)} images of {images.shape[1:]} from {args.model.name}.")
    return 0


UNIFORM_INPUTS = ("uniform_noise", "component_noise")


def noise(input_details: dict, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs for `sample_from_noise`: each `[num_samples, *shape]` float32.

    `uniform_noise` (pixels) and `component_noise` (a mixture prior's component) are
    U(0, 1); every other input (`eps`, `normal_noise`, `chi2_noise`) is N(0, 1), as
    export.json's "noise" section lists.
    """
    rng = np.random.default_rng(seed)
    inputs = {}
    for name in sorted(input_details):  # A fixed order: the same seed, the same images.
        if name == LABELS:  # Not noise: the caller's choice.
            continue
        shape = (num_samples, *input_details[name]["shape_signature"][1:])
        draw = rng.random if name in UNIFORM_INPUTS else rng.standard_normal
        inputs[name] = draw(shape, dtype=np.float32)
    return inputs


def num_classes(model: Path) -> int | None:
    """K of a conditional model, from the export.json beside it; None if unknown."""
    description = model.with_name("export.json")
    if not description.is_file():
        return None
    condition = json.loads(description.read_text()).get("condition") or {}
    return condition.get("num_classes")


def label_problem(takes_labels: bool, label: int | None, classes: int | None) -> str | None:
    """Why `--label` does not fit the model (K = `classes` if known), or None."""
    valid = f"0..{classes - 1}" if classes else "0..K-1, K in export.json"
    if takes_labels != (label is not None):
        return (
            f"the model is conditional: give the class of the images with --label ({valid})."
            if takes_labels
            else "the model is not conditional: it takes no --label."
        )
    if label is not None and (label < 0 or (classes and label >= classes)):
        return f"--label {label} is not one of the model's classes ({valid})."
    return None


def tile(images: np.ndarray, zoom: int = 1, gap: int = 1) -> np.ndarray:
    """Images `[N, H, W]` in [0, 1] -> one `[rows, cols]` grid, about square."""
    images = np.clip(images, 0, 1).repeat(zoom, axis=1).repeat(zoom, axis=2)
    n, height, width = images.shape
    ncols = int(np.ceil(np.sqrt(n)))
    nrows = -(-n // ncols)
    grid = np.ones((nrows * (height + gap) + gap, ncols * (width + gap) + gap), np.float32)
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        top, left = gap + row * (height + gap), gap + col * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Writes `[H, W]` intensities in [0, 1] as an 8-bit grey PNG, atomically.

    zlib and struct only: on a device there may be no imaging library.
    """
    data = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    height, width = data.shape
    # Each scanline starts with its filter type, 0 (none).
    scanlines = b"".join(b"\x00" + row.tobytes() for row in data)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale.
    png = (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines, 9))
        + _chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


if __name__ == "__main__":
    sys.exit(main())
