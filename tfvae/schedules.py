"""The weight on the KL term and how it changes in training: beta and warm-up.

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

import tensorflow as tf

WARMUPS = ("none", "linear", "cyclical")


def warmup_factor(step, kind: str, length: int, ratio: float = 0.5) -> tf.Tensor:
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
            raise ValueError(f"A {self.warmup} warm-up needs warmup_steps >= 1, got "
                             f"{self.warmup_steps!r}.")
        if not 0 < self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {self.warmup_ratio!r}.")

    @property
    def is_one(self) -> bool:
        """Whether w_t = 1 at every step (the plain bound)."""
        return self.beta == 1.0 and self.warmup == "none"

    def __call__(self, step) -> tf.Tensor:
        """w_t, a float32 scalar, at step t (an int scalar tensor)."""
        return self.beta * warmup_factor(step, self.warmup, self.warmup_steps,
                                         self.warmup_ratio)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "KLWeight":
        return cls(**config)
