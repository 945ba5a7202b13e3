"""The objectives a VAE minimises (`tfvae.objectives.Objective`), the KL weight
schedules (`tfvae.schedules`) and the score-function estimator.

Values are checked against the hand-set model of `test_model.py`: its weights are
read back into numpy, where q(z|x) is a known diagonal Gaussian, the KL has a
closed form, and with a zero decoder kernel the distortion does not depend on z.
"""

import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from test_model import B, binary_data, exact_terms, hand_set_vae, numpy_posterior, small_vae

import tfvae
from tfvae import estimators, objectives, schedules, training
from tfvae.schedules import KLWeight

tfd = tfp.distributions
SEED = tf.constant([4, 2], tf.int32)


def loss_and_terms(model, x, step=0, seed=SEED):
    loss, terms = model.objective.loss(model, tf.constant(x), seed, tf.constant(step))
    return loss.numpy(), terms


# Schedules.


@pytest.mark.parametrize("step, expected", [(0, 0.0), (25, 0.25), (100, 1.0), (250, 1.0)])
def test_linear_warmup_rises_from_zero_to_one_over_its_length(step, expected):
    assert float(schedules.warmup_factor(step, "linear", 100)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "step, expected", [(0, 0.0), (2, 0.5), (4, 1.0), (7, 1.0), (10, 0.0), (13, 0.75), (30, 0.0)]
)
def test_cyclical_warmup_rises_over_the_first_ratio_of_every_cycle(step, expected):
    # Cycles of 10 steps, rising over the first 4: 0, 0.25, 0.5, 0.75, then 1.
    assert float(schedules.warmup_factor(step, "cyclical", 10, ratio=0.4)) == pytest.approx(
        expected
    )


def test_kl_weight_is_beta_times_the_warmup_and_checks_its_settings():
    assert float(KLWeight(beta=4.0, warmup="linear", warmup_steps=8)(2)) == pytest.approx(1.0)
    assert KLWeight().is_one and not KLWeight(beta=0.5).is_one
    for bad in ({"warmup": "sigmoid"}, {"warmup": "linear"}, {"beta": -1.0}, {"warmup_ratio": 0.0}):
        with pytest.raises(ValueError):
            KLWeight(**bad)


def test_warmup_weight_is_right_at_every_step_also_after_a_reload(tmp_path):
    x = binary_data(40)
    objective = objectives.ELBO(KLWeight(warmup="linear", warmup_steps=20))
    model = small_vae(objective=objective)
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=1)
    history = model.fit(x, batch_size=10, epochs=2, verbose=0).history  # 4 steps per epoch.
    # The last step of epoch e has seen t = 4 e - 1 steps before it.
    assert history["kl_weight"] == pytest.approx([3 / 20, 7 / 20])
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    history = reloaded.fit(x, batch_size=10, epochs=4, initial_epoch=2, verbose=0).history
    assert history["kl_weight"] == pytest.approx([11 / 20, 15 / 20])


# The objectives against the closed forms.


def test_elbo_objective_with_beta_one_is_minus_the_elbo_exactly():
    x = binary_data(B)
    for kwargs in ({}, {"kl_estimator": "monte_carlo"}):
        model = hand_set_vae(**kwargs)
        loss, terms = loss_and_terms(model, x)
        bound = model.bound_terms(tf.constant(x), seed=SEED)  # tfp.vi for monte_carlo.
        np.testing.assert_allclose(loss, -bound.elbo.numpy(), rtol=1e-6)
        np.testing.assert_allclose(terms.elbo.numpy(), bound.elbo.numpy(), rtol=1e-6)


def test_beta_weights_the_closed_form_rate_and_the_terms_stay_the_true_ones():
    x = binary_data(B)
    model = hand_set_vae(decoder_kernel_scale=0.0, objective=objectives.ELBO(KLWeight(beta=4.0)))
    rate, distortion = exact_terms(model, x)
    loss, terms = loss_and_terms(model, x)
    np.testing.assert_allclose(loss, distortion + 4.0 * rate, rtol=1e-5)
    np.testing.assert_allclose(terms.elbo.numpy(), -(distortion + rate), rtol=1e-5)
    np.testing.assert_allclose(terms.rate.numpy(), rate, rtol=1e-5)


