"""The `linear_refined` learning-rate schedule, written the way transformers writes its own schedules.

A module-level lambda with keyword-only arguments, bound with `functools.partial` and wrapped in `LambdaLR`: no
closures, so the scheduler pickles, and its `state_dict()` holds only plain Python values: the Trainer reloads
`scheduler.pt` in weights-only mode, which refuses numpy arrays, so the multipliers are kept as a list of floats.
"""

from __future__ import annotations

import logging
import os
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .refine import resample_schedule
from .schedule_file import load_schedule_file

logger = logging.getLogger(__name__)

#: Keys accepted in `lr_scheduler_kwargs` for `linear_refined`.
SCHEDULER_KWARGS = ("schedule_file", "tau", "norm", "power")


def _linear_refined_lr_lambda(
    current_step: int, *, num_warmup_steps: int, num_training_steps: int, multipliers: list[float] | None
) -> float:
    if multipliers is None:
        # Identical to transformers' `linear`: ramp over the warm-up, then decay to 0 at `num_training_steps`.
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
    multiplier = multipliers[min(current_step, len(multipliers) - 1)]
    if current_step < num_warmup_steps:
        multiplier *= float(current_step) / float(max(1, num_warmup_steps))
    return multiplier


def load_refined_multipliers(
    schedule_file, num_training_steps: int, *, tau: float | None = None, norm: str | None = None,
    power: float | None = None,
) -> list[float]:
    """The file's refined multipliers, optionally re-refined from its raw norms, resampled to `num_training_steps`."""
    schedule = load_schedule_file(schedule_file)
    if tau is not None or norm is not None or power is not None:
        schedule = schedule.refined_again(tau=tau, norm=norm, power=power)
    if schedule.num_steps != num_training_steps:
        logger.warning(
            "linear_refined: the schedule in %s has %d steps; resampling it to this run's %d steps by training progress.",
            os.fspath(schedule_file), schedule.num_steps, num_training_steps,
        )
    return [float(value) for value in resample_schedule(schedule.multipliers, num_training_steps)]


def get_linear_refined_schedule(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    last_epoch: int = -1,
    schedule_file: str | os.PathLike | None = None,
    tau: float | None = None,
    norm: str | None = None,
    power: float | None = None,
    **unexpected,
) -> LambdaLR:
    """Linear decay to zero, or the gradient-norm-refined schedule of arXiv 2310.07831 when `schedule_file` is given.

    Without `schedule_file` the learning rate is exactly transformers' `linear` schedule (a linear warm-up over
    `num_warmup_steps`, then linear decay to 0), the paper's worst-case-optimal schedule. With a schedule file, the
    learning rate at step t is ``base_lr * η_t``, where η is the file's refined schedule (peak 1, last 0) resampled to
    `num_training_steps` by training progress; `num_warmup_steps > 0` multiplies an extra linear ramp on top
    (the refinement usually produces its own warm-up, so 0 is the natural choice).

    Args:
        optimizer (`torch.optim.Optimizer`): the optimizer whose learning rate to schedule.
        num_warmup_steps (`int`): steps of the extra linear ramp.
        num_training_steps (`int`): total optimizer steps of this run.
        last_epoch (`int`, *optional*, defaults to -1): index of the last epoch when resuming.
        schedule_file (`str` or `os.PathLike`, *optional*): a `refined_schedule.safetensors` file written by
            `RefinementCallback` or `hf-linear-decay refine`.
        tau, norm, power (*optional*): re-refine on the fly from the file's raw norms with these settings instead of
            using its stored multipliers (see `hf_linear_decay.refine.refine`).

    Return:
        `torch.optim.lr_scheduler.LambdaLR` with the appropriate schedule.

    Example (as a Trainer scheduler type, after `import hf_linear_decay`):
        ```python
        TrainingArguments(..., lr_scheduler_type="linear_refined",
                          lr_scheduler_kwargs={"schedule_file": "run1/refined_schedule.safetensors"})
        ```
    """
    if unexpected:
        raise ValueError(
            f"`lr_scheduler_kwargs` for linear_refined got unknown keys {sorted(unexpected)}; allowed keys are "
            f"{list(SCHEDULER_KWARGS)}, e.g. '{{\"schedule_file\": \"refined_schedule.safetensors\"}}'."
        )
    if num_training_steps is None or num_training_steps < 1:
        raise ValueError(f"linear_refined requires `num_training_steps` >= 1, got {num_training_steps!r}.")
    if schedule_file is None and (tau is not None or norm is not None or power is not None):
        raise ValueError(
            "`lr_scheduler_kwargs` keys `tau`, `norm` and `power` re-refine a schedule file's norms; also pass "
            "`schedule_file`, or drop them for plain linear decay."
        )
    multipliers = None
    if schedule_file is not None:
        multipliers = load_refined_multipliers(schedule_file, num_training_steps, tau=tau, norm=norm, power=power)
    lr_lambda = partial(
        _linear_refined_lr_lambda,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        multipliers=multipliers,
    )
    return LambdaLR(optimizer, lr_lambda, last_epoch)
