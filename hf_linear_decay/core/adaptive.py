r"""One run that adapts its own schedule: `linear_refined` with `adapt`, deciding from the norms it records.

The two-pass default (`auto`) reads a whole pass 1 and, where the gradient norm rises as in LLM pretraining, gives the
warmup-stable-decay shape. An adaptive run reads the same signal while it trains and switches at most once:

- **plan** (`AdaptivePlan`): the schedule as a pure function of the step and of the decision taken so far. Before a
  decision it is transformers' `linear` (start "linear": a linear warm-up over W steps, then
  ``(T - t) / (T - W)``) or a warm-up and a stable phase at the peak (start "stable"). After a decision at step d:
  - "cooldown" (the LM regime): back to the peak LR (start "linear", switch "peak": over ``max(1, W)`` steps;
    switch "hold": the LR it had at d stays; start "stable": the peak), then cool down over the last
    ``fraction`` of the run, ``h · (1 - sqrt((t - c) / (T - c)))`` from ``c = T - round(fraction · T)`` (or
    linearly): transformers' `warmup_stable_decay` exactly for start "stable";
  - "linear" (no rise by the deadline): start "linear" goes on unchanged (exact linear decay); start "stable"
    decays linearly from the peak at d to 0 at T, ``(T - t) / (T - d)``.
- **rule** (`AdaptiveWatch`): every 1% of the run (`check_steps`), the level of the recorded norm (l1 for Adam-type
  optimizers) is the median of its last `window` steps (τ·T, auto's median window). The run switches to "cooldown"
  at the first check where the level is at least `rise` times the lowest level seen at any earlier check, and the
  norm did not start steeply (its smoothed first value below `refinements.CALM_START` times that lowest level, as
  `auto` requires). With no switch by `decide_by` of the run the decision is "linear". The evidence behind the
  defaults is in benchmarks/results/lm_study/results.md (LMs) and benchmarks/results/convex/results.md.

numpy only. The plan holds only primitives, so a scheduler that carries it checkpoints it (weights-only safe).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .methods import COOLDOWN_OPTIONS, Option, check_fraction
from .refine import DEFAULT_TAU, filter_width
from .refinements import (CALM_START, EARLY_BY, RISE_UNDER_DECAY, check_steps, trailing_level,
                          valid_norms)

__all__ = ["ADAPT_OPTIONS", "AdaptivePlan", "AdaptiveWatch", "Reading", "check_adapt_options", "describe_adaptive",
           "describe_decision"]

#: The rise that means the LM regime: `auto`'s (`refinements.RISE_UNDER_DECAY`). At 1.25 one seed of ten on one convex
#: problem (vehicle) switched; at 1.3 none did, and the LMs switch one to three checks later (adaptive_rule.md).
RISE_TO_SWITCH = RISE_UNDER_DECAY
DECIDE_BY = EARLY_BY  # `refinements.early_rise` reads the same span from a recorded run (what this would decide)
STARTS = ("linear", "stable")
SWITCHES = ("hold", "peak")


def _choice(choices):
    def check(value, *, name: str):
        if value not in choices:
            raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
        return value
    return check


def _rise(value, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 1:
        raise ValueError(f"`{name}` must be a number > 1 (the norm's rise over its lowest level that means the LM "
                         f"regime), got {value!r}; the default is {RISE_TO_SWITCH}.")
    return float(value)


#: The options of `adapt` (`lr_scheduler_kwargs={"adapt": true, "adapt_options": {...}}`), with their defaults.
ADAPT_OPTIONS = {
    "start": Option("linear", _choice(STARTS), "linear: linear decay until a switch (exact linear decay without "
                    "one); stable: the peak held until a switch or the deadline"),
    "switch": Option("peak", _choice(SWITCHES), "after a switch from linear decay: return to the peak LR (over the "
                     "warm-up's length), or hold the LR it had"),
    **COOLDOWN_OPTIONS,
    "decide_by": Option(DECIDE_BY, check_fraction, "the latest switch, as a fraction of the run"),
    "rise": Option(RISE_TO_SWITCH, _rise, "the rise of the norm over its lowest level that means the LM regime"),
}


def check_adapt_options(options, *, name: str = "adapt_options") -> dict:
    """Every adapt option, validated, defaults filled; the deadline must come before the cooldown starts."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"`{name}` must be an object of adapt's parameters, got {options!r:.60}.")
    unknown = sorted(set(options) - set(ADAPT_OPTIONS), key=str)
    if unknown:
        allowed = ", ".join(f"{key} ({option.help})" for key, option in ADAPT_OPTIONS.items())
        raise ValueError(f"`{name}` has {unknown}, which adapt does not take; its parameters: {allowed}.")
    checked = {key: option.default for key, option in ADAPT_OPTIONS.items()}
    checked.update({key: ADAPT_OPTIONS[key].check(value, name=f"{name}['{key}']") for key, value in options.items()})
    if checked["decide_by"] > 1 - checked["fraction"]:
        raise ValueError(f"`{name}`: decide_by {checked['decide_by']:g} falls after the cooldown's start (the last "
                         f"{checked['fraction']:g} of the run); choose decide_by <= {1 - checked['fraction']:g}.")
    return checked


