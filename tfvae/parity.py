"""Parity: an export's artifacts against the Keras model they came from.

`check_export` runs every check on an export folder and raises `ParityError`
on any failure; `tfvae.export.export_model` runs it before the folder appears.

The reloaded SavedModel must match the Keras model, given the same inputs and
noise, on every endpoint output:
- elementwise outputs (codes, parameters, means) within
  `SAVED_MODEL_ATOL + SAVED_MODEL_RTOL * |value|` (1e-5 + 1e-5 |value|);
- the bounds of `elbo` (elbo, rate, distortion), each a float32 sum of one term
  per pixel or latent dimension, within
  `SAVED_MODEL_RTOL * sum |terms| + SAVED_MODEL_ATOL_PER_TERM * number of terms`.
  Two float32 evaluations of the same sum (XLA and a SavedModel graph order it
  differently) differ by up to about sqrt(n) * 6e-8 * sum |terms| for n terms
  (n * 6e-8 * sum |terms| at worst), whatever the value of the sum: a
  distortion of 560 pixel terms of both signs may sum to 0.01 and still carry a
  rounding error of 1e-4, so a tolerance relative to the value fails sound
  models. 1e-5 * sum |terms| is 6x the typical error at n = 784, and the
  per-term floor 1e-6 covers sums whose terms are all near 0.
The draws x, like a `.tflite`'s, are checked against the sampling formula
instead, since a Bernoulli pixel whose u sits on p may flip under float rounding.

A conditional VAE's artifacts are fed labels on both sides: the test labels
`y_test` with the test images (encode, reconstruct, elbo, log p(x|z, y)), and
labels drawn uniformly from the seeded generator with z ~ p(z) (decode,
sample_from_noise, sample). Without `y_test` a conditional export is refused:
log p(x | z, y) at made-up labels would still compare the two sides, but the
test log-likelihood the report records would mean nothing.

Each `.tflite` decoder must
- hold builtin ops only: LiteRT cannot run Flex (TF Select) ops;
- draw in `sample_from_noise` what the sampling formula gives on its own
  `decode` outputs (within the quantization's max |dE[x|z]|: full int8
  calibrates each signature apart; discrete draws may flip on at most 0.1% of
  the pixels, where the noise sits on a boundary);
- keep its decoder means E[x|z], z ~ p(z), and log p(x | z = posterior mean)
  on test data (the mean over examples of the absolute change, in nats per
  pixel, so that changes of opposite sign do not cancel) within `TOLERANCES`
  of the Keras model's;
- return finite draws of the right shape from `sample` (Bernoulli: 0 or 1).

The tolerances are about 3x the largest value measured on the shipped Frey
Face models (latent 2 and 10), the tests' tiny models, a 10-epoch MNIST model,
and the 784-pixel decoder in ../shared/STACK.md; full int8's max |dE[x|z]| is
the exception, 0.25 for the 0.14 measured on that decoder. The log-likelihood
column is the mean over test images of |change| (nats per pixel); the largest
values measured, on Frey Face latent 10, were 5.4e-6 (float32), 3.0e-4
(float16), 0.010 (dynamic_int8) and 0.021 (int8):

    variant        mean |dE[x|z]|   max |dE[x|z]|   mean |d log-lik| / pixel
    float32        1e-6             1e-5            2e-5
    float16        1e-4             1e-3            1e-3
    dynamic_int8   5e-3             0.08            0.03
    int8           0.02             0.25            0.1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.endpoints import (
    LABELS,
    QUANTIZATIONS,
    SAVED_MODEL_DIR,
    draw_labels,
    draw_noise,
    endpoints,
    posterior_noise,
    prior_draw,
    sampling_noise,
    tflite_name,
)
from tfvae.model import VAE

NUM_CHECK_SAMPLES = 256
SAVED_MODEL_ATOL = SAVED_MODEL_RTOL = 1e-5
SAVED_MODEL_ATOL_PER_TERM = 1e-6
BOUND_OUTPUTS = ("elbo/elbo", "elbo/rate", "elbo/distortion")


class ParityError(RuntimeError):
    """An exported artifact disagrees with the Keras model beyond its tolerance.

    Attributes:
        report: The full {artifact: metrics} report of `check_export`.
    """

    def __init__(self, failures: list[str], report: dict):
        super().__init__(
            "Exported artifacts disagree with the Keras model:\n  " + "\n  ".join(failures)
        )
        self.report = report


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Accepted distance of a `.tflite` decoder from the Keras model.

    Attributes:
        mean_abs: Mean |dE[x|z]| over pixels of z ~ p(z) draws.
        max_abs: Max |dE[x|z]|.
        log_likelihood: Mean over test examples of |change of log p(x|z)|,
            nats per pixel.
    """

    mean_abs: float
    max_abs: float
    log_likelihood: float


