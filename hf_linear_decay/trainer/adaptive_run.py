"""The recorder's side of an adaptive run (`lr_scheduler_kwargs={"adapt": true}`): read, decide, switch, say so.

At each check step (`core.adaptive.AdaptiveWatch`) the recorder copies its pending norms to the host (one batched
copy, as at logging steps), reads its record, and, when the rule decides, hands the new plan to the scheduler's
`AdaptiveLambda` and sets the LR of the step about to run from it. Every rank reads the same global norms and takes
the same decision; the ranks compare their decisions at each check (one small all-gather) and stop the run if they
ever differ, as they do for the records. The plan lives in the scheduler's state, so a checkpoint keeps the decision
and a resumed run (even on another world size) continues with exactly the LRs of an uninterrupted one.
"""

from __future__ import annotations

import logging

import numpy as np

from ..core.adaptive import AdaptivePlan, AdaptiveWatch, Reading, describe_adaptive, describe_decision
from ..core.schedule import RefinedSchedule
from ..core.settings import RefinementSettings
from .distributed import first_disagreeing_rank
from .messages import say
from .scheduler import AdaptiveLambda, adaptive_lambda_of, apply_current_lr

logger = logging.getLogger(__name__)

_CODES = {None: 0, "cooldown": 1, "linear": 2}


class AdaptiveRun:
    """Checks of one adaptive run: `at_step_end` after every optimizer step; `adaptive` is what the file stores."""

    def __init__(self, lr_lambda: AdaptiveLambda, norm: str, tau: float):
        self.lr_lambda, self.norm, self.tau = lr_lambda, norm, tau
        self.watch = AdaptiveWatch(lr_lambda.current, tau)

    @property
    def reading(self) -> Reading | None:
        """What the rule read when it decided (kept in the scheduler's state, so a resumed run still knows)."""
        return Reading(**self.lr_lambda.reading) if self.lr_lambda.reading else None

    @property
    def plan(self) -> AdaptivePlan:
        return self.lr_lambda.current

    def due(self, step: int) -> bool:
        return self.plan.decision is None and self.watch.is_check(step)

    def at_step_end(self, record, step: int, scheduler) -> None:
        """At a check `step` (`record` holds steps 0 .. step-1 on the host): decide, and switch if the rule says so."""
        plan, reading = self.watch.decide(record.norms(self.norm), record.skipped, step, next_step=scheduler.last_epoch)
        decision = np.array([_CODES[plan.decision if plan else None], plan.decided_at if plan else -1], dtype=float)
        rank = first_disagreeing_rank(decision)
        if rank is not None:
            raise RuntimeError(f"linear_refined (adapt): rank {rank} took another decision than rank 0 at step {step} "
                               "(the ranks' gradient norms differ); the run would train with different LRs per rank. "
                               "Please report the backend and configuration.")
        if plan is None:
            return
        self.lr_lambda.adopt(plan, {key: getattr(reading, key) for key in ("step", "start", "rise", "lowest_at")})
        apply_current_lr(scheduler)
        if plan.decision == "cooldown" or plan.start == "stable":  # a switch (linear decay going on is none)
            say(logger, "%s", switch_line(plan, reading, self.norm, step))

    def followed_schedule(self, record) -> RefinedSchedule:
        """What the run followed, as a schedule file holds it (method "followed", with the plan and the reading);
        raises `ValueError` before the run completed."""
        if len(record) != self.plan.num_steps:
            raise ValueError(f"the run stopped at step {len(record)} of its {self.plan.num_steps}: an adaptive run "
                             "writes the schedule it followed when it completes (its plan and decision are in the "
                             "checkpoint's scheduler state meanwhile).")
        settings = RefinementSettings(method="followed", norm=self.norm, tau=self.tau).resolved(record)
        return RefinedSchedule(record=record, multipliers=self.plan.multipliers(), settings=settings,
                               explanation=describe_adaptive(self.adaptive()), adaptive=self.adaptive())

    def adaptive(self) -> dict:
        """What the schedule file keeps: the plan (with its decision) and what the rule read when it decided."""
        return {"plan": self.plan.state(), "norm": self.norm, "reading": self.lr_lambda.reading}


def adaptive_run_of(scheduler, settings) -> AdaptiveRun | None:
    """The checks of an adaptive run whose scheduler is `scheduler` (reading the norm of `settings`, resolved for the
    run), or None when the scheduler does not adapt."""
    lr_lambda = adaptive_lambda_of(scheduler)
    return None if lr_lambda is None else AdaptiveRun(lr_lambda, settings.norm, settings.tau)


def switch_line(plan: AdaptivePlan, reading: Reading, norm: str, step: int) -> str:
    """The one line an adaptive run says when it switches (the README shows one from the main job)."""
    return (f"linear_refined: adapting at step {step} of {plan.num_steps} ({100 * step / plan.num_steps:.0f}%): "
            f"{describe_decision(plan, reading, norm)}; now {plan.describe()}.")
