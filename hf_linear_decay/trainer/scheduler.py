"""The `linear_refined` learning-rate schedule, written the way transformers writes its own schedules.

Without a schedule file: transformers' `linear` lambda (`functools.partial` of a module-level function, `LambdaLR`).
With one: a `MultiplierLambda` lambda whose attributes (the multipliers, their source and digest) are part of the
scheduler's `state_dict()` (LambdaLR saves a callable object's `__dict__`), so every checkpoint pins the schedule the
run started with; the multipliers are a float64 tensor, which the Trainer's weights-only `scheduler.pt` load accepts.
With `adapt`: an `AdaptiveLambda`, whose plan (`core.adaptive.AdaptivePlan`, primitives only) is its one attribute, so
a checkpoint keeps what the run decided; the recorder (`trainer.adaptive_run`) hands it the decision.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..core.adaptive import AdaptivePlan
from ..core.shapes import resample_schedule
from .messages import say
from .scheduler_kwargs import prepared_for

logger = logging.getLogger(__name__)


def _linear_lr_lambda(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    # Identical to transformers' `linear`: ramp over the warm-up, then decay to 0 at `num_training_steps`.
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


class MultiplierLambda:
    """LR multiplier of step t: ``multipliers[t]`` (times a linear ramp during `num_warmup_steps`)."""

    def __init__(self, multipliers: torch.Tensor, num_warmup_steps: int, source: str):
        self.multipliers = multipliers
        self.num_warmup_steps = int(num_warmup_steps)
        self.source = source
        self.sha256 = hashlib.sha256(multipliers.numpy().tobytes()).hexdigest()

    def __call__(self, current_step: int) -> float:
        multiplier = float(self.multipliers[min(current_step, len(self.multipliers) - 1)])
        if current_step < self.num_warmup_steps:
            multiplier *= float(current_step) / float(max(1, self.num_warmup_steps))
        return multiplier


class AdaptiveLambda:
    """LR multiplier of step t in an adaptive run: ``plan.multiplier(t)``. The plan, and what the rule read when it
    decided, are kept as plain values: the scheduler's checkpoint holds them."""

    def __init__(self, plan: AdaptivePlan):
        self.plan = plan.state()
        self.reading = None

    @property
    def current(self) -> AdaptivePlan:
        return AdaptivePlan(**self.plan)

    def adopt(self, plan: AdaptivePlan, reading: dict | None = None) -> None:
        self.plan, self.reading = plan.state(), reading

    def __call__(self, current_step: int) -> float:
        return self.current.multiplier(current_step)


