"""Typed, frozen configurations for models, data and training.

Every artifact tfvae writes carries its `RunConfig` as JSON, so a run directory
always knows how to rebuild its model (the nanoGPT habit, without `exec`).
Command-line flags are generated from the dataclass fields and their
docstrings (`tfvae.flags`), so a default lives in exactly one place.

Defaults are the paper's (Kingma & Welling 2014, section 5 and appendix C):
tanh MLPs with one hidden layer, weights drawn from N(0, 0.01^2), Adagrad,
minibatches of M = 100, L = 1 sample per datapoint, analytic KL.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Optional

from tfvae.presets import dataset_defaults

LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli", "discretized_logistic")
POSTERIORS = (
    "diagonal_gaussian",
    "full_covariance_gaussian",
    "laplace",
    "logistic",
    "student_t",
    "iaf",
    "affine_coupling",
    "point_mass",
)
PRIORS = ("standard_normal", "mixture_of_gaussians", "vamp")
GAUSSIAN_SCALES = ("network", "per_pixel", "global", "fixed")
MEAN_ACTIVATIONS = ("sigmoid", "none")
OBJECTIVES = ("elbo", "iwae", "free_bits", "beta_tcvae")
WARMUPS = ("none", "linear", "cyclical")
WARMUP_UNITS = ("epochs", "steps")
TC_ESTIMATORS = ("stratified", "weighted")
GRADIENT_ESTIMATORS = ("reparameterization", "score_function")
BASELINES = ("none", "leave_one_out")
# Posteriors and priors that factorize over latent dimensions: free bits and
# beta-TCVAE need their per-dimension log-densities.
FACTORIZED_POSTERIORS = ("diagonal_gaussian", "laplace", "logistic", "student_t")
KL_ESTIMATORS = ("auto", "analytic", "monte_carlo")
BINARIZATIONS = ("none", "dynamic")
VALIDATION_SPLITS = ("random", "blocks")
OPTIMIZERS = ("adagrad", "adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "burda", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
FLOWS = ("iaf", "affine_coupling")
NETWORKS = ("mlp", "conv")


@dataclasses.dataclass(frozen=True)
class LikelihoodConfig:
    """p(x|z), the decoder's family (`tfvae.likelihoods`).

    Attributes:
        name: bernoulli (binary pixels), gaussian (real values; the paper's
            Frey Face model), continuous_bernoulli (values in [0, 1], with the
            normaliser the Bernoulli lacks) or discretized_logistic (256 grey
            levels).
        gaussian_scale: How a gaussian's scale is set: network (output by the
            decoder per pixel, the paper's), per_pixel (one learned scale per
            pixel), global (one learned scale) or fixed.
        fixed_scale: The scale of a gaussian with gaussian_scale=fixed.
        mean_activation: sigmoid (means in [0, 1], the paper's Frey Face model)
            or none, for a gaussian's means.
    """

    name: str = "bernoulli"
    gaussian_scale: str = "network"
    fixed_scale: float = 1.0
    mean_activation: str = "sigmoid"

    def __post_init__(self):
        _check_choice("likelihood", self.name, LIKELIHOODS)
        _check_choice("gaussian_scale", self.gaussian_scale, GAUSSIAN_SCALES)
        _check_choice("mean_activation", self.mean_activation, MEAN_ACTIVATIONS)
        _check_positive("fixed_scale", self.fixed_scale)
        _check_options(
            self,
            {
                "gaussian_scale": ("gaussian",),
                "mean_activation": ("gaussian",),
                "fixed_scale": ("gaussian",),
            },
        )
        if self.fixed_scale != 1.0 and self.gaussian_scale != "fixed":
            raise ValueError(
                "fixed_scale applies only with gaussian_scale='fixed' (--gaussian-scale fixed)."
            )


@dataclasses.dataclass(frozen=True)
class PosteriorConfig:
    """q(z|x), the encoder's family (`tfvae.posteriors`, `tfvae.flows`).

    Attributes:
        name: diagonal_gaussian (the paper's), full_covariance_gaussian,
            laplace, logistic or student_t (location-scale families), iaf
            (inverse autoregressive flow) or affine_coupling (RealNVP) on a
            diagonal Gaussian, or point_mass (z = f(x): the plain
            autoencoder, trained on log p(x|z) alone, no KL term).
        num_flows: Flow steps of iaf or affine_coupling.
        flow_hidden_units: Hidden layer sizes of each flow step's network.
        degrees_of_freedom: nu of student_t (an integer, so that on-device
            draws need only normal noise).
    """

    name: str = "diagonal_gaussian"
    num_flows: int = 2
    flow_hidden_units: tuple[int, ...] = (64,)
    degrees_of_freedom: int = 5

    def __post_init__(self):
        _check_choice("posterior", self.name, POSTERIORS)
        _check_positive("num_flows", self.num_flows)
        _check_positive("degrees_of_freedom", self.degrees_of_freedom)
        for units in self.flow_hidden_units:
            _check_positive("flow_hidden_units", units)
        _check_options(
            self,
            {"num_flows": FLOWS, "flow_hidden_units": FLOWS, "degrees_of_freedom": ("student_t",)},
        )


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """p(z) (`tfvae.priors`).

    Attributes:
        name: standard_normal (N(0, I), the paper's), mixture_of_gaussians
            (learned weights, means and scales) or vamp (the VampPrior: the
            mixture of the posteriors of learned pseudo-inputs).
        num_components: Components of mixture_of_gaussians.
        num_pseudo_inputs: Pseudo-inputs (components) of vamp.
    """

    name: str = "standard_normal"
    num_components: int = 10
    num_pseudo_inputs: int = 500

    def __post_init__(self):
        _check_choice("prior", self.name, PRIORS)
        _check_positive("num_components", self.num_components)
        _check_positive("num_pseudo_inputs", self.num_pseudo_inputs)
        _check_options(
            self, {"num_components": ("mixture_of_gaussians",), "num_pseudo_inputs": ("vamp",)}
        )


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """What training minimises (`tfvae.objectives`): distortion + w_t (KL term).

    The logged elbo, rate and distortion are always the true (w = 1) ones.

    Attributes:
        name: elbo (the SGVB bound; with beta, the beta-VAE), iwae
            (importance weighted, k = num_samples), free_bits (Kingma et al.
            2016) or beta_tcvae (Chen et al. 2018).
        beta: Weight on the KL term (beta-VAE); 1 is the ELBO. For iwae it
            tempers log p(z) - log q(z|x) in each log weight.
        warmup: none, linear (the weight rises from 0 to beta over
            warmup_length; Sonderby et al. 2016) or cyclical (it rises over
            the first warmup_ratio of every cycle of warmup_length, then holds
            beta; Fu et al. 2019).
        warmup_length: Length of the warm-up, or of one cycle, in warmup_unit
            (100 epochs as in the VampPrior code).
        warmup_unit: epochs or steps.
        warmup_ratio: Rising fraction of each cycle (cyclical only).
        free_bits: lambda, nats per latent dimension below which free_bits
            stops pushing a dimension's KL (averaged over the batch) down.
        mi_weight: alpha, beta_tcvae's weight on the index-code mutual information.
        tc_weight: beta, beta_tcvae's weight on the total correlation.
        dimension_kl_weight: gamma, beta_tcvae's weight on the dimension-wise KL.
        tc_estimator: stratified (minibatch stratified sampling) or weighted
            (Chen et al.'s minibatch weighted sampling) estimate of q(z).
        dataset_size: N of beta_tcvae's aggregate posterior; training sets it
            to the number of training examples when unset.
        gradient_estimator: reparameterization (the paper's) or score_function
            (REINFORCE; elbo only).
        baseline: The score function's control variate: none or leave_one_out
            (the mean of the other draws' learning signal; num_samples >= 2).
    """

    name: str = "elbo"
    beta: float = 1.0
    warmup: str = "none"
    warmup_length: int = 100
    warmup_unit: str = "epochs"
    warmup_ratio: float = 0.5
    free_bits: float = 0.25
    mi_weight: float = 1.0
    tc_weight: float = 6.0
    dimension_kl_weight: float = 1.0
    tc_estimator: str = "stratified"
    dataset_size: Optional[int] = None
    gradient_estimator: str = "reparameterization"
    baseline: str = "none"

    def __post_init__(self):
        _check_choice("objective", self.name, OBJECTIVES)
        _check_choice("warmup", self.warmup, WARMUPS)
        _check_choice("warmup_unit", self.warmup_unit, WARMUP_UNITS)
        _check_choice("tc_estimator", self.tc_estimator, TC_ESTIMATORS)
        _check_choice("gradient_estimator", self.gradient_estimator, GRADIENT_ESTIMATORS)
        _check_choice("baseline", self.baseline, BASELINES)
        _check_positive("warmup_length", self.warmup_length)
        for name in ("beta", "free_bits", "mi_weight", "tc_weight", "dimension_kl_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)!r}.")
        if not 0 < self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {self.warmup_ratio!r}.")
        if self.dataset_size is not None and self.dataset_size < 2:
            raise ValueError(f"dataset_size must be at least 2, got {self.dataset_size!r}.")
        _check_options(
            self,
            {
                "free_bits": ("free_bits",),
                "mi_weight": ("beta_tcvae",),
                "tc_weight": ("beta_tcvae",),
                "dimension_kl_weight": ("beta_tcvae",),
                "tc_estimator": ("beta_tcvae",),
                "dataset_size": ("beta_tcvae",),
                "gradient_estimator": ("elbo",),
            },
        )
        if self.warmup == "none":
            for name in ("warmup_length", "warmup_unit", "warmup_ratio"):
                if getattr(self, name) != _default(ObjectiveConfig, name):
                    raise ValueError(
                        f"{name} sets a warm-up: add --warmup linear or "
                        "--warmup cyclical, or drop it."
                    )
        if self.warmup == "linear" and self.warmup_ratio != 0.5:
            raise ValueError("warmup_ratio applies to --warmup cyclical only.")
        if self.baseline != "none" and self.gradient_estimator != "score_function":
            raise ValueError(
                "baseline is a control variate of the score-function estimator: "
                "add --gradient-estimator score_function, or drop --baseline."
            )

    def warmup_steps(self, steps_per_epoch: int | None) -> int:
        """warmup_length in steps; epochs need `steps_per_epoch`."""
        if self.warmup == "none" or self.warmup_unit == "steps":
            return self.warmup_length if self.warmup != "none" else 0
        if not steps_per_epoch:
            raise ValueError(
                "A warm-up in epochs needs the number of steps per epoch "
                "(build_vae(..., steps_per_epoch=...)), or use "
                "warmup_unit='steps'."
            )
        return self.warmup_length * steps_per_epoch


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """The trunks of encoder and decoder (`tfvae.networks`).

    Attributes:
        name: mlp (the paper's: hidden_units Dense layers) or conv (strided
            convolutions in the encoder, transposed ones in the decoder, for
            images of any size [H, W] or [H, W, C]; hidden_units are then the
            Dense layers between them and z).
        conv_filters: Filters of the encoder's stride-2 convolutions; the
            decoder mirrors them.
        kernel_size: Kernel size of every convolution.
    """

    name: str = "mlp"
    conv_filters: tuple[int, ...] = (32, 64)
    kernel_size: int = 4

    def __post_init__(self):
        _check_choice("network", self.name, NETWORKS)
        _check_positive("kernel_size", self.kernel_size)
        if not self.conv_filters:
            raise ValueError("conv_filters needs at least one layer of filters.")
        for filters in self.conv_filters:
            _check_positive("conv_filters", filters)
        _check_options(self, {"conv_filters": ("conv",), "kernel_size": ("conv",)})


SECTIONS = {
    "network": NetworkConfig,
    "likelihood": LikelihoodConfig,
    "posterior": PosteriorConfig,
    "prior": PriorConfig,
    "objective": ObjectiveConfig,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model: networks, its three parts, and the bound that trains them.

    Attributes:
        latent_dim: Size J of the latent code z (of z1, the layer the decoder
            reads, with two stochastic layers).
        top_latent_dim: Size of a second stochastic layer z2 (Burda et al.
            2016: q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1)); `None`: one layer.
        top_hidden_units: Hidden layer sizes of the networks between z1 and z2.
        hidden_units: Hidden layer sizes of encoder and decoder MLPs.
        activation: Hidden activation of both MLPs.
        init_stddev: Standard deviation of the N(0, s^2) weight initialiser
            (the paper's 0.01); `None` (`--init-stddev none`): variance-preserving,
            Glorot uniform for tanh and He normal for rectifiers, which MLPs
            deeper than one hidden layer need to leave their collapsed start.
        weight_decay: L2 coefficient on kernels, per datapoint. `None` means the
            paper's N(0, I) prior on the weights: 1 / (2 N) for N training points.
        objective: What training minimises (`ObjectiveConfig`; a name is
            accepted).
        num_samples: Samples of z per datapoint: L for elbo, k for iwae.
        kl_estimator: analytic (the paper's estimator B), monte_carlo
            (estimator A) or auto (analytic where TFP has the KL in closed form).
        event_shape: Shape of one datapoint x; set from the data when `None`.
        conditional: A conditional VAE: the label y is fed to encoder and
            decoder, q(z|x, y) and p(x|z, y) (Sohn et al. 2015); the dataset
            must have labels.
        num_classes: Number of labels K of a conditional VAE; set from the
            data when `None`.
        network: The trunks (`NetworkConfig`; a name is accepted).
        likelihood: p(x|z) (`LikelihoodConfig`; a name is accepted).
        posterior: q(z|x) (`PosteriorConfig`; a name is accepted).
        prior: p(z) (`PriorConfig`; a name is accepted).
    """

    latent_dim: int = 20
    top_latent_dim: Optional[int] = None
    top_hidden_units: tuple[int, ...] = (50, 50)
    hidden_units: tuple[int, ...] = (500,)
    activation: str = "tanh"
    init_stddev: Optional[float] = 0.01
    weight_decay: Optional[float] = None
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    num_samples: int = 1
    kl_estimator: str = "auto"
    event_shape: Optional[tuple[int, ...]] = None
    conditional: bool = False
    num_classes: Optional[int] = None
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    likelihood: LikelihoodConfig = dataclasses.field(default_factory=LikelihoodConfig)
    posterior: PosteriorConfig = dataclasses.field(default_factory=PosteriorConfig)
    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)

    def _check_two_layers(self) -> None:
        if self.top_latent_dim is None:
            if self.top_hidden_units != (50, 50):
                raise ValueError(
                    "top_hidden_units are the networks between z1 and z2: add "
                    "--top-latent-dim, or drop them."
                )
            return
        _check_positive("top_latent_dim", self.top_latent_dim)
        for units in self.top_hidden_units:
            _check_positive("top_hidden_units", units)
        if (self.posterior.name, self.prior.name) != ("diagonal_gaussian", "standard_normal"):
            raise ValueError(
                "With --top-latent-dim the posterior is q(z1|x) q(z2|z1) and the "
                "prior p(z2) p(z1|z2), both Gaussian: drop --posterior and --prior."
            )
        if self.kl_estimator == "analytic" or self.objective.name in ("free_bits", "beta_tcvae"):
            raise ValueError(
                "Two stochastic layers have no closed-form KL and do not "
                "factorize over dimensions: use --kl-estimator auto with the "
                "elbo or iwae objective."
            )

    def _check_objective(self) -> None:
        objective = self.objective
        needs_factors = objective.name in ("free_bits", "beta_tcvae")
        if needs_factors and (
            self.posterior.name not in FACTORIZED_POSTERIORS or self.prior.name != "standard_normal"
        ):
            raise ValueError(
                f"objective={objective.name!r} needs the KL per latent dimension, so a "
                f"posterior and a prior that factorize over dimensions "
                f"({', '.join(FACTORIZED_POSTERIORS)}; standard_normal), not "
                f"{self.posterior.name} with {self.prior.name}."
            )
        if objective.name == "beta_tcvae" and (
            self.num_samples != 1 or self.kl_estimator == "analytic"
        ):
            raise ValueError(
                "beta_tcvae estimates its three terms from one z per datapoint: "
                "use --num-samples 1 and --kl-estimator auto."
            )
        if objective.baseline == "leave_one_out" and self.num_samples < 2:
            raise ValueError(
                "baseline='leave_one_out' averages the other draws: it needs "
                "--num-samples 2 or more."
            )

    def __post_init__(self):
        for name, section in SECTIONS.items():
            value = getattr(self, name)
            if value == "reconstruction":
                raise ValueError(
                    "objective='reconstruction' is now posterior='point_mass' "
                    "(--posterior point_mass): the plain autoencoder."
                )
            if isinstance(value, str):  # ModelConfig(likelihood="gaussian").
                object.__setattr__(self, name, section(name=value))
        _check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _check_positive("latent_dim", self.latent_dim)
        _check_positive("num_samples", self.num_samples)
        if self.init_stddev is not None:
            _check_positive("init_stddev", self.init_stddev)
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(
                f"weight_decay must be 0 or more (or None for 1/(2N)), got {self.weight_decay!r}."
            )
        for units in self.hidden_units:
            _check_positive("hidden_units", units)
        _check_activation(self.activation)
        if self.posterior.name == "point_mass" and (
            self.objective != ObjectiveConfig() or self.num_samples != 1
        ):
            raise ValueError(
                "posterior='point_mass' (the plain autoencoder) trains on log p(x | z = f(x)) "
                "alone, one z per datapoint, with no KL term: it takes no --objective, "
                "--beta or --warmup, and no --num-samples above 1."
            )
        self._check_objective()
        if self.kl_estimator == "analytic" and (self.posterior.name, self.prior.name) != (
            "diagonal_gaussian",
            "standard_normal",
        ):
            raise ValueError(
                "kl_estimator='analytic' needs the KL in closed form, which TFP has here only "
                "for the diagonal_gaussian posterior and the standard_normal prior, not for "
                f"{self.posterior.name} with {self.prior.name}: use --kl-estimator auto "
                "(analytic where it exists, the Monte Carlo estimate elsewhere)."
            )
        if self.posterior.name == "point_mass" and self.prior.name != "standard_normal":
            raise ValueError(
                "posterior='point_mass' (the plain autoencoder) has no KL term, so nothing "
                f"would train prior={self.prior.name!r}: drop --prior."
            )
        self._check_two_layers()
        if self.num_classes is not None and not self.conditional:
            raise ValueError("num_classes is for a conditional VAE: add --conditional.")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes!r}.")
        if self.conditional and self.prior.name == "vamp":
            raise ValueError(
                "The VampPrior is a mixture of posteriors q(z|u_k) at learned "
                "pseudo-inputs, which a conditional encoder q(z|x, y) cannot "
                "evaluate without labels: use another --prior."
            )
        if self.posterior.name == "affine_coupling" and self.latent_dim < 2:
            raise ValueError(
                "posterior='affine_coupling' splits z in two: it needs "
                "latent_dim >= 2; use --posterior iaf for latent_dim 1."
            )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how they are batched.

    Attributes:
        dataset: `frey_face`, `mnist`, `binarized_mnist`, or `tfds:<name>` for
            any tensorflow-datasets image set.
        data_dir: Folder holding the raw files; `None` reads `TFVAE_DATA_DIR`,
            then the Keras cache (downloading there with a sha256 check).
        batch_size: Minibatch size M.
        binarization: `dynamic` draws x ~ Bernoulli(pixel intensity) afresh
            every epoch; `none` keeps intensities in [0, 1].
        limit: Use only the first `limit` training examples (quick runs, tests).
        validation_size: Hold out this many training examples (a random
            subset, the same for every run) as a validation set, binarized once
            like the test set; the val_ metrics of the history are then the
            validation set's, not the test set's. 0: no validation set.
        validation_split: How the validation examples are picked: `random`
            (a seeded subset) or `blocks`, for data in video order: blocks of
            20 consecutive training examples spread evenly over the set, the 10
            examples on either side of each block dropped from training (the
            Frey Face test split's blocks and gaps), so that no validation
            frame has a near neighbour among the training frames.
    """

    dataset: str = "frey_face"
    data_dir: Optional[str] = None
    batch_size: int = 100
    binarization: str = "none"
    limit: Optional[int] = None
    validation_size: int = 0
    validation_split: str = "random"

    def __post_init__(self):
        _check_choice("binarization", self.binarization, BINARIZATIONS)
        _check_choice("validation_split", self.validation_split, VALIDATION_SPLITS)
        _check_positive("batch_size", self.batch_size)
        if self.limit is not None:
            _check_positive("limit", self.limit)
        if self.validation_size < 0:
            raise ValueError(f"validation_size must be 0 or more, got {self.validation_size!r}.")
        if self.validation_split != "random" and not self.validation_size:
            raise ValueError(
                f"validation_split={self.validation_split!r} picks a validation set: "
                "give its size, e.g. --validation-size 200."
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long and how to optimise, and where the run is written.

    Attributes:
        epochs: Passes over the training set.
        optimizer: `adagrad` (the paper), `adam`, `sgd` or `rmsprop`.
        learning_rate: Step size (the first one under a decaying lr_schedule);
            the paper picked from {0.01, 0.02, 0.1}.
        lr_schedule: constant, burda (Burda et al. 2016: 8 stages of 3^i
            epochs, i = 0..7, scaled to fill the run's epochs, the rate falling
            by equal factors from learning_rate to final_learning_rate) or
            cosine (from learning_rate to final_learning_rate over the run).
        final_learning_rate: Last step size of a decaying lr_schedule; None
            means learning_rate / 10, Burda et al.'s 1e-3 to 1e-4.
        optimizer_epsilon: The epsilon of adagrad, adam and rmsprop (added to
            the root of the squared-gradient average: a larger one shrinks the
            steps of weights whose gradients are small); None keeps Keras's
            1e-7. Burda et al.'s code used 1e-4 with Adam.
        seed: Seeds weights, data order, binarization and the noise of z.
        jit_compile: Compile the train step with XLA (not under a --strategy
            other than default: Keras runs XLA per replica, which cannot reach
            the other devices' variables).
        steps_per_execution: Train steps per call into the compiled graph (1
            under a --strategy other than default).
        checkpoint_every: Save a resumable checkpoint every this many epochs.
        early_stopping: Stop once the validation ELBO has not improved for this
            many epochs, and keep the weights of its best epoch (Tomczak &
            Welling's code waits 50); needs a validation_size. 0: train all
            epochs.
        output_dir: Parent folder of run folders.
        run_name: Folder name of this run; derived from the config when `None`.
        strategy: Devices to train on (tfvae.distribute): default (one device),
            mirrored (all local GPUs, or --cpu-devices logical CPUs) or
            multi_worker (one process per host, configured by TF_CONFIG). The
            batch size is the global batch, split across the replicas.
        cpu_devices: With --strategy mirrored on a machine without GPUs: split
            the CPU into this many logical devices, one replica each (for tests:
            the cores are shared, so it is not faster).
        precision: float32, mixed_bfloat16 or mixed_float16 (tfvae.precision):
            the networks' trunks in 16 bits, distribution parameters and
            log-probabilities in float32; float16 scales the loss.
    """

    epochs: int = 100
    optimizer: str = "adagrad"
    learning_rate: float = 0.02
    lr_schedule: str = "constant"
    final_learning_rate: Optional[float] = None
    optimizer_epsilon: Optional[float] = None
    seed: int = 0
    jit_compile: bool = True
    steps_per_execution: int = 64
    checkpoint_every: int = 10
    early_stopping: int = 0
    output_dir: str = "saved_models"
    run_name: Optional[str] = None
    strategy: str = "default"
    cpu_devices: Optional[int] = None
    precision: str = "float32"

    def __post_init__(self):
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.final_learning_rate is not None:
            _check_positive("final_learning_rate", self.final_learning_rate)
            if self.lr_schedule == "constant":
                raise ValueError(
                    "final_learning_rate sets a decaying schedule: add "
                    "--lr-schedule burda or --lr-schedule cosine, or drop it."
                )
        if self.optimizer_epsilon is not None:
            _check_positive("optimizer_epsilon", self.optimizer_epsilon)
            if self.optimizer == "sgd":
                raise ValueError(
                    "optimizer_epsilon is the epsilon of adagrad, adam and rmsprop; "
                    "sgd has none: drop --optimizer-epsilon or choose another --optimizer."
                )
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.cpu_devices is not None:
            _check_positive("cpu_devices", self.cpu_devices)
        _check_positive("epochs", self.epochs)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("steps_per_execution", self.steps_per_execution)
        _check_positive("checkpoint_every", self.checkpoint_every)
        if self.early_stopping < 0:
            raise ValueError(f"early_stopping must be 0 or more, got {self.early_stopping!r}.")
        _check_name("run_name", self.run_name)

    @property
    def last_learning_rate(self) -> float:
        """The step size a decaying schedule ends at (learning_rate if constant)."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        if self.final_learning_rate is None:
            return self.learning_rate / 10
        return self.final_learning_rate


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as `config.json`."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.train.early_stopping and not self.data.validation_size:
            raise ValueError(
                "early_stopping watches the validation ELBO: hold out a validation "
                "set with --validation-size (e.g. 200 for Frey Face, 10000 for MNIST)."
            )
        if self.train.early_stopping and self.train.strategy == "multi_worker":
            # Each worker would decide from its own copy of the history; a worker
            # that stopped alone would leave the others waiting in a collective op.
            raise ValueError(
                "early_stopping is not supported with --strategy multi_worker: "
                "train with a fixed --epochs, or on one host (default or mirrored)."
            )
        binary = self.data.binarization == "dynamic" or self.data.dataset == "binarized_mnist"
        likelihood = self.model.likelihood.name
        if binary and likelihood in ("gaussian", "continuous_bernoulli"):
            # A density at the data points grows without bound as it concentrates
            # on 0 and 1: on binary pixels the "bound" climbs forever.
            raise ValueError(
                f"likelihood={likelihood!r} on binary pixels ({self.data.dataset}"
                f"{', binarization=dynamic' if self.data.binarization == 'dynamic' else ''}) "
                "has an unbounded density: it concentrates on 0 and 1 and the ELBO "
                "climbs without limit. Use --likelihood bernoulli"
                + (
                    ", or --binarization none for grey values."
                    if self.data.binarization == "dynamic"
                    else "."
                )
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, values)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> RunConfig:
        """The paper's run for `dataset`, with any field overridden by its flag name.

        Flag names are the field names; a part's name goes by its section
        (`likelihood`, `posterior`, `prior`), its options by their own names.

        Example: `RunConfig.for_dataset("frey_face", latent_dim=10, posterior="iaf",
        num_flows=4, epochs=300)`.
        """
        merged = {**dataset_defaults(dataset), **overrides, "dataset": dataset}
        paths = flag_paths()
        unknown = set(merged) - set(paths)
        if unknown:
            raise ValueError(f"Unknown config fields: {sorted(unknown)}; known: {sorted(paths)}")
        values: dict[str, Any] = {}
        for name, value in merged.items():
            *parents, leaf = paths[name]
            target = values
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        return cls.from_dict(values)


def flag_paths() -> dict[str, tuple[str, ...]]:
    """{flag name: path of its field in `RunConfig`}, e.g. num_flows ->
    (model, posterior, num_flows), posterior -> (model, posterior, name)."""
    paths: dict[str, tuple[str, ...]] = {}

    def visit(cls, path):
        for field in dataclasses.fields(resolve_annotation(cls)):
            kind = resolve_annotation(field.type)
            if dataclasses.is_dataclass(kind):
                visit(kind, path + (field.name,))
                continue
            flag = path[-1] if field.name == "name" else field.name
            if flag in paths:
                raise AssertionError(f"Two config fields share the flag name {flag!r}.")
            paths[flag] = path + (field.name,)

    visit(RunConfig, ())
    return paths


def resolve_annotation(annotation: Any) -> Any:
    """Turns a string annotation (from `__future__` annotations) into a type."""
    if isinstance(annotation, str):
        return eval(annotation, globals())  # Our own annotations only.
    return annotation


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Returns (type, is_optional) for `T` or `Optional[T]`."""
    annotation = resolve_annotation(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _from_dict(cls, values):
    cls = resolve_annotation(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    if isinstance(values, str) and "name" in known:
        values = {"name": values}  # A part given by its name (config.json before 0.3).
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        kind, _ = unwrap_optional(known[name].type)
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value)
        elif value is not None and typing.get_origin(kind) is tuple:
            value = tuple(value)  # JSON has lists; frozen configs hold tuples.
        kwargs[name] = value
    return cls(**kwargs)


def _check_options(section, owners: dict[str, tuple[str, ...]]) -> None:
    """Raises if an option differs from its default but the chosen part has no use for it."""
    for field in dataclasses.fields(section):
        if field.name in owners and section.name not in owners[field.name]:
            if getattr(section, field.name) != field.default:
                raise ValueError(
                    f"{field.name} applies only to {' or '.join(owners[field.name])}, not to "
                    f"{section.name!r}: drop --{field.name.replace('_', '-')} or choose one "
                    "of those."
                )


def _default(cls, name: str):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}.")


def _check_activation(name: str) -> None:
    import keras  # Here, not at the top: `--help` should not wait for TensorFlow.

    try:
        keras.activations.get(name)
    except ValueError:
        raise ValueError(
            f"activation={name!r} is not a Keras activation; use e.g. 'tanh' "
            "(the paper's), 'relu' or 'softplus'."
        ) from None


def _check_name(name: str, value: str | None) -> None:
    if value is not None and (not value or "/" in value or "\\" in value or value in (".", "..")):
        raise ValueError(f"{name}={value!r} must be a plain folder name, not a path.")


def _check_positive(name: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
