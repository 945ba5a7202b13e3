"""Export: SavedModel endpoints and TFLite decoders for on-device sampling.

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

TFP's samplers need Flex ops, which LiteRT cannot run (../shared/STACK.md), so
sampling takes its noise as input: z = prior.loc + prior.scale * eps with
eps ~ N(0, I), then
    Bernoulli p(x|z):  x = 1[u < sigmoid(logits)],  u ~ U(0, 1)  (`uniform_noise`)
    Gaussian p(x|z):   x = loc + scale * n,          n ~ N(0, I)  (`normal_noise`).
`sample(num_samples)` draws that noise itself with the builtin random ops.
The full-int8 file quantizes the MLP (matmuls, tanh); the likelihood's link
functions (sigmoid, exp) and the sampling arithmetic stay float32, so
`u < p` is never compared on a 1/256 grid.

Parity, checked by every export: the reloaded SavedModel must match the Keras
model within 1e-5 + 1e-5 |value| on every output. Each
`.tflite` must hold builtin ops only; its `sample_from_noise` must equal the
sampling formula applied to its own `decode` outputs; its decoder means
E[x|z], z ~ p(z), must lie within `TOLERANCES` of the Keras model's, and so
must the change of the mean log p(x | z = posterior mean) over test data, in
nats per pixel. The tolerances are about 3x the largest value measured on the
shipped Frey Face models (latent 2 and 10), a 10-epoch MNIST model, and the
784-pixel decoder in ../shared/STACK.md (int8 max 0.14, hence 0.25):

    variant        mean |dE[x|z]|   max |dE[x|z]|   |d log-lik| / pixel
    float32        1e-6             1e-5            1e-5
    float16        1e-4             1e-3            1e-4
    dynamic_int8   5e-3             0.08            0.02
    int8           0.02             0.25            0.1

A failed check raises `ParityError` and leaves no export folder behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import datasets, objectives
from tfvae.config import RunConfig
from tfvae.model import VAE

tfd = tfp.distributions

EXPORT_DIR = "export"
SAVED_MODEL_DIR = "saved_model"
CONFIG_FILE = "export.json"
QUANTIZATIONS = ("float32", "dynamic_int8", "float16", "int8")
DEFAULT_QUANTIZATIONS = ("float32", "dynamic_int8", "float16")
DECODER_SIGNATURES = ("decode", "sample_from_noise", "sample")
PIXEL_NOISE = {"bernoulli": "uniform_noise", "gaussian": "normal_noise"}
# Kept float32 in the full-int8 model: link functions and sampling arithmetic.
FLOAT_OPS = ("LOGISTIC", "EXP", "LESS", "MUL", "ADD", "RESHAPE")
NUM_CHECK_SAMPLES = 256
NUM_TEST_EXAMPLES = 1000
DESCRIPTIONS = {
    "x": "images [B, *image_shape]: data in, or draws x ~ p(x|z) out",
    "z": "latent codes [B, latent_dim], e.g. z ~ p(z)",
    "eps": "N(0, 1) noise [B, latent_dim]; z = prior.loc + prior.scale * eps",
    "uniform_noise": "U(0, 1) noise per pixel; x = 1[uniform_noise < probs]",
    "normal_noise": "N(0, 1) noise per pixel; x = loc + scale * normal_noise",
    "num_samples": "int32 scalar: how many images to draw",
    "mean": "E[x|z] [B, *image_shape], the usual picture",
    "logits": "Bernoulli logits of p(x|z)", "probs": "sigmoid(logits)",
    "loc": "Gaussian means of p(x|z)", "scale": "Gaussian standard deviations of p(x|z)",
    "z_mean": "mean of q(z|x) [B, latent_dim]", "z_stddev": "stddev of q(z|x)",
    "elbo": "ELBO per example [B] in nats, one z = z_mean + z_stddev * eps",
    "rate": "KL(q(z|x) || p(z)) [B] nats", "distortion": "-log p(x|z) [B] nats",
}


class UnsupportedModelError(ValueError):
    """The model's distributions have no tensor-only export here."""


