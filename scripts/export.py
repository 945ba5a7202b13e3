"""Export a trained run for serving and phones: `python scripts/export.py RUN_DIR`.

Writes RUN_DIR/export/: a SavedModel with tensor-only endpoints, `.tflite`
decoders (float32, dynamic-range int8, float16; full int8 when asked) and
export.json, after checking that each agrees with the Keras model (see
tfvae/parity.py and the README section "Export").
"""

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a run folder written by scripts/train.py")
    parser.add_argument(
        "--quantizations",
        nargs="+",
        default=None,
        metavar="NAME",
        help="which .tflite files: float32 dynamic_int8 float16 (the "
        "default) and int8 (full int8, calibrated on z ~ p(z))",
    )
    parser.add_argument("--output-dir", type=Path, default=None, help="default: RUN_DIR/export")
    parser.add_argument("--seed", type=int, default=0, help="seeds calibration and checks")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"error: {args.run_dir} is not a folder.", file=sys.stderr)
        return 1
    # Imported after parsing so that --help and flag errors answer at once.
    from tfvae import export, parity

    # Caught: missing files or data, unknown quantizations, unsupported models, failed checks.
    try:
        description = export.export_run(
            args.run_dir,
            quantizations=args.quantizations or export.DEFAULT_QUANTIZATIONS,
            export_dir=args.output_dir,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError, parity.ParityError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ImportError as error:  # The checks run the files in LiteRT.
        print(
            f"error: {error}. Install tfvae with its dependencies: pip install -e .",
            file=sys.stderr,
        )
        return 1
    print(summary(description, args.output_dir or args.run_dir / export.EXPORT_DIR))
    return 0


def summary(description: dict, export_dir: Path) -> str:
    """A few lines: where, and each file's size and parity."""
    lines = [
        f"Wrote {export_dir} in {description['export_seconds']:.1f} s (all parity checks passed):"
    ]
    if description.get("condition"):
        lines.append(
            f"  conditional on {description['condition']['num_classes']} classes: "
            "every signature takes labels, int32 [B]"
        )
    for name, info in description["tflite"].items():
        parity = description["parity"][name]
        lines.append(
            f"  {name:30s} {info['bytes'] / 1024:8.1f} KiB  "
            f"mean |dE[x|z]| {parity['mean_abs_diff']:.2g}  "
            f"max {parity['max_abs_diff']:.2g}  "
            f"|d log-lik|/pixel {parity['log_likelihood_abs_change_per_pixel']:.2g}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