TOLERANCES = {
    "float32": Tolerance(1e-6, 1e-5, 2e-5),
    "float16": Tolerance(1e-4, 1e-3, 1e-3),
    "dynamic_int8": Tolerance(5e-3, 0.08, 0.03),
    "int8": Tolerance(0.02, 0.25, 0.1),
}


def check_export(
    model: VAE,
    export_dir: Path,
    x_test: np.ndarray,
    y_test: np.ndarray | None = None,
    *,
    quantizations=None,
    seed: int = 0,
) -> dict:
    """Compares the SavedModel and every `.tflite` in `export_dir` with `model`.

    Args:
        model: The Keras model the artifacts were exported from.
        export_dir: Holds `saved_model/` and `decoder_<quantization>.tflite`.
        x_test: `[N, *image_shape]` test data for the log-likelihood change.
        y_test: `[N]` int labels of `x_test`: required for a conditional VAE,
            refused for an ordinary one.
        quantizations: Which `.tflite` files to check; default: those present.
        seed: Seeds the noise (and labels of z ~ p(z)) fed to both sides.

    Returns:
        {artifact: metrics}, each with `failures` and `passed`.

    Raises:
        ValueError: `y_test` missing for a conditional VAE, given for an
            ordinary one, or not `[N]` labels in 0..K-1.
        ParityError: Any artifact beyond its tolerance, or any non-builtin op.
    """
    check_labels(model, x_test, y_test)
    export_dir = Path(export_dir)
    quantizations = quantizations or [
        q for q in QUANTIZATIONS if (export_dir / tflite_name(q)).exists()
    ]
    report = {
        SAVED_MODEL_DIR: _check_saved_model(
            model, export_dir / SAVED_MODEL_DIR, x_test, y_test, seed
        )
    }
    for quantization in quantizations:
        flatbuffer = (export_dir / tflite_name(quantization)).read_bytes()
        report[tflite_name(quantization)] = _check_tflite(
            model, flatbuffer, quantization, x_test, y_test, seed
        )
    failures = []
    for artifact, metrics in report.items():
        metrics["passed"] = not metrics["failures"]
        failures += [f"{artifact}: {failure}" for failure in metrics["failures"]]
    if failures:
        raise ParityError(failures, report)
    return report


def check_labels(model: VAE, x: np.ndarray, labels: np.ndarray | None) -> None:
    """Refuses labels that `model` does not take, or that do not label `x`.

    Raises:
        ValueError: Labels missing for a conditional VAE, given for an ordinary
            one, or not `[len(x)]` integers in 0..K-1.
    """
    if model.num_classes is None:
        if labels is not None:
            raise ValueError("This VAE is not conditional: it takes no test labels.")
        return
    if labels is None:
        raise ValueError(
            f"This VAE is conditional on {model.num_classes} classes: its parity checks "
            "need the labels of the test images (y_test), since log p(x | z, y) at other "
            "labels is no test log-likelihood."
        )
    labels = np.asarray(labels)
    if (
        labels.shape != (len(x),)
        or not np.issubdtype(labels.dtype, np.integer)
        or labels.min(initial=0) < 0
        or labels.max(initial=0) >= model.num_classes
    ):
        raise ValueError(
            f"The test labels must be {len(x)} integers in "
            f"0..{model.num_classes - 1} (one per test image), got "
            f"{labels.dtype} {list(labels.shape)}."
        )