class ParityError(RuntimeError):
    """An exported artifact disagrees with the Keras model beyond its tolerance."""

    def __init__(self, failures: list[str], report: dict):
        super().__init__("Exported artifacts disagree with the Keras model:\n  "
                         + "\n  ".join(failures))
        self.report = report


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Accepted distance of a `.tflite` decoder from the Keras model.

    Attributes:
        mean_abs: Mean |dE[x|z]| over pixels of z ~ p(z) draws.
        max_abs: Max |dE[x|z]|.
        log_likelihood: |change| of mean log p(x|z) on test data, nats per pixel.
    """

    mean_abs: float
    max_abs: float
    log_likelihood: float


TOLERANCES = {
    "float32": Tolerance(1e-6, 1e-5, 1e-5),
    "float16": Tolerance(1e-4, 1e-3, 1e-4),
    "dynamic_int8": Tolerance(5e-3, 0.08, 0.02),
    "int8": Tolerance(0.02, 0.25, 0.1),
}
SAVED_MODEL_ATOL = SAVED_MODEL_RTOL = 1e-5


# Tensors from distributions.

def likelihood_kind(likelihood: tfd.Distribution) -> str:
    """`"bernoulli"` or `"gaussian"` for the decoders tfvae builds."""
    base = getattr(likelihood, "distribution", None)
    if isinstance(likelihood, tfd.Independent) and isinstance(base, tfd.Bernoulli):
        return "bernoulli"
    if isinstance(likelihood, tfd.Independent) and isinstance(base, tfd.Normal):
        return "gaussian"
    raise UnsupportedModelError(
        f"Export supports Independent(Bernoulli) and Independent(Normal) likelihoods, "
        f"not {likelihood.name} ({type(likelihood).__name__}).")


def model_likelihood(model: VAE) -> str:
    """The `likelihood_kind` of `model`'s decoder."""
    return likelihood_kind(model.decode(tf.zeros((1,) + tuple(model.latent_shape))))


def normal_parameters(distribution: tfd.Distribution,
                      role: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(loc, scale) of an `Independent(Normal)`; the posterior and prior must be one."""
    base = getattr(distribution, "distribution", None)
    if not (isinstance(distribution, tfd.Independent) and isinstance(base, tfd.Normal)):
        raise UnsupportedModelError(
            f"Export needs a diagonal Gaussian {role} (Independent(Normal)) to "
            f"reparameterize it, got {type(distribution).__name__}.")
    return tf.convert_to_tensor(base.loc), tf.convert_to_tensor(base.scale)


def likelihood_parameters(likelihood: tfd.Distribution) -> dict[str, tf.Tensor]:
    """p(x|z)'s parameters and mean, each `[B, *image_shape]`."""
    if likelihood_kind(likelihood) == "bernoulli":
        logits = likelihood.distribution.logits_parameter()
        probs = tf.sigmoid(logits)
        return {"logits": logits, "probs": probs, "mean": probs}
    loc, scale = normal_parameters(likelihood, "likelihood")
    return {"loc": loc, "scale": scale, "mean": loc}


def draw_pixels(parameters: dict, noise):
    """x ~ p(x|z) from its parameters and pixel noise (works on tensors and arrays)."""
    if "probs" in parameters:
        return (noise < parameters["probs"]) * np.float32(1)
    return parameters["loc"] + parameters["scale"] * noise


# The endpoints.

def endpoints(model: VAE) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The exported functions of `model`, each with its named input signature.

    Args:
        model: A built VAE with a diagonal Gaussian posterior and prior.

    Returns:
        {name: (function returning a dict of tensors, input TensorSpecs)}.
    """
    latent, image = tuple(model.latent_shape), tuple(model.input_event_shape)
    kind = model_likelihood(model)

    def spec(shape, name, dtype=tf.float32):
        return tf.TensorSpec(shape, dtype, name=name)

    def encode(x):
        loc, scale = normal_parameters(model.encode(x), "posterior")
        return {"z_mean": loc, "z_stddev": scale}

    def decode(z):
        return likelihood_parameters(model.decode(z))

    def sample_from_noise(eps, pixel_noise):
        prior_loc, prior_scale = normal_parameters(model.prior(), "prior")
        parameters = decode(prior_loc + prior_scale * eps)
        return {"x": draw_pixels(parameters, pixel_noise), "mean": parameters["mean"]}

    def sample(num_samples):
        # Raw ops with seed = seed2 = 0: LiteRT then seeds each interpreter afresh.
        # tf.random.* would bake in any global seed of the exporting process, and
        # every app launch would draw the same faces.
        eps = tf.raw_ops.RandomStandardNormal(
            shape=tf.concat([[num_samples], latent], 0), dtype=tf.float32, seed=0, seed2=0)
        pixel_shape = tf.concat([[num_samples], image], 0)
        random = (tf.raw_ops.RandomUniform if kind == "bernoulli"
                  else tf.raw_ops.RandomStandardNormal)
        return sample_from_noise(eps, random(shape=pixel_shape, dtype=tf.float32,
                                             seed=0, seed2=0))

    def reconstruct(x):
        return {"mean": model.reconstruct(x)}

    def elbo(x, eps):
        posterior, prior = model.encode(x), model.prior()
        loc, scale = normal_parameters(posterior, "posterior")
        z = (loc + scale * eps)[tf.newaxis]
        terms = objectives.elbo(model.log_likelihood(x, z), model.rate(posterior, prior, z))
        return {"elbo": terms.elbo, "rate": terms.rate, "distortion": terms.distortion}

    x, z, eps = (spec((None,) + image, "x"), spec((None,) + latent, "z"),
                 spec((None,) + latent, "eps"))
    pixel_noise = spec((None,) + image, PIXEL_NOISE[kind])
    return {
        "encode": (encode, [x]),
        "decode": (decode, [z]),
        "sample_from_noise": (sample_from_noise, [eps, pixel_noise]),
        "sample": (sample, [spec((), "num_samples", tf.int32)]),
        "reconstruct": (reconstruct, [x]),
        "elbo": (elbo, [x, eps]),
    }


def write_saved_model(model: VAE, path: Path) -> None:
    """Writes the endpoints through `keras.export.ExportArchive` (which tracks the weights)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, signature) in endpoints(model).items():
        archive.add_endpoint(name, function, input_signature=signature)
    archive.write_out(str(path), verbose=False)


