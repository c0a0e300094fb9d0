"""`AutoRecorder`: what `lr_scheduler_type="linear_refined"` alone does to any Trainer, no code change needed.

Registration puts this callback in transformers' `DEFAULT_CALLBACKS`, so every Trainer built after
`import hf_linear_decay` (and every stock script under `python -m hf_linear_decay.run`) has one. It does nothing
unless the run uses `linear_refined` through the Trainer's own scheduler; then:

- at Trainer construction (`on_init_end`) it validates `lr_scheduler_kwargs` and reads the schedule file once
  (`scheduler_kwargs.prepare`; the scheduler the Trainer builds later reuses what was read), so a typo or a bad path
  fails before data and model preparation, and stores an `os.PathLike` path as `str` (JSON-serialisable);
- pass 1 (no `schedule_file`): at `on_train_begin` it adds a `RefinementCallback`, which records the norms and writes
  `output_dir/refined_schedule.safetensors`; not if one was given in `callbacks=` (that one takes precedence) or
  `lr_scheduler_kwargs={"record_norms": false}`. Pass 2 records too with `{"record_norms": true}`;
- pass 2 (`schedule_file`): at `on_train_begin` it says, once on the main process, which schedule the run follows,
  and compares this run with the run that recorded the file, one warning per difference (see `run_differences`).
"""

from __future__ import annotations

import logging
import os

from transformers.trainer_callback import TrainerCallback

from ..core.describe import compare_with_pass_one, describe_schedule
from ..core.norms import norm_for_optimizer
from ..core.record import RunInfo
from .binding import find_trainer, run_info
from .messages import say
from .scheduler_kwargs import prepare, uses_linear_refined

logger = logging.getLogger(__name__)


def describe_pass_two(schedule) -> str:
    """What pass 2 follows, in words; a schedule that keeps or repeats pass 1's also says why the refinement chose it
    (the method's own explanation, computed again: a file does not store it)."""
    from ..core.schedule import build_schedule

    text = describe_schedule(schedule)
    if schedule.adaptive is None and schedule.method != "followed" and compare_with_pass_one(schedule).repeats:
        explanation = build_schedule(schedule.record, schedule.settings, force=True).explanation
        text += f"; why: {explanation}" if explanation else ""
    return text


def _batch(run: RunInfo) -> str:
    processes = "process" if run.world_size == 1 else "processes"
    return (f"global batch {run.global_batch_size} ({run.per_device_train_batch_size} per device × "
            f"{run.gradient_accumulation_steps} accumulation × {run.world_size} {processes})")


def run_differences(recorded: RunInfo, current: RunInfo) -> list[str]:
    """One line per difference between the run that recorded a schedule and this one that matters, saying why.

    What changes the gradient-norm profile, and so the fit of a refined schedule: the global batch (gradient noise),
    the optimizer family (which norm describes it), clipping, and precision (fp16 overflow steps). The split of one
    global batch into processes and accumulation steps, the optimizer's exact class within a family, or the peak LR
    (which the paper re-tunes for pass 2) do not, and get no line.
    """
    lines = []
    if None not in (recorded.global_batch_size, current.global_batch_size):
        if recorded.global_batch_size != current.global_batch_size:
            lines.append(f"{_batch(current)} here vs {_batch(recorded)} when recorded: the gradient noise, and so the "
                         "norm profile, depends on the global batch")
        # The same global batch split otherwise (processes x accumulation) changes nothing: not worth a line.
    if recorded.optimizer and current.optimizer and (norm_for_optimizer(recorded.optimizer)
                                                     != norm_for_optimizer(current.optimizer)):
        lines.append(f"optimizer {current.optimizer} here vs {recorded.optimizer} when recorded: another family (the "
                     "schedule was refined for the other optimizer's norm)")
    if recorded.max_grad_norm is not None and recorded.max_grad_norm != current.max_grad_norm:
        lines.append(f"max_grad_norm {current.max_grad_norm:g} here vs {recorded.max_grad_norm:g} when recorded: "
                     "clipping changes the training dynamics the norms describe")
    if recorded.precision and recorded.precision != current.precision:
        lines.append(f"precision {current.precision} here vs {recorded.precision} when recorded: fp16 adds overflow "
                     "steps, otherwise minor")
    return lines


class AutoRecorder(TrainerCallback):
    """See the module docstring. One per Trainer; inert for other scheduler types."""

    def __init__(self):
        self.prepared = None  # scheduler_kwargs.PreparedSchedule: kept alive so that the scheduler can reuse it
        self.recorder = None
        self.custom_scheduler = False

    def on_init_end(self, args, state, control, lr_scheduler=None, **kwargs):
        if not uses_linear_refined(args):
            return
        self.custom_scheduler = lr_scheduler is not None  # Trainer(optimizers=(opt, sched)) ignores the type
        self.prepared = prepare(args.lr_scheduler_kwargs, remember=True)
        if self.prepared.options.schedule_file is not None:
            # Stored as str (a Path breaks to_json_string); the scheduler's lookup key is the same either way.
            args.lr_scheduler_kwargs["schedule_file"] = self.prepared.options.schedule_file

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if not uses_linear_refined(args) or self.custom_scheduler or self.prepared is None:
            return
        from .scheduler import resumed_schedule_line

        schedule, path = self.prepared.schedule, self.prepared.options.schedule_file
        kept = resumed_schedule_line(lr_scheduler)
        if kept is not None:  # the run goes on with the checkpoint's schedule: that, and only that, is its story
            say(logger, kept)
        elif schedule is not None:
            resampled = (f", resampled from its {schedule.num_steps} steps to this run's {state.max_steps} by training "
                         "progress" if state.max_steps and schedule.num_steps != state.max_steps else "")
            say(logger, "linear_refined: following %s (%s)%s", path, describe_pass_two(schedule), resampled)
            for line in run_differences(schedule.run, run_info(args, optimizer, source="this run")):
                say(logger, "linear_refined: %s: %s", os.fspath(path), line)
        if self.recorder is not None or not self.prepared.options.records:
            return
        from .callback import RefinementCallback

        trainer, _ = find_trainer(self)
        handler = getattr(trainer, "callback_handler", None)
        if handler is None or any(isinstance(member, RefinementCallback) for member in handler.callbacks):
            return
        self.recorder = RefinementCallback(resume_without_record=self.prepared.options.resume_without_record)
        # The handler is iterating over its current list: add to a new list, and deliver this event by hand.
        handler.callbacks = handler.callbacks + [self.recorder]
        self.recorder.on_train_begin(args, state, control, optimizer=optimizer, lr_scheduler=lr_scheduler, **kwargs)
