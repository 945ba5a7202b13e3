"""The contract every registered combination of parts keeps.

The default run covers every part and every pair of parts that share an
exported graph: each likelihood with each prior (both are in the `.tflite`
decoder), and each posterior with the VampPrior (whose on-device sampler draws
from the posterior). `python -m pytest -m "" tests/test_contract.py`
runs the whole product (about 10 minutes on 2 cores).

For each likelihood x posterior x prior in `tfvae.registry`, a tiny VAE built
from its config trains one step (finite loss, every part's weights move),
round-trips through a `.keras` file with identical outputs, estimates
log p(x) by importance sampling (a finite value no smaller than its ELBO's
expectation allows), and exports to a SavedModel and a builtin-only float32
`.tflite` that pass the parity checks. The point-mass posterior (the plain
autoencoder) has no density: it trains and round-trips, and evaluation and
export refuse it with a message.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import config, endpoints, evaluation, export, registry

EVENT = (4, 3)
LATENT = 2
# The plain autoencoder has no KL term, so a prior with weights would never train.
REFUSED = [
    (likelihood, "point_mass", prior)
    for likelihood in registry.LIKELIHOODS
    for prior in registry.PRIORS
    if prior != "standard_normal"
]
ALL = [
    c
    for c in itertools.product(registry.LIKELIHOODS, registry.POSTERIORS, registry.PRIORS)
    if c not in REFUSED
]
COVERING = sorted(
    {
        *itertools.product(registry.LIKELIHOODS, ["diagonal_gaussian"], registry.PRIORS),
        *[
            ("bernoulli", posterior, "vamp")
            for posterior in registry.POSTERIORS
            if posterior != "point_mass"
        ],
        ("bernoulli", "point_mass", "standard_normal"),
    }
)
COMBINATIONS = [
    pytest.param(*c, id="-".join(c), marks=() if c in COVERING else pytest.mark.exhaustive)
    for c in ALL
]


def data_for(likelihood: str, n: int = 24, seed: int = 0) -> np.ndarray:
    """x `[n, 4, 3]` in the likelihood's support: binary, grey levels, or in [0, 1]."""
    u = np.random.default_rng(seed).uniform(size=(n, *EVENT))
    if likelihood == "bernoulli":
        return (u > 0.5).astype(np.float32)
    if likelihood == "discretized_logistic":
        return (np.round(u * 255) / 255).astype(np.float32)
    return (0.05 + 0.9 * u).astype(np.float32)


def build(likelihood: str, posterior: str, prior: str) -> tfvae.VAE:
    model_config = config.ModelConfig(
        latent_dim=LATENT,
        hidden_units=(16,),
        event_shape=EVENT,
        likelihood=likelihood,
        posterior=posterior,
        prior=config.PriorConfig(
            prior,
            **{"mixture_of_gaussians": {"num_components": 3}, "vamp": {"num_pseudo_inputs": 4}}.get(
                prior, {}
            ),
        ),
    )
    model = tfvae.build_vae(model_config, seed=0)
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    return model


@pytest.mark.parametrize("likelihood,posterior,prior", COMBINATIONS)
def test_every_combination_trains_saves_evaluates_and_exports(
    likelihood, posterior, prior, tmp_path
):
    x = data_for(likelihood)
    model = build(likelihood, posterior, prior)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    for part in (model.encoder.head, model.decoder.head, model.prior_model):
        weights = {id(w) for w in part.trainable_weights}
        if weights:  # Every part that has weights is trained.
            assert any(m for m, w in zip(moved, model.trainable_weights) if id(w) in weights), part

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for name, value in model.predict_step(x).items():
        np.testing.assert_array_equal(loaded.predict_step(x)[name], value, err_msg=name)
    original, reloaded = (m.bound_terms(x, seed=7) for m in (model, loaded))
    np.testing.assert_array_equal(reloaded.bound, original.bound)

    if not model.has_density:
        with pytest.raises(evaluation.UnsupportedDistribution, match="point mass"):
            evaluation.log_likelihood(model, x, 4)
        with pytest.raises(endpoints.UnsupportedModelError, match="point mass"):
            export.export_model(model, tmp_path / "export", x, quantizations=("float32",))
        return
    estimate = evaluation.log_likelihood(model, x, 8, batch_size=12, sample_chunk=4)
    assert np.all(np.isfinite(estimate.per_example))
    description = export.export_model(model, tmp_path / "export", x, quantizations=("float32",))
    assert all(report["passed"] for report in description["parity"].values())
    assert set(description["noise"]["sample_from_noise"]) == set(endpoints.sampling_noise(model))


