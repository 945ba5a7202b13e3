"""Flow posteriors against mathematics: change of variables, normalisation, draws, training.

Sizes as in test_posteriors.py (B = 5 examples, F = 7 features, S = 11
samples, J = 3 unless a test needs 1 or 2). Flows get random weights N(0, 0.7^2)
in every network (`randomized`): far from the identity (total variation from
their base 0.6-1.0) yet smooth enough for a grid. Checks of the density run in
float64; Monte Carlo checks allow 4 standard errors.
"""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from test_posteriors import (
    B,
    F,
    S,
    assert_identical_after_round_trip,
    assert_litert_matches,
    assert_runs_under_xla,
    assert_same_distribution,
    assert_within_standard_errors,
    grid_moments,
    midpoint_grid,
    numpy_noise,
    random_parameters,
)

from tfvae import flows, made, objectives
from tfvae.networks import MLP, ProbabilisticNetwork

tfd = tfp.distributions

FLOWS = {
    "InverseAutoregressiveFlow": flows.InverseAutoregressiveFlow,
    "AffineCoupling": flows.AffineCoupling,
}
HIDDEN = (8,)
WEIGHT_SCALE = 0.7


def flow_head(name, size=3, **kwargs):
    head = FLOWS[name](size, hidden_units=HIDDEN, seed=0, **kwargs)
    head.build((None, F))
    return head


def randomized(head, seed=0, scale=WEIGHT_SCALE):
    """`head` with every flow-network weight ~ N(0, scale^2) (masked entries included)."""
    rng = np.random.default_rng(seed)
    for network in head.networks:
        for weight in network.weights:
            weight.assign(rng.normal(scale=scale, size=weight.shape))
    return head


def flow_weights(head):
    return [weight for network in head.networks for weight in network.trainable_weights]


# Construction.


def test_flow_weights_are_the_heads_trainable_weights():
    head = flows.InverseAutoregressiveFlow(3, num_flows=3, hidden_units=(6, 4), seed=0)
    head.build((None, F))
    # Base: loc and scale kernels and biases; each MADE: 3 layers of kernel and bias.
    assert len(head.trainable_weights) == 4 + 3 * 2 * 3
    tracked = {id(weight) for weight in head.trainable_weights}
    assert all(id(weight) in tracked for weight in flow_weights(head))
    assert all(id(weight) in tracked for weight in head.base.trainable_weights)
    # And the Keras model around it (what an optimizer and a .keras file see).
    encoder = ProbabilisticNetwork(MLP((F,)), head)
    encoder.build((None, 4))
    assert len(encoder.trainable_weights) == 2 + len(head.trainable_weights)


def test_coupling_needs_two_dimensions_and_flows_need_a_vector_event():
    with pytest.raises(ValueError, match="at least 2 latent dimensions"):
        flows.AffineCoupling(1)
    with pytest.raises(ValueError, match="rank-1"):
        flows.InverseAutoregressiveFlow([3, 2])
    with pytest.raises(ValueError, match="even"):
        flows.InverseAutoregressiveFlow(3, num_mean_samples=7)