# TFLite.

def convert_decoder(saved_model_dir: Path, quantization: str,
                    calibration: Callable[[], Iterator] | None = None) -> bytes:
    """Converts the decoder signatures to a builtin-ops-only `.tflite` flatbuffer.

    Args:
        saved_model_dir: Written by `write_saved_model`.
        quantization: One of `QUANTIZATIONS`.
        calibration: For `int8`: yields `(signature, {input: array})`.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(DECODER_SIGNATURES))
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
            converter=converter, debug_dataset=calibration,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=list(FLOAT_OPS)))
        return debugger.get_nondebug_quantized_model()


def calibration_data(model: VAE, seed: int, num_batches: int = 32,
                     batch_size: int = 32) -> Callable[[], Iterator]:
    """Representative inputs of every decoder signature, with z ~ p(z)."""
    def generate():
        rng = np.random.default_rng(seed)
        kind = model_likelihood(model)
        for _ in range(num_batches):
            inputs = _noise(rng, model, kind, batch_size)
            yield "decode", {"z": _prior_transform(model, inputs["eps"])}
            yield "sample_from_noise", inputs
            yield "sample", {"num_samples": np.array(batch_size, np.int32)}
    return generate


def tflite_op_names(flatbuffer: bytes) -> set[str]:
    """Operators a `.tflite` uses over all its subgraphs: builtin names, else
    the custom code (e.g. `FlexRandomStandardNormal`).

    Read from the flatbuffer's operator table: `Interpreter._get_ops_details()`
    sees only the first subgraph, and a Flex model fails before it could be asked.
    """
    from ai_edge_litert import schema_py_generated as schema
    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode; DeprecatedBuiltinCode caps at 127.
        builtin = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ops.add(code.CustomCode().decode() if builtin == "CUSTOM" else builtin)
    return ops


def _builtin_operators() -> set[str]:
    from ai_edge_litert import schema_py_generated as schema
    return {name for name in vars(schema.BuiltinOperator)
            if not name.startswith("_") and name != "CUSTOM"}


# Parity.

def check_export(model: VAE, export_dir: Path, x_test: np.ndarray, *,
                 quantizations=None, seed: int = 0) -> dict:
    """Compares the SavedModel and every `.tflite` in `export_dir` with `model`.

    Args:
        model: The Keras model the artifacts were exported from.
        export_dir: Holds `saved_model/` and `decoder_<quantization>.tflite`.
        x_test: `[N, *image_shape]` test data for the log-likelihood change.
        quantizations: Which `.tflite` files to check; default: those present.
        seed: Seeds the noise fed to both sides.

    Returns:
        {artifact: metrics}, each with `passed`.

    Raises:
        ParityError: Any artifact beyond its tolerance, or any non-builtin op.
    """
    export_dir = Path(export_dir)
    quantizations = quantizations or [q for q in QUANTIZATIONS
                                      if (export_dir / tflite_name(q)).exists()]
    report = {SAVED_MODEL_DIR: _check_saved_model(model, export_dir / SAVED_MODEL_DIR,
                                                  x_test, seed)}
    for quantization in quantizations:
        flatbuffer = (export_dir / tflite_name(quantization)).read_bytes()
        report[tflite_name(quantization)] = _check_tflite(model, flatbuffer, quantization,
                                                          x_test, seed)
    failures = []
    for artifact, metrics in report.items():
        metrics["passed"] = not metrics["failures"]
        failures += [f"{artifact}: {failure}" for failure in metrics["failures"]]
    if failures:
        raise ParityError(failures, report)
    return report


def _check_saved_model(model: VAE, path: Path, x: np.ndarray, seed: int) -> dict:
    loaded = tf.saved_model.load(str(path))
    kind = model_likelihood(model)
    noise = _noise(np.random.default_rng(seed), model, kind, len(x))
    z = _prior_transform(model, noise["eps"])
    inputs = {"encode": [x], "decode": [z], "sample_from_noise": list(noise.values()),
              "reconstruct": [x], "elbo": [x, noise["eps"]]}
    functions = endpoints(model)
    differences, failures = {}, []
    for name, args in inputs.items():
        got = {k: np.asarray(v) for k, v in getattr(loaded, name)(*args).items()}
        want = functions[name][0](*map(tf.constant, args))
        want = {k: np.asarray(v) for k, v in want.items()}
        if name == "sample_from_noise":  # Bernoulli draws may flip where u sits on p.
            failures += _formula_failures(got, functions["decode"][0](tf.constant(z)),
                                          noise[PIXEL_NOISE[kind]])
            want.pop("x")
        for key, value in want.items():
            difference = np.abs(got[key] - value)
            differences[f"{name}/{key}"] = float(difference.max())
            if np.any(difference > SAVED_MODEL_ATOL + SAVED_MODEL_RTOL * np.abs(value)):
                failures.append(f"{name}/{key} differs by {difference.max():.3g}")
    drawn = loaded.sample(tf.constant(3))
    failures += _sample_failures({k: np.asarray(v) for k, v in drawn.items()}, model, kind, 3)
    return {"max_abs_diff": differences, "failures": failures}


def _check_tflite(model: VAE, flatbuffer: bytes, quantization: str, x: np.ndarray,
                  seed: int) -> dict:
    from ai_edge_litert.interpreter import Interpreter
    ops = tflite_op_names(flatbuffer)
    custom = sorted(ops - _builtin_operators())
    failures = [f"non-builtin ops {custom} (Flex cannot run in LiteRT)"] if custom else []
    interpreter = Interpreter(model_content=flatbuffer)
    decode = interpreter.get_signature_runner("decode")
    kind = model_likelihood(model)
    rng = np.random.default_rng(seed)

    noise = _noise(rng, model, kind, NUM_CHECK_SAMPLES)
    z = _prior_transform(model, noise["eps"])
    difference = np.abs(decode(z=z)["mean"] - model.decode(z).mean().numpy())
    drawn = interpreter.get_signature_runner("sample_from_noise")(**noise)
    failures += _formula_failures(drawn, decode(z=z), noise[PIXEL_NOISE[kind]])

    z_test = model.encode(x).mean()
    reference = _log_prob(likelihood_parameters(model.decode(z_test)), x)
    log_likelihood = _log_prob(decode(z=z_test.numpy()), x)
    metrics = {
        "quantization": quantization, "ops": sorted(ops),
        "mean_abs_diff": float(difference.mean()), "max_abs_diff": float(difference.max()),
        "log_likelihood": float(log_likelihood.mean()),
        "log_likelihood_change_per_pixel": float(
            (log_likelihood.mean() - reference.mean()) / np.prod(model.input_event_shape)),
        "tolerance": dataclasses.asdict(TOLERANCES[quantization]),
    }
    failures += _tolerance_failures(metrics, TOLERANCES[quantization])
    failures += _sample_failures(interpreter.get_signature_runner("sample")(
        num_samples=np.array(3, np.int32)), model, kind, 3)
    return {**metrics, "failures": failures}


def _tolerance_failures(metrics: dict, tolerance: Tolerance) -> list[str]:
    checks = {"mean_abs_diff": tolerance.mean_abs, "max_abs_diff": tolerance.max_abs}
    failures = [f"{key} {metrics[key]:.3g} > {limit:g}" for key, limit in checks.items()
                if not metrics[key] <= limit]
    change = metrics["log_likelihood_change_per_pixel"]
    if not abs(change) <= tolerance.log_likelihood:
        failures.append(f"log-likelihood change {change:.3g} nats/pixel, "
                        f"beyond {tolerance.log_likelihood:g}")
    return failures


def _formula_failures(drawn: dict, parameters: dict, noise: np.ndarray) -> list[str]:
    """`sample_from_noise` against the sampling formula on `decode`'s own outputs."""
    parameters = {k: np.asarray(v) for k, v in parameters.items()}
    want = draw_pixels(parameters, noise)
    if "probs" in parameters:
        # Float rounding may only flip pixels whose u sits on p.
        wrong = (drawn["x"] != want) & (np.abs(noise - parameters["probs"]) > 1e-5)
    else:
        wrong = np.abs(drawn["x"] - want) > 1e-5 * (1 + np.abs(want))
    if wrong.any():
        return [f"sample_from_noise's x disagrees with decode on {wrong.mean():.2%} of pixels"]
    return []


