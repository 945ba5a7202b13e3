"""The Keras plumbing shared by models that compute their own loss.

`OwnLossModel` is a `keras.Model` whose `train_step` computes its loss itself
(a VAE's bound, an autoencoder's reconstruction term). It adds what such a
model needs for training to be safe and reproducible:

- `compile` defaults to the paper's optimizer and to XLA, and takes no `loss`;
- `minimise` never applies a step whose loss or gradients are not finite: the
  step is skipped and counted (`skipped_steps`, and the longest run of skipped
  steps in the epoch, `skipped_in_a_row`); after `max_skipped_in_a_row` in a
  row, `fit` stops and raises `TrainingDiverged`, the weights being those of
  the last finite step;
- `fit` checks arrays for NaN and inf before the first step and says where
  the first one is;
- evaluation counts its batches (`next_evaluation_batch`), reset at the start of
  every pass, so that a pass's noise is a function of the batch index alone;
- under a `tf.distribute` strategy the loss is each replica's share, a step is
  applied or skipped by all replicas alike and counted once (`tfvae.distribute`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfvae import distribute, step_loop

DEFAULT_MAX_SKIPPED_IN_A_ROW = 5
# Steps per compiled call (tfvae.step_loop): Keras' per-step launch is paid once
# per 64 steps (`benchmarks/train_throughput.py --levers`).
DEFAULT_STEPS_PER_EXECUTION = 64


class TrainingDiverged(RuntimeError):
    """Steps kept giving a non-finite loss or gradient; none of them was applied."""


@keras.saving.register_keras_serializable(package="tfvae")
class ExampleMean(keras.metrics.Mean):
    """`keras.metrics.Mean` that is NaN, not 0, when it has seen no example.

    An epoch whose every step was skipped has no bound to report, and 0 nats
    would read as the best bound a Bernoulli model can have.
    """

    def result(self):
        return tf.where(
            self.count > 0,
            self.total / tf.maximum(self.count, 1.0),
            tf.constant(float("nan"), self.dtype),
        )


@keras.saving.register_keras_serializable(package="tfvae")
class StepCount(keras.metrics.Metric):
    """The sum of per-step scalars (e.g. 1 for a skipped step), counted once per step.

    Every replica of a `tf.distribute` strategy sees the same step and adds the
    same value: the count is the first replica's, not the sum over replicas
    that `keras.metrics.Sum` would report.
    """

    def __init__(self, name="step_count", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(
            shape=(), initializer="zeros", name="total", aggregation="only_first_replica"
        )

    def update_state(self, value):
        self.total.assign_add(tf.cast(value, self.dtype))

    def result(self):
        return tf.identity(self.total)


@keras.saving.register_keras_serializable(package="tfvae")
class RunLength(keras.metrics.Metric):
    """The longest run of consecutive `True` updates since the last reset.

    Call `update_state(flag)` with a scalar bool once per step. A reset (Keras
    resets metrics at every epoch) keeps the run in progress, so a run of
    skipped steps that spans epochs is counted whole.
    """

    def __init__(self, name="run_length", **kwargs):
        super().__init__(name=name, **kwargs)
        # Every replica sees the same flags: the first one's run is the run.
        self.current = self.add_variable(
            shape=(), initializer="zeros", name="current", aggregation="only_first_replica"
        )
        self.longest = self.add_variable(
            shape=(), initializer="zeros", name="longest", aggregation="only_first_replica"
        )

    def update_state(self, flag):
        current = tf.where(flag, self.current + 1.0, 0.0)
        self.current.assign(current)
        self.longest.assign(tf.maximum(self.longest, current))

    def result(self):
        return tf.identity(self.longest)

    def reset_state(self):
        self.longest.assign(self.current)


class OwnLossModel(keras.Model):
    """A Keras model that computes its own loss in `train_step`.

    Subclasses put their per-example means in `self.trackers`, call
    `minimise` in `train_step`, and seed evaluation noise with
    `next_evaluation_batch()`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.trackers: dict[str, ExampleMean] = {}  # Filled by the subclass.
        self.step_trackers = {
            "skipped_steps": StepCount(name="skipped_steps"),
            "skipped_in_a_row": RunLength(name="skipped_in_a_row"),
        }
        # Not a logged metric: a counter that `reset_metrics` zeroes before each pass.
        self.evaluation_counter = keras.metrics.Sum(name="evaluation_batches")

    def compile(
        self,
        optimizer=None,
        *,
        jit_compile: bool | None = None,
        steps_per_execution: int | None = None,
        **kwargs,
    ):
        """Like `keras.Model.compile`, with XLA and 64 steps per call by default, no `loss`.

        Args:
            optimizer: Defaults to the paper's Adagrad with step size 0.01.
            jit_compile: XLA (`None`: on, but off for a model built in a
                `tf.distribute` strategy's scope); pass False for networks whose
                ops XLA cannot compile.
            steps_per_execution: Training (and evaluation) steps per call into
                the compiled graph (`None`: 64, but 1 under a strategy): with XLA
                they run in one compiled loop (`tfvae.step_loop`). Batch-level
                callbacks and the progress bar see every this many steps; pass 1
                to see every step.
            **kwargs: Other `keras.Model.compile` arguments, except `loss`: the
                model computes its own.

        Raises:
            ValueError: XLA or several steps per call asked for under a strategy.
                Keras runs XLA per replica, and the compiled step cannot reach the
                variables of the other devices (TensorFlow's XLA known issue
                "tf.Variable on a different device"); several steps per call ran
                into a graph error in Keras' loop with tfvae's skipping of
                non-finite steps.
        """
        if optimizer is None:
            optimizer = keras.optimizers.Adagrad(learning_rate=0.01)
        if "loss" in kwargs:
            raise ValueError(
                f"{type(self).__name__} computes its own loss; drop `loss=`. "
                "Choose a VAE's bound with VAE(objective=..., num_samples=...)."
            )
        distributed = self._distribute_strategy is not None
        if distributed and (jit_compile or (steps_per_execution or 1) > 1):
            raise ValueError(
                f"Under a tf.distribute strategy the step runs without XLA, one step per "
                f"call: pass jit_compile=False and steps_per_execution=1, or leave them "
                f"unset (got jit_compile={jit_compile}, "
                f"steps_per_execution={steps_per_execution})."
            )
        if jit_compile is None:
            jit_compile = not distributed
        if steps_per_execution is None:
            steps_per_execution = 1 if distributed else DEFAULT_STEPS_PER_EXECUTION
        super().compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            **kwargs,
        )

    def make_train_function(self, force=False):
        """Keras' train function; with XLA and `steps_per_execution` > 1, one that runs
        all of an execution's steps in one compiled call (`tfvae.step_loop`)."""
        if self.train_function is None or force:
            self.train_function = self._step_function(self.train_step)
        return self.train_function

    def make_test_function(self, force=False):
        """As `make_train_function`, for `evaluate` and validation."""
        if self.test_function is None or force:
            self.test_function = self._step_function(self.test_step)
        return self.test_function

    def _step_function(self, step):
        """tfvae's loop of several steps in one XLA call where it applies, else Keras'
        function (under a `tf.distribute` strategy Keras' functions run the replicas)."""
        if self._steps_loop_in_xla():
            return step_loop.make_step_function(step, self.steps_per_execution)
        if isinstance(self._distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 averages a multi-worker step's logs over replicas and axis 0,
            # which scalars lack (tensorflow/tensorflow#72388): give them that axis.
            return self._make_function(
                lambda data: {name: tf.reshape(value, [1]) for name, value in step(data).items()}
            )
        return self._make_function(step)

    def _steps_loop_in_xla(self) -> bool:
        return (
            bool(self.jit_compile)
            and not self.run_eagerly
            and self.steps_per_execution > 1
            and self._distribute_strategy is None
        )

    def get_compile_config(self):
        config = super().get_compile_config()
        return config and {k: v for k, v in config.items() if k != "loss"}

    def compile_from_config(self, config):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
        if self._distribute_strategy is not None:  # Loaded into a strategy: its defaults.
            config.pop("jit_compile", None)
            config.pop("steps_per_execution", None)
        for key in ("loss_weights", "metrics", "weighted_metrics"):
            if config.get(key) is None:
                config.pop(key, None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def minimise(self, loss_and_aux):
        """One optimizer step on a loss plus the layers' L2 weight penalties, if finite.

        Args:
            loss_and_aux: A function returning (scalar loss, anything); called
                under the gradient tape.

        Returns:
            (the function's second output, a scalar bool: whether the step was
            applied). A step whose objective or any gradient is NaN or inf is
            not applied, so the optimizer state and `iterations` stay as they were.
            Under a `tf.distribute` strategy each replica's share of the loss is
            1 / replicas of it (the optimizer sums their gradients) and a step is
            skipped by all replicas if one of them sees a non-finite value. With
            a `LossScaleOptimizer` (float16) only the objective is checked: the
            optimizer itself skips the steps whose scaled gradients overflow.
        """
        with tf.GradientTape() as tape:
            loss, aux = loss_and_aux()
            penalties = self.losses  # Recomputed at each access: read once.
            objective = loss + tf.add_n(penalties) if penalties else loss
            # The optimizer sums the replicas' gradients; float16 scales the loss.
            scaled = self.optimizer.scale_loss(distribute.replica_share(objective))
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        checked = [objective]
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checked += gradients  # Else it skips overflowing steps as it lowers the scale.
        finite = distribute.all_replicas(
            tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in checked if t is not None])
            )
        )
        distribute.apply_if(finite, self._apply, gradients, variables)
        skipped = tf.logical_not(finite)
        self.step_trackers["skipped_steps"].update_state(tf.cast(skipped, tf.float32))
        self.step_trackers["skipped_in_a_row"].update_state(skipped)
        return aux, finite

    def _apply(self, gradients, variables):
        self.optimizer.apply_gradients(zip(gradients, variables))

    @property
    def metrics(self):
        return [*self.trackers.values(), *self.step_trackers.values()]

    def step_logs(self) -> dict:
        """The results of `step_trackers`, for `train_step`'s logs."""
        return {name: tracker.result() for name, tracker in self.step_trackers.items()}

    def next_evaluation_batch(self) -> tf.Tensor:
        """The int32 index of this batch in the current evaluation pass; counts up."""
        index = self.evaluation_counter.result()
        self.evaluation_counter.update_state(1.0)
        return tf.cast(index, tf.int32)

    def reset_metrics(self):
        super().reset_metrics()
        self.evaluation_counter.reset_state()

    def fit(
        self,
        x=None,
        y=None,
        *args,
        validation_data=None,
        callbacks=None,
        max_skipped_in_a_row: int = DEFAULT_MAX_SKIPPED_IN_A_ROW,
        **kwargs,
    ):
        """`keras.Model.fit`, refusing non-finite arrays and stopping on non-finite steps.

        Args:
            x, y, validation_data, callbacks, *args, **kwargs: As `keras.Model.fit`.
            max_skipped_in_a_row: Stop after this many consecutive steps whose
                loss or gradients were not finite (none of them is applied).

        Raises:
            ValueError: `x` or `validation_data` holds NaN or inf (numpy or
                tensor arrays; datasets are guarded by the skipped steps).
            TrainingDiverged: `max_skipped_in_a_row` steps in a row were skipped;
                the model keeps the weights of the last finite step.
        """
        self.check_arrays(x, "x")
        if validation_data is not None:
            self.check_arrays(validation_data, "validation_data")
        if isinstance(x, tf.data.Dataset):
            # A dataset orders itself (tfvae's are seeded by epoch); Keras would only
            # warn that its default shuffle=True is ignored.
            kwargs.setdefault("shuffle", False)
        guard = StopOnSkippedSteps(max_skipped_in_a_row)
        history = super().fit(
            x,
            y,
            *args,
            validation_data=validation_data,
            callbacks=[*(callbacks or []), guard],
            **kwargs,
        )
        guard.raise_if_stopped()
        return history

    def check_arrays(self, data, name: str) -> None:
        """Raises ValueError for arrays this model cannot train on: here, NaN or inf
        (`check_finite_arrays`); subclasses add their own checks."""
        check_finite_arrays(data, name)


