"""The command-line tools, installed as `tfvae-train`, `tfvae-evaluate`,
`tfvae-export` and `tfvae-sample` (and run by `scripts/*.py`).

Each `main(argv)` parses its flags and calls one library function. A user's
mistake (a missing folder, a value no run can have) prints `error: ...` and
returns 1; argparse's usage errors return 2; an interrupt returns 130.
"""

from __future__ import annotations

import sys


def fail(error: BaseException | str) -> int:
    """Prints `error: <error>` to stderr; returns the exit status 1."""
    print(f"error: {error}", file=sys.stderr)
    return 1


def add_verbose(parser) -> None:
    """Adds `--verbose`: TensorFlow's start-up notes and Keras' per-step output."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up notes (which tfvae hides) and Keras' own progress "
        "output; for TensorFlow's C++ INFO logs too, set TF_CPP_MIN_LOG_LEVEL=0",
    )


def start_up(verbose: bool) -> None:
    """Probes the devices quietly (tfvae.startup); with `verbose`, prints the
    start-up notes that were kept from stderr."""
    from tfvae import startup

    startup.probe_devices()
    if verbose:
        for line in startup.hidden_lines:
            print(line, file=sys.stderr)
