"""Every private touch of the Trainer and of DeepSpeed that `RefinementCallback` needs, in one place.

Each one is verified against transformers 5.24 / accelerate 1.15 / deepspeed 0.19.8, and tests/test_binding.py
checks each assumption directly, so that an upgrade that moves a private API fails a test by name instead of
silently recording wrong values.

1. `Trainer._get_grad_norm(model, grad_norm=None)` returns the pre-clipping l2 norm on every backend (the value the
   Trainer logs as `grad_norm`). Callbacks never receive it except at logging steps, so it is wrapped.
2. Callbacks are not handed their Trainer (transformers' own `JITCheckpointCallback` receives it by `set_trainer`).
   `find_trainer` walks up the call stack to the first frame whose `self` is a Trainer holding this callback; at
   `on_train_begin` that frame is `Trainer._inner_training_loop`, whose local `resume_from_checkpoint` says which
   checkpoint is being resumed.
3. `trainer.callback_handler.callbacks` is a plain list; the callback moves itself first so that the values it adds
   to the logs reach every reporter, and puts a `LastWord` last, which says its end-of-run lines after every other
   callback's `on_train_end` (after tqdm's bar is closed, so that they start a line of their own).
4. Under DeepSpeed the optimizer steps inside `backward` and every `p.grad` is None at the callbacks: the ZeRO
   optimizer (`DeepSpeedOptimizerWrapper.optimizer`) gets a wrapped `step`, which the engine calls after reducing
   the gradients and before clipping and applying them.
"""

from __future__ import annotations

import sys

from transformers.trainer_callback import TrainerCallback

from .grad_norms import gradient_norms
from ..core.record import RunInfo

__all__ = ["LastWord", "add_last_word", "bind_trainer", "checkpoint_being_saved", "find_trainer",
           "innermost_optimizer", "other_recorders", "run_info", "watch_zero_step", "zero_optimizer_of"]


def find_trainer(callback) -> tuple[object | None, dict]:
    """`(trainer, frame_locals)` of the innermost Trainer method up the stack that runs `callback`, else
    `(None, {})`."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        handler = getattr(candidate, "callback_handler", None)
        if handler is not None and hasattr(candidate, "_get_grad_norm"):
            if any(member is callback for member in getattr(handler, "callbacks", ())):
                return candidate, dict(frame.f_locals)
        frame = frame.f_back
    return None, {}


def checkpoint_being_saved(trainer) -> str | None:
    """The folder `trainer._save_checkpoint` is writing now (its local `output_dir`), if it is up the stack.

    The Trainer asks each `ExportableState` callback for its state there, right before it writes the checkpoint's
    trainer_state.json (transformers 5.24 trainer.py `_save_checkpoint`; tests/test_binding.py checks the order).
    """
    frame = sys._getframe(1)
    while frame is not None and trainer is not None:
        if frame.f_code.co_name == "_save_checkpoint" and frame.f_locals.get("self") is trainer:
            return frame.f_locals.get("output_dir")
        frame = frame.f_back
    return None


def other_recorders(callback, trainer) -> list:
    """The other callbacks of `trainer` of the same class as `callback` (several recorders of one run)."""
    return [member for member in trainer.callback_handler.callbacks
            if member is not callback and type(member) is type(callback)]


def bind_trainer(callback, trainer) -> None:
    """Route `trainer`'s pre-clip l2 norm to `callback.receive_pre_clip_l2` and put `callback` first; idempotent.

    A wrapper stays on a trainer the callback is no longer bound to, but delivers nothing then (a callback reused for
    a second Trainer listens to that one only).
    """
    original = trainer._get_grad_norm
    if getattr(original, "_hf_linear_decay_callback", None) is not callback:

        def keep_pre_clip_norm(model, grad_norm=None):
            result = original(model, grad_norm)
            if callback.bound_trainer is trainer:
                callback.receive_pre_clip_l2(result)
            return result

        keep_pre_clip_norm._hf_linear_decay_callback = callback
        trainer._get_grad_norm = keep_pre_clip_norm
    callback.bound_trainer = trainer
    handler = trainer.callback_handler
    if handler.callbacks[0] is not callback:
        # A new list, not an in-place edit: the handler may be iterating over the old one right now.
        handler.callbacks = [callback] + [member for member in handler.callbacks if member is not callback]


class LastWord(TrainerCallback):
    """Last in the Trainer's callback list: says a recorder's end-of-run lines when every other callback is done."""

    def __init__(self, recorder):
        self.recorder = recorder

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.say_end_lines()


def add_last_word(recorder, trainer) -> bool:
    """Put a `LastWord` for `recorder` at the end of `trainer`'s callbacks (once); returns True."""
    handler = trainer.callback_handler
    if not any(isinstance(member, LastWord) and member.recorder is recorder for member in handler.callbacks):
        handler.callbacks = handler.callbacks + [LastWord(recorder)]  # a new list: the handler may be iterating
    return True


def innermost_optimizer(optimizer):
    """The optimizer that does the update, under accelerate's and DeepSpeed's wrappers (each holds it as
    `.optimizer`)."""
    while getattr(optimizer, "optimizer", None) is not None and optimizer.optimizer is not optimizer:
        optimizer = optimizer.optimizer
    return optimizer


def run_info(args, optimizer, source: str) -> RunInfo:
    """The facts of this run that a schedule file keeps (and pass 2 compares with its own)."""
    return RunInfo(
        optimizer=type(innermost_optimizer(optimizer)).__name__ if optimizer is not None else str(args.optim),
        base_lr=float(args.learning_rate), world_size=int(args.world_size),
        gradient_accumulation_steps=int(args.gradient_accumulation_steps),
        per_device_train_batch_size=int(args.per_device_train_batch_size), max_grad_norm=float(args.max_grad_norm or 0),
        precision="fp16" if args.fp16 else "bf16" if args.bf16 else "fp32", source=source,
        weight_decay=float(args.weight_decay or 0))


def zero_optimizer_of(optimizer):
    """The DeepSpeed ZeRO optimizer behind accelerate's wrapper, or None when the run is not under DeepSpeed."""
    return optimizer.optimizer if type(optimizer).__name__ == "DeepSpeedOptimizerWrapper" else None


def watch_zero_step(callback, zero_optimizer, model) -> None:
    """Wrap the ZeRO optimizer's `step` to measure the pre-clip norms and the LR the step uses; idempotent.

    The norms are unscaled by the fp16 loss scale. The LR is read here because with a DeepSpeed `optimizer` block the
    engine also steps the LR scheduler inside backward, so by `on_pre_optimizer_step` the next step's LR is set.
    """
    if getattr(zero_optimizer.step, "_hf_linear_decay_callback", None) is callback:
        return
    original_step = zero_optimizer.step
    parameters = list(model.parameters())

    def step_and_measure(*args, **kwargs):
        norms, measured_by = gradient_norms(zero_optimizer=zero_optimizer, parameters=parameters)
        scale = float(getattr(zero_optimizer, "loss_scale", None) or 1.0)
        callback.receive_zero_measurement(
            None if norms is None else {name: value / scale for name, value in norms.items()}, measured_by,
            float(zero_optimizer.param_groups[0]["lr"]))
        return original_step(*args, **kwargs)

    step_and_measure._hf_linear_decay_callback = callback
    zero_optimizer.step = step_and_measure
