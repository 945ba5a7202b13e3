"""Two-stochastic-layer parts against mathematics: joint Gaussians, factors, draws, training.

Distinct sizes on every axis: B = 5 examples, F = 7 features, J1 = 4 and
J2 = 2 latent dimensions (J = 6), H = 3 hidden units, S = 11 samples. With
linear conditional networks (no activation) and a constant conditional scale,
q(z1, z2 | x) and p(z1, z2) are joint Gaussians whose mean and covariance
follow from the weights; those are checked in float64 against
`tfd.MultivariateNormalTriL`. With tanh networks and random weights, the
densities are checked against the product of their two factors (scipy).
Monte Carlo checks allow 4 standard errors.
"""

import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from test_posteriors import (
    B,
    F,
    S,
    assert_litert_matches,
    assert_runs_under_xla,
    assert_within_standard_errors,
)

from tfvae import builders, export, hierarchical, objectives, priors
from tfvae.networks import MLP, ProbabilisticNetwork

tfd = tfp.distributions

J1, J2, H = 4, 2, 3
J = J1 + J2
MIN_SCALE = 1e-4
PARTS = ("posterior", "prior")


# Helpers.


def posterior_head(activation="tanh", weight_scale=0.7, seed=0):
    """A `TwoLayerPosterior` built for `[B, F]` features, q(z2|z1)'s weights ~ N(0, s^2)."""
    head = hierarchical.TwoLayerPosterior(
        J, top_latent_dim=J2, hidden_units=(H,), activation=activation, seed=seed
    )
    head.build((None, F))
    randomize(head.top, weight_scale, seed)
    return head


def two_layer_prior(activation="tanh", weight_scale=0.7, seed=0, dtype="float64"):
    """A `TwoLayerPrior` (float64 by default), p(z1|z2)'s weights ~ N(0, s^2)."""
    prior = hierarchical.TwoLayerPrior(
        J, top_latent_dim=J2, hidden_units=(H,), activation=activation, seed=seed, dtype=dtype
    )
    randomize(prior.bottom, weight_scale, seed)
    return prior


def randomize(network, scale, seed):
    rng = np.random.default_rng(seed)
    for weight in network.weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape))


def random_parameters(rng, batch=B):
    """q(z1|x)'s parameters, float64: locs around 0, scales in [0.5, 1.2]."""
    return {
        "loc": tf.constant(rng.normal(scale=0.5, size=(batch, J1))),
        "scale": tf.constant(rng.uniform(0.5, 1.2, size=(batch, J1))),
    }


def make_linear(network):
    """Makes `network`'s scale constant (zero raw-scale kernel); returns its affine
    map u -> loc = u M + c and that scale t, float64 numpy, from the weights alone."""
    network.raw_scale_layer.kernel.assign(np.zeros(network.raw_scale_layer.kernel.shape))
    matrix, offset = np.eye(network.input_size), np.zeros(network.input_size)
    for layer in [*network.hidden, network.loc_layer]:
        kernel, bias = (np.float64(w.numpy()) for w in (layer.kernel, layer.bias))
        matrix, offset = matrix @ kernel, offset @ kernel + bias
    raw = np.float64(network.raw_scale_layer.bias.numpy())
    scale = MIN_SCALE + np.logaddexp(0.0, raw + math.log(math.e - 1.0))
    return matrix, offset, scale


def linear_posterior(rng):
    """(head, parameters, mean `[B, J]`, covariance `[B, J, J]`) of a joint-Gaussian q.

    z1 ~ N(m, diag(s^2)) and z2 = z1 M + c + t e2 give E[z] = [m, m M + c] and
    Cov = [[S1, S1 M], [M^T S1, M^T S1 M + diag(t^2)]], S1 = diag(s^2).
    """
    head = posterior_head(activation=None)
    matrix, offset, scale = make_linear(head.top)
    parameters = random_parameters(rng)
    m, s = (parameters[name].numpy() for name in ("loc", "scale"))
    mean = np.concatenate([m, m @ matrix + offset], axis=-1)
    s1 = np.einsum("bi,ij->bij", s**2, np.eye(J1))
    cross = s1 @ matrix
    covariance = np.block(
        [[s1, cross], [np.swapaxes(cross, 1, 2), matrix.T @ s1 @ matrix + np.diag(scale**2)]]
    )
    return head, parameters, mean, covariance


