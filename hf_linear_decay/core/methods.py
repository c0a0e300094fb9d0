"""Refinement methods and their settings: the one way from a `NormRecord` to a schedule.

A method is a function ``(record, settings) -> multipliers`` registered in `METHODS`; `build_schedule` validates the
settings, resolves the defaults (norm from the optimizer, power from the norm) and returns a `RefinedSchedule`: the
record, the multipliers and the settings that made them (what a schedule file stores). Adding a method is a function
and a row here. numpy/scipy only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from .norms import NORM_TYPES, check_norm, norm_for_optimizer
from .record import RECORD_COLUMNS, NormRecord
from .refine import DEFAULT_TAU, check_power, check_tau, refine

__all__ = ["DEFAULT_METHOD", "METHODS", "DivergedRunError", "RefinedSchedule", "RefinementSettings", "build_schedule",
           "check_method", "pass_one_shape"]

logger = logging.getLogger(__name__)


def paper_method(record: NormRecord, settings: RefinementSettings) -> np.ndarray:
    """arXiv 2310.07831 Alg. 1/2 exactly: ``η_t ∝ ĝ_t^-p · Σ_{s>t} ĝ_s^-p`` from the median-filtered norms."""
    return refine(record.norms(settings.norm), tau=settings.tau, power=settings.power, skipped=record.skipped).multipliers


#: `guarded` adds a warm-up only when pass 1's smoothed norm started at least this many times above its settled level
#: (the median over the second half); the warm-up lasts until the norm falls below `SETTLED_WITHIN` times that level.
STEEP_START, SETTLED_WITHIN = 100.0, 1.5


def pass_one_shape(record: NormRecord) -> np.ndarray:
    """The schedule pass 1 ran (its recorded LRs over their peak, last step 0); linear decay if the LR is unknown."""
    lr = record.lr
    if "lr" in record.recorded and np.isfinite(lr).all() and lr.max() > 0:
        shape = lr / lr.max()
        shape[-1] = 0.0  # the Trainer's linear decay ends at 1/T; a schedule file ends at 0
        return shape
    return (len(record) - 1 - np.arange(len(record))) / max(1, len(record) - 1)


def guarded_method(record: NormRecord, settings: RefinementSettings) -> np.ndarray:
    """Pass 1's own schedule, plus a warm-up until the gradient norm settles if, and only if, it started steeply.

    The comparison suite (benchmarks/compare_schedules.py) found the paper's schedule a large win where the norms
    fall by two orders of magnitude early in training (most of it from its long warm-up) and a loss of up to 1.7x
    elsewhere. So: with ĝ the paper's median-filtered norms and ĝ_∞ their median over the second half, if
    ``ĝ_0 ≥ STEEP_START · ĝ_∞`` the multipliers are pass 1's shape times a linear ramp that ends at the first step
    with ``ĝ_t < SETTLED_WITHIN · ĝ_∞``; otherwise pass 1's shape unchanged (usually linear decay). Never a
    faster-than-linear anneal, never a late peak.
    """
    smoothed = refine(record.norms(settings.norm), tau=settings.tau, power=settings.power,
                      skipped=record.skipped).smoothed_norms
    shape = pass_one_shape(record)
    settled = float(np.median(smoothed[len(smoothed) // 2:]))
    if not smoothed[0] >= STEEP_START * settled:
        logger.info("method 'guarded': the %s norm started %.1fx above its settled level (a warm-up needs %gx), so "
                       "the schedule is pass 1's own; method 'paper' gives the paper's refinement (see the README's "
                       "evidence before choosing it).", settings.norm, smoothed[0] / settled, STEEP_START)
        return shape
    ramp_end = max(1, int(np.argmax(smoothed < SETTLED_WITHIN * settled)))
    ramped = shape * np.minimum(1.0, np.arange(len(shape)) / ramp_end)
    return ramped / ramped.max()


#: Method name -> function. The default is the method `RefinementCallback` and `hf-linear-decay refine` use.
METHODS = {"paper": paper_method, "guarded": guarded_method}
DEFAULT_METHOD = "guarded"


def check_method(method, *, name: str = "method") -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"`{name}` must be one of {list(METHODS)}, got {name}={method!r}.")
    return method


@dataclass(frozen=True)
class RefinementSettings:
    """How to refine a record. `None` means "the default for this record" (see `resolved`).

    Attributes:
        method (`str`, defaults to `DEFAULT_METHOD`): a key of `METHODS`.
        norm (`str`, *optional*): "l1" or "l2"; default: from the recorded optimizer (Adam-type -> l1), else the one
            norm the record holds, else l2.
        tau (`float`, defaults to 0.1): median-filter window as a fraction of the run, in (0, 1].
        power (`float`, *optional*): weight power p > 0; default: the norm's pairing (2 for l2, 1 for l1).
    """

    method: str = DEFAULT_METHOD
    norm: str | None = None
    tau: float = DEFAULT_TAU
    power: float | None = None

    def __post_init__(self):
        check_method(self.method)
        if self.norm is not None:
            check_norm(self.norm)
        object.__setattr__(self, "tau", check_tau(self.tau))
        if self.power is not None:
            object.__setattr__(self, "power", check_power(self.power))

    def updated(self, **overrides) -> RefinementSettings:
        """A copy with the non-`None` overrides applied; changing the norm without a power resets the power."""
        overrides = {key: value for key, value in overrides.items() if value is not None}
        if "norm" in overrides and overrides["norm"] != self.norm and "power" not in overrides:
            overrides["power"] = None
        return replace(self, **overrides)

    def resolved(self, record: NormRecord) -> RefinementSettings:
        """Concrete settings for `record`: every default filled in."""
        norm = self.norm
        if norm is None:
            held = [n.name for n in NORM_TYPES.values() if n.tensor in record.recorded]
            if record.run.optimizer:
                norm = norm_for_optimizer(record.run.optimizer)
            elif len(held) == 1:
                norm = held[0]
            else:
                norm = "l2"
        power = NORM_TYPES[norm].default_power if self.power is None else self.power
        return replace(self, norm=norm, power=power)


@dataclass
class RefinedSchedule:
    """A record, the schedule refined from it (peak 1, last 0) and the resolved settings used: a schedule file.

    Record columns read through (`schedule.grad_norm_l1`, `schedule.skipped`, ...), as do the settings
    (`schedule.norm`, `schedule.tau`, ...). `created_at` and `package_version` are filled when the file is written.
    """

    record: NormRecord
    multipliers: np.ndarray
    settings: RefinementSettings = field(default_factory=RefinementSettings)
    created_at: str = ""
    package_version: str = ""

    @property
    def num_steps(self) -> int:
        return int(self.multipliers.shape[0])

    def __getattr__(self, name):
        if name in ("record", "settings"):  # not set yet (unpickling, copying): do not recurse
            raise AttributeError(name)
        if name in ("method", "norm", "tau", "power"):
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


def build_schedule(record: NormRecord, settings: RefinementSettings | None = None, *,
                   force: bool = False) -> RefinedSchedule:
    """Refine `record` with `settings` (defaults resolved for this record) into a `RefinedSchedule`.

    Skipped steps (fp16 overflows, non-finite or zero norms, unrecorded steps) are filled from their neighbours.
    More than `WARN_SKIPPED_FRACTION` of recorded-but-unusable steps logs a warning; more than
    `REFUSE_SKIPPED_FRACTION` means the run diverged or overflowed and the schedule would be mostly interpolated:
    refused unless `force=True`.

    Raises:
        DivergedRunError: too many skipped steps and not `force`.
        ValueError: the record lacks the chosen norm, or has fewer than 2 valid steps of it.
    """
    # Steps never recorded (a resume from a checkpoint without a record: no LR either) are unknown, not a sign of
    # divergence; steps recorded as unusable are.
    unknown = record.skipped & np.isnan(record.lr) if "lr" in record.recorded else np.zeros(len(record), bool)
    bad, total = int((record.skipped & ~unknown).sum()), len(record)
    enough = total - int(record.skipped.sum()) >= 2  # else the refinement itself says what is missing
    if enough and bad / total > REFUSE_SKIPPED_FRACTION and not force:
        raise DivergedRunError(
            f"{bad} of {total} steps ({bad / total:.0%}) were skipped or had non-finite or zero norms: the run "
            f"diverged or overflowed, and a schedule refined from it would be mostly interpolated. Fix the run and "
            "record it again, or refine anyway with force=True (`hf-linear-decay refine --force`).")
    if enough and bad / total > WARN_SKIPPED_FRACTION:
        logger.warning("%d of %d steps (%.0f%%) were skipped or had non-finite or zero norms; they are filled from "
                       "neighbouring steps. Check the run for overflows or divergence.", bad, total, 100 * bad / total)
    settings = (settings or RefinementSettings()).resolved(record)
    multipliers = METHODS[settings.method](record, settings)
    return RefinedSchedule(record=record, multipliers=multipliers, settings=settings)