def _sample_failures(drawn: dict, model: VAE, kind: str, num_samples: int) -> list[str]:
    shape = (num_samples,) + tuple(model.input_event_shape)
    if any(value.shape != shape for value in drawn.values()):
        return [f"sample returned {({k: v.shape for k, v in drawn.items()})}, not {shape}"]
    if not all(np.isfinite(value).all() for value in drawn.values()):
        return ["sample returned non-finite values"]
    if kind == "bernoulli" and not np.isin(drawn["x"], (0, 1)).all():
        return ["sample returned Bernoulli draws other than 0 and 1"]
    return []


def _log_prob(parameters: dict, x: np.ndarray) -> np.ndarray:
    """log p(x|z) `[B]` from `decode`'s parameters, in float64 so that float32
    rounding of the sums does not hide small changes."""
    parameters = {k: np.asarray(v, np.float64) for k, v in parameters.items()}
    axes = tuple(range(1, x.ndim))
    if "logits" in parameters:
        logits = parameters["logits"]
        return np.sum(x * logits - np.logaddexp(0, logits), axis=axes)
    standardized = (x - parameters["loc"]) / parameters["scale"]
    return np.sum(-0.5 * standardized**2 - np.log(parameters["scale"])
                  - 0.5 * np.log(2 * np.pi), axis=axes)