def linear_prior():
    """(prior, mean `[J]`, covariance `[J, J]`) of a joint-Gaussian p.

    z2 ~ N(0, I) and z1 = z2 M + c + t e1 give E[z] = [c, 0] and
    Cov = [[M^T M + diag(t^2), M^T], [M, I]].
    """
    prior = two_layer_prior(activation=None)
    matrix, offset, scale = make_linear(prior.bottom)
    mean = np.concatenate([offset, np.zeros(J2)])
    covariance = np.block([[matrix.T @ matrix + np.diag(scale**2), matrix.T], [matrix, np.eye(J2)]])
    return prior, mean, covariance


def gaussian_log_prob(z, mean, covariance):
    return tfd.MultivariateNormalTriL(mean, np.linalg.cholesky(covariance)).log_prob(z).numpy()


def normal_noise(rng, *shape):
    return {"eps": tf.constant(rng.standard_normal((*shape, J)))}


# Closed forms in the linear case.


def test_linear_posterior_log_prob_and_mean_are_the_joint_gaussians():
    rng = np.random.default_rng(0)
    head, parameters, mean, covariance = linear_posterior(rng)
    z = rng.normal(size=(S, B, J)) * 2.0
    log_q = head.distribution(parameters).log_prob(z)
    assert log_q.dtype == tf.float64 and log_q.shape == (S, B)
    np.testing.assert_allclose(log_q, gaussian_log_prob(z, mean, covariance), rtol=1e-10)
    # The antithetic mean is exact for a linear m(z1).
    np.testing.assert_allclose(head.mean(parameters), mean, rtol=1e-12, atol=1e-12)


def test_linear_prior_log_prob_and_mean_are_the_joint_gaussians():
    rng = np.random.default_rng(1)
    prior, mean, covariance = linear_prior()
    z = rng.normal(size=(S, B, J)) * 2.0
    log_p = prior.distribution().log_prob(z)
    assert log_p.dtype == tf.float64 and log_p.shape == (S, B)
    np.testing.assert_allclose(log_p, gaussian_log_prob(z, mean, covariance), rtol=1e-10)
    np.testing.assert_allclose(prior.mean(), mean, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("part", PARTS)
def test_linear_draws_have_the_joint_gaussian_moments(part):
    rng = np.random.default_rng(2)
    n = 20_000
    if part == "posterior":
        head, parameters, mean, covariance = linear_posterior(rng)
        one = {name: tf.repeat(value[:1], n, axis=0) for name, value in parameters.items()}
        z = head.draw(one, normal_noise(rng, n)).numpy()
        mean, covariance = mean[0], covariance[0]
    else:
        prior, mean, covariance = linear_prior()
        z = prior.draw(normal_noise(rng, n)).numpy()
    assert_within_standard_errors(z, mean)
    # Var of a sample covariance of Gaussians: (C_ii C_jj + C_ij^2) / n.
    stderr = np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / n)
    assert np.all(np.abs(np.cov(z, rowvar=False) - covariance) <= 4 * stderr)


# The nonlinear parts: two factors, draws, gradients.


def test_posterior_log_prob_is_log_q_z1_plus_log_q_z2_given_z1():
    rng = np.random.default_rng(3)
    head, parameters = posterior_head(), random_parameters(rng)
    z = rng.normal(size=(S, B, J)) * 1.5
    z1, z2 = z[..., :J1], z[..., J1:]
    top_loc, top_scale = (value.numpy() for value in head.top(tf.constant(z1)))
    want = scipy.stats.norm.logpdf(z1, parameters["loc"], parameters["scale"]).sum(
        -1
    ) + scipy.stats.norm.logpdf(z2, top_loc, top_scale).sum(-1)
    np.testing.assert_allclose(head.distribution(parameters).log_prob(z), want, rtol=1e-10)


