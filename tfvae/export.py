"""Export: a trained VAE as a SavedModel and TFLite decoders for on-device sampling.

`export_run(run_dir)` writes, beside a trained run:

    <run_dir>/export/
        saved_model/                 endpoints encode, decode, sample_from_noise,
                                     sample, reconstruct, elbo: plain tensors in
                                     and out, loadable without TFP
        decoder_float32.tflite       signatures decode, sample_from_noise, sample
        decoder_dynamic_int8.tflite  int8 weights, float activations
        decoder_float16.tflite       float16 weights
        decoder_int8.tflite          (when asked) int8 network calibrated on z ~ p(z)
        export.json                  what an app feeds and gets back, and the
                                     parity report

The endpoints and their noise inputs are in `tfvae.endpoints`. export.json
("format": "tfvae-export/2") holds `latent_dim`, `image_shape`, the parts'
names (`likelihood`, `posterior`, `prior` with its parameters), `condition`,
the `noise` each sampler takes, the files, every decoder signature's inputs
and outputs (name, shape, dtype, meaning), the model config and the parity
report. `condition` is null for an ordinary VAE; for a conditional one it is
`{"num_classes": K, "input": "labels", "dtype": "int32", "shape": ["B"],
"encoding": "one_hot"}`: every signature takes `labels` `[B]`, ints 0..K-1
(`sample` takes `labels` `[n]` instead of `num_samples`; see `tfvae.endpoints`).

The full-int8 file quantizes the network (matmuls, convolutions, hidden
activations); the likelihood's link functions (sigmoid, and softplus as exp
and log) and the sampling arithmetic stay float32, so `u < p` is never
compared on a 1/256 grid.

Every export is checked against the Keras model (`tfvae.parity`) before its
folder appears: a failed check raises `ParityError` and leaves no export
folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae import datasets, parity, startup
from tfvae.config import RunConfig
from tfvae.endpoints import (
    DECODER_SIGNATURES,
    LABELS,
    QUANTIZATIONS,
    SAVED_MODEL_DIR,
    UnsupportedModelError,
    draw_labels,
    draw_noise,
    endpoints,
    posterior_noise,
    prior_draw,
    sampling_noise,
    tflite_name,
)
from tfvae.model import VAE

EXPORT_DIR = "export"
CONFIG_FILE = "export.json"
DEFAULT_QUANTIZATIONS = ("float32", "dynamic_int8", "float16")
# Kept float32 in the full-int8 model: link functions (sigmoid; softplus = log(1 + exp))
# and the arithmetic of means and draws (the continuous Bernoulli's inverse CDF,
# rounding to grey levels, a mixture's component choice): only the matmuls and
# the hidden activations are quantized.
FLOAT_OPS = (
    "LOGISTIC",
    "EXP",
    "LOG",
    "LESS",
    "GREATER",
    "MUL",
    "ADD",
    "SUB",
    "DIV",
    "NEG",
    "ABS",
    "FLOOR",
    "MINIMUM",
    "MAXIMUM",
    "SELECT",
    "SELECT_V2",
    "SQRT",
    "RSQRT",
    "SQUARE",
    "SUM",
    "CUMSUM",
    "SOFTMAX",
    "GATHER",
    "RESHAPE",
)
NUM_TEST_EXAMPLES = 1000
DESCRIPTIONS = {
    "x": "images [B, *image_shape]: data in, or draws x ~ p(x|z) out",
    "z": "latent codes [B, latent_dim], e.g. z ~ p(z)",
    "eps": "N(0, 1) noise [B, latent_dim] of a draw of z (prior or posterior)",
    "component_noise": "U(0, 1) noise [B]: picks a mixture prior's component",
    "chi2_noise": "N(0, 1) noise [B, nu, latent_dim] of a Student-t draw",
    "uniform_noise": "U(0, 1) noise per pixel of a draw of x ~ p(x|z)",
    "normal_noise": "N(0, 1) noise per pixel; x = loc + scale * normal_noise",
    "num_samples": "int32 scalar: how many images to draw",
    LABELS: "int32 class labels [B] in 0..num_classes-1 (sample: one per image drawn)",
    "mean": "E[x|z] [B, *image_shape], the usual picture",
    "logits": "logits of p(x|z) per pixel",
    "loc": "location of p(x|z) per pixel",
    "scale": "scale of p(x|z) per pixel",
    "z_mean": "mean of q(z|x) [B, latent_dim]",
    "elbo": "ELBO per example [B] in nats, one draw of z from the given noise",
    "rate": "KL(q(z|x) || p(z)) [B] nats",
    "distortion": "-log p(x|z) [B] nats",
}


# Writing the artifacts.


def write_saved_model(model: VAE, path: Path) -> None:
    """Writes the endpoints through `keras.export.ExportArchive` (which tracks the weights)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, signature) in endpoints(model).items():
        archive.add_endpoint(name, function, input_signature=signature)
    archive.write_out(str(path), verbose=False)