def _noise(rng: np.random.Generator, model: VAE, kind: str, batch: int) -> dict:
    """The inputs of `sample_from_noise`: eps and the pixel noise, float32."""
    image = (batch,) + tuple(model.input_event_shape)
    pixels = rng.random(image, np.float32) if kind == "bernoulli" else rng.standard_normal(
        image, np.float32)
    eps = rng.standard_normal((batch,) + tuple(model.latent_shape), np.float32)
    return {"eps": eps, PIXEL_NOISE[kind]: pixels}


def _prior_transform(model: VAE, eps: np.ndarray) -> np.ndarray:
    loc, scale = normal_parameters(model.prior(), "prior")
    return (loc + scale * eps).numpy()


# Orchestration.

def tflite_name(quantization: str) -> str:
    return f"decoder_{quantization}.tflite"


def export_model(model: VAE, export_dir: Path, x_test: np.ndarray, *,
                 quantizations=DEFAULT_QUANTIZATIONS, run_config: RunConfig | None = None,
                 seed: int = 0) -> dict:
    """Writes and checks the SavedModel and `.tflite` decoders of `model`.

    The folder is built under a temporary name and renamed at the end, so a
    failed export never leaves a complete-looking `export_dir`.

    Args:
        model: A built VAE.
        export_dir: The folder to (re)place.
        x_test: `[N, *image_shape]` test data for the parity report.
        quantizations: Which `.tflite` files, from `QUANTIZATIONS`; `int8` is
            calibrated on z ~ p(z).
        run_config: Recorded in export.json when given.
        seed: Seeds calibration and parity noise.

    Returns:
        The contents of export.json.

    Raises:
        ValueError: An unknown or no quantization.
        UnsupportedModelError: The model's distributions cannot be exported.
        ParityError: An artifact disagrees with the model beyond tolerance.
    """
    unknown = set(quantizations) - set(QUANTIZATIONS)
    if unknown or not quantizations:
        raise ValueError(f"Quantizations must be some of {', '.join(QUANTIZATIONS)}; "
                         f"got {', '.join(quantizations) or 'none'}.")
    quantizations = [q for q in QUANTIZATIONS if q in quantizations]  # Canonical order.
    start = time.perf_counter()
    with _atomic_directory(Path(export_dir)) as folder:
        write_saved_model(model, folder / SAVED_MODEL_DIR)
        for quantization in quantizations:
            flatbuffer = convert_decoder(folder / SAVED_MODEL_DIR, quantization,
                                         calibration_data(model, seed))
            (folder / tflite_name(quantization)).write_bytes(flatbuffer)
        report = check_export(model, folder, x_test, quantizations=quantizations, seed=seed)
        description = describe(model, folder, quantizations, report, run_config)
        description["export_seconds"] = round(time.perf_counter() - start, 2)
        (folder / CONFIG_FILE).write_text(json.dumps(description, indent=2))
    return description


