"""How a refined schedule differs from the schedule pass 1 ran: the reference every summary compares against.

The reference is pass 1's own schedule, its recorded learning rates over their peak, when the record holds them (the
usual case: `RefinementCallback` records the LR). Without recorded LRs it is linear decay as the Trainer runs it,
``(T - t) / T`` (transformers' `linear` ends at 1/T, not 0). A schedule file always ends at 0, so the last step is
left out of "equal". numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EQUAL_WITHIN", "Comparison", "compare_with_pass_one", "describe_schedule", "reference_shape"]

#: Largest difference in any multiplier (the last step excluded) for two schedules to count as the same.
EQUAL_WITHIN = 1e-6


def reference_shape(record, num_steps: int) -> tuple[np.ndarray, str]:
    """`(multipliers, label)` of the schedule to compare a refined schedule of `num_steps` steps with."""
    if "lr" in record.recorded and len(record) == num_steps:
        lr = record.lr
        if np.isfinite(lr).all() and lr.max() > 0:
            return lr / lr.max(), "pass 1's schedule"
    return (num_steps - np.arange(num_steps)) / num_steps, "linear decay (T-t)/T"


class Comparison:
    """A schedule against its reference: `equal`, area ratio, second-half ratio, and the reference's label."""

    def __init__(self, multipliers: np.ndarray, reference: np.ndarray, label: str):
        self.label = label
        self.reference = reference
        body = slice(0, max(1, multipliers.size - 1))
        self.equal = bool(np.max(np.abs(multipliers[body] - reference[body])) <= EQUAL_WITHIN)
        self.area_ratio = float(multipliers.sum() / reference.sum())
        half = multipliers.size // 2
        self.second_half_ratio = float(multipliers[half:].sum() / max(reference[half:].sum(), 1e-300))

    def phrase(self) -> str:
        if self.equal:
            return f"identical to {self.label}"
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
    if not comparison.equal:
        text += f", peak at step {peak} ({100 * peak / max(1, schedule.num_steps - 1):.0f}%)"
    return text
