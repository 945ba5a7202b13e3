"""What changes in training with the step: the KL weight (beta, warm-up) and the learning rate.

The minimised objective is distortion + w_t * (KL term), with

    w_t = beta * a_t,

beta the beta-VAE weight (Higgins et al. 2017: beta > 1 favours a low rate,
beta < 1 a low distortion) and a_t the warm-up factor at training step t
(t = the optimizer's `iterations`, 0 at the first step):

    none       a_t = 1
    linear     a_t = min(1, t / T)                       (Sonderby et al. 2016;
                                                          the VampPrior code: T = 100 epochs)
    cyclical   tau = (t mod T) / T,  a_t = min(1, tau / R)
                                                          (Fu et al. 2019: every cycle of T
                                                          steps rises over its first R T
                                                          steps, then holds 1)

A function of the step alone: a resumed run, whose optimizer state (and so
`iterations`) is restored, continues the schedule where it stopped.

References:
    Higgins et al. (2017). beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework. ICLR.
    Sonderby, Raiko, Maaloe, Sonderby & Winther (2016). Ladder Variational
        Autoencoders. NeurIPS (warm-up).
    Fu, Li, Liu, Gao, Celikyilmaz & Carin (2019). Cyclical Annealing Schedule:
        A Simple Approach to Mitigating KL Vanishing. NAACL.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

WARMUPS = ("none", "linear", "cyclical")


def warmup_factor(step: int | tf.Tensor, kind: str, length: int, ratio: float = 0.5) -> tf.Tensor:
    """a_t in [0, 1] at step t (a scalar int tensor), float32.

    Args:
        step: t, the number of steps taken before this one.
        kind: `none`, `linear` or `cyclical`.
        length: T in steps: the warm-up (linear) or one cycle (cyclical).
        ratio: R, the rising fraction of a cycle (cyclical only), in (0, 1].
    """
    if kind == "none":
        return tf.constant(1.0)
    t = tf.cast(step, tf.float32)
    if kind == "linear":
        return tf.minimum(1.0, t / float(length))
    if kind == "cyclical":
        phase = tf.math.floormod(t, float(length)) / float(length)
        return tf.minimum(1.0, phase / float(ratio))
    raise ValueError(f"warmup={kind!r} is not one of {WARMUPS}.")


@dataclasses.dataclass(frozen=True)
class KLWeight:
    """w_t = beta * a_t, the weight on the KL term at step t (see the module docstring).

    Attributes:
        beta: The beta-VAE weight; 1 is the ELBO.
        warmup: `none`, `linear` or `cyclical`.
        warmup_steps: T in steps (a linear warm-up's length, or a cycle's).
        warmup_ratio: R, the rising fraction of each cycle (cyclical only).
    """

    beta: float = 1.0
    warmup: str = "none"
    warmup_steps: int = 0
    warmup_ratio: float = 0.5

    def __post_init__(self):
        if self.warmup not in WARMUPS:
            raise ValueError(f"warmup={self.warmup!r} is not one of {WARMUPS}.")
        if not self.beta >= 0:
            raise ValueError(f"beta must be 0 or more, got {self.beta!r}.")
        if self.warmup != "none" and self.warmup_steps < 1:
            raise ValueError(
                f"A {self.warmup} warm-up needs warmup_steps >= 1, got {self.warmup_steps!r}."
            )
        if not 0 < self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {self.warmup_ratio!r}.")

    @property
    def is_one(self) -> bool:
        """Whether w_t = 1 at every step (the plain bound)."""
        return self.beta == 1.0 and self.warmup == "none"

    def __call__(self, step: int | tf.Tensor) -> tf.Tensor:
        """w_t, a float32 scalar, at step t (an int scalar tensor)."""
        return self.beta * warmup_factor(step, self.warmup, self.warmup_steps, self.warmup_ratio)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> KLWeight:
        return cls(**config)


# Learning rates. A Keras schedule is a function of the optimizer's
# `iterations`, saved with the optimizer in every checkpoint: a resumed run
# continues it exactly.

LEARNING_RATE_SCHEDULES = ("constant", "burda", "cosine")
# Burda et al. (2016), section 5: 8 stages, stage i lasting 3^i epochs
# (3280 in all) at learning rate 1e-3 * 10^(-i/7).
BURDA_STAGES = 8


def burda_boundaries(total_steps: int) -> list[int]:
    """The last steps (0-based) of Burda et al.'s stages 0..6, scaled to `total_steps`.

    Stage i lasts the fraction 3^i / 3280 of the run (3280 = sum of 3^i, i = 0..7),
    so at 3280 epochs the stages are the paper's 1, 3, 9, ..., 2187 epochs. These
    are `PiecewiseConstantDecay`'s boundaries: a step t <= boundary takes the
    earlier stage's rate. A run too short for a stage gives it no steps.
    """
    total = sum(3**i for i in range(BURDA_STAGES))
    lasts, elapsed = [], 0
    for i in range(BURDA_STAGES - 1):
        elapsed += 3**i
        lasts.append(max(0, round(total_steps * elapsed / total) - 1))
    return lasts


def learning_rate(
    kind: str, initial: float, final: float, total_steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's `learning_rate`: a float, or a Keras schedule of the step.

    Args:
        kind: `constant` (always `initial`), `burda` (stage i of 8 at
            initial * (final / initial)^(i / 7), stages 3^i long, see
            `burda_boundaries`) or `cosine` (Loshchilov & Hutter 2017, without
            restarts: from `initial` to `final` over `total_steps`, then `final`).
        initial: The first step size.
        final: The last step size of a decaying schedule.
        total_steps: The run's length in optimizer steps (epochs x steps per epoch).

    References:
        Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
        Loshchilov & Hutter (2017). SGDR: Stochastic Gradient Descent with Warm
            Restarts. ICLR.
    """
    if kind == "constant":
        return initial
    if kind == "burda":
        ratio = final / initial
        values = [initial * ratio ** (i / (BURDA_STAGES - 1)) for i in range(BURDA_STAGES)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            burda_boundaries(total_steps), values
        )
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial, decay_steps=total_steps, alpha=final / initial
        )
    raise ValueError(f"lr_schedule={kind!r} is not one of {LEARNING_RATE_SCHEDULES}.")
