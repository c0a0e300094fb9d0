"""Refinement methods: functions from a pass 1 record to a schedule shape, registered in one table.

A method is a `Method` row in `METHODS`: a function ``(record, settings) -> (multipliers, explanation)`` (peak 1,
last 0; the explanation says in one line what the method did and why, for the CLI and the end of pass 1), and the
parameters of its own (`options`, each with a default and a validator). Everything else follows the table: the
settings validate a method's options, the schedule file stores them (metadata `method_options`), the CLI takes them
as `--option NAME=VALUE`, `lr_scheduler_kwargs` and `RefinementCallback` as `method_options`. Adding a method is a
function and a row here. numpy/scipy only; the functions trust their settings (validated where they entered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .refine import refinement_of

__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "Option", "check_method", "check_method_options",
           "pass_one_shape"]


@dataclass(frozen=True)
class Option:
    """A parameter of one method: its default, a validator ``check(value, name=...) -> value``, and what it means."""

    default: object
    check: Callable
    help: str


@dataclass(frozen=True)
class Method:
    name: str
    function: Callable
    summary: str
    options: dict[str, Option] = field(default_factory=dict)


def paper_method(record, settings) -> tuple[np.ndarray, str]:
    """arXiv 2310.07831 Alg. 1/2 exactly: ``η_t ∝ ĝ_t^-p · Σ_{s>t} ĝ_s^-p`` from the median-filtered norms."""
    result = refinement_of(record.norms(settings.norm), settings.tau, settings.power, record.skipped)
    return result.multipliers, (f"the paper's refinement of the {settings.norm} norms (power {settings.power:g}, "
                                f"median window {result.filter_width} step{'s' * (result.filter_width != 1)})")


#: `guarded` adds a warm-up only when pass 1's smoothed norm started at least this many times above its settled level
#: (the median over the second half); the warm-up lasts until the norm falls below `SETTLED_WITHIN` times that level.
STEEP_START, SETTLED_WITHIN = 100.0, 1.5


def pass_one_shape(record) -> np.ndarray:
    """The schedule pass 1 ran (its recorded LRs over their peak, last step 0); linear decay if the LR is unknown."""
    lr = record.lr
    if "lr" in record.recorded and np.isfinite(lr).all() and lr.max() > 0:
        shape = lr / lr.max()
        shape[-1] = 0.0  # the Trainer's linear decay ends at 1/T; a schedule file ends at 0
        return shape
    return (len(record) - 1 - np.arange(len(record))) / max(1, len(record) - 1)


def settled_level(smoothed: np.ndarray) -> float:
    """The level a smoothed norm settled at: its median over the second half of the run."""
    return float(np.median(smoothed[len(smoothed) // 2:]))


def guarded_method(record, settings) -> tuple[np.ndarray, str]:
    """Pass 1's own schedule, plus a warm-up until the gradient norm settles if, and only if, it started steeply.

    The convex suite (`benchmarks/results/convex/results.md`) found the paper's schedule a large win where the norms
    fall by two orders of magnitude early in training (most of it from its long warm-up) and a loss elsewhere. So:
    with ĝ the paper's median-filtered norms and ĝ_∞ their median over the second half, if
    ``ĝ_0 ≥ STEEP_START · ĝ_∞`` the multipliers are pass 1's shape times a linear ramp that ends at the first step
    with ``ĝ_t < SETTLED_WITHIN · ĝ_∞``; otherwise pass 1's shape unchanged (usually linear decay). Never a
    faster-than-linear anneal, never a late peak.
    """
    smoothed = refinement_of(record.norms(settings.norm), settings.tau, settings.power, record.skipped).smoothed_norms
    shape = pass_one_shape(record)
    settled = settled_level(smoothed)
    start = smoothed[0] / settled
    if not start >= STEEP_START:
        return shape, (f"kept pass 1's schedule: the {settings.norm} norm started {start:.1f}x above its settled level "
                       f"and a warm-up needs {STEEP_START:g}x")
    ramp_end = max(1, int(np.argmax(smoothed < SETTLED_WITHIN * settled)))
    ramped = shape * np.minimum(1.0, np.arange(len(shape)) / ramp_end)
    return ramped / ramped.max(), (f"pass 1's schedule with a warm-up over {ramp_end} steps: the {settings.norm} "
                                   f"norm started {start:.0f}x above its settled level")


#: Method name -> row. The default is the method `RefinementCallback` and `hf-linear-decay refine` use.
METHODS = {
    "paper": Method("paper", paper_method, "the paper's Alg. 1/2 exactly"),
    "guarded": Method("guarded", guarded_method, "pass 1's schedule, plus a warm-up when the norms start steeply"),
}
DEFAULT_METHOD = "guarded"


def check_method(method, *, name: str = "method") -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"`{name}` must be one of {list(METHODS)}, got {name}={method!r}.")
    return method


def check_method_options(method: str, options, *, name: str = "method_options") -> dict:
    """Validate the options of `method` (a known method): a dict of its own parameters, each checked once."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"`{name}` must be a dict of {method!r}'s parameters, got {options!r}.")
    known = METHODS[method].options
    unknown = sorted(set(options) - set(known), key=str)
    if unknown:
        allowed = ", ".join(f"{key} ({option.help})" for key, option in known.items()) or "none"
        raise ValueError(f"`{name}` has {unknown}, which method {method!r} does not take; its parameters: {allowed}.")
    return {key: known[key].check(value, name=f"{name}['{key}']") for key, value in options.items()}
