"""`RefinementCallback`: record per-step gradient norms during training and write the refined schedule file."""

from __future__ import annotations

import logging
import os

import torch
from transformers.trainer_callback import ExportableState, TrainerCallback

from .distributed import first_disagreeing_rank
from .grad_norms import gradient_norms
from ..core.methods import DEFAULT_METHOD
from ..core.schedule import RefinedSchedule, build_schedule
from ..core.settings import RefinementSettings
from ..core.norms import NORM_TYPES, TRAINER_NORM
from ..core.record import NormRecord
from ..core.refine import DEFAULT_TAU
from ..files.schedule_file import RECORD_FILE_NAME, SCHEDULE_FILE_NAME, save_record_file, save_schedule_file
from ..files.checkpoint_record import pointer_attributes
from .binding import (add_last_word, bind_trainer, checkpoint_being_saved, find_trainer, other_recorders, run_info,
                      watch_zero_step, zero_optimizer_of)
from .adaptive_run import adaptive_run_of
from .messages import Once, say, wrote_line
from .resume import remove_stale_temporaries_of_run, resumed_record

logger = logging.getLogger(__name__)



class RefinementCallback(TrainerCallback, ExportableState):
    r"""Record the gradient norms of every optimizer step and write a refined schedule file (arXiv 2310.07831).

    Usage: `Trainer(..., callbacks=[RefinementCallback()])`. The main process writes `refined_schedule.safetensors`
    into `output_dir` at the end and, with the record alone (`norm_record.safetensors`), into every `checkpoint-N/`.
    A later run follows it with `lr_scheduler_kwargs={"schedule_file": ".../refined_schedule.safetensors"}`.

    Recorded at optimizer step t (one entry per optimizer step, never per micro-batch), in `callback.record`:
    - one column per norm of `core.norms.NORM_TYPES` (`grad_norm_l2`, `grad_norm_l1`): norms of the gradient
      the optimizer is about to apply, after accumulation, the cross-rank average and fp16 unscaling, **before
      clipping**. The l2 value is the Trainer's own `grad_norm`; the others are measured on the clipped gradient and
      divided by the clip coefficient ``min(1, max_grad_norm / (grad_norm + 1e-6))`` that torch applied (exact up to
      rounding); under DeepSpeed they are measured before the engine clips.
    - `lr`: the learning rate of the first parameter group used by that step.
    - `skipped`: the optimizer reported a skipped step, or a norm is not finite (fp16 overflow; the default fused
      AdamW does not report its skips, the non-finite norm catches them).

    Norms stay on the device, copied to the host in batches (logging steps, saves, every `flush_every` steps). At each
    save the ranks compare a fingerprint of their records and fail loudly if they disagree; `trainer_state.json`
    keeps only a pointer to the checkpoint's record file and its digest.

    Args:
        tau (`float`, *optional*, defaults to 0.1), norm (`str`, *optional*), power (`float`, *optional*),
        method (`str`, *optional*), method_options (`dict`, *optional*): how to refine (see
            `hf_linear_decay.core.settings.RefinementSettings`); by default the norm follows the optimizer (Adam-type:
            l1 with p=1, otherwise l2 with p=2).
        file_name (`str`, *optional*, defaults to "refined_schedule.safetensors"): one per callback of a Trainer.
        flush_every (`int`, *optional*, defaults to 256): copy pending norms to the host at least this often.
        resume_without_record (`bool`, *optional*, defaults to False): resume from a checkpoint whose record is
            missing or unreadable, with its steps marked unknown, instead of stopping with the reason.

    A checkpoint's record is written when the Trainer asks for this callback's state, just before it writes the
    `trainer_state.json` that points to it: a checkpoint the Trainer resumes from always has its record.
    """

    def __init__(self, tau: float = DEFAULT_TAU, norm: str | None = None, power: float | None = None,
                 method: str = DEFAULT_METHOD, file_name: str = SCHEDULE_FILE_NAME, flush_every: int = 256,
                 method_options: dict | None = None, resume_without_record: bool = False):
        self.settings = RefinementSettings(method=method, norm=norm, tau=tau, power=power, options=method_options or {})
        if not isinstance(resume_without_record, bool):
            raise ValueError(f"`resume_without_record` must be True or False, got {resume_without_record!r}.")
        self.resume_without_record = resume_without_record
        if not isinstance(file_name, str) or not file_name or os.path.basename(file_name) != file_name:
            raise ValueError(f"`file_name` must be a plain file name, got file_name={file_name!r}.")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"`flush_every` must be a positive integer, got flush_every={flush_every!r}.")
        self.file_name, self.flush_every = file_name, flush_every
        self.record = NormRecord()
        self.bound_trainer = None
        self.measurement = None  # how the last step's norms were measured: tensors, fsdp1, partitions, full_grad
        self._pending: list[list] = []  # [device tensor of norms in table order, lr, optimizer-reported skip]
        self._pre_clip_l2 = self._zero_step = None
        self._checked_steps = 0
        self._resume_problem = None  # why a resumed record falls short, said with the steps it leaves unknown
        self._end_lines, self._last_word = [], False  # what the end of the run says, and who says it
        self.adaptive_run = None  # adaptive_run.AdaptiveRun, when the scheduler adapts (lr_scheduler_kwargs adapt)
        self.once = Once()

    # ----- what the Trainer binding delivers ----------------------------------------------------------------------
    def set_trainer(self, trainer) -> None:
        """Bind to `trainer` explicitly (done automatically at `on_train_begin`)."""
        bind_trainer(self, trainer)

    def receive_pre_clip_l2(self, value) -> None:
        self._pre_clip_l2 = value

    def receive_zero_measurement(self, norms, measured_by: str, lr: float) -> None:
        self._zero_step, self.measurement = (norms, lr), measured_by

    # ----- the record -----------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Copy pending device values to the host: one synchronisation for the whole batch."""
        if self._pending:
            values = torch.stack([entry[0] for entry in self._pending]).cpu().double().numpy()
            columns = {norm.tensor: values[:, i] for i, norm in enumerate(NORM_TYPES.values())}
            self.record.append({**columns, "lr": [entry[1] for entry in self._pending]},
                               [entry[2] for entry in self._pending])
            self._pending = []

    def _align(self, num_steps: int) -> None:
        self._flush()
        self.record.truncate(num_steps)
        padded = self.record.pad_to(num_steps)
        if padded:  # one line: why there is no record, and what happens to those steps
            why, self._resume_problem = self._resume_problem, None
            say(logger, "RefinementCallback: %s; its %d steps before step %d are marked unknown (filled from "
                "neighbouring steps when refining; they count against the 25%% refusal).",
                f"{why} Going on as asked (resume_without_record)" if why else
                "the checkpoint was saved without a RefinementCallback", padded, num_steps)
        self._checked_steps = min(self._checked_steps, num_steps)

    def state(self) -> dict:
        self._flush()
        folder = checkpoint_being_saved(self.bound_trainer)
        if folder is not None:  # the Trainer writes the state that points to the record next: the record goes first
            save_record_file(self.record, os.path.join(folder, RECORD_FILE_NAME))
        settings = self.settings
        return {"args": {"tau": settings.tau, "norm": settings.norm, "power": settings.power, "method": settings.method,
                         "method_options": settings.options, "file_name": self.file_name,
                         "flush_every": self.flush_every, "resume_without_record": self.resume_without_record},
                "attributes": pointer_attributes(self.record)}

    def _saved_record(self, args, state, checkpoint) -> NormRecord:
        folder = checkpoint if isinstance(checkpoint, str) else os.path.join(args.output_dir,
                                                                             f"checkpoint-{state.global_step}")
        record, self._resume_problem = resumed_record((state.stateful_callbacks or {}).get(type(self).__name__),
                                                      folder, state.global_step, self.resume_without_record)
        return record

    # ----- events ---------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        trainer, frame = find_trainer(self)
        if trainer is not None:
            bind_trainer(self, trainer)
            self._last_word = add_last_word(self, trainer)
            clash = [other for other in other_recorders(self, trainer) if other.file_name == self.file_name]
            if clash:
                raise ValueError(f"two RefinementCallbacks of this Trainer would write {self.file_name} (settings "
                                 f"{self.settings} and {clash[0].settings}): one schedule would be lost. Give each its "
                                 "own file_name, e.g. RefinementCallback(..., file_name='refined_tau05.safetensors').")
        elif args.max_grad_norm and args.max_grad_norm > 0 and self.bound_trainer is None:
            raise RuntimeError("RefinementCallback could not find the Trainer that runs it, so it cannot see the "
                               "pre-clipping gradient norm while clipping is on (max_grad_norm > 0). Call "
                               "`callback.set_trainer(trainer)` before `trainer.train()`, or set max_grad_norm=0.")
        self.once = Once()
        if state.global_step == 0:
            self.record, self._pending, self._checked_steps = NormRecord(), [], 0  # a new run (e.g. a reused callback)
        elif len(self.record) + len(self._pending) == 0:  # resuming: the checkpoint's record, found by its pointer
            self.record = self._saved_record(args, state, frame.get("resume_from_checkpoint"))
        if state.is_world_process_zero:
            remove_stale_temporaries_of_run(args.output_dir, (RECORD_FILE_NAME, self.file_name))
        if isinstance(state.stateful_callbacks, dict):
            # A checkpoint saved without this callback has no entry, and the Trainer's save would hit a KeyError.
            state.stateful_callbacks.setdefault(type(self).__name__, self.state())
        self._align(state.global_step)
        if zero_optimizer_of(optimizer) is not None:
            watch_zero_step(self, zero_optimizer_of(optimizer), model)
        self.record.run = run_info(args, optimizer, source="RefinementCallback")
        # Made here, after the Trainer loaded a resumed checkpoint's scheduler (with its plan and decision).
        self.adaptive_run = adaptive_run_of(lr_scheduler, self.settings.resolved(self.record))

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if len(self.record) + len(self._pending) != state.global_step:
            self._align(state.global_step)
        pre_clip_l2, self._pre_clip_l2 = self._pre_clip_l2, None
        zero_step, self._zero_step = self._zero_step, None
        clipping = bool(args.max_grad_norm and args.max_grad_norm > 0)
        if zero_step is not None:  # DeepSpeed: measured inside the ZeRO step, before the engine clipped
            norms, lr, clipping = zero_step[0], zero_step[1], False
        else:  # the norm the Trainer computed already is not measured again
            skip = (TRAINER_NORM,) if pre_clip_l2 is not None else ()
            (norms, self.measurement), lr = gradient_norms(model, skip=skip), float(optimizer.param_groups[0]["lr"])
        if norms is None:
            raise RuntimeError("RefinementCallback found no gradients at on_pre_optimizer_step; is the model frozen, "
                               "or is this an engine the package does not support?")
        if pre_clip_l2 is None and clipping:
            raise RuntimeError("RefinementCallback did not see the Trainer's pre-clipping gradient norm this step; "
                               "call `callback.set_trainer(trainer)` before training.")
        if pre_clip_l2 is not None:
            pre_clip_l2 = pre_clip_l2.full_tensor() if hasattr(pre_clip_l2, "full_tensor") else pre_clip_l2
            pre_clip_l2 = torch.as_tensor(pre_clip_l2, dtype=torch.float32).detach()
        device = next(iter(norms.values())).device if norms else pre_clip_l2.device
        if pre_clip_l2 is not None:
            pre_clip_l2 = pre_clip_l2.to(device)
            # The coefficient torch's clip_grads_with_norm_ multiplied the gradients by; every norm scales with it.
            coefficient = torch.clamp(args.max_grad_norm / (pre_clip_l2 + 1e-6), max=1.0) if clipping else 1.0
            norms = {**{name: value / coefficient for name, value in norms.items()}, TRAINER_NORM: pre_clip_l2}
        self._pending.append([torch.stack([norms[name].float().to(device) for name in NORM_TYPES]), lr, False])

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._pending and getattr(optimizer, "step_was_skipped", False):
            self._pending[-1][2] = True

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        if self.adaptive_run is not None and self.adaptive_run.due(state.global_step):
            self._flush()
            self.adaptive_run.at_step_end(self.record, state.global_step, lr_scheduler)
        if len(self._pending) >= self.flush_every:
            self._flush()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "grad_norm" not in logs or len(self.record) + len(self._pending) == 0:
            return
        self._flush()
        extra = {norm.tensor: float(self.record.column(norm.tensor)[-1]) for norm in NORM_TYPES.values()}
        logs.update(extra)
        last = state.log_history[-1] if state.log_history else None
        if isinstance(last, dict) and last.get("step") == state.global_step and "grad_norm" in last:
            last.update(extra)

    def _check_ranks_agree(self) -> None:
        """Every rank records the same (averaged) gradient; if they disagree the file would be wrong: fail loudly."""
        self._flush()
        rank = first_disagreeing_rank(self.record.fingerprint(self._checked_steps))
        if rank is not None:
            raise RuntimeError(f"RefinementCallback: rank {rank} recorded different gradient norms or learning rates "
                               "than "
                               f"rank 0 since step {self._checked_steps}; the schedule file would describe only one "
                               "rank's view. The gradients were not synchronised across ranks at the optimizer step; "
                               "please report the backend and configuration.")
        self._checked_steps = len(self.record)

    def on_save(self, args, state, control, **kwargs):
        self._check_ranks_agree()
        # The record is there already (see `state`); the schedule is not for resuming. An adaptive run's schedule is
        # known when it ends (its plan, with the decision, is in the scheduler's checkpoint meanwhile).
        if state.is_world_process_zero and self.adaptive_run is None:
            self.write_schedule_file(os.path.join(args.output_dir, f"checkpoint-{state.global_step}", self.file_name),
                                     final=False)

    def on_train_end(self, args, state, control, **kwargs):
        self._check_ranks_agree()
        if state.is_world_process_zero:
            save_record_file(self.record, os.path.join(args.output_dir, RECORD_FILE_NAME))
            path = os.path.join(args.output_dir, self.file_name)
            schedule = self.write_schedule_file(path)
            if schedule is not None:  # what users must see, once, at the level transformers shows by default
                self._end_lines.append(("%s", wrote_line(schedule, path)))
        if not self._last_word:  # no Trainer to say them after the progress bar closed: say them now
            self.say_end_lines()
        # The Trainer refreshes callback states only at checkpoints; `trainer.save_state()` after training (as
        # transformers' example scripts call it) must point at the record file just written, not at a stale one.
        if isinstance(state.stateful_callbacks, dict):
            entry = state.stateful_callbacks.get(type(self).__name__)
            if isinstance(entry, list):
                entry.append(self.state())
            else:
                state.stateful_callbacks[type(self).__name__] = self.state()

    def say_end_lines(self) -> None:
        """The end-of-run lines, once the other callbacks are done (tqdm's bar is closed: each starts its own line)."""
        lines, self._end_lines = self._end_lines, []
        for text, *values in lines:
            say(logger, text, *values)

    # ----- output -----------------------------------------------------------------------------------------------------
    def refined_schedule(self) -> RefinedSchedule:
        """The record so far, refined with this callback's settings; in an adaptive run, the schedule it followed."""
        self._flush()
        if self.adaptive_run is not None:
            return self.adaptive_run.followed_schedule(self.record.copy())
        return build_schedule(self.record.copy(), self.settings)

    def write_schedule_file(self, path, *, final: bool = True) -> RefinedSchedule | None:
        """Write the refined schedule file atomically and return it; skipped while it cannot be refined yet (said at
        the end of the run, once: a checkpoint's copy is a convenience, the record beside it is what counts)."""
        try:
            schedule = self.refined_schedule()
        except ValueError as error:
            if final and "not writing" not in self.once.said:
                self.once.said.add("not writing")
                self._end_lines.append(("RefinementCallback: not writing %s: %s The record is kept in %s beside it.",
                                        os.path.basename(path), error, RECORD_FILE_NAME))
            else:
                logger.info("RefinementCallback: no %s in this checkpoint: %s", os.path.basename(path), error)
            return None
        save_schedule_file(schedule, path)
        return schedule