def update_means(trackers: dict, values: dict, applied=None) -> dict:
    """Adds per-example values `[B]` to their `Mean` trackers; returns every result.

    Args:
        trackers: {name: keras.metrics.Mean}.
        values: {name: `[B]` tensor}, one per tracker.
        applied: For a training step, whether it was applied: a skipped step
            adds nothing, so one non-finite step does not make the epoch's mean NaN.
    """
    weight = None if applied is None else tf.cast(applied, tf.float32)
    for name, value in values.items():
        if applied is not None:  # 0 * NaN is NaN: zero the values, not only the weight.
            value = tf.where(applied, value, tf.zeros_like(value))
        trackers[name].update_state(value, sample_weight=weight)
    return {name: tracker.result() for name, tracker in trackers.items()}


def check_finite_arrays(data, name: str) -> None:
    """Raises ValueError naming the first NaN/inf in numpy or tensor arrays of `data`.

    Args:
        data: An array, or a tuple/list/dict of them; other objects (datasets,
            generators) are passed over.
        name: How the error names `data`.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            check_finite_arrays(value, f"{name}[{key!r}]")
    elif isinstance(data, (tuple, list)):
        for i, value in enumerate(data):
            check_finite_arrays(value, f"{name}[{i}]")
    elif isinstance(data, (np.ndarray, tf.Tensor)):
        values = np.asarray(data)
        if not np.issubdtype(values.dtype, np.floating):
            return
        bad = ~np.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} holds {int(bad.sum())} NaN or infinite values; the first is "
                f"{values[first]} at index {first} (example {first[0]}). Remove or "
                "repair those examples before training."
            )


class StopOnSkippedSteps(keras.callbacks.Callback):
    """Stops `fit` once `skipped_in_a_row` reaches `limit`, for `fit` to raise."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.stopped_at_epoch = None
        self.tripped = False

    def on_train_batch_end(self, batch, logs=None):
        streak = (logs or {}).get("skipped_in_a_row")
        if streak is not None and float(streak) >= self.limit:
            self.tripped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.on_train_batch_end(None, logs)
        if self.tripped and self.stopped_at_epoch is None:
            self.stopped_at_epoch = epoch

    def raise_if_stopped(self):
        if self.tripped:
            raise TrainingDiverged(
                f"{self.limit} training steps in a row had a non-finite loss or gradient "
                f"(epoch {self.stopped_at_epoch + 1}); none of them was applied, so the "
                "model keeps the weights of the last finite step. Try a smaller learning "
                "rate, or check the data."
            )
