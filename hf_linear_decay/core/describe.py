"""How a refined schedule differs from the schedule pass 1 ran: the reference every summary compares against.

The reference is pass 1's own schedule, its recorded learning rates over their peak, when the record holds them (the
usual case: `RefinementCallback` records the LR). Without recorded LRs it is linear decay as the Trainer runs it,
``(T - t) / T`` (transformers' `linear` ends at 1/T, not 0). A schedule file always ends at 0, so the last step is
left out of "equal". numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EQUAL_WITHIN", "REPEATS_WITHIN", "Comparison", "compare_with_pass_one", "describe_schedule",
           "next_step", "reference_shape"]

#: Largest difference in any multiplier (the last step excluded) for two schedules to count as the same.
EQUAL_WITHIN = 1e-6
#: Largest difference for a schedule to count as a repeat of pass 1's: a second run that follows it is pass 1 again
#: (e.g. `auto` on the record of a WSD run gives WSD back, off by its discretisation only).
REPEATS_WITHIN = 0.02


def reference_shape(record, num_steps: int) -> tuple[np.ndarray, str]:
    """`(multipliers, label)` of the schedule to compare a refined schedule of `num_steps` steps with."""
    if "lr" in record.recorded and len(record) == num_steps:
        lr = record.lr
        if np.isfinite(lr).all() and lr.max() > 0:
            return lr / lr.max(), "pass 1's schedule"
    return (num_steps - np.arange(num_steps)) / num_steps, "linear decay (T-t)/T"


class Comparison:
    """A schedule against its reference: `equal`, `repeats` (within `REPEATS_WITHIN`), area ratio, second-half
    ratio, and the reference's label."""

    def __init__(self, multipliers: np.ndarray, reference: np.ndarray, label: str):
        self.label = label
        self.reference = reference
        body = slice(0, max(1, multipliers.size - 1))
        self.largest_difference = float(np.max(np.abs(multipliers[body] - reference[body])))
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


def next_step(schedule, path: str) -> str:
    """What to do with the schedule file at `path`: follow it in pass 2, or, when it repeats pass 1's schedule, keep
    pass 1's model (said before the user pays for the same run twice)."""
    if compare_with_pass_one(schedule).repeats:
        return "pass 1 already ran this schedule: keep its model rather than run it again"
    return f"follow it in pass 2: --lr_scheduler_kwargs '{{\"schedule_file\": \"{path}\"}}'"