def test_a_warmup_starts_at_the_distortion_alone():
    x = binary_data(B)
    model = hand_set_vae(
        decoder_kernel_scale=0.0,
        objective=objectives.ELBO(KLWeight(warmup="linear", warmup_steps=10)),
    )
    rate, distortion = exact_terms(model, x)
    np.testing.assert_allclose(loss_and_terms(model, x, step=0)[0], distortion, rtol=1e-5)
    np.testing.assert_allclose(
        loss_and_terms(model, x, step=5)[0], distortion + rate / 2, rtol=1e-5
    )


def posterior_kernel_gradients(model, x, step=0):
    """d mean(loss) / d (loc kernel, scale kernel) of the posterior head, `[F, J]` each."""
    loc, scale = model.encoder.head.parameter_layers
    with tf.GradientTape() as tape:
        loss, _ = model.objective.loss(model, tf.constant(x), SEED, tf.constant(step))
        loss = tf.reduce_mean(loss)
    return [g.numpy() for g in tape.gradient(loss, [loc.kernel, scale.kernel])]


def test_free_bits_hold_a_dimension_below_lambda_and_leave_its_gradient_zero():
    x = binary_data(20)
    model = hand_set_vae(decoder_kernel_scale=0.0)  # The distortion ignores z.
    mu, sigma = numpy_posterior(model, x)
    per_dimension = np.mean(0.5 * (mu**2 + sigma**2 - 1 - 2 * np.log(sigma)), axis=0)
    free_bits = float(np.median(per_dimension))  # Half the dimensions fall below.
    model.objective = objectives.FreeBits(free_bits)
    rate, distortion = exact_terms(model, x)
    loss, terms = loss_and_terms(model, x)
    expected = distortion + np.sum(np.maximum(free_bits, per_dimension))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(terms.rate.numpy(), rate, rtol=1e-5)
    below = per_dimension < free_bits
    assert below.any() and not below.all()
    for gradient in posterior_kernel_gradients(model, x):
        assert np.all(gradient[:, below] == 0)
        assert np.all(np.abs(gradient[:, ~below]).max(axis=0) > 0)


