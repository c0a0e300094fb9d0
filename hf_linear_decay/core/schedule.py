"""`RefinedSchedule` (a record, the schedule refined from it and the settings that made it: what a schedule file
holds) and `build_schedule`, the one way from a record to a schedule. numpy only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .methods import METHODS
from .norms import NORM_TYPES
from .record import RECORD_COLUMNS, NormRecord
from .settings import RefinementSettings

__all__ = ["DivergedRunError", "RefinedSchedule", "build_schedule", "schedule_problem"]

logger = logging.getLogger(__name__)


@dataclass
class RefinedSchedule:
    """A record, the schedule refined from it (peak 1) and the resolved settings used: a schedule file.

    Record columns read through (`schedule.grad_norm_l1`, `schedule.skipped`, ...), as do the settings
    (`schedule.norm`, `schedule.tau`, ...). `explanation` is the method's one line on what it did (not stored in the
    file); `created_at` and `package_version` are filled when the file is written. `adaptive` is what an adaptive
    run (`core.adaptive`) planned and decided, when the schedule is the one such a run followed (stored in the file).
    """

    record: NormRecord
    multipliers: np.ndarray
    settings: RefinementSettings = field(default_factory=RefinementSettings)
    created_at: str = ""
    package_version: str = ""
    explanation: str = ""
    adaptive: dict | None = None

    @property
    def num_steps(self) -> int:
        return int(self.multipliers.shape[0])

    def __getattr__(self, name):
        if name in ("record", "settings"):  # not set yet (copying): do not recurse
            raise AttributeError(name)
        if name in ("method", "norm", "tau", "power", "options"):
            return getattr(self.settings, name)
        if name in ("run", "recorded", "skipped", "notes") or name in RECORD_COLUMNS:
            return getattr(self.record, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def grad_norms(self) -> np.ndarray:
        """The norms the schedule was refined from."""
        return self.record.norms(self.settings.norm)


class DivergedRunError(ValueError):
    """Too many steps of the record are unusable for a schedule refined from it to mean anything."""


#: Above this fraction of skipped (unusable) steps the refinement warns; above the second it refuses unless forced.
WARN_SKIPPED_FRACTION, REFUSE_SKIPPED_FRACTION = 0.05, 0.25


def unusable_steps(record: NormRecord) -> tuple[int, int]:
    """`(recorded as unusable, unknown)` step counts. Unknown: never recorded (no LR either, e.g. a checkpoint whose
    record was lost); unusable: recorded but skipped or with a non-finite or zero norm."""
    unknown = record.skipped & np.isnan(record.lr) if "lr" in record.recorded else np.zeros(len(record), bool)
    return int((record.skipped & ~unknown).sum()), int(unknown.sum())


def build_schedule(record: NormRecord, settings: RefinementSettings | None = None, *,
                   force: bool = False) -> RefinedSchedule:
    """Refine `record` with `settings` (defaults resolved for this record) into a `RefinedSchedule`.

    Skipped steps (fp16 overflows, non-finite or zero norms, unknown steps) are filled from their neighbours. More
    than `WARN_SKIPPED_FRACTION` of unusable or unknown steps logs a warning; more than `REFUSE_SKIPPED_FRACTION`
    means the run diverged or lost its record, and the schedule would be mostly interpolated: refused unless
    `force=True`.

    Raises:
        DivergedRunError: too many skipped steps and not `force`.
        ValueError: the record lacks the chosen norm, or has fewer than 2 valid steps of it.
    """
    bad, unknown = unusable_steps(record)
    total = len(record)
    enough = total - int(record.skipped.sum()) >= 2  # else the refinement itself says what is missing
    missing = bad + unknown
    if enough and missing / total > REFUSE_SKIPPED_FRACTION and not force:
        if unknown:
            what = (f"cannot be used ({bad} skipped or with non-finite or zero norms, {unknown} never recorded: a "
                    "checkpoint's record was lost)")
        else:
            what = "were skipped or had non-finite or zero norms: the run diverged or overflowed,"
        raise DivergedRunError(
            f"{missing} of {total} steps ({missing / total:.0%}) {what} and a schedule refined from this record would "
            "be mostly interpolated. Fix the run and record it again, or refine anyway with force=True "
            "(`hf-linear-decay refine --force`).")
    if enough and missing / total > WARN_SKIPPED_FRACTION:
        logger.warning("%d of %d steps (%.0f%%) were skipped, unknown or had non-finite or zero norms; they are filled "
                       "from neighbouring steps. Check the run for overflows, divergence or lost records.", missing,
                       total, 100 * missing / total)
    settings = (settings or RefinementSettings()).resolved(record)
    multipliers, explanation = METHODS[settings.method].function(record, settings)
    return RefinedSchedule(record=record, multipliers=multipliers, settings=settings, explanation=explanation)


def schedule_problem(multipliers: np.ndarray, record: NormRecord, norm: str) -> str | None:
    """What makes `multipliers` (refined from `record`'s `norm`) not a schedule, or `None`: finite, one value per
    step, in [0, 1] with peak 1, from a recorded norm, and at least 2 valid steps. (The refinements end at 0; a kept
    or followed schedule ends where pass 1's LR did.)"""
    if not np.isfinite(multipliers).all():
        return (f"tensor `multipliers` is not finite at step {int(np.flatnonzero(~np.isfinite(multipliers))[0])}; "
                "refine the record again with `hf-linear-decay refine`.")
    if multipliers.shape != (len(record),) or len(record) < 2:
        return f"tensor `multipliers` has shape {multipliers.shape} for a record of {len(record)} steps (>= 2 needed)."
    if multipliers.min() < 0 or abs(multipliers.max() - 1.0) > 1e-9:
        # repr, not %g: a peak of 1 + 1e-6 must not print as "1"
        low, high = (float(x) for x in (multipliers.min(), multipliers.max()))
        return (f"tensor `multipliers` must lie in [0, 1] with peak 1, got min {low!r}, max {high!r}; refine the "
                "record again.")
    column = NORM_TYPES[norm].tensor
    if column not in record.recorded:
        return f"the schedule was refined from `{column}`, which the file does not record; refine with a norm it has."
    valid = int((~record.skipped).sum())
    if valid < 2:
        return (f"only {valid} of {len(record)} steps are valid (the others were skipped, unknown or had non-finite or "
                "zero norms); no run produces such a record: record the run again.")
    return None
