"""Placing (step, value) points on every optimizer step: what the readers of logged inputs share (numpy only).

Memory follows the input: at most `MAX_STEPS_PER_VALUE` steps are interpolated per given value, so a small file can
never become a huge record (a 40 KB CSV of 2,000 values makes at most 2,000,000 steps), and no step lies beyond
`MAX_STEPS`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_STEPS", "MAX_STEPS_PER_VALUE", "NormInputError", "fill_every_step", "step_number"]

#: Largest run a record may describe, and the most steps interpolated per given value.
MAX_STEPS = 100_000_000
MAX_STEPS_PER_VALUE = 1_000


class NormInputError(ValueError):
    """An input file cannot be turned into a norm record. The message names the file, the problem and the fix."""


def step_number(value, path, where: str) -> int:
    """`value` as a step number in 0..MAX_STEPS, or a `NormInputError` naming `where` it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NormInputError(f"{path}: {where} has step {value!r:.60}; steps must be whole numbers.")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise NormInputError(f"{path}: {where} has step {value!r}; steps must be whole numbers.")
    if not 0 <= value <= MAX_STEPS:
        shown = f"{int(value):,}" if abs(value) < 10**30 else f"of {len(str(int(value)))} digits"
        raise NormInputError(f"{path}: {where} has step {shown}; steps must lie in 0..{MAX_STEPS:,}.")
    return int(value)


def fill_every_step(steps, values, what: str, path, first: int | None = None, last: int | None = None):
    """Place (step, value) points on every step `first..last`; returns the per-step values and how many were filled.

    Non-finite values at given steps stay (they mark skipped steps); a step without a point takes the linear
    interpolation of the finite neighbours, or the nearest finite value before the first / after the last point.
    """
    order = np.argsort(steps, kind="stable")
    steps, values = np.asarray(steps, dtype=np.int64)[order], np.asarray(values, dtype=np.float64)[order]
    if (np.diff(steps) == 0).any():
        duplicate = int(steps[np.flatnonzero(np.diff(steps) == 0)[0]])
        raise NormInputError(f"{path}: step {duplicate} appears twice in the {what}; keep one value per step.")
    first = int(steps[0]) if first is None else first
    last = int(steps[-1]) if last is None else last
    num_steps = last - first + 1
    if num_steps > MAX_STEPS_PER_VALUE * len(steps):
        raise NormInputError(
            f"{path}: the {what} covers steps {first:,}..{last:,} with only {len(steps):,} values; filling "
            f"{num_steps - len(steps):,} steps from them would invent the record (at most {MAX_STEPS_PER_VALUE:,} "
            "steps "
            "per value are interpolated). Log more often (e.g. `logging_steps=1`) or check the step column.")
    per_step = np.full(num_steps, np.nan)
    per_step[steps - first] = values
    missing = np.ones(num_steps, dtype=bool)
    missing[steps - first] = False
    finite = np.isfinite(values)
    if missing.any():
        if finite.sum() < 2:
            raise NormInputError(f"{path}: fewer than 2 finite values in the {what}; nothing to interpolate from.")
        per_step[missing] = np.interp(np.flatnonzero(missing), (steps - first)[finite], values[finite])
    return per_step, int(missing.sum())
