"""The `linear_refined` learning-rate schedule, written the way transformers writes its own schedules.

Without a schedule file: transformers' `linear` lambda (`functools.partial` of a module-level function, `LambdaLR`).
With one: a `RefinedMultipliers` lambda whose attributes (the multipliers, their source and digest) are part of the
scheduler's `state_dict()` (LambdaLR saves a callable object's `__dict__`), so every checkpoint pins the schedule the
run started with; the multipliers are a float64 tensor, which the Trainer's weights-only `scheduler.pt` load accepts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import partial

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .methods import build_schedule, check_method
from .norms import check_norm
from .refine import check_power, check_tau
from .schedule_file import load_schedule_file
from .shapes import resample_schedule

logger = logging.getLogger(__name__)

def _check_path(value, *, name: str) -> str:
    try:
        return os.fspath(value)
    except TypeError:
        raise ValueError(f"`{name}` must be a path (str or os.PathLike), got {value!r}.") from None


def _check_flag(value, *, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false, got {value!r}.")
    return value


#: Keys accepted in `lr_scheduler_kwargs` for `linear_refined`, and their validators. `record_norms` (default true)
#: is read by `hf_linear_decay.activation`: false stops pass 1 from recording the norms automatically.
SCHEDULER_KWARGS = {"schedule_file": _check_path, "method": check_method, "norm": check_norm, "tau": check_tau,
                    "power": check_power, "record_norms": _check_flag}


def check_scheduler_kwargs(kwargs: dict | None) -> dict:
    """Validate `lr_scheduler_kwargs` for linear_refined; returns them normalised (paths as `str`)."""
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - set(SCHEDULER_KWARGS))
    if unknown:
        raise ValueError(f"`lr_scheduler_kwargs` for linear_refined got unknown keys {unknown}; allowed keys are "
                         f"{list(SCHEDULER_KWARGS)}, e.g. '{{\"schedule_file\": \"run1/refined_schedule.safetensors\"}}'.")
    checked = {key: SCHEDULER_KWARGS[key](value, name=f"lr_scheduler_kwargs['{key}']")
               for key, value in kwargs.items() if value is not None}
    if "schedule_file" not in checked and set(checked) & {"method", "norm", "tau", "power"}:
        raise ValueError("`lr_scheduler_kwargs` keys `method`, `norm`, `tau` and `power` re-refine a schedule file's "
                         "record; also pass `schedule_file`, or drop them for plain linear decay.")
    return checked


def _linear_lr_lambda(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    # Identical to transformers' `linear`: ramp over the warm-up, then decay to 0 at `num_training_steps`.
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


class RefinedMultipliers:
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


class LinearRefinedLR(LambdaLR):
    """`LambdaLR` that, when a checkpoint is loaded, keeps the checkpoint's schedule and says if the file changed."""

    def load_state_dict(self, state_dict):
        current = self.lr_lambdas[0]
        current_digest = getattr(current, "sha256", None)
        super().load_state_dict(state_dict)
        restored = self.lr_lambdas[0]
        if isinstance(restored, RefinedMultipliers) and restored.sha256 != current_digest:
            logger.warning(
                "linear_refined: resuming with the schedule pinned in the checkpoint (from %s, sha256 %s...); the "
                "schedule file %s now gives a different schedule (sha256 %s...): it was replaced or refined again "
                "after this run started. The run keeps the checkpoint's schedule; start a new run to use the new file.",
                restored.source, restored.sha256[:12], current.source, (current_digest or "none")[:12])


def load_refined_multipliers(schedule_file, num_training_steps: int, **overrides) -> torch.Tensor:
    """The file's refined multipliers (refined again from its record if `overrides` are given), resampled to
    `num_training_steps` by training progress."""
    schedule = load_schedule_file(schedule_file)
    if overrides:  # the file's author already accepted its record, so a diverged one is not refused again here
        schedule = build_schedule(schedule.record, schedule.settings.updated(**overrides), force=True)
    if schedule.num_steps != num_training_steps:
        logger.warning("linear_refined: the schedule in %s has %d steps; resampling it to this run's %d steps by "
                       "training progress.", os.fspath(schedule_file), schedule.num_steps, num_training_steps)
    return torch.from_numpy(resample_schedule(schedule.multipliers, num_training_steps))


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
        method, norm, tau, power (*optional*): refine again on the fly from the file's record with these settings
            instead of using its stored multipliers (see `hf_linear_decay.methods.RefinementSettings`).

    Example (as a Trainer scheduler type, after `import hf_linear_decay`):
        ```python
        TrainingArguments(..., lr_scheduler_type="linear_refined",
                          lr_scheduler_kwargs={"schedule_file": "run1/refined_schedule.safetensors"})
        ```
    """
    kwargs = check_scheduler_kwargs(scheduler_kwargs)
    kwargs.pop("record_norms", None)
    if num_training_steps is None or num_training_steps < 1:
        raise ValueError(f"linear_refined requires `num_training_steps` >= 1, got {num_training_steps!r}.")
    if "schedule_file" not in kwargs:
        lr_lambda = partial(_linear_lr_lambda, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
        return LambdaLR(optimizer, lr_lambda, last_epoch)
    path = kwargs.pop("schedule_file")
    multipliers = load_refined_multipliers(path, num_training_steps, **kwargs)
    return LinearRefinedLR(optimizer, RefinedMultipliers(multipliers, num_warmup_steps, path), last_epoch)