def sample_inputs(model: VAE, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The inputs of the `sample` signature for n images: `num_samples`, or a
    conditional VAE's `labels` `[n]` drawn from `rng`."""
    return draw_labels(model, rng, n) or {"num_samples": np.array(n, np.int32)}


def _check_saved_model(
    model: VAE, path: Path, x: np.ndarray, y: np.ndarray | None, seed: int
) -> dict:
    """Every SavedModel endpoint against the same function run on `model`.

    Args:
        model: The Keras model.
        path: The SavedModel folder.
        x: `[N, *image_shape]` inputs of `encode`, `reconstruct` and `elbo`.
        y: Their labels `[N]` (a conditional VAE), else None.
        seed: Seeds z ~ p(z) and the noise (and the labels fed with z), one
            draw per example of `x`.

    Returns:
        {"max_abs_diff": {"<endpoint>/<output>": float}, "failures": [str]}.
    """
    loaded = tf.saved_model.load(str(path))
    rng = np.random.default_rng(seed)
    noise = draw_noise(rng, sampling_noise(model), len(x))
    z_noise = draw_noise(rng, posterior_noise(model), len(x))
    z = prior_draw(model, noise).numpy()
    # Positional inputs end in labels (none for an ordinary VAE): x's own, drawn ones for z.
    x_labels = [] if y is None else [np.asarray(y, np.int32)]
    z_labels = list(draw_labels(model, rng, len(x)).values())
    inputs = {
        "encode": [x, *x_labels],
        "decode": [z, *z_labels],
        "sample_from_noise": [*noise.values(), *z_labels],
        "reconstruct": [x, *x_labels],
        "elbo": [x, *z_noise.values(), *x_labels],
    }
    functions = {name: function for name, (function, _) in endpoints(model).items()}
    bound_tolerances = _bound_tolerances(model, x, z_noise, y)
    differences, failures = {}, []
    for name, args in inputs.items():
        got = _numpy(getattr(loaded, name)(*args))
        want = _numpy(functions[name](*map(tf.constant, args)))
        if name == "sample_from_noise":  # Discrete draws may flip where u sits on a boundary.
            decoded = functions["decode"](tf.constant(got["z"]), *map(tf.constant, z_labels))
            failures += _formula_failures(model, got, decoded, noise)
            want.pop("x")
        for key, value in want.items():
            output = f"{name}/{key}"
            tolerance = bound_tolerances.get(
                output, SAVED_MODEL_ATOL + SAVED_MODEL_RTOL * np.abs(value)
            )
            differences[output] = float(np.abs(got[key] - value).max())
            failures += _closeness_failures(output, got[key], value, tolerance)
    drawn = loaded.sample(*map(tf.constant, sample_inputs(model, rng, 3).values()))
    failures += _sample_failures(_numpy(drawn), model, 3)
    return {"max_abs_diff": differences, "failures": failures}


def _bound_tolerances(
    model: VAE, x: np.ndarray, z_noise: dict, labels: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-example tolerances `[N]` of the `elbo` endpoint's outputs (module docstring).

    The magnitude of the distortion's sum is sum_i |log p(x_i|z)| over the
    likelihood's elementwise terms; that of the rate is
    |log q(z|x)| + |log p(z)| + |rate|, which bounds the terms of both its
    analytic and its Monte Carlo form.
    """
    head, parameters = model.posterior_head(), model.posterior_parameters(x, labels)
    posterior, prior = head.distribution(parameters), model.prior()
    z = head.draw(parameters, {k: tf.constant(v) for k, v in z_noise.items()})
    terms = model.likelihood_head().elementwise_log_prob(model.likelihood_parameters(z, labels), x)
    terms = terms.numpy().reshape(len(x), -1)
    distortion = np.abs(terms).sum(axis=1), terms.shape[1]
    rate_value = model.rate(posterior, prior, z[tf.newaxis])
    rate = (
        (np.abs(posterior.log_prob(z)) + np.abs(prior.log_prob(z)) + np.abs(rate_value)),
        int(np.prod(model.latent_shape)),
    )
    elbo = distortion[0] + rate[0], distortion[1] + rate[1]
    return {
        output: SAVED_MODEL_RTOL * magnitude + SAVED_MODEL_ATOL_PER_TERM * count
        for output, (magnitude, count) in zip(BOUND_OUTPUTS, (elbo, rate, distortion))
    }


def _closeness_failures(output: str, got: np.ndarray, want: np.ndarray, tolerance) -> list[str]:
    """One message for `output` if any |got - want| exceeds its tolerance (or is NaN)."""
    difference = np.abs(got - want)
    bad = ~(difference <= tolerance)  # `~(<=)` so that NaN fails.
    if not bad.any():
        return []
    tolerance = np.broadcast_to(tolerance, difference.shape)
    ratio = np.where(np.isnan(difference), np.inf, difference / tolerance)
    worst = np.unravel_index(np.argmax(ratio), difference.shape)
    return [
        f"{output} differs at {int(bad.sum())} of {bad.size} values; the worst, at "
        f"index {tuple(int(i) for i in worst)}: exported {got[worst]:.7g}, Keras "
        f"{want[worst]:.7g}, |difference| {difference[worst]:.3g} > tolerance "
        f"{tolerance[worst]:.3g}"
    ]


def _check_tflite(
    model: VAE, flatbuffer: bytes, quantization: str, x: np.ndarray, y: np.ndarray | None, seed: int
) -> dict:
    """A `.tflite` decoder against `model`, run in the LiteRT interpreter.

    Args:
        model: The Keras model.
        flatbuffer: The `.tflite` contents.
        quantization: Its key in `TOLERANCES`.
        x: `[N, *image_shape]` test data for the log-likelihood change.
        y: Their labels `[N]` (a conditional VAE), else None.
        seed: Seeds the `NUM_CHECK_SAMPLES` draws z ~ p(z), their pixel noise
            (and labels).

    Returns:
        The metrics of export.json's parity report, with `failures`.
    """
    from ai_edge_litert.interpreter import Interpreter

    ops = tflite_op_names(flatbuffer)
    runner = Interpreter(model_content=flatbuffer).get_signature_runner
    # Against decode at the file's own z: quantized prior weights (a mixture's
    # means) move z, and x follows.
    rng = np.random.default_rng(seed)
    noise = draw_noise(rng, sampling_noise(model), NUM_CHECK_SAMPLES)
    labels = draw_labels(model, rng, NUM_CHECK_SAMPLES)  # {} for an ordinary VAE.
    z = prior_draw(model, noise).numpy()
    decoded = runner("decode")(z=z, **labels)
    drawn = runner("sample_from_noise")(**noise, **labels)
    difference = np.abs(decoded["mean"] - model.likelihood_mean(z, labels.get(LABELS)).numpy())
    log_likelihood, reference = _test_log_likelihoods(model, runner("decode"), x, y)
    metrics = {
        "quantization": quantization,
        "ops": sorted(ops),
        "mean_abs_diff": float(difference.mean()),
        "max_abs_diff": float(difference.max()),
        "log_likelihood": float(log_likelihood.mean()),
        "log_likelihood_abs_change_per_pixel": float(
            np.mean(np.abs(log_likelihood - reference)) / np.prod(model.input_event_shape)
        ),
        "tolerance": dataclasses.asdict(TOLERANCES[quantization]),
    }
    failures = (
        _flex_failures(ops)
        + _formula_failures(
            model,
            drawn,
            runner("decode")(z=drawn["z"], **labels),
            noise,
            TOLERANCES[quantization].max_abs,
        )
        + _tolerance_failures(metrics, TOLERANCES[quantization])
        + _sample_failures(runner("sample")(**sample_inputs(model, rng, 3)), model, 3)
    )
    return {**metrics, "failures": failures}


def tflite_op_names(flatbuffer: bytes) -> set[str]:
    """Operators a `.tflite` uses in any subgraph: builtin names, else custom codes.

    A Flex op shows as its custom code, e.g. `FlexRandomStandardNormal`. Read
    from the flatbuffer's operator table: `Interpreter._get_ops_details()` sees
    only the first subgraph, and a Flex model fails before it could be asked.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {
        code: name
        for name, code in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
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

    return {
        name
        for name in vars(schema.BuiltinOperator)
        if not name.startswith("_") and name != "CUSTOM"
    }


def _flex_failures(ops: set[str]) -> list[str]:
    custom = sorted(ops - _builtin_operators())
    return [f"non-builtin ops {custom} (Flex cannot run in LiteRT)"] if custom else []


def _test_log_likelihoods(
    model: VAE, decode, x: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """log p(x | z = posterior mean) `[N]` (p(x | z, y) given labels y `[N]`): through
    the `.tflite` `decode`, then `model`'s."""
    z = model.posterior_mean(x, labels)
    reference = _log_prob(model, model.likelihood_parameters(z, labels), x)
    inputs = {} if labels is None else {LABELS: np.asarray(labels, np.int32)}
    return _log_prob(model, decode(z=z.numpy(), **inputs), x), reference


def _tolerance_failures(metrics: dict, tolerance: Tolerance) -> list[str]:
    checks = {"mean_abs_diff": tolerance.mean_abs, "max_abs_diff": tolerance.max_abs}
    # `not <=` so that NaN fails.
    failures = [
        f"{key} {metrics[key]:.3g} > {limit:g}"
        for key, limit in checks.items()
        if not metrics[key] <= limit
    ]
    change = metrics["log_likelihood_abs_change_per_pixel"]
    if not change <= tolerance.log_likelihood:
        failures.append(
            f"mean |log-likelihood change| {change:.3g} nats/pixel, "
            f"beyond {tolerance.log_likelihood:g}"
        )
    return failures


# A discrete draw (a Bernoulli pixel, a grey level) flips where its uniform noise
# sits on a boundary, and float rounding may move the boundary: such flips are
# rare (about 1e-6 of the pixels in float32), a wrong formula changes most.
MAX_FLIPPED_FRACTION = 1e-3


def _formula_failures(
    model: VAE, drawn: dict, decoded: dict, noise: dict, atol: float = 1e-5
) -> list[str]:
    """`sample_from_noise`'s x against the likelihood's `draw` on `decode`'s outputs.

    `atol` is the quantization's max |dE[x|z]|: full int8 calibrates each
    signature's tensors apart, so the parameters `sample_from_noise` draws from
    differ from `decode`'s by up to that much (a continuous draw follows them).
    """
    likelihood = model.likelihood_head()
    parameters = {k: tf.constant(v) for k, v in _numpy(decoded).items() if k != "mean"}
    pixels = {name: tf.constant(noise[name]) for name in likelihood.noise_spec()}
    want = likelihood.draw(parameters, pixels).numpy()
    wrong = np.abs(np.asarray(drawn["x"]) - want) > atol + 1e-5 * np.abs(want)
    if wrong.mean() > (MAX_FLIPPED_FRACTION if likelihood.is_discrete else 0):
        return [f"sample_from_noise's x disagrees with decode on {wrong.mean():.2%} of pixels"]
    return []


def _sample_failures(drawn: dict, model: VAE, num_samples: int) -> list[str]:
    """What a `sample(num_samples)` draw can be checked for: shape, finiteness, support."""
    shape = (num_samples,) + tuple(model.input_event_shape)
    drawn = {name: drawn[name] for name in ("x", "mean")}
    if any(value.shape != shape for value in drawn.values()):
        return [f"sample returned { ({k: v.shape for k, v in drawn.items()}) }, not {shape}"]
    if not all(np.isfinite(value).all() for value in drawn.values()):
        return ["sample returned non-finite values"]
    support = model.likelihood_head().support
    x = drawn["x"]
    # Grey levels within 1% of a level: float16 weights store 1/255 as 0.0039215,
    # which puts level 255 at 254.996.
    inside = {
        "binary": np.isin(x, (0, 1)).all(),
        "grey_levels": (np.abs(x * 255 - np.round(x * 255)) < 0.01).all()
        and 0 <= x.min()
        and x.max() <= 1,
        "unit_interval": 0 <= x.min() and x.max() <= 1,
    }.get(support, True)
    return [] if inside else [f"sample returned draws outside the {support} support"]


def _log_prob(model: VAE, parameters: dict, x: np.ndarray) -> np.ndarray:
    """log p(x|z) `[B]` from `decode`'s parameters `[B, *image_shape]`.

    In float64, so that float32 rounding of the sums does not hide small changes.
    """
    parameters = {
        k: tf.constant(np.asarray(v, np.float64)) for k, v in parameters.items() if k != "mean"
    }
    terms = model.likelihood_head().elementwise_log_prob(parameters, tf.constant(x, tf.float64))
    return terms.numpy().reshape(len(x), -1).sum(axis=1)


def _numpy(tensors: dict) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in tensors.items()}
