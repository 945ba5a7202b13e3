"""Mixed precision: the networks' trunks in bfloat16 or float16, the probability in float32.

`TrainConfig.precision` names a Keras dtype policy: `float32` (the default),
`mixed_bfloat16` or `mixed_float16`. Under a mixed policy the variables stay
float32 and the trunks' matrix products run in the low precision, while every
head, prior and flow computes in float32 (`tfvae.parts.Head` and
`tfvae.priors.Prior` default to a float32 policy): distribution parameters,
log-probabilities, the KL and the bound never see 8 or 11 significant bits.
Under `mixed_float16` Keras wraps the optimizer in a `LossScaleOptimizer`,
which scales the loss so small gradients do not underflow, and skips the steps
whose scaled gradients overflow while it lowers the scale.

The model a run ships (`model.keras`) is rebuilt in float32 with the trained
weights (`as_float32`), so that it loads, evaluates and exports as any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras

from tfvae.config import PRECISIONS


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy `name` inside the block (layers take it when built)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision={name!r} is not one of {PRECISIONS}.")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(model: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
    """`model` itself if it computes in float32, else a float32 copy with its weights
    and, if both are compiled, its optimizer's state (a `LossScaleOptimizer`'s inner one).

    Args:
        model: A trained model, possibly with mixed-precision layers.
        build: Builds the same architecture, untrained (called under float32).
    """
    if model.dtype_policy.name == "float32":
        return model
    with policy("float32"):
        copy = build()
    copy.set_weights(model.get_weights())
    source = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if source is not None and copy.optimizer is not None and source.built:
        copy.optimizer.build(copy.trainable_variables)
        for target, value in zip(copy.optimizer.variables, source.variables, strict=True):
            target.assign(value)
    return copy