@pytest.mark.parametrize("estimator", ["stratified", "weighted"])
def test_beta_tcvae_with_unit_weights_sums_to_the_monte_carlo_kl_of_its_draws(estimator):
    x = binary_data(8)
    model = hand_set_vae(
        decoder_kernel_scale=0.0,
        objective=objectives.BetaTCVAE(dataset_size=1000, tc_weight=1.0, estimator=estimator),
    )
    _, distortion = exact_terms(model, x)
    loss, terms = loss_and_terms(model, x)
    # The draws the objective used (`estimators.draw` seeds as it does), scored in scipy.
    z = estimators.draw(model, x, 1, SEED, densities=True).z.numpy()[0]
    mu, sigma = numpy_posterior(model, x)
    log_ratio = np.sum(scipy.stats.norm.logpdf(z, mu, sigma) - scipy.stats.norm.logpdf(z), axis=-1)
    np.testing.assert_allclose(loss, distortion + log_ratio, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(terms.rate.numpy(), exact_terms(model, x)[0], rtol=1e-5)


def test_beta_tcvae_weights_move_the_loss_by_the_weighted_terms():
    x = binary_data(8)
    model = hand_set_vae(objective=objectives.BetaTCVAE(dataset_size=1000, tc_weight=1.0))
    unit, _ = loss_and_terms(model, x)
    model.objective = objectives.BetaTCVAE(dataset_size=1000, tc_weight=5.0)
    weighted, _ = loss_and_terms(model, x)
    # The total correlation alone, from the same draws by the decomposition module.
    z = estimators.draw(model, x, 1, SEED, densities=True).z[0]
    parts = tfvae.decomposition.decompose_pairwise_per_example(
        estimators.pairwise_log_posterior(model, x, z),
        model.prior_part().elementwise_log_prob(z),
        1000,
    )
    np.testing.assert_allclose(
        weighted - unit, 4.0 * parts.total_correlation.numpy(), rtol=1e-4, atol=1e-4
    )


def test_tempered_iwae_with_weight_zero_is_the_log_mean_likelihood():
    x = binary_data(B)
    model = hand_set_vae(objective="iwae", num_samples=7, kl_estimator="monte_carlo")
    draws = estimators.draw(model, x, 7, SEED)  # Seeded as tfp.vi seeds its draws.
    tempered = model.bound_terms(tf.constant(x), seed=SEED, kl_weight=tf.constant(0.0))
    log_likelihood = draws.log_likelihood.numpy().astype(np.float64)
    expected = scipy.special.logsumexp(log_likelihood, axis=0) - math.log(7)
    np.testing.assert_allclose(tempered.bound.numpy(), expected, rtol=1e-5)
    untempered = model.bound_terms(tf.constant(x), seed=SEED)
    one = model.bound_terms(tf.constant(x), seed=SEED, kl_weight=tf.constant(1.0))
    np.testing.assert_allclose(one.bound.numpy(), untempered.bound.numpy(), rtol=1e-6)


# The score-function estimator.


def gradients(model, x, seeds):
    """Gradients of the mean loss for each seed: {variable path: `[n, *shape]`}."""
    variables = model.encoder.trainable_variables
    x = tf.constant(x)

    @tf.function
    def one(seed):
        with tf.GradientTape() as tape:
            loss, _ = model.objective.loss(model, x, seed, tf.constant(0))
            loss = tf.reduce_mean(loss)
        return tape.gradient(loss, variables)

    draws = [one(tf.constant([s, 1], tf.int32)) for s in seeds]
    return {v.path: np.stack([d[i].numpy() for d in draws]) for i, v in enumerate(variables)}


@pytest.mark.parametrize("kl_estimator", ["analytic", "monte_carlo"])
def test_score_function_gradient_is_unbiased_and_noisier(kl_estimator):
    x = binary_data(4)
    model = hand_set_vae(kl_estimator=kl_estimator, num_samples=2)
    reparameterized = gradients(model, x, range(300))
    model.objective = objectives.ELBO(gradient_estimator="score_function", baseline="leave_one_out")
    score = gradients(model, x, range(300, 1800))
    for path, values in score.items():
        mean, stderr = values.mean(0), values.std(0) / math.sqrt(len(values))
        reference = reparameterized[path].mean(0)
        reference_stderr = reparameterized[path].std(0) / math.sqrt(300)
        z = np.abs(mean - reference) / np.sqrt(stderr**2 + reference_stderr**2 + 1e-12)
        assert np.max(z) < 4.5, path  # Unbiased: within Monte Carlo error.
        assert values.var(0).sum() > 3 * reparameterized[path].var(0).sum(), path


def test_score_function_gradient_equals_tfp_vi_score_function_on_the_same_draws():
    x = tf.constant(binary_data(B))
    model = hand_set_vae(
        kl_estimator="monte_carlo",
        num_samples=3,
        objective=objectives.ELBO(gradient_estimator="score_function"),
    )
    variables = model.encoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        ours, _ = model.objective.loss(model, x, SEED, tf.constant(0))
        posterior, prior = model.encode(x), model.prior()
        reference = tfp.vi.monte_carlo_variational_loss(
            lambda z: model.log_likelihood(x, z) + prior.log_prob(z),
            posterior,
            sample_size=3,
            gradient_estimator=tfp.vi.GradientEstimators.SCORE_FUNCTION,
            seed=SEED,
        )
        ours, reference = tf.reduce_mean(ours), tf.reduce_mean(reference)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-6)
    for a, b in zip(tape.gradient(ours, variables), tape.gradient(reference, variables)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_score_function_settings_are_checked():
    with pytest.raises(ValueError, match="elbo objective only"):
        objectives.IWAE(gradient_estimator="score_function")
    with pytest.raises(ValueError, match="score-function"):
        objectives.ELBO(baseline="leave_one_out")
    with pytest.raises(ValueError, match="num_samples >= 2"):
        small_vae(
            objective=objectives.ELBO(gradient_estimator="score_function", baseline="leave_one_out")
        )


# Training, saving and reloading with every objective.


@pytest.mark.parametrize(
    "objective",
    [
        objectives.ELBO(KLWeight(beta=0.5, warmup="cyclical", warmup_steps=4)),
        objectives.IWAE(KLWeight(beta=2.0)),
        objectives.FreeBits(0.5),
        objectives.BetaTCVAE(dataset_size=40, tc_weight=3.0, estimator="weighted"),
        objectives.ELBO(gradient_estimator="score_function", baseline="leave_one_out"),
    ],
    ids=lambda o: o.name,
)
def test_every_objective_trains_saves_and_reloads(objective, tmp_path):
    x = binary_data(40)
    model = small_vae(objective=objective, num_samples=1 if objective.name == "beta_tcvae" else 2)
    model.compile(keras.optimizers.Adam(1e-2))
    before = loss_and_terms(model, x, step=0)[0].mean()  # The same KL weight before and after.
    history = model.fit(x, batch_size=10, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert loss_and_terms(model, x, step=0)[0].mean() < before
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert type(reloaded.objective) is type(objective)
    assert reloaded.objective.get_config() == objective.get_config()
    np.testing.assert_array_equal(
        loss_and_terms(reloaded, x[:8], step=3)[0], loss_and_terms(model, x[:8], step=3)[0]
    )


# Learning-rate schedules.


def test_burda_schedule_at_the_papers_length_is_the_papers_stages():
    # Burda et al. (2016), section 5: stage i (i = 0..7) lasts 3^i epochs at
    # 1e-3 * 10^(-i/7); at one step per epoch over 3280 epochs the stages start
    # at epochs 1, 4, 13, 40, 121, 364 and 1093.
    rate = schedules.learning_rate("burda", 1e-3, 1e-4, total_steps=3280)
    starts = [0, 1, 4, 13, 40, 121, 364, 1093]
    for i, start in enumerate(starts):
        ends = starts[i + 1] if i + 1 < len(starts) else 3280
        for step in (start, ends - 1):
            assert float(rate(step)) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-6), step
    assert float(rate(10**6)) == pytest.approx(1e-4, rel=1e-6)


def test_burda_schedule_scales_its_stages_to_the_run():
    rate = schedules.learning_rate("burda", 2e-3, 2e-4, total_steps=328_000)
    assert float(rate(99)) == pytest.approx(2e-3)  # stage 0: 1/3280 of the run
    assert float(rate(100)) == pytest.approx(2e-3 * 10 ** (-1 / 7))
    assert float(rate(109_299)) == pytest.approx(2e-3 * 10 ** (-6 / 7))
    assert float(rate(109_300)) == pytest.approx(2e-4)  # the last 2187/3280


def test_cosine_schedule_halves_its_range_midway_and_ends_at_the_final_rate():
    rate = schedules.learning_rate("cosine", 1e-3, 1e-4, total_steps=1000)
    assert float(rate(0)) == pytest.approx(1e-3)
    assert float(rate(500)) == pytest.approx(5.5e-4, rel=1e-5)  # (1 + cos(pi/2)) / 2 = 1/2
    assert float(rate(250)) == pytest.approx(
        1e-4 + 9e-4 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-5
    )
    assert float(rate(1000)) == pytest.approx(1e-4) and float(rate(5000)) == pytest.approx(1e-4)
    assert schedules.learning_rate("constant", 3e-4, 1e-5, total_steps=10) == 3e-4


def test_learning_rate_settings_are_checked():
    with pytest.raises(ValueError, match="lr-schedule burda"):
        tfvae.config.TrainConfig(final_learning_rate=1e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        tfvae.config.TrainConfig(lr_schedule="step")
    assert tfvae.config.TrainConfig(
        learning_rate=1e-3, lr_schedule="burda"
    ).last_learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize("epsilon, expected", ((None, 1e-4 / (1e-4 + 1e-7)), (1e-4, 0.5)))
def test_optimizer_epsilon_sets_adams_step_on_a_small_gradient(epsilon, expected):
    """Under a constant gradient g, Adam's step tends to lr g / (|g| + epsilon)
    (Kingma & Ba 2015, Algorithm 1): half the rate at g = epsilon = 1e-4."""
    config = tfvae.RunConfig.for_dataset(
        "mnist",
        hidden_units=(3,),
        latent_dim=2,
        event_shape=(28, 28),
        optimizer="adam",
        learning_rate=1e-3,
        optimizer_epsilon=epsilon,
    )
    optimizer = training.build_compiled(config, num_train=10).optimizer
    weight = tf.Variable([0.0])
    optimizer.build([weight])
    gradient = tf.constant([1e-4])

    @tf.function
    def steps(n):
        for _ in tf.range(n):
            optimizer.apply([gradient], [weight])

    steps(tf.constant(10_000))  # beta2^t = 4.5e-5: the moments' start is forgotten
    before = weight.numpy()[0]
    steps(tf.constant(1))
    assert (before - weight.numpy()[0]) / 1e-3 == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="sgd has none"):
        tfvae.config.TrainConfig(optimizer="sgd", optimizer_epsilon=1e-4)


def test_burda_schedule_of_a_short_run_still_falls_stage_by_stage_to_the_final_rate():
    rate = schedules.learning_rate("burda", 1e-3, 1e-4, total_steps=24)
    rates = [float(rate(step)) for step in range(24)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