def describe(model: VAE, folder: Path, quantizations, report: dict,
             run_config: RunConfig | None) -> dict:
    """export.json: shapes, likelihood, prior, files, signatures and parity."""
    from ai_edge_litert.interpreter import Interpreter
    prior_loc, prior_scale = normal_parameters(model.prior(), "prior")
    interpreter = Interpreter(model_path=str(folder / tflite_name(quantizations[0])))
    return {
        "format": "tfvae-export/1",
        "latent_dim": int(np.prod(model.latent_shape)),
        "image_shape": list(model.input_event_shape),
        "likelihood": model_likelihood(model),
        "prior": {"loc": prior_loc.numpy().tolist(), "scale": prior_scale.numpy().tolist()},
        "saved_model": {"path": SAVED_MODEL_DIR, "endpoints": list(endpoints(model))},
        "tflite": {tflite_name(q): {"quantization": q,
                                    "bytes": (folder / tflite_name(q)).stat().st_size}
                   for q in quantizations},
        "signatures": {name: _signature(interpreter.get_signature_runner(name))
                       for name in DECODER_SIGNATURES},
        "model_config": run_config.to_dict()["model"] if run_config else None,
        "parity": report,
    }


def _signature(runner) -> dict:
    def tensors(details):
        return {name: {"shape": [int(d) for d in detail["shape_signature"]],
                       "dtype": np.dtype(detail["dtype"]).name,
                       "description": DESCRIPTIONS.get(name, "")}
                for name, detail in sorted(details.items())}
    return {"inputs": tensors(runner.get_input_details()),
            "outputs": tensors(runner.get_output_details())}


@contextlib.contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """Yields a temporary sibling folder that replaces `target` on success only."""
    folder, old = (target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex}")
                   for tag in ("tmp", "old"))
    folder.mkdir(parents=True)  # Not mkdtemp: its mode 0700 would outlive the rename.
    try:
        yield folder
        if target.exists():
            os.replace(target, old)
        os.replace(folder, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_run(run_dir: Path) -> tuple[VAE, RunConfig]:
    """The trained model and config of a run folder written by `tfvae.training`."""
    run_dir = Path(run_dir)
    for name in ("config.json", "model.keras"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} not found: RUN_DIR must be a "
                                    "run folder written by scripts/train.py.")
    config = RunConfig.from_json((run_dir / "config.json").read_text())
    return keras.models.load_model(run_dir / "model.keras", compile=False), config


def load_test_images(config: RunConfig, limit: int = NUM_TEST_EXAMPLES) -> np.ndarray:
    """The run's test images `[<= limit, *image_shape]`, binarized as in training."""
    splits = datasets.load(config.data, seed=config.train.seed)
    return np.concatenate(list(splits.test.as_numpy_iterator()))[:limit]


def export_run(run_dir: Path, *, quantizations=DEFAULT_QUANTIZATIONS,
               export_dir: Path | None = None, seed: int = 0) -> dict:
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
        UnsupportedModelError, ParityError: As `export_model`.
    """
    model, config = load_run(run_dir)
    return export_model(model, export_dir or Path(run_dir) / EXPORT_DIR,
                        load_test_images(config),
                        quantizations=quantizations, run_config=config, seed=seed)
