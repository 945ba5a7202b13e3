"""Export a trained run for serving and phones: `tfvae-export RUN_DIR`.

Writes RUN_DIR/export/: a SavedModel with tensor-only endpoints, `.tflite`
decoders (float32, dynamic-range int8, float16; full int8 when asked) and
export.json, after checking that each agrees with the Keras model (see
tfvae/parity.py and the README section "Export").
"""

import argparse
import sys
from pathlib import Path

from tfvae.cli import add_verbose, fail, start_up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfvae-export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, help="a run folder written by tfvae-train")
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
    parser.add_argument(
        "--web",
        action="store_true",
        help="also write EXPORT/web/: a page that samples the float32 decoder in a "
        "browser with LiteRT.js (serve EXPORT with python -m http.server)",
    )
    add_verbose(parser)
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        return fail(f"{args.run_dir} is not a folder.")
    start_up(args.verbose)
    # Imported after parsing so that --help and flag errors answer at once.
    from tfvae import export, parity, web_page

    # Caught: missing files or data, unknown quantizations, unsupported models, failed checks.
    try:
        description = export.export_run(
            args.run_dir,
            quantizations=args.quantizations or export.DEFAULT_QUANTIZATIONS,
            export_dir=args.output_dir,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError, parity.ParityError) as error:
        return fail(error)
    except ImportError as error:  # The checks run the files in LiteRT.
        return fail(f"{error}. Install tfvae with its dependencies: pip install -e .")
    export_dir = args.output_dir or args.run_dir / export.EXPORT_DIR
    print(summary(description, export_dir))
    if args.web:
        try:
            page = web_page.write_page(export_dir)
        except (FileNotFoundError, ValueError) as error:
            return fail(f"the export is complete, the web page is not: {error}")
        print(web_summary(page, export_dir))
    sampler = export_dir / "decoder_dynamic_int8.tflite"
    print(f"Next: tfvae-sample {sampler}   samples as a phone would")
    return 0


def web_summary(page: dict, export_dir: Path) -> str:
    """Where the page is, its size, and how to open it."""
    runtime = (
        "LiteRT.js beside it"
        if page["runtime"] == "local"
        else "LiteRT.js from the jsDelivr CDN (no web/node_modules: cd web && npm ci)"
    )
    return (
        f"Wrote {page['path']} ({page['bytes'] / 2**20:.1f} MiB, {runtime}). To open it:\n"
        f"  python -m http.server --directory {export_dir} 8000   "
        "then http://127.0.0.1:8000/web/"
    )


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