def convert_decoder(
    saved_model_dir: Path, quantization: str, calibration: Callable[[], Iterator] | None = None
) -> bytes:
    """Converts the decoder signatures to a builtin-ops-only `.tflite` flatbuffer.

    Args:
        saved_model_dir: Written by `write_saved_model`.
        quantization: One of `QUANTIZATIONS`.
        calibration: For `int8`: yields `(signature, {input: array})`.

    Returns:
        The `.tflite` contents.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(DECODER_SIGNATURES)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization != "int8":
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = calibration
    # The quantization debugger is TF's route to keep chosen ops in float;
    # its calibrator still uses the deprecated tf.lite.Interpreter.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=calibration,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=list(FLOAT_OPS)
            ),
        )
        return debugger.get_nondebug_quantized_model()


def calibration_data(
    model: VAE, seed: int, num_batches: int = 32, batch_size: int = 32
) -> Callable[[], Iterator]:
    """Representative inputs of every decoder signature, with z ~ p(z) (and, for
    a conditional VAE, labels uniform over its classes).

    Returns:
        A generator function yielding `(signature, {input: array})`, the same
        `3 * num_batches` inputs on every call.
    """

    def generate():
        rng = np.random.default_rng(seed)
        spec = sampling_noise(model)
        for _ in range(num_batches):
            inputs = draw_noise(rng, spec, batch_size)
            labels = draw_labels(model, rng, batch_size)
            yield "decode", {"z": prior_draw(model, inputs).numpy(), **labels}
            yield "sample_from_noise", {**inputs, **labels}
            yield "sample", labels or {"num_samples": np.array(batch_size, np.int32)}

    return generate


# The export folder.


def export_model(
    model: VAE,
    export_dir: Path,
    x_test: np.ndarray,
    y_test: np.ndarray | None = None,
    *,
    quantizations: Sequence[str] = DEFAULT_QUANTIZATIONS,
    run_config: RunConfig | None = None,
    seed: int = 0,
) -> dict:
    """Writes and checks the SavedModel and `.tflite` decoders of `model`.

    The folder is built under a temporary name and renamed at the end, so a
    failed export never leaves a complete-looking `export_dir`.

    Args:
        model: A built VAE.
        export_dir: The folder to (re)place.
        x_test: `[N, *image_shape]` test data for the parity report.
        y_test: `[N]` int labels of `x_test`: required for a conditional VAE
            (see `tfvae.parity`), refused for an ordinary one.
        quantizations: Which `.tflite` files, from `QUANTIZATIONS`; `int8` is
            calibrated on z ~ p(z) (and uniform labels).
        run_config: Recorded in export.json when given.
        seed: Seeds calibration and parity noise.

    Returns:
        The contents of export.json.

    Raises:
        ValueError: An unknown or no quantization; `y_test` missing for a
            conditional VAE, given for an ordinary one, or not its labels.
        endpoints.UnsupportedModelError: The model's distributions cannot be exported.
        parity.ParityError: An artifact disagrees with the model beyond tolerance.
    """
    quantizations = _canonical_quantizations(quantizations)
    parity.check_labels(model, x_test, y_test)  # Before minutes of conversion.
    start = time.perf_counter()

    def write_and_check() -> dict:
        with atomic_directory(Path(export_dir)) as folder:
            write_saved_model(model, folder / SAVED_MODEL_DIR)
            for quantization in quantizations:
                flatbuffer = convert_decoder(
                    folder / SAVED_MODEL_DIR, quantization, calibration_data(model, seed)
                )
                (folder / tflite_name(quantization)).write_bytes(flatbuffer)
            report = parity.check_export(
                model, folder, x_test, y_test, quantizations=quantizations, seed=seed
            )
            description = describe(model, folder, quantizations, report, run_config)
            description["export_seconds"] = round(time.perf_counter() - start, 2)
            (folder / CONFIG_FILE).write_text(json.dumps(description, indent=2))
        return description

    # The converter and LiteRT write notes to stderr from C++; tfvae.startup hides them.
    return startup.quietly(write_and_check)


def describe(
    model: VAE,
    folder: Path,
    quantizations: Sequence[str],
    report: dict,
    run_config: RunConfig | None,
) -> dict:
    """export.json: shapes, parts, condition, noise, files, signatures and parity."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(folder / tflite_name(quantizations[0])))
    prior = model.prior_part()
    return {
        "format": "tfvae-export/2",
        "latent_dim": int(np.prod(model.latent_shape)),
        "image_shape": list(model.input_event_shape),
        "likelihood": type(model.likelihood_head()).__name__,
        "posterior": type(model.posterior_head()).__name__,
        "prior": {"name": type(prior).__name__, **_small_parameters(prior, model)},
        "condition": _condition_description(model),
        "noise": {
            "sample_from_noise": _noise_description(sampling_noise(model)),
            "elbo": _noise_description(posterior_noise(model)),
        },
        "saved_model": {"path": SAVED_MODEL_DIR, "endpoints": list(endpoints(model))},
        "tflite": {
            tflite_name(q): {"quantization": q, "bytes": (folder / tflite_name(q)).stat().st_size}
            for q in quantizations
        },
        "signatures": {
            name: _signature(interpreter.get_signature_runner(name)) for name in DECODER_SIGNATURES
        },
        "model_config": run_config.to_dict()["model"] if run_config else None,
        "parity": report,
    }


