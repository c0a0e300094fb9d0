"""Schedule shapes as arrays of LR multipliers (peak 1): the baselines refinement is compared with, and resampling.

numpy only. A shape of T values gives the multiplier of optimizer steps 0 .. T-1; the last one is the LR of the
last step (0 for schedules that decay to zero).
"""

from __future__ import annotations

import numpy as np

__all__ = ["area_ratio_to_linear", "cosine_decay", "linear_decay", "resample_schedule"]


def _check_length(num_steps, minimum: int = 1) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < minimum:
        raise ValueError(f"`num_steps` must be an integer >= {minimum}, got num_steps={num_steps!r}.")
    return int(num_steps)


def resample_schedule(multipliers, num_steps: int) -> np.ndarray:
    """Stretch or shrink a schedule to `num_steps` steps by training progress.

    The old value j of T sits at progress ``j / (T-1)``; new step i of N takes the linear interpolation at progress
    ``i / (N-1)``. The first value maps to the first and the last to the last; ``N == T`` returns the schedule
    unchanged, and ``N == 1`` returns the first value.
    """
    values = np.asarray(multipliers, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"`multipliers` must be a 1-D sequence of at least 2 values, got shape {values.shape}.")
    num_steps = _check_length(num_steps)
    if num_steps == values.size:
        return values.copy()
    if num_steps == 1:
        return values[:1].copy()
    old_progress = np.arange(values.size) / (values.size - 1)
    new_progress = np.arange(num_steps) / (num_steps - 1)
    return np.interp(new_progress, old_progress, values)


def linear_decay(num_steps: int) -> np.ndarray:
    """Linear decay to zero over `num_steps` steps, ``1 - t/(T-1)``: the refinement of constant norms."""
    num_steps = _check_length(num_steps, 2)
    return (num_steps - 1 - np.arange(num_steps)) / (num_steps - 1)


def cosine_decay(num_steps: int) -> np.ndarray:
    """Cosine decay to zero over `num_steps` steps, ``(1 + cos(π t/(T-1))) / 2``, for comparisons."""
    num_steps = _check_length(num_steps, 2)
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(num_steps) / (num_steps - 1)))


def area_ratio_to_linear(multipliers) -> float:
    """The schedule's total LR (sum of multipliers) over linear decay's, ``1 - t/(T-1)``, of the same length."""
    values = np.asarray(multipliers, dtype=np.float64)
    return float(values.sum() / linear_decay(values.size).sum())
