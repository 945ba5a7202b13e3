"""The variational autoencoder as a Keras model.

`VAE` composes an encoder x -> q(z|x), a decoder z -> p(x|z) and a prior p(z)
(`tfp.distributions` all three) and trains them with an objective of
`objectives.py`: the ELBO with L samples (analytic KL where it exists, else the
Monte Carlo estimate), weighted, warmed up or with free bits, beta-TCVAE, or the
importance-weighted bound with k samples. A conditional VAE (`num_classes`)
feeds a label to both networks: every method that runs one takes `labels`.
It implements the whole Keras contract: `call`, `train_step`, `test_step`,
`predict_step`, `metrics` and serialization, so `fit(validation_data=...)`,
`evaluate`, `predict` and `.keras` files work as for any Keras model.

Data flow: x -> encoder -> q(z|x) -> z (reparameterized) -> decoder -> p(x|z)
-> objective -> loss.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import data_checks, distribute, objectives, priors, seeds
from tfvae.base_model import ExampleMean, OwnLossModel, update_means
from tfvae.config import KL_ESTIMATORS

tfd = tfp.distributions

METRIC_NAMES = ("loss", "elbo", "rate", "distortion")
# A point-mass posterior (the plain autoencoder) has no density, hence no rate.
POINT_MASS_METRIC_NAMES = ("loss", "distortion")
BOUNDS = ("elbo", "iwae")  # The bounds `bound_terms` computes.


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(OwnLossModel):
    """A variational autoencoder whose networks output TFP distributions.

    Args:
        encoder: A Keras model mapping x `[B, *event]` to q(z|x), a distribution
            with batch shape `[B]` and event shape `[latent_dim]`: usually a
            `tfvae.networks.ProbabilisticNetwork` with a `tfvae.posteriors`
            head, which export, `predict` and the diagnostics need. A head
            without a density (`PointMass`) makes this the plain autoencoder:
            z = f(x), trained on log p(x|z) alone, no KL term.
        decoder: A Keras model mapping z `[B, latent_dim]` to p(x|z), a
            distribution with batch shape `[B]` and event shape `event`
            (usually a `ProbabilisticNetwork` with a `tfvae.likelihoods` head).
        prior: p(z): `None` for N(0, I), a `tfvae.priors` layer (saved with
            the model; a VampPrior is handed the encoder), or a fixed
            `tfd.Distribution` with event shape `[latent_dim]` (not savable).
        objective: What training minimises: `"elbo"`, `"iwae"`
            (importance-weighted bound) or a `tfvae.objectives.Objective`
            (`ELBO(kl_weight)` for beta and warm-up, `FreeBits`, `BetaTCVAE`,
            the score-function estimator).
        num_samples: Draws of z per datapoint in training: L or k.
        kl_estimator: `"auto"`, `"analytic"` or `"monte_carlo"` for the ELBO's
            KL term.
        num_classes: K for a conditional VAE (Sohn et al. 2015): a label
            y in 0..K-1 is fed, one-hot, to the encoder q(z|x, y) and the
            decoder p(x|z, y), whose trunks take a condition of width K; the
            prior stays p(z). Train with `fit(x, y)`, draw with
            `sample(n, labels=...)`. `None`: unconditional.
        seed: Seeds the noise of z: in `fit` the noise of step t is a function
            of (seed, t), t = `optimizer.iterations`, so a resumed run redraws
            what an uninterrupted one would; each `evaluate` pass draws the same
            noise; unseeded calls (`call`, `sample()`) draw from a stream of
            their own. `None` picks a random seed, saved with the model.

    Call arguments:
        x: `[B, *event]` float tensor.
        labels: `[B]` int labels, for a conditional VAE only.

    Returns:
        p(x|z) for one z ~ q(z|x) per example: batch shape `[B]`, event `event`.

    Metrics (per datapoint, nats): `loss` (what the objective minimises),
    and the true `elbo`, `rate` (KL term) and `distortion` (-E_q log p(x|z))
    whatever the objective, so that runs compare; `kl_weight`, the objective's
    current weight on the KL term (beta times the warm-up); in training
    also `skipped_steps` and `skipped_in_a_row` (steps not applied because
    their loss or gradients were not finite, see `tfvae.base_model`). The L2 weight
    penalties of the layers are added to the minimised objective but not to
    `loss`, which stays a bound in nats.
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        prior=None,
        *,
        objective: str = "elbo",
        num_samples: int = 1,
        kl_estimator: str = "auto",
        num_classes: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        objective = objectives.get(objective)
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator={kl_estimator!r}: use one of {KL_ESTIMATORS}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        self.encoder = encoder
        self.decoder = decoder
        self.prior_model = prior
        self.objective = objective
        self.num_samples = int(num_samples)
        self.kl_estimator = kl_estimator
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (or None), got {num_classes!r}.")
        self.num_classes = num_classes
        self.seed = seeds.fresh_seed() if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(
            seeds.child_seed(self.seed, seeds.STREAMS["draw"])
        )
        self.has_density = getattr(getattr(encoder, "head", None), "has_density", True)
        objective.check(self.num_samples, self.has_density)
        names = METRIC_NAMES if self.has_density else POINT_MASS_METRIC_NAMES
        self.trackers = {name: ExampleMean(name=name) for name in names}
        self.input_event_shape: tuple[int, ...] | None = None
        self.latent_shape: tuple[int, ...] | None = None

    # The generative model and the posterior.

    def encode(self, x, labels=None) -> tfd.Distribution:
        """q(z|x): batch shape `[B]`, event shape `[latent_dim]`, for x `[B, *event]`
        (and, if conditional, labels `[B]`)."""
        x = self._as_input(x)
        posterior = _call(self.encoder, x, self.condition(labels))
        self.latent_shape = tuple(posterior.event_shape.as_list())
        return posterior

    def decode(self, z, labels=None) -> tfd.Distribution:
        """p(x|z): batch shape `[B]`, event shape `event`, for z `[B, latent_dim]`."""
        return _call(
            self.decoder, tf.convert_to_tensor(z, self.probability_dtype), self.condition(labels)
        )

    def condition(self, labels) -> tf.Tensor | None:
        """The networks' condition: one-hot labels `[B, K]`, or None if unconditional.

        Raises:
            ValueError: A conditional VAE without labels, or labels for an
                unconditional one.
        """
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(
                    "This VAE is not conditional (num_classes=None): it takes no labels."
                )
            return None
        if labels is None:
            raise ValueError(
                f"This VAE is conditional on {self.num_classes} classes: pass "
                "labels [B] (ints 0..K-1), e.g. fit(x, y), elbo(x, labels=y), "
                "sample(n, labels=...)."
            )
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        if tf.executing_eagerly():  # In a graph, tf.one_hot maps a bad label to zeros.
            values = labels.numpy()
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"Labels must be 0..{self.num_classes - 1}; got values from "
                    f"{values.min()} to {values.max()}."
                )
        return tf.one_hot(labels, self.num_classes, dtype=self.probability_dtype)

    @property
    def _default_save_signature(self):
        # Keras traces self(x) as a serving function of every Model a SavedModel
        # holds (also through keras.export.ExportArchive): a conditional VAE cannot
        # run without labels, and tfvae.endpoints serve it instead.
        if self.num_classes is not None:
            return None
        return super()._default_save_signature

    def posterior_parameters(self, x, labels=None) -> dict:
        """The posterior head's parameters {name: `[B, ...]`} for x `[B, *event]`."""
        return _parameters(self.encoder, self._as_input(x), self.condition(labels))

    def likelihood_parameters(self, z, labels=None) -> dict:
        """The likelihood head's parameters {name: `[B, ...]`} for z `[B, latent_dim]`."""
        return _parameters(
            self.decoder, tf.convert_to_tensor(z, self.probability_dtype), self.condition(labels)
        )

    def prior(self) -> tfd.Distribution:
        """p(z) with batch shape `[]` and event shape `[latent_dim]`."""
        if isinstance(self.prior_model, tfd.Distribution):
            return self.prior_model
        return self.prior_part().distribution(self.encoder)

    def prior_part(self) -> priors.Prior:
        """The prior as a `tfvae.priors` layer (N(0, I) when none was given)."""
        if isinstance(self.prior_model, tfd.Distribution):
            raise TypeError(
                "This VAE's prior is a fixed tfd.Distribution, not a tfvae.priors layer."
            )
        if self.prior_model is not None:
            if not self.prior_model.built and self.input_event_shape is not None:
                self.prior_model.build((None,) + self.input_event_shape)
            return self.prior_model
        if self.latent_shape is None:
            raise RuntimeError(
                "The latent size is unknown until the model has seen "
                "data: call it, fit it, or build(input_shape) first."
            )
        return priors.StandardNormal(self.latent_shape)

    # Tensors from the parts (export, predict, plots and diagnostics use them).

    def posterior_head(self):
        """The encoder's `tfvae.posteriors` head; raises for encoders without one."""
        return _head_of(self.encoder, "encoder", "tfvae.posteriors")

    def likelihood_head(self):
        """The decoder's `tfvae.likelihoods` head; raises for decoders without one."""
        return _head_of(self.decoder, "decoder", "tfvae.likelihoods")

    def posterior_mean(self, x, labels=None) -> tf.Tensor:
        """E_q[z|x] `[B, latent_dim]` (a seeded Monte Carlo mean for flows); for an
        encoder of the user's without a tfvae head, the mean of the q(z|x) it returns."""
        if getattr(self.encoder, "head", None) is None:
            return self.encode(x, labels).mean()
        parameters = self.posterior_parameters(x, labels)
        self.latent_shape = tuple(self.posterior_head().event_shape)
        return self.posterior_head().mean(parameters)

    def likelihood_mean(self, z, labels=None) -> tf.Tensor:
        """E[x|z] `[B, *event]` for z `[B, latent_dim]`; for a decoder of the user's
        without a tfvae head, the mean of the p(x|z) it returns."""
        if getattr(self.decoder, "head", None) is None:
            return self.decode(z, labels).mean()
        return self.likelihood_head().mean(self.likelihood_parameters(z, labels))

    def call(self, x, training=None, labels=None):
        posterior = self.encode(x, labels)
        return self.decode(posterior.sample(seed=self._seed()), labels)

    # Bounds, per example.

    def elbo(self, x, num_samples: int = 1, seed=None, labels=None) -> tf.Tensor:
        """The ELBO with `num_samples` draws of z, `[B]` nats for x `[B, *event]`."""
        self._check_density("elbo")
        return self.bound_terms(x, "elbo", num_samples, seed, labels=labels).elbo

    def iwae_bound(self, x, num_samples: int = 1, seed=None, labels=None) -> tf.Tensor:
        """The importance-weighted bound with k = `num_samples`, `[B]` nats."""
        self._check_density("iwae_bound")
        return self.bound_terms(x, "iwae", num_samples, seed, labels=labels).bound

    def _check_density(self, method: str) -> None:
        if not self.has_density:
            raise ValueError(
                f"{method}: the posterior is a point mass (the plain autoencoder), which has "
                "no density and so no bound on log p(x); its loss is the distortion, "
                "bound_terms(x).distortion."
            )

    def bound_terms(
        self,
        x,
        objective: str | None = None,
        num_samples: int | None = None,
        seed=None,
        kl_weight=None,
        labels=None,
    ) -> objectives.Bound:
        """The bound, ELBO, rate and distortion per example, each `[B]` nats.

        Args:
            x: `[B, *event]` datapoints.
            objective: `"elbo"` or `"iwae"`; defaults to the bound the model's
                objective reports (`iwae` for the IWAE objective, else `elbo`).
            num_samples: L or k; defaults to the model's.
            seed: Stateless seed (int or `[2]` int32); `None` draws from the
                model's seed generator.
            kl_weight: For `iwae` only: w in the log weights log p(x|z) +
                w (log p(z) - log q(z|x)) of `bound` (a tempered bound, no longer
                one for w != 1); `elbo`, `rate`, `distortion` stay w = 1's.
            labels: `[B]` int labels of a conditional VAE.
        """
        objective = objective or self.objective.bound
        if objective not in BOUNDS:
            raise ValueError(f"objective={objective!r}: bound_terms computes one of {BOUNDS}.")
        num_samples = num_samples or self.num_samples
        seed = self._seed(seed)
        x = self._as_input(x)
        if not self.has_density:
            return self._reconstruction_terms(x, labels)
        posterior = self.encode(x, labels)
        prior = self.prior()
        rate = self._closed_form_rate(posterior, prior) if objective == "elbo" else None
        if rate is not None:
            z = posterior.sample(num_samples, seed=seed)
            return objectives.elbo(self.log_likelihood(x, z, labels), rate)
        return self._monte_carlo_terms(
            x, posterior, prior, objective, num_samples, seed, kl_weight, labels
        )

    def _reconstruction_terms(self, x, labels=None) -> objectives.Bound:
        """The plain autoencoder's terms: the distortion at z = f(x), no rate."""
        z = self.posterior_mean(x, labels)[tf.newaxis]
        distortion = -self.log_likelihood(x, z, labels)[0]
        return objectives.Bound(
            bound=-distortion,
            elbo=-distortion,
            rate=tf.zeros_like(distortion),
            distortion=distortion,
        )

    def rate(self, posterior, prior, z) -> tf.Tensor:
        """KL(q(z|x) || p(z)) per example, `[B]`, by the model's `kl_estimator`.

        The closed form where allowed and available, else the mean of
        log q(z|x) - log p(z) over the draws z `[S, B, *latent]`.
        """
        rate = self._closed_form_rate(posterior, prior)
        return rate if rate is not None else objectives.monte_carlo_rate(posterior, prior, z)

    def log_likelihood(self, x, z, labels=None) -> tf.Tensor:
        """log p(x|z) `[S, B]` for x `[B, *event]` and z `[S, B, *latent]`.

        The S draws are folded into the batch, so the decoder only ever sees
        the `[B, latent_dim]` inputs its contract promises.
        """
        sample_shape = tf.shape(z)[:2]
        z_flat = tf.reshape(z, tf.concat([[-1], tf.shape(z)[2:]], axis=0))
        x_flat = _tile(x, sample_shape[0])
        labels = None if labels is None else _tile(tf.reshape(labels, [-1]), sample_shape[0])
        return tf.reshape(self._log_prob(z_flat, x_flat, labels), sample_shape)

    def _log_prob(self, z, x, labels=None) -> tf.Tensor:
        """log p(x|z) `[B]` for z `[B, latent_dim]`: the sum of the head's per-pixel
        terms where it has them (one pass, no distribution object), else the
        distribution's `log_prob`."""
        head = getattr(self.decoder, "head", None)
        if head is not None and hasattr(self.decoder, "parameters"):
            try:
                pixels = head.elementwise_log_prob(self.likelihood_parameters(z, labels), x)
            except NotImplementedError:
                pass
            else:
                return tf.reduce_sum(pixels, axis=tf.range(1, tf.rank(pixels)))
        return self.decode(z, labels).log_prob(x)

    def _closed_form_rate(self, posterior, prior) -> tf.Tensor | None:
        """The analytic KL `[B]` if `kl_estimator` allows and TFP has it, else None."""
        if self.kl_estimator == "monte_carlo":
            return None
        rate = objectives.analytic_rate(posterior, prior)
        if rate is None and self.kl_estimator == "analytic":
            posterior_name = type(getattr(self.encoder, "head", posterior)).__name__
            prior_name = type(self.prior_model or prior).__name__
            raise ValueError(
                f"TFP has no closed-form KL from this posterior ({posterior_name}) to this "
                f"prior ({prior_name}): use kl_estimator='auto' (--kl-estimator auto) or "
                "'monte_carlo'."
            )
        return rate

    def _monte_carlo_terms(
        self, x, posterior, prior, objective, num_samples, seed, kl_weight=None, labels=None
    ):
        """Bound through `tfp.vi`; the ELBO parts from the very same draws of z."""
        draws = {}

        def log_joint(z):
            draws["z"], draws["log_likelihood"] = z, self.log_likelihood(x, z, labels)
            if kl_weight is None:
                return draws["log_likelihood"] + prior.log_prob(z)
            # tfp.vi subtracts log q once: add back (1 - w) log q (cached for z drawn).
            return (
                draws["log_likelihood"]
                + kl_weight * prior.log_prob(z)
                + (1 - kl_weight) * posterior.log_prob(z)
            )

        bound = objectives.monte_carlo_bound(
            log_joint,
            posterior,
            num_samples=num_samples,
            importance_weighted=objective == "iwae",
            seed=seed,
        )
        terms = objectives.elbo(
            draws["log_likelihood"], objectives.monte_carlo_rate(posterior, prior, draws["z"])
        )
        return terms._replace(bound=bound)

    # Generation.

    def sample(self, num_samples: int, seed=None, mean: bool = False, labels=None) -> tf.Tensor:
        """Draws x ~ p(x) = E_p(z) p(x|z) (p(x|y) if conditional). Returns `[num_samples, *event]`.

        Args:
            num_samples: How many images.
            seed: Stateless seed (int or `[2]` int32); `None` uses the model's.
            mean: Return E[x|z] (the usual picture) instead of a draw of x.
            labels: A conditional VAE's class: one int for all, or `[num_samples]`.
        """
        seed = self._seed(seed)
        z_seed, x_seed = tfp.random.split_seed(seed)
        z = self.prior().sample(num_samples, seed=z_seed)
        if labels is not None:
            labels = tf.broadcast_to(tf.cast(labels, tf.int32), [num_samples])
        if mean:
            return self.likelihood_mean(z, labels)
        return self.decode(z, labels).sample(seed=x_seed)

    def reconstruct(self, x, labels=None) -> tf.Tensor:
        """E[x|z] at z = the posterior mean: `[B, *event]` for x `[B, *event]`."""
        return self.likelihood_mean(self.posterior_mean(x, labels), labels)

    # The Keras training contract.

    def train_step(self, data):
        x, labels = self._inputs(data)
        # Read once, before the update: the logged KL weight is the one the step used.
        step = tf.identity(self.optimizer.iterations)
        seed = distribute.replica_seed(seeds.stream_seed(self.seed, "train", step))
        (loss, terms), applied = self.minimise(lambda: self._loss_and_terms(x, seed, step, labels))
        return {**self._update_metrics(loss, terms, step, applied), **self.step_logs()}

    def _loss_and_terms(self, x, seed, step, labels):
        loss, terms = self.objective.loss(self, x, seed, step, labels)
        return tf.reduce_mean(loss), (loss, terms)

    def test_step(self, data):
        x, labels = self._inputs(data)
        seed = distribute.replica_seed(
            seeds.stream_seed(self.seed, "evaluate", self.next_evaluation_batch())
        )
        # The objective at the current training step (its current KL weight).
        step = self.optimizer.iterations if self.optimizer is not None else 0
        loss, terms = self.objective.loss(self, x, seed, step, labels)
        return self._update_metrics(loss, terms, step)

    def predict_step(self, data):
        """Returns tensors: `z_mean` `[B, latent_dim]`, `reconstruction` `[B, *event]`,
        and the posterior's parameters as `posterior_<name>` (e.g. `posterior_scale`)."""
        x, labels = self._inputs(data)
        parameters = self.posterior_parameters(x, labels)
        z_mean = self.posterior_head().mean(parameters)
        return {
            "z_mean": z_mean,
            "reconstruction": self.likelihood_mean(z_mean, labels),
            **{f"posterior_{name}": value for name, value in parameters.items()},
        }

    def _inputs(self, data) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(x `[B, *event]`, labels `[B]` or None) from `x`, `(x,)`, `(x, y)` or
        `(x, y, weights)`: y is the label of a conditional VAE, ignored otherwise.
        A conditional VAE also takes its two inputs as x = (images, labels), the
        form `predict((x, y))` hands over."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.num_classes is None:
            return self._as_input(x), None
        if isinstance(x, (tuple, list)) and len(x) == 2:
            x, y = x
        return self._as_input(x), y

    def _update_metrics(self, loss, terms: objectives.Bound, step, applied=None) -> dict:
        """Adds the per-example loss and terms `[B]` to their means (see
        `base_model.update_means`) and logs the objective's KL weight at `step`."""
        # Per-example values, so that every metric averages over examples alike,
        # also across a last, smaller batch.
        values = {
            "loss": loss,
            "elbo": terms.elbo,
            "rate": terms.rate,
            "distortion": terms.distortion,
        }
        logs = update_means(self.trackers, {name: values[name] for name in self.trackers}, applied)
        if self.has_density:
            logs["kl_weight"] = self.objective.kl_weight(step)
        return logs

    # Building and serialization.

    def build(self, input_shape):
        """Creates every weight with one forward pass on zeros of `input_shape`.

        Keras never marks a model trained only through `train_step` as built;
        without this, a saved `.keras` file would reload with no weights.
        """
        x = tf.zeros((1,) + tuple(input_shape[1:]), self.probability_dtype)
        self._as_input(x)
        labels = None if self.num_classes is None else tf.zeros([1], tf.int32)
        posterior = self.encode(x, labels)
        self.decode(tf.zeros((1,) + tuple(posterior.event_shape), self.probability_dtype), labels)
        if isinstance(self.prior_model, keras.layers.Layer):
            self.prior()
        self.built = True

    def get_build_config(self):
        if self.input_event_shape is None:
            return None
        return {"input_shape": (None,) + self.input_event_shape}

    def build_from_config(self, config):
        if config:
            self.build(config["input_shape"])

    def fit(self, x=None, y=None, *args, **kwargs):
        """`OwnLossModel.fit`; a conditional VAE's labels y `[N]` must be 0..K-1 (in the
        compiled step a bad label would silently become the all-zero condition)."""
        self._check_labels(y, "y")
        return super().fit(x, y, *args, **kwargs)

    def check_arrays(self, data, name: str) -> None:
        """Also refuses arrays outside the likelihood's support, e.g. grey pixels for a
        Bernoulli, whose log_prob would not be a log-probability (datasets pass), and a
        conditional VAE's labels outside 0..K-1."""
        super().check_arrays(data, name)
        head = getattr(self.decoder, "head", None)
        x = data[0] if isinstance(data, (tuple, list)) and data else data
        if head is not None and isinstance(x, (np.ndarray, tf.Tensor)):
            data_checks.check_support(np.asarray(x), head.support, "none", name=name)
        if isinstance(data, (tuple, list)) and len(data) > 1:
            self._check_labels(data[1], f"the labels of {name}")

    def _check_labels(self, labels, name: str) -> None:
        if self.num_classes is None or not isinstance(labels, (np.ndarray, tf.Tensor, list)):
            return
        values = np.asarray(labels)
        if values.size and (
            not np.issubdtype(values.dtype, np.integer)
            or values.min() < 0
            or values.max() >= self.num_classes
        ):
            raise ValueError(
                f"{name} must be integer labels 0..{self.num_classes - 1}; got "
                f"{values.dtype} values from {values.min()} to {values.max()}."
            )

    def _as_input(self, x) -> tf.Tensor:
        """x as a float tensor `[B, *event]`; the first call fixes `event`.

        Raises:
            ValueError: x is not numeric, or its event shape is not the one
                the model has seen (or was built with).
        """
        if isinstance(x, tf.Tensor) and (x.dtype.is_integer or x.dtype.is_bool):
            x = tf.cast(x, self.probability_dtype)  # uint8 images, 0/1 masks.
        try:
            x = tf.convert_to_tensor(x, self.probability_dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"x must be numeric images [B, *event]; {error}") from error
        event = tuple(x.shape[1:])
        if self.input_event_shape is None:
            self.input_event_shape = event
            self.built = True
        elif len(event) != len(self.input_event_shape) or any(
            a is not None and b is not None and a != b
            for a, b in zip(event, self.input_event_shape)
        ):
            raise ValueError(
                f"This model takes x of shape [B, {', '.join(map(str, self.input_event_shape))}]"
                f", got {list(x.shape)}: pass images of the shape it was built for."
            )
        return x

    def get_config(self):
        if isinstance(self.prior_model, tfd.Distribution):
            raise TypeError(
                "A tfd.Distribution prior cannot be saved in a .keras file. Pass a "
                "tfvae.priors layer (e.g. MixtureOfGaussians), or a subclass of "
                "tfvae.priors.Prior whose distribution() returns yours, as `prior`."
            )
        serialize = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "encoder": serialize(self.encoder),
            "decoder": serialize(self.decoder),
            "prior": serialize(self.prior_model) if self.prior_model else None,
            "objective": keras.saving.serialize_keras_object(self.objective),
            "num_samples": self.num_samples,
            "kl_estimator": self.kl_estimator,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder"):
            if (config.get(key) or {}).get("class_name") == "ProbabilisticMLP":
                # Without this, Keras reports only that the VAE "could not be deserialized".
                raise ValueError(
                    "This model was saved by tfvae 0.2 or older, whose networks "
                    "(ProbabilisticMLP with tfvae.heads) this version no longer reads: "
                    "retrain it (python scripts/train.py with the run's flags)."
                )
        deserialize = keras.saving.deserialize_keras_object
        networks = {
            key: deserialize(config.pop(key)) if config.get(key) else None
            for key in ("encoder", "decoder", "prior")
        }
        config.pop("prior", None)
        if isinstance(config.get("objective"), dict):  # A plain name before 0.4.
            config["objective"] = deserialize(config["objective"])
        return cls(networks["encoder"], networks["decoder"], networks["prior"], **config)

    @property
    def probability_dtype(self):
        """The dtype of data, codes and log-densities: the variables' (float32 under a
        mixed-precision policy, whose 16 bits are for the networks' trunks only)."""
        return self.variable_dtype

    def _seed(self, seed=None) -> tf.Tensor:
        """A stateless `[2]` int32 seed: from `seed` if given, else the generator's."""
        if seed is None:
            # SeedGenerator states are int64; TFP's stateless samplers want int32.
            return tf.cast(self.seed_generator.next(), tf.int32)
        if isinstance(seed, int):
            # TFP turns a Python int into a stateful draw: not reproducible eagerly.
            return seeds.stateless(seed)
        return tfp.random.sanitize_seed(seed)


def _head_of(network, role: str, module: str):
    head = getattr(network, "head", None)
    if head is None or not hasattr(head, "mean"):
        raise TypeError(
            f"The {role} ({type(network).__name__}) has no tfvae part head: export, "
            f"predict and the diagnostics need a tfvae.networks.ProbabilisticNetwork "
            f"with a {module} head."
        )
    return head


def _call(network, inputs, condition):
    """network(inputs), with the condition only if there is one (any Keras model works)."""
    return network(inputs) if condition is None else network(inputs, condition=condition)


def _parameters(network, inputs, condition) -> dict:
    if condition is None:
        return network.parameters(inputs)
    return network.parameters(inputs, condition=condition)


def _tile(values, times) -> tf.Tensor:
    """values `[B, ...]` repeated `times` times along a new leading axis, folded into
    the batch: `[times * B, ...]` (draw-major, as z `[S, B, ...]` folds)."""
    tiled = tf.broadcast_to(values[tf.newaxis], tf.concat([[times], tf.shape(values)], 0))
    return tf.reshape(tiled, tf.concat([[-1], tf.shape(values)[1:]], axis=0))