@pytest.mark.parametrize("likelihood,posterior,prior", REFUSED[:2])
def test_a_point_mass_with_a_learned_prior_is_refused(likelihood, posterior, prior):
    with pytest.raises(ValueError, match="no KL term"):
        build(likelihood, posterior, prior)


def test_the_importance_weighted_estimate_is_not_below_the_elbo_on_average():
    # Jensen: E[IW_k] >= ELBO for every posterior with a density; 64 examples
    # and k = 64 keep the Monte Carlo error of the difference far below its size.
    for posterior in ("diagonal_gaussian", "student_t", "iaf", "full_covariance_gaussian"):
        x = data_for("bernoulli", n=64)
        model = build("bernoulli", posterior, "standard_normal")
        elbo = np.mean(model.elbo(x, num_samples=64, seed=1))
        estimate = evaluation.log_likelihood(model, x, 64, batch_size=64, sample_chunk=64)
        assert estimate.mean >= elbo - 3 * estimate.stderr, posterior


def test_a_vamp_prior_hands_the_encoder_to_its_mixture():
    model = build("bernoulli", "diagonal_gaussian", "vamp")
    pseudo_inputs = model.prior_model.parameters(model.encoder)["pseudo_inputs"]
    components = model.encoder(pseudo_inputs)  # q(z | u_k), batch [K].
    z = tf.constant([[0.3, -0.2], [1.0, 0.5]])
    want = tf.reduce_logsumexp(components.log_prob(z[:, tf.newaxis]), axis=1) - np.log(
        pseudo_inputs.shape[0]
    )
    np.testing.assert_allclose(model.prior().log_prob(z), want, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "likelihood,prior",
    [
        *[(likelihood, "standard_normal") for likelihood in registry.LIKELIHOODS],
        # Quantized prior weights move z: x is checked against decode at the file's own z.
        ("gaussian", "mixture_of_gaussians"),
        ("gaussian", "vamp"),
    ],
)
def test_every_likelihood_exports_with_every_quantization(likelihood, prior, tmp_path):
    # 28 x 20 images and 16 hidden units: 8960 decoder weights, above the 1024
    # below which the converter leaves a tensor unquantized.
    rng = np.random.default_rng(0)
    x = {
        "bernoulli": (rng.uniform(size=(64, 28, 20)) > 0.5),
        "discretized_logistic": np.round(rng.uniform(size=(64, 28, 20)) * 255) / 255,
    }.get(likelihood, 0.05 + 0.9 * rng.uniform(size=(64, 28, 20))).astype(np.float32)
    model = tfvae.build_vae(
        config.ModelConfig(
            latent_dim=2,
            hidden_units=(16,),
            event_shape=(28, 20),
            likelihood=likelihood,
            prior=config.PriorConfig(
                prior, **({"num_pseudo_inputs": 20} if prior == "vamp" else {})
            ),
        ),
        seed=0,
    )
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    model.fit(x, batch_size=32, epochs=2, verbose=0)
    description = export.export_model(
        model, tmp_path / "export", x, quantizations=export.QUANTIZATIONS
    )
    assert set(description["tflite"]) == {endpoints.tflite_name(q) for q in export.QUANTIZATIONS}