def test_prior_log_prob_is_log_p_z2_plus_log_p_z1_given_z2():
    rng = np.random.default_rng(4)
    prior = two_layer_prior()
    z = rng.normal(size=(S, B, J)) * 1.5
    z1, z2 = z[..., :J1], z[..., J1:]
    bottom_loc, bottom_scale = (value.numpy() for value in prior.bottom(tf.constant(z2)))
    want = scipy.stats.norm.logpdf(z2).sum(-1) + scipy.stats.norm.logpdf(
        z1, bottom_loc, bottom_scale
    ).sum(-1)
    np.testing.assert_allclose(prior.distribution().log_prob(z), want, rtol=1e-10)


@pytest.mark.parametrize("part", PARTS)
def test_draw_is_the_distributions_sample_from_the_same_noise(part):
    """TFP's normal sampler is `tf.random.stateless_normal` of the seed: given that
    noise, `draw` (plain ops) and `sample` (TFP's bijector) must agree."""
    seed = tf.constant([3, 4])
    eps = tf.random.stateless_normal((S, B, J), seed=seed, dtype=tf.float64)
    if part == "posterior":
        head, parameters = posterior_head(), random_parameters(np.random.default_rng(5))
        sample = head.distribution(parameters).sample(S, seed=seed)
        drawn = head.draw(parameters, {"eps": eps})
    else:
        prior = two_layer_prior()
        sample = prior.distribution().sample((S, B), seed=seed)
        drawn = prior.draw({"eps": eps})
    np.testing.assert_allclose(drawn, sample, rtol=1e-12, atol=1e-12)


def test_extreme_inputs_give_finite_log_prob_and_gradients():
    """Features of 1e4, weights N(0, 1): scales at their floor or huge, z1 far out."""
    rng = np.random.default_rng(6)
    head = posterior_head(weight_scale=1.0)
    randomize(head.bottom, 1.0, 7)
    prior = two_layer_prior(weight_scale=1.0, dtype="float32")
    features = tf.constant(1e4 * rng.choice([-1.0, 1.0], size=(B, F)), tf.float32)
    noise = {"eps": tf.constant(rng.normal(size=(B, J)), tf.float32)}
    weights = [*head.trainable_weights, *prior.trainable_weights]
    with tf.GradientTape() as tape:
        parameters = head.parameters(features)
        posterior = head.distribution(parameters)
        z = head.draw(parameters, noise)
        # A fresh copy of z too: log_prob must not rely on the bijector's cache.
        log_weights = [
            posterior.log_prob(copy) - prior.distribution().log_prob(copy)
            for copy in (z, tf.identity(z) + 0.0)
        ]
        loss = tf.reduce_sum(log_weights)
    assert np.isclose(np.min(parameters["scale"]), MIN_SCALE, rtol=1e-3)
    assert np.all(np.isfinite(log_weights))
    assert all(np.all(np.isfinite(g)) for g in tape.gradient(loss, weights))


def test_posterior_samples_compile_with_xla_and_run_on_litert(tmp_path):
    def head():
        return hierarchical.TwoLayerPosterior(J, top_latent_dim=J2, hidden_units=(H,), seed=0)

    assert_runs_under_xla(head())
    assert_litert_matches(head(), tmp_path)  # Builds its own encoder: a fresh head.


# The interface.