def _condition_description(model: VAE) -> dict | None:
    """What a conditional VAE's signatures take besides noise; None for an ordinary VAE."""
    if model.num_classes is None:
        return None
    return {
        "num_classes": model.num_classes,
        "input": LABELS,
        "dtype": "int32",
        "shape": ["B"],
        "encoding": "one_hot",
    }


def _noise_description(spec) -> dict:
    return {name: {"kind": kind, "shape": ["B", *shape]} for name, (kind, shape) in spec.items()}


def _small_parameters(prior, model: VAE, limit: int = 10_000) -> dict:
    """The prior's parameters as lists, unless larger than `limit` values (pseudo-inputs)."""
    parameters = {
        name: np.asarray(value) for name, value in prior.parameters(model.encoder).items()
    }
    if sum(value.size for value in parameters.values()) > limit:
        return {"parameters": "in saved_model/ (too large for JSON)"}
    return {name: value.tolist() for name, value in parameters.items()}


def _canonical_quantizations(quantizations) -> list[str]:
    """`quantizations` in the order of `QUANTIZATIONS`.

    Raises:
        ValueError: None, or one not in `QUANTIZATIONS`.
    """
    unknown = set(quantizations) - set(QUANTIZATIONS)
    if unknown or not quantizations:
        raise ValueError(
            f"Quantizations must be some of {', '.join(QUANTIZATIONS)}; "
            f"got {', '.join(quantizations) or 'none'}."
        )
    return [q for q in QUANTIZATIONS if q in quantizations]