@dataclass(frozen=True)
class AdaptivePlan:
    """The schedule of an adaptive run: options, and the decision once taken (see the module docstring)."""

    num_steps: int
    warmup: int
    start: str = ADAPT_OPTIONS["start"].default
    switch: str = ADAPT_OPTIONS["switch"].default
    fraction: float = ADAPT_OPTIONS["fraction"].default
    shape: str = ADAPT_OPTIONS["shape"].default
    decide_by: float = ADAPT_OPTIONS["decide_by"].default
    rise: float = ADAPT_OPTIONS["rise"].default
    decision: str | None = None  # None (not yet), "cooldown" or "linear"
    decided_at: int | None = None  # the first step that follows the decision

    @classmethod
    def from_options(cls, num_steps: int, warmup: int, options: dict) -> AdaptivePlan:
        return cls(int(num_steps), int(warmup), **check_adapt_options(options))

    def state(self) -> dict:
        return asdict(self)

    @property
    def cooldown_start(self) -> int:
        return max(self.warmup, self.num_steps - max(1, round(self.fraction * self.num_steps)))

    @property
    def deadline(self) -> int:
        """The last step at which the run may still switch."""
        return min(int(self.decide_by * self.num_steps), self.cooldown_start)

    def decided(self, decision: str, step: int) -> AdaptivePlan:
        return replace(self, decision=decision, decided_at=int(step))

    def _undecided(self, step: int) -> float:
        if self.start == "stable":
            return 1.0
        return max(0.0, (self.num_steps - step) / max(1, self.num_steps - self.warmup))

    def _held(self, step: int) -> float:
        """The level held after a switch to "cooldown" (before the cooldown itself)."""
        if self.start == "stable":
            return 1.0
        at_switch = self._undecided(self.decided_at)
        if self.switch == "hold":
            return at_switch
        ramp = max(1, self.warmup)
        return min(1.0, at_switch + (1.0 - at_switch) * (step - self.decided_at) / ramp)

    def multiplier(self, step: int) -> float:
        """The LR multiplier of optimizer step `step` (0-based)."""
        if step < self.warmup:
            return float(step) / float(max(1, self.warmup))
        if self.decision is None or step < self.decided_at:
            return self._undecided(step)
        if self.decision == "linear":
            if self.start == "linear":
                return self._undecided(step)
            return max(0.0, (self.num_steps - step) / max(1, self.num_steps - self.decided_at))
        start = self.cooldown_start
        if step < start:
            return self._held(step)
        progress = (step - start) / max(1, self.num_steps - start)
        factor = 1.0 - (math.sqrt(progress) if self.shape == "1-sqrt" else progress)
        return max(0.0, self._held(start) * factor)

    def multipliers(self) -> np.ndarray:
        return np.array([self.multiplier(step) for step in range(self.num_steps)], dtype=np.float64)

    def describe(self) -> str:
        """The plan in words: what the run follows (or has followed), one phrase."""
        warmup = f"a {self.warmup}-step warm-up, then " if self.warmup else ""
        before = "linear decay" if self.start == "linear" else "the peak LR held"
        if self.decision is None:
            return f"{warmup}{before} until step {self.deadline} at the latest"
        if self.decision == "linear":
            if self.start == "linear":
                return f"{warmup}linear decay to zero (no switch)"
            return f"{warmup}the peak LR held, then linear decay to zero from step {self.decided_at}"
        if self.start == "stable":
            held = "the peak LR held"
        elif self.switch == "hold":
            held = (f"linear decay until step {self.decided_at}, then its LR held "
                    f"({self._undecided(self.decided_at):.2f} of the peak)")
        else:
            held = f"linear decay until step {self.decided_at}, then back to the peak LR and held"
        return (f"{warmup}{held}, then a {self.shape} cooldown over the last {self.fraction:.0%} of the run (from step "
                f"{self.cooldown_start})")


@dataclass(frozen=True)
class Reading:
    """What the rule read at a check: the norm's first smoothed value and its level now, each over the lowest level
    seen at a check so far, and the step of that lowest level."""

    step: int
    start: float
    rise: float
    lowest_at: int

    def shows_lm_regime(self, rise: float) -> bool:
        return self.start < CALM_START and self.rise >= rise


