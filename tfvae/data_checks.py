"""Checks of data values: finite, and where the likelihood has mass.

Run before training, so that a NaN in a file or grey pixels under a Bernoulli
likelihood get an error that says where and what to do, not a NaN loss.
"""

from __future__ import annotations

import numpy as np

from tfvae.config import BINARIZATIONS


def check_finite(x: np.ndarray, name: str) -> None:
    """Raises if x [N, *event_shape] holds a NaN or an infinity, saying where.

    Raises:
        ValueError: Names the count and the first bad value's example and pixel.
    """
    x = np.asarray(x)
    # min and max propagate NaN and meet any inf: two passes, no [N, ...] mask
    # unless something is wrong.
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    raise ValueError(
        f"{name} is not finite: {_where(x, ~np.isfinite(x), 'are NaN or inf')}. "
        f"Every value must be finite: check the file or the preprocessing "
        f"that made {name}."
    )


SUPPORTS = {  # A likelihood's support (`Head.support`) -> what the data must be.
    "binary": "0 or 1",
    "grey_levels": "8-bit grey levels k / 255 in [0, 1]",
    "unit_interval": "in [0, 1]",
    "real": "finite",
}
GREY_LEVELS = 255


def check_support(x: np.ndarray, support: str, binarization: str, name: str = "the data") -> None:
    """Raises unless x [N, *event_shape] lies where the model's p(x|z) has mass.

    Under `dynamic` binarization the model sees draws of Bernoulli(x), so x
    must be intensities in [0, 1]; otherwise it sees x itself, which must be
    in the likelihood's `support` (a key of `SUPPORTS`).

    Raises:
        ValueError: Says which values are outside the support, where the first
            one is, and what to change.
    """
    if support not in SUPPORTS or binarization not in BINARIZATIONS:
        raise ValueError(
            f"support={support!r}, binarization={binarization!r}: "
            f"expected one of {tuple(SUPPORTS)} and one of {BINARIZATIONS}."
        )
    check_finite(x, name)
    x = np.asarray(x)
    if x.size == 0 or (support == "real" and binarization == "none"):
        return
    if x.min() < 0 or x.max() > 1:
        raise ValueError(
            f"{name} is not in [0, 1]: {_where(x, (x < 0) | (x > 1), 'are outside')}. A "
            f"likelihood with {support} support and binarization={binarization!r} needs "
            f"intensities in [0, 1]: scale the data (8-bit pixels / 255)."
        )
    if binarization == "dynamic":
        return
    if support == "binary":
        grey = (x != 0) & (x != 1)
        if grey.any():
            raise ValueError(
                f"{name} is grey, not binary: {_where(x, grey, 'are neither 0 nor 1')}. "
                f"A bernoulli likelihood has mass only on 0 and 1: pass "
                f"--binarization dynamic (draws binary pixels each epoch), or use "
                f"--likelihood gaussian."
            )
    if support == "grey_levels":
        levels = x * GREY_LEVELS
        off = np.abs(levels - np.round(levels)) > 1e-3
        if off.any():
            raise ValueError(
                f"{name} is not on the 256 grey levels k / 255: "
                f"{_where(x, off, 'lie between levels')}. A discretized_logistic likelihood "
                "has mass only on those levels: use 8-bit images / 255, or --likelihood "
                "gaussian or continuous_bernoulli for other values."
            )


def _where(x: np.ndarray, bad: np.ndarray, problem: str) -> str:
    """Describes the set entries of `bad` (bool, x's shape [N, ...]): how many, the first."""
    first = np.unravel_index(int(np.argmax(bad)), x.shape)
    examples = np.count_nonzero(bad.reshape(len(x), -1).any(axis=1))
    pixel = tuple(int(i) for i in first[1:])
    return (
        f"{np.count_nonzero(bad):,} of {x.size:,} values {problem}, in {examples:,} "
        f"of {len(x):,} examples; the first, {float(x[first]):.6g}, is in example "
        f"{int(first[0])} at pixel {pixel}"
    )