def _signature(runner) -> dict:
    """Name, shape, dtype and meaning of a signature runner's inputs and outputs."""

    def tensors(details):
        return {
            name: {
                "shape": [int(d) for d in detail["shape_signature"]],
                "dtype": np.dtype(detail["dtype"]).name,
                "description": DESCRIPTIONS.get(name, ""),
            }
            for name, detail in sorted(details.items())
        }

    return {
        "inputs": tensors(runner.get_input_details()),
        "outputs": tensors(runner.get_output_details()),
    }


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yields a temporary sibling folder that replaces `target` on success only."""
    # What a killed export left behind (a process killed with SIGKILL runs no finally).
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folder, old = (
        target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex}") for tag in ("tmp", "old")
    )
    folder.mkdir(parents=True)  # Not mkdtemp: its mode 0700 would outlive the rename.
    try:
        yield folder
        if target.exists():
            os.replace(target, old)
        os.replace(folder, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Runs.


def load_run(run_dir: Path) -> tuple[VAE, RunConfig]:
    """The trained VAE and config of a run folder written by `tfvae.training`.

    Raises:
        FileNotFoundError: Not a run folder.
        UnsupportedModelError: The run's posterior is a point mass (the plain
            autoencoder: no bound to evaluate, nothing to sample), or the file
            holds no VAE.
        ValueError: The `.keras` file holds code (refused by Keras' safe mode).
    """
    run_dir = Path(run_dir)
    for name in ("config.json", "model.keras"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} not found: RUN_DIR must be a "
                "run folder written by scripts/train.py."
            )
    config = RunConfig.from_json((run_dir / "config.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
    if not isinstance(model, VAE):
        raise UnsupportedModelError(f"{run_dir} holds a {type(model).__name__}, not a VAE.")
    if not model.has_density:
        raise UnsupportedModelError(
            f"{run_dir} is a plain autoencoder (--posterior point_mass): it has no bound "
            "on log p(x) and no prior-shaped codes to sample, so it is neither exported "
            "nor evaluated."
        )
    return model, config


def load_test_images(config: RunConfig, limit: int | None = NUM_TEST_EXAMPLES) -> np.ndarray:
    """The run's test images `[<= limit, *image_shape]`, binarized as in training."""
    return load_test_set(config, limit)[0]


def load_test_set(
    config: RunConfig, limit: int | None = NUM_TEST_EXAMPLES
) -> tuple[np.ndarray, np.ndarray | None]:
    """The run's test images `[<= limit, *image_shape]`, binarized as in training,
    and for a conditional run their int32 labels `[<= limit]` (else None)."""
    conditional = config.model.conditional
    splits = datasets.load(config.data, seed=config.train.seed, labels=conditional)
    batches = list(splits.test.as_numpy_iterator())
    if not conditional:
        return np.concatenate(batches)[:limit], None
    return (
        np.concatenate([x for x, _ in batches])[:limit],
        np.concatenate([y for _, y in batches])[:limit],
    )


def export_run(
    run_dir: Path,
    *,
    quantizations: Sequence[str] = DEFAULT_QUANTIZATIONS,
    export_dir: Path | None = None,
    seed: int = 0,
) -> dict:
    """Exports a run folder's model to `<run_dir>/export` (see the module docstring).

    Args:
        run_dir: Holds `config.json` and `model.keras` (`tfvae.training`).
        quantizations: As `export_model`.
        export_dir: Where to write instead of `<run_dir>/export`.
        seed: Seeds calibration and parity noise.

    Returns:
        The contents of export.json.

    Raises:
        FileNotFoundError: Not a run folder.
        datasets.DataNotFoundError: The run's test data are missing.
        endpoints.UnsupportedModelError, parity.ParityError: As `export_model`.
    """
    model, config = load_run(run_dir)
    return export_model(
        model,
        export_dir or Path(run_dir) / EXPORT_DIR,
        *load_test_set(config),
        quantizations=quantizations,
        run_config=config,
        seed=seed,
    )