def test_neither_part_factorizes_nor_has_a_closed_form_kl():
    head, prior = posterior_head(), two_layer_prior(dtype="float32")
    parameters = {
        k: tf.cast(v, tf.float32) for k, v in random_parameters(np.random.default_rng(8)).items()
    }
    posterior = head.distribution(parameters)
    for p_z in (prior.distribution(), priors.StandardNormal(J).distribution()):
        assert objectives.analytic_rate(posterior, p_z) is None
    with pytest.raises(NotImplementedError, match="does not factorize"):
        head.elementwise_log_prob(parameters, tf.zeros((B, J)))
    with pytest.raises(NotImplementedError, match="does not factorize"):
        prior.elementwise_log_prob(tf.zeros((B, J)))
    assert head.noise_spec() == prior.noise_spec() == {"eps": ("normal", (J,))}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: hierarchical.TwoLayerPosterior(J, top_latent_dim=J), "top_latent_dim"),
        (lambda: hierarchical.TwoLayerPrior(J, top_latent_dim=0), "top_latent_dim"),
        (lambda: hierarchical.TwoLayerPrior([J, 2], top_latent_dim=1), "vector"),
        (lambda: hierarchical.TwoLayerPosterior(J, top_latent_dim=J2, num_mean_samples=5), "even"),
        (lambda: hierarchical.ConditionalGaussian(J1, J2, min_scale=0.0), "positive"),
    ],
)
def test_bad_arguments_are_refused_with_reasons(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "layer",
    [
        hierarchical.ConditionalGaussian(
            J1,
            J2,
            (H, 5),
            activation="relu",
            min_scale=1e-3,
            init_stddev=0.1,
            weight_decay=0.2,
            seed=3,
        ),
        hierarchical.TwoLayerPosterior(
            J,
            top_latent_dim=J2,
            hidden_units=(H,),
            activation=None,
            min_scale=1e-3,
            num_mean_samples=64,
            init_stddev=0.1,
            weight_decay=0.2,
            seed=4,
        ),
        hierarchical.TwoLayerPrior(
            J,
            top_latent_dim=J2,
            hidden_units=(),
            min_scale=1e-3,
            num_mean_samples=32,
            init_stddev=0.1,
            weight_decay=0.2,
            seed=5,
        ),
        hierarchical.FirstLatents(J1, MLP((H,), seed=6)),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_rebuilds_the_same_layer(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_first_latents_feeds_its_trunk_z1_only():
    trunk = hierarchical.FirstLatents(J1, MLP((H,), init_stddev=0.5, seed=0))
    trunk.build((None, J))
    assert trunk.compute_output_shape((None, J)) == (None, H)
    z = tf.constant(np.random.default_rng(9).normal(size=(B, J)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        features = trunk(z)
    np.testing.assert_array_equal(features, trunk.trunk(z[:, :J1]))
    gradient = tape.gradient(features, z).numpy()
    assert np.all(gradient[:, J1:] == 0) and np.all(gradient[:, :J1] != 0)


def test_first_latents_passes_a_condition_on_to_its_trunk():
    k = 2
    trunk = hierarchical.FirstLatents(J1, MLP((H,), init_stddev=0.5, seed=0, condition_size=k))
    trunk.build((None, J))
    assert trunk.condition_size == k
    rng = np.random.default_rng(11)
    z = tf.constant(rng.normal(size=(B, J)), tf.float32)
    conditions = [tf.constant(rng.normal(size=(B, k)), tf.float32) for _ in range(2)]
    features = [trunk(z, condition=c).numpy() for c in conditions]
    np.testing.assert_array_equal(features[0], trunk.trunk(z[:, :J1], condition=conditions[0]))
    assert not np.allclose(features[0], features[1])


def test_vamp_prior_over_a_two_layer_posterior_is_its_explicit_mixture():
    """The posterior composes with the parts that take any head: here p(z) =
    (1/K) sum_k q(z | u_k) with batch [K] couplings inside a mixture."""
    k = 3
    encoder = ProbabilisticNetwork(
        MLP((F,), init_stddev=0.5, seed=0), posterior_head(activation="tanh", seed=1)
    )
    encoder.build((None, F))
    prior = priors.VampPrior(J, k, seed=2)
    prior.build((None, F))
    z = tf.constant(np.random.default_rng(10).normal(size=(B, J)), tf.float32)
    components = encoder(prior.pseudo_inputs()).log_prob(z[:, tf.newaxis])  # [B, K]
    want = tf.reduce_logsumexp(components, axis=1) - math.log(k)
    np.testing.assert_allclose(prior.distribution(encoder).log_prob(z), want, rtol=1e-6)


# The whole model.


def binary_images(n, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n, 8, 6)) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    """(model, x, weights before fit): latent (4, 2), binary 8 x 6 images, a few IWAE steps."""
    model = builders.two_layer_vae(
        (8, 6), (J1, J2), ((16,), (H,)), init_stddev=0.1, seed=0, objective="iwae", num_samples=5
    )
    x = binary_images(48)
    before = {id(w): w.numpy().copy() for w in model.trainable_weights}
    model.compile(keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(x, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    return model, x, before


def test_two_layer_vae_has_burdas_shapes():
    model = builders.two_layer_vae((8, 6), seed=0)
    posterior, prior = model.posterior_head(), model.prior_part()
    assert model.latent_shape == (150,)
    assert (posterior.bottom_latent_dim, posterior.top_latent_dim) == (100, 50)
    assert [layer.units for layer in model.encoder.trunk.hidden] == [100, 100]
    assert [layer.units for layer in posterior.top.hidden] == [50, 50]
    assert [layer.units for layer in prior.bottom.hidden] == [50, 50]
    assert model.decoder.trunk.latent_dim == 100
    assert [layer.units for layer in model.decoder.trunk.trunk.hidden] == [100, 100]
    with pytest.raises(ValueError, match="closed-form KL"):
        builders.two_layer_vae(
            (8, 6), (J1, J2), ((16,), (H,)), kl_estimator="analytic", objective="elbo", seed=0
        ).elbo(binary_images(2))


def test_training_moves_every_part(trained):
    model, _, before = trained
    parts = {
        "q(z1|x)": model.posterior_head().bottom,
        "q(z2|z1)": model.posterior_head().top,
        "p(z1|z2)": model.prior_part().bottom,
        "p(x|z1)": model.likelihood_head(),
    }
    for name, part in parts.items():
        assert part.trainable_weights, name
        assert any(not np.array_equal(before[id(w)], w.numpy()) for w in part.trainable_weights), (
            name
        )


def test_iwae_bound_is_not_below_the_elbo(trained):
    model, x, _ = trained
    terms = model.bound_terms(x, "iwae", 5, seed=1)
    # From the same draws: log mean w >= mean log w for every example (Jensen).
    assert np.all(terms.bound.numpy() >= terms.elbo.numpy() - 1e-5)
    # From independent draws, on average over examples and seeds.
    iwae = np.stack([model.iwae_bound(x, 5, seed=s).numpy() for s in range(2, 6)])
    elbo = np.stack([model.elbo(x, 5, seed=s).numpy() for s in range(6, 10)])
    difference = (iwae - elbo).ravel()
    assert difference.mean() >= -4 * difference.std() / math.sqrt(difference.size)


def test_keras_round_trip_gives_identical_bounds(trained, tmp_path):
    model, x, _ = trained
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(loaded.prior_part()) is hierarchical.TwoLayerPrior
    np.testing.assert_array_equal(loaded.elbo(x, seed=3), model.elbo(x, seed=3))
    np.testing.assert_array_equal(loaded.iwae_bound(x, 5, seed=3), model.iwae_bound(x, 5, seed=3))
    for name, value in model.predict_step(x).items():
        np.testing.assert_array_equal(loaded.predict_step(x)[name], value, err_msg=name)


def test_export_passes_parity(trained, tmp_path):
    model, x, _ = trained
    description = export.export_model(model, tmp_path / "export", x, quantizations=("float32",))
    assert all(report["passed"] for report in description["parity"].values())
    assert description["latent_dim"] == J
    assert description["noise"]["sample_from_noise"]["eps"] == {"kind": "normal", "shape": ["B", J]}