class AdaptiveWatch:
    """The rule, fed the record as it grows: `reading(norms, skipped, step)` at each check step.

    Levels at earlier check steps are cached; after a resume they are computed again from the restored record, so an
    interrupted run reads exactly what an uninterrupted one read.
    """

    def __init__(self, plan: AdaptivePlan, tau: float = DEFAULT_TAU):
        self.plan = plan
        self.window = filter_width(plan.num_steps, tau)
        self._levels: dict[int, float] = {}
        self._start: float | None = None

    def check_steps(self, upto: int) -> range:
        """The steps up to `upto` at which the rule reads the record (a full window behind, by the deadline)."""
        return check_steps(self.plan.num_steps, self.window, min(upto, self.plan.deadline))

    @property
    def final_check(self) -> int:
        """The step of the last check: the decision is taken there at the latest (the deadline itself when the run
        is too short for a full window before it)."""
        steps = self.check_steps(self.plan.deadline)
        return steps[-1] if len(steps) else self.plan.deadline

    def is_check(self, step: int) -> bool:
        return step == self.final_check or step in self.check_steps(step)

    def _first(self, norms, skipped) -> float:
        """auto's smoothed first value: the centred median window at step 0, padded by repeating the first value."""
        half = self.window // 2
        valid = valid_norms(norms[: half + 1], skipped[: half + 1])
        if not valid.size:
            return math.nan
        return float(np.median(np.concatenate([np.full(half, valid[0]), valid])))

    def reading(self, norms, skipped, step: int) -> Reading:
        """What the rule reads at check `step` from the record's first `step` steps (`norms`, `skipped`)."""
        norms, skipped = np.asarray(norms, dtype=np.float64), np.asarray(skipped, dtype=bool)
        if len(norms) < step:
            raise ValueError(f"the record has {len(norms)} steps; the check at step {step} needs all of them.")
        if self._start is None and step >= self.window // 2 + 1:
            self._start = self._first(norms, skipped)
        for check in self.check_steps(step):
            if check not in self._levels:
                self._levels[check] = trailing_level(norms, skipped, check, self.window)
        earlier = {check: level for check, level in self._levels.items() if check <= step and not math.isnan(level)}
        if not earlier or self._start is None:
            return Reading(step, math.nan, math.nan, step)
        lowest_at = min(earlier, key=lambda check: (earlier[check], check))
        lowest = earlier[lowest_at]
        return Reading(step, self._start / lowest, earlier.get(step, math.nan) / lowest, lowest_at)

    def decide(self, norms, skipped, step: int, next_step: int | None = None) -> tuple[AdaptivePlan | None, Reading]:
        """At check `step` (the record holds steps 0 .. step-1): the plan with its decision, applied from `next_step`
        (the scheduler's next step; `step` unless optimizer steps were skipped), if the run switches now or has
        reached its final check; else `None`."""
        reading = self.reading(norms, skipped, step)
        next_step = step if next_step is None else next_step
        if reading.shows_lm_regime(self.plan.rise):
            return self.plan.decided("cooldown", next_step), reading
        if step >= self.final_check:
            return self.plan.decided("linear", next_step), reading
        return None, reading


def describe_decision(plan: AdaptivePlan, reading: Reading | None, norm: str) -> str:
    """Why the run decided as it did, one phrase (from what the rule read)."""
    if plan.decision is None:
        return "no decision yet"
    if reading is None or math.isnan(reading.rise):
        return f"no full {norm} window was recorded by the deadline, so no LM regime could show"
    if plan.decision == "cooldown":
        return (f"the {norm} norm rose {reading.rise:.2f}x over its lowest level (at step {reading.lowest_at}), as in "
                "LLM pretraining")
    if reading.start >= CALM_START:
        return (f"the {norm} norm started {reading.start:.0f}x above its lowest level (a steep start, not the LM "
                "regime)")
    return (f"the {norm} norm did not rise ({reading.rise:.2f}x its lowest level by step {reading.step}; "
            f"{plan.rise:g}x means the LM regime)")


def describe_adaptive(adaptive: dict) -> str:
    """An adaptive run's schedule file's `adaptive` metadata in words: what it followed and why."""
    plan = AdaptivePlan(**adaptive["plan"])
    reading = adaptive.get("reading")
    reading = Reading(**reading) if reading else None
    if plan.decision is None:
        return f"adaptive run, stopped before its decision: {plan.describe()}"
    at = f"decided at step {plan.decided_at} ({100 * plan.decided_at / plan.num_steps:.0f}%)"
    return (f"adaptive run ({plan.start} start), {at}: {describe_decision(plan, reading, adaptive.get('norm', 'l1'))}; "
            f"followed {plan.describe()}")
