"""TensorFlow's start-up, without its chatter.

Importing TensorFlow writes notes straight to file descriptor 2 from C++
(oneDNN's numerics note, the CUDA stub's "no GPU", the CPU-feature note, absl's
pre-initialisation warning), and its first device probe and first XLA compile
write more ("failed call to cuInit", "XLA service ... initialized"). None of
them tells a tfvae user anything, and Python cannot filter them: they bypass
`sys.stderr`. So `import_tensorflow` and `quietly` capture descriptor 2,
keep the lines that match `START_UP_NOTES` in `hidden_lines` (the CLI's
`--verbose` prints them) and write every other line back, so that a real
warning or error is never lost.

`import tfvae` imports TensorFlow this way when it is the first to (so import
tfvae before TensorFlow or Keras to get the quiet start), probes the devices the
same way, and sets `TF_CPP_MIN_LOG_LEVEL=1` unless it is set (TensorFlow's C++
INFO logs off; warnings and errors stay). `TFVAE_VERBOSE=1` turns all of this off.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# One pattern per kind of note TensorFlow 2.18-2.21 writes at start-up on a
# machine without a GPU (and its converter and LiteRT per use); anything else
# is written back.
START_UP_NOTES = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|^To enable the following instructions:"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\]"
    r"|service\.cc:\d+\] (XLA service|  StreamExecutor)"
    r"|device_compiler\.h:\d+\] Compiled cluster using XLA"
    r"|dump_mlir_util\.cc:\d+\] disabling MLIR crash reproducer"
    # The TFLite converter's and LiteRT's, once per conversion or interpreter.
    r"|^fully_quantize: \d+, inference_type: \d+"
    r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU"
)

hidden_lines: list[str] = []


def verbose() -> bool:
    """Whether the user asked to see everything (`TFVAE_VERBOSE` set, not 0)."""
    return os.environ.get("TFVAE_VERBOSE", "0") not in ("", "0")


def quietly(fn: Callable[[], T]) -> T:
    """Calls `fn` with descriptor 2 captured; writes back all but start-up notes.

    Returns:
        What `fn` returns. Its exceptions propagate after the captured text is
        written back, hidden lines included, so that a failure shows everything.
    """
    if verbose():
        return fn()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            result = fn()
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            _write_back(capture.read().decode(errors="replace"), keep_notes=failed)
    return result


def _write_back(text: str, keep_notes: bool) -> None:
    shown = []
    for line in text.splitlines(keepends=True):
        if not keep_notes and START_UP_NOTES.search(line):
            hidden_lines.append(line.rstrip("\n"))
        else:
            shown.append(line)
    sys.stderr.write("".join(shown))
    sys.stderr.flush()


def import_tensorflow() -> None:
    """Imports TensorFlow quietly, unless something imported it already."""
    if "tensorflow" in sys.modules:
        return
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    quietly(lambda: __import__("tensorflow"))
    probe_devices()  # Else CUDA's "no GPU" error comes with the first op.


def probe_devices() -> list:
    """TensorFlow's physical devices, probed quietly (the probe is where CUDA
    reports that there is no GPU). Changes no device configuration, so a
    strategy can still set up logical devices after it."""
    import tensorflow as tf

    return quietly(tf.config.list_physical_devices)
