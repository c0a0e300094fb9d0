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

from . import refinements

__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "Option", "check_method", "check_method_options"]


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


def check_fraction(value, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a fraction of the run in (0, 1), got {value!r}.")
    return float(value)


def _cooldown_shape(value, *, name: str) -> str:
    if value not in refinements.COOLDOWN_SHAPES:
        raise ValueError(f"`{name}` must be one of {list(refinements.COOLDOWN_SHAPES)}, got {value!r}.")
    return value


COOLDOWN_OPTIONS = {
    "fraction": Option(refinements.COOLDOWN_FRACTION, check_fraction, "the cooldown's share of the run"),
    "shape": Option("1-sqrt", _cooldown_shape, "the cooldown's shape: 1-sqrt or linear"),
}

#: Method name -> row. The default is the method `RefinementCallback` and `hf-linear-decay refine` use.
METHODS = {
    "auto": Method("auto", refinements.auto_method, "cooldown where the norms rise as pass 1's LR decays (LMs), else "
                   "guarded", COOLDOWN_OPTIONS),
    "paper": Method("paper", refinements.paper_method, "the paper's Alg. 1/2 exactly"),
    "guarded": Method("guarded", refinements.guarded_method, "pass 1's schedule, plus a warm-up when the norms start "
                      "steeply"),
    "cooldown": Method("cooldown", refinements.cooldown_method, "pass 1's warm-up, its peak held, then a cooldown "
                       "(WSD)", COOLDOWN_OPTIONS),
    "followed": Method("followed", refinements.followed_method, "the schedule pass 1 followed, exactly (what an "
                       "adaptive run writes)"),
}
DEFAULT_METHOD = "auto"


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
