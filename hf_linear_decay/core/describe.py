"""How a refined schedule differs from the schedule pass 1 ran: the reference every summary compares against.

The reference is pass 1's own schedule, its recorded learning rates over their peak, every step included
(`refinements.pass_one_shape`). Without recorded LRs it is transformers' `linear` without warm-up, ``(T - t) / T``,
and the label says that it is assumed. numpy only.
"""

from __future__ import annotations

import numpy as np

from .refinements import pass_one_lr_assumed, pass_one_shape

__all__ = ["EQUAL_WITHIN", "REPEATS_WITHIN", "Comparison", "compare_with_pass_one", "describe_schedule",
           "reference_shape"]

#: Largest difference in any multiplier for two schedules to count as the same (float rounding of LR / peak).
EQUAL_WITHIN = 1e-9
#: Largest difference for a schedule to count as a repeat of pass 1's: a second run that follows it is pass 1 again
#: (e.g. `auto` on the record of a WSD run gives WSD back, off by its discretisation only).
REPEATS_WITHIN = 0.02


def reference_shape(record, num_steps: int) -> tuple[np.ndarray, str]:
    """`(multipliers, label)` of the schedule to compare a refined schedule of `num_steps` steps with."""
    if len(record) == num_steps and not pass_one_lr_assumed(record):
        return pass_one_shape(record), "pass 1's schedule"
    return (num_steps - np.arange(num_steps)) / num_steps, "linear decay (T-t)/T (assumed: no LRs recorded)"


class Comparison:
    """A schedule against its reference: `equal` (every step, the last included), `repeats` (within
    `REPEATS_WITHIN`), area ratio, second-half ratio, and the reference's label."""

    def __init__(self, multipliers: np.ndarray, reference: np.ndarray, label: str):
        self.label = label
        self.reference = reference
        self.largest_difference = float(np.max(np.abs(multipliers - reference)))
        self.equal = self.largest_difference <= EQUAL_WITHIN
        self.repeats = self.largest_difference <= REPEATS_WITHIN
        self.area_ratio = float(multipliers.sum() / reference.sum())
        half = multipliers.size // 2
        self.second_half_ratio = float(multipliers[half:].sum() / max(reference[half:].sum(), 1e-300))

    def phrase(self) -> str:
        if self.equal:
            return f"identical to {self.label}"
        if self.repeats:
            return (f"within {self.largest_difference:.2g} of {self.label} at every step: a run that follows it "
                    "repeats pass 1")
        trend = ("anneals faster than" if self.second_half_ratio < 0.95 else
                 "stays higher late than" if self.second_half_ratio > 1.05 else "ends like")
        return f"area {self.area_ratio:.2f}× {self.label}'s; {trend} it in the second half"


def compare_with_pass_one(schedule) -> Comparison:
    """`schedule` (a `RefinedSchedule`) against pass 1's schedule (or the Trainer's linear decay)."""
    reference, label = reference_shape(schedule.record, schedule.num_steps)
    return Comparison(schedule.multipliers, reference, label)


def describe_schedule(schedule) -> str:
    """One line: the method, the norm, where it peaks, and how it differs from pass 1's schedule."""
    multipliers = schedule.multipliers
    peak = int(np.argmax(multipliers))
    comparison = compare_with_pass_one(schedule)
    text = f"{schedule.num_steps} steps, method {schedule.method}, {schedule.norm} norms: {comparison.phrase()}"
    if not comparison.repeats:
        text += f", peak at step {peak} ({100 * peak / max(1, schedule.num_steps - 1):.0f}%)"
    return text