def adaptive_lambda_of(scheduler) -> AdaptiveLambda | None:
    """The `AdaptiveLambda` of a `linear_refined` scheduler with `adapt`, else None."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    return lambdas[0] if lambdas and isinstance(lambdas[0], AdaptiveLambda) else None


def apply_current_lr(scheduler) -> None:
    """Set every parameter group's LR from the scheduler's lambdas at its current step (after a plan changed): the
    value `scheduler.step()` set a moment ago, recomputed."""
    values = [base * lam(scheduler.last_epoch) for base, lam in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, value in zip(scheduler.optimizer.param_groups, values):
        group["lr"] = value
    scheduler._last_lr = values


class LinearRefinedLR(LambdaLR):
    """`LambdaLR` that, when a checkpoint is loaded, keeps the checkpoint's schedule (or adaptive plan) and notes in
    `kept_from_checkpoint` what it kept instead of what this run's arguments ask for; the run's one line about its
    schedule (`auto_recorder`) tells the user."""

    kept_from_checkpoint: dict | None = None

    def load_state_dict(self, state_dict):
        # LambdaLR.load_state_dict updates the lambda object in place: note what this run's arguments gave first.
        current = self.lr_lambdas[0]
        current_digest, current_source = getattr(current, "sha256", None), getattr(current, "source", None)
        current_plan = dict(getattr(current, "plan", {}))
        super().load_state_dict(state_dict)
        restored = self.lr_lambdas[0]
        if isinstance(restored, MultiplierLambda) and restored.sha256 != current_digest:
            self.kept_from_checkpoint = {"source": restored.source, "sha256": restored.sha256,
                                         "given": current_source, "given_sha256": current_digest}
        if isinstance(restored, AdaptiveLambda):
            asked = {key: value for key, value in current_plan.items() if key not in ("decision", "decided_at")}
            kept = {key: value for key, value in restored.plan.items() if key not in ("decision", "decided_at")}
            if asked and asked != kept:
                self.kept_from_checkpoint = {"plan": kept, "asked": asked}


def resumed_schedule_line(scheduler) -> str | None:
    """The one line for a resumed run whose checkpoint pinned another schedule than its arguments give, or None."""
    kept = getattr(scheduler, "kept_from_checkpoint", None)
    if kept is None:
        return None
    if "plan" in kept:
        return (f"linear_refined: resuming with the checkpoint's adaptive plan ({kept['plan']}); this run's arguments "
                f"ask for {kept['asked']}, which it does not follow: start a new run to change it.")
    return (f"linear_refined: resuming with the schedule pinned in the checkpoint (from {kept['source']}, sha256 "
            f"{kept['sha256'][:12]}...); {kept['given']} now holds another schedule (sha256 "
            f"{(kept['given_sha256'] or 'none')[:12]}...), replaced or refined again since this run started, which "
            "this run does not follow: start a new run to use it.")


def get_linear_refined_schedule(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                last_epoch: int = -1, **scheduler_kwargs) -> LambdaLR:
    """Linear decay to zero, or the gradient-norm-refined schedule of arXiv 2310.07831 when `schedule_file` is given.

    Without `schedule_file` the learning rate is exactly transformers' `linear` schedule (a linear warm-up over
    `num_warmup_steps`, then linear decay to 0), the paper's worst-case-optimal schedule. With a schedule file, the
    learning rate at step t is ``base_lr * η_t``, where η is the file's refined schedule (peak 1, last 0) resampled to
    `num_training_steps` by training progress; `num_warmup_steps > 0` multiplies an extra linear ramp on top (the
    refinement usually produces its own warm-up, so 0 is the natural choice). A resumed run keeps the schedule it
    started with, even if the file changed since (a warning names both).

    Args:
        optimizer (`torch.optim.Optimizer`): the optimizer whose learning rate to schedule.
        num_warmup_steps (`int`): steps of the (extra) linear ramp.
        num_training_steps (`int`): total optimizer steps of this run.
        last_epoch (`int`, *optional*, defaults to -1): index of the last epoch when resuming.
        schedule_file (`str` or `os.PathLike`, *optional*): a `refined_schedule.safetensors` file written by
            `RefinementCallback` or `hf-linear-decay refine`.
        method, norm, tau, power, method_options (*optional*): refine again on the fly from the file's record with
            these settings instead of using its stored multipliers (see `core.settings.RefinementSettings`).
        adapt (`bool`, *optional*), adapt_options (`dict`, *optional*): without a schedule file, adapt the schedule
            to the norms this run records (`core.adaptive`): linear decay (or a stable phase) that switches once to
            a hold and a cooldown where the norm rises as in LLM pretraining.

    Example (as a Trainer scheduler type, after `import hf_linear_decay`):
        ```python
        TrainingArguments(..., lr_scheduler_type="linear_refined",
                          lr_scheduler_kwargs={"schedule_file": "run1/refined_schedule.safetensors"})
        ```
    """
    if num_training_steps is None or num_training_steps < 1:
        raise ValueError(f"linear_refined requires `num_training_steps` >= 1, got {num_training_steps!r}.")
    prepared = prepared_for(scheduler_kwargs)  # validated (and the file read) at Trainer construction, when built there
    if prepared.options.adapt is not None:
        plan = AdaptivePlan.from_options(num_training_steps, num_warmup_steps, prepared.options.adapt)
        return LinearRefinedLR(optimizer, AdaptiveLambda(plan), last_epoch)
    if prepared.schedule is None:
        lr_lambda = partial(_linear_lr_lambda, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
        return LambdaLR(optimizer, lr_lambda, last_epoch)
    schedule, path = prepared.schedule, prepared.options.schedule_file
    if schedule.num_steps != num_training_steps and not prepared.in_trainer:  # a Trainer's run says it in its line
        say(logger, "linear_refined: the schedule in %s has %d steps; resampling it to this run's %d steps by training "
            "progress.", path, schedule.num_steps, num_training_steps)
    multipliers = torch.from_numpy(resample_schedule(schedule.multipliers, num_training_steps))
    return LinearRefinedLR(optimizer, MultiplierLambda(multipliers, num_warmup_steps, path), last_epoch)