@pytest.mark.parametrize(
    "layer",
    [
        made.MaskedDense(
            4,
            activation="tanh",
            input_degrees=[1, 2, 3],
            output_degrees=[1, 2, 2, 1],
            exclusive=True,
        ),
        made.ShiftAndLogScaleNetwork(2, 3, (5,), max_log_scale=2.0, weight_decay=0.1, seed=4),
        made.MADE(3, (5, 4), activation="relu", seed=2),
        flows.InverseAutoregressiveFlow(
            3,
            num_flows=3,
            hidden_units=(5,),
            activation="relu",
            max_log_scale=2.0,
            min_scale=0.01,
            num_mean_samples=64,
            init_stddev=0.1,
            weight_decay=0.2,
            seed=9,
        ),
        flows.AffineCoupling(4, num_flows=1, hidden_units=(), seed=1),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_rebuilds_the_same_layer(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_masked_dense_applies_its_mask_in_the_input_dtype():
    layer = made.MaskedDense(
        4, input_degrees=[1, 2, 3], output_degrees=[1, 2, 3, 3], exclusive=True
    )
    layer.build((None, 3))
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    x = rng.normal(size=(B, 3))
    # Output k sees input i iff degree_k > degree_i.
    mask = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    y = layer(tf.constant(x))
    assert y.dtype == tf.float64
    expected = x @ (kernel.astype(np.float32) * mask) + bias.astype(np.float32)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_made_outputs_depend_only_on_earlier_coordinates():
    """d(shift_i, log_scale_i)/dz_j = 0 exactly for j >= i, and != 0 for every j < i."""
    network = made.MADE(4, (16, 8))
    network.build((None, 4))
    rng = np.random.default_rng(1)
    for weight in network.weights:  # masked entries too: the mask must stop them
        weight.assign(rng.normal(size=weight.shape))
    z = tf.constant(rng.normal(size=(B, 4)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        shift, log_scale = network(z)
    for output in (shift, log_scale):
        jacobian = tape.batch_jacobian(output, z).numpy()  # [B, i, j]
        np.testing.assert_array_equal(np.triu(jacobian), 0.0)
        assert np.all(np.abs(jacobian[:, np.tril_indices(4, -1)[0], np.tril_indices(4, -1)[1]]) > 0)


def test_log_scales_stay_within_their_bound():
    network = made.MADE(3, (4,), max_log_scale=2.0)
    network.build((None, 3))
    for weight in network.weights:
        weight.assign(np.full(weight.shape, 100.0))
    _, log_scale = network(tf.constant(np.random.default_rng(2).normal(size=(B, 3)) * 10))
    assert np.all(np.abs(log_scale) <= 2.0) and np.max(np.abs(log_scale)) > 1.9


# The identity at initialisation.


@pytest.mark.parametrize("name", FLOWS)
def test_a_fresh_flow_is_its_base_gaussian(name):
    head = flow_head(name)
    rng = np.random.default_rng(3)
    parameters = random_parameters(head, rng)
    noise = numpy_noise(head, rng, B)
    z = head.draw(parameters, noise)
    np.testing.assert_allclose(z, head.base.draw(parameters, noise), rtol=1e-12)
    z_copy = tf.constant(z.numpy())
    np.testing.assert_allclose(
        head.distribution(parameters).log_prob(z_copy),
        head.base.distribution(parameters).log_prob(z_copy),
        rtol=1e-12,
    )
    # Antithetic pairs average to loc exactly, up to rounding.
    np.testing.assert_allclose(head.mean(parameters), parameters["loc"], atol=1e-14)


# The change of variables.


@pytest.mark.parametrize("name", FLOWS)
def test_log_density_is_base_density_minus_log_det_jacobian(name):
    """log q(z) = log q0(z0) - log |det df/dz0| with the Jacobian from autodiff, float64.

    z is a fresh tensor, so log_prob inverts f itself (the IAF by J passes of
    its MADEs); both sides are float64 sums of O(10) terms: tolerance 1e-9.
    """
    head = randomized(flow_head(name))
    rng = np.random.default_rng(4)
    parameters = random_parameters(head, rng)
    z0 = tf.constant(rng.normal(size=(B, 3)) + parameters["loc"].numpy())
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z = head.bijector().forward(z0)
    log_det = np.linalg.slogdet(tape.batch_jacobian(z, z0).numpy())[1]
    assert np.max(np.abs(log_det)) > 0.5  # far from volume-preserving
    z_copy = tf.constant(z.numpy())
    posterior = head.distribution(parameters)
    np.testing.assert_allclose(posterior.bijector.inverse(z_copy), z0, rtol=1e-10, atol=1e-10)
    expected = head.base.distribution(parameters).log_prob(z0).numpy() - log_det
    np.testing.assert_allclose(posterior.log_prob(z_copy), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FLOWS)
def test_rate_has_no_closed_form(name):
    head = flow_head(name)
    posterior = head.distribution(random_parameters(head, np.random.default_rng(9)))
    prior = tfd.MultivariateNormalDiag(tf.zeros((3,), tf.float64))
    assert objectives.analytic_rate(posterior, prior) is None


# Normalisation and moments on a grid.

GRID_CASES = [
    ("InverseAutoregressiveFlow", 1),
    ("InverseAutoregressiveFlow", 2),
    ("AffineCoupling", 2),
]


@pytest.mark.parametrize("name,size", GRID_CASES)
def test_density_integrates_to_one_and_moments_agree(name, size):
    """Grid mass 1, grid mean = sample mean = `mean` (B = 2 examples at once).

    Box: the range of 1e5 samples widened by 20% on each side. No sample falls
    outside it, so its outer mass is below 3e-5 (rule of three, 95%). Grid:
    4000 cells (1-D) or 250 per axis (2-D); halving them changes the mass by
    less than 1e-6 (the densities are smooth: tanh networks). Tolerance 1e-4.
    The flow's total variation from its base must exceed 0.3: the weights make
    it far from the identity. `mean` averages 128 antithetic draws: within
    4 sd / sqrt(128) of the grid mean, sd from the grid.
    """
    head = randomized(flow_head(name, size))
    parameters = random_parameters(head, np.random.default_rng(size), batch=2)
    posterior = head.distribution(parameters)
    samples = posterior.sample(100_000, seed=[1, 2]).numpy()  # [N, 2, size]
    lows, highs = samples.min(axis=(0, 1)), samples.max(axis=(0, 1))
    pad = 0.2 * (highs - lows)
    points, volume = midpoint_grid(lows - pad, highs + pad, 4000 if size == 1 else 250)
    mass, mean = grid_moments(posterior, points, volume)
    np.testing.assert_allclose(mass, 1.0, atol=1e-4)
    density = np.exp(posterior.log_prob(points[:, None, :]).numpy())
    base_density = np.exp(head.base.distribution(parameters).log_prob(points[:, None, :]).numpy())
    assert np.all(0.5 * np.abs(density - base_density).sum(axis=0) * volume > 0.3)
    for b in range(2):
        assert_within_standard_errors(samples[:, b], mean[b])
    variance = np.einsum("nb,nbd->bd", density, (points[:, None, :] - mean) ** 2) * volume
    error = np.abs(head.mean(parameters).numpy() - mean)
    assert np.all(error <= 4 * np.sqrt(variance / head.num_mean_samples))
    np.testing.assert_array_equal(head.mean(parameters), head.mean(parameters))


@pytest.mark.parametrize("name", FLOWS)
def test_draw_from_numpy_noise_follows_the_sampled_distribution(name):
    head = randomized(flow_head(name, 2))
    rng = np.random.default_rng(5)
    parameters = random_parameters(head, rng, batch=1)
    num = 4000
    samples = head.distribution(parameters).sample(num, seed=[3, 4]).numpy()[:, 0]
    tiled = {key: tf.repeat(value, num, axis=0) for key, value in parameters.items()}
    draws = head.draw(tiled, numpy_noise(head, rng, num)).numpy()
    assert_same_distribution(samples, draws)
    # The coordinates differ in law, so a swap of them would fail the check above.
    assert scipy.stats.ks_2samp(draws[:, 0], draws[:, 1]).pvalue < 1e-3


# Training: gradients, caching, XLA.


@pytest.mark.parametrize("name", FLOWS)
def test_gradients_reach_every_flow_weight_through_log_prob_of_samples(name):
    rng = np.random.default_rng(6)
    features = tf.constant(rng.normal(size=(B, F)), tf.float32)
    for head, weights in ((randomized(flow_head(name)), None), (flow_head(name), "last")):
        with tf.GradientTape() as tape:
            posterior = head(features)
            z = posterior.sample(S, seed=[5, 6])
            loss = tf.reduce_mean(posterior.log_prob(z)) + tf.reduce_mean(tf.square(z))
        gradients = dict(
            zip(
                [w.path for w in head.trainable_weights],
                tape.gradient(loss, head.trainable_weights),
            )
        )
        assert all(g is not None and np.all(np.isfinite(g)) for g in gradients.values())
        # Random weights: all get a gradient. Fresh (zero last layers): the last
        # layers do, so training leaves the identity.
        checked = [
            w.path
            for w in (
                flow_weights(head)
                if weights is None
                else [n.last.kernel for n in head.networks] + [n.last.bias for n in head.networks]
            )
        ]
        checked += [w.path for w in head.base.trainable_weights]
        assert all(np.any(gradients[path] != 0) for path in checked)


def test_log_prob_of_a_sample_reuses_its_inverse_and_never_a_stale_one(monkeypatch):
    """One MADE pass per flow for a sample (the cached z0); J + 1 for any other z;
    and a z drawn before a weight update is scored with the updated weights.

    Three flows: with an odd number the chain ends on a MAF, whose cache TFP
    shares between bijectors of equal parameters (a stale z0 would be found).
    """
    head = randomized(flow_head("InverseAutoregressiveFlow", num_flows=3))
    calls = []
    for network in head.networks:
        monkeypatch.setattr(
            network, "call", lambda z, call=network.call: (calls.append(1), call(z))[1]
        )
    features = tf.constant(np.random.default_rng(7).normal(size=(B, F)), tf.float32)
    posterior = head(features)
    z = posterior.sample(seed=[7, 8])
    calls.clear()
    log_prob = posterior.log_prob(z)
    assert len(calls) == head.num_flows
    calls.clear()
    np.testing.assert_allclose(posterior.log_prob(tf.constant(z.numpy())), log_prob, rtol=1e-5)
    assert len(calls) == head.num_flows * (3 + 1)
    drawn = head.draw(head.parameters(features), numpy_noise(head, np.random.default_rng(8), B))
    network = head.networks[-1]
    network.last.bias.assign(network.last.bias + 0.5)
    for point in (z, drawn):
        np.testing.assert_allclose(
            head(features).log_prob(point),
            head(features).log_prob(tf.constant(point.numpy())),
            rtol=1e-5,
        )


@pytest.mark.parametrize("name", FLOWS)
def test_sampling_log_prob_and_gradients_compile_with_xla(name):
    head = FLOWS[name](3, hidden_units=HIDDEN, seed=0)
    assert_runs_under_xla(head)  # randomizes every weight, flows included


@pytest.mark.parametrize("name", FLOWS)
def test_float64_parameters_give_float64_results(name):
    head = randomized(flow_head(name))
    rng = np.random.default_rng(8)
    parameters = random_parameters(head, rng)
    z = head.distribution(parameters).sample(seed=[0, 1])
    outputs = [
        head.mean(parameters),
        head.draw(parameters, numpy_noise(head, rng, B)),
        z,
        head.distribution(parameters).log_prob(z),
    ]
    assert all(output.dtype == tf.float64 for output in outputs)


# Saving and running elsewhere.


@pytest.mark.parametrize("name", FLOWS)
def test_keras_round_trip_keeps_log_prob_and_draws(name, tmp_path):
    assert_identical_after_round_trip(FLOWS[name](3, hidden_units=HIDDEN, seed=0), tmp_path)


@pytest.mark.parametrize("name", FLOWS)
def test_draw_and_mean_run_on_litert_builtins(name, tmp_path):
    assert_litert_matches(FLOWS[name](3, hidden_units=HIDDEN, seed=0), tmp_path)
