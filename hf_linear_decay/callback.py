"""`RefinementCallback`: record per-step gradient norms during training and write the refined schedule file."""

from __future__ import annotations

import logging
import math
import os
import sys

import numpy as np
import torch
from transformers.trainer_callback import ExportableState, TrainerCallback, TrainerControl, TrainerState
from transformers.training_args import TrainingArguments

from .constants import DEFAULT_TAU, SCHEDULE_FILE_NAME
from .grad_norms import model_grad_norms
from .refine import _check_power, _check_tau
from .schedule_file import RunInfo, ScheduleFile, save_schedule_file

logger = logging.getLogger(__name__)

# Optimizers that scale each coordinate by its own statistics (Adam-like) pair with l1 norms and power 1 (paper Alg. 2);
# everything else is treated as SGD-like: l2 norms, power 2 (Alg. 1).
_COORDINATE_WISE_OPTIMIZERS = ("adam", "lamb", "lion", "adafactor", "adagrad", "adadelta", "rmsprop", "sophia", "came",
                               "adan", "ademamix", "apollo", "galore", "lomo", "grokadam", "stableadam")


def default_norm_for_optimizer(optimizer_name: str) -> str:
    """"l1" for Adam-family (coordinate-wise adaptive) optimizers, "l2" for SGD-family ones."""
    name = optimizer_name.lower()
    return "l1" if any(key in name for key in _COORDINATE_WISE_OPTIMIZERS) else "l2"


def _unwrap_optimizer(optimizer):
    while hasattr(optimizer, "optimizer") and optimizer.optimizer is not optimizer:
        optimizer = optimizer.optimizer
    return optimizer


def _zero_partition_l1(zero_optimizer):
    """Global l1 norm of the (loss-scaled) gradients from this rank's ZeRO partitions, or None if not applicable.

    Mirrors how DeepSpeed computes its own global l2 norm (stage 1/2 `scaled_global_norm`, stage 3 `_get_norm_groups`):
    `get_grad_norm_direct` over each group's averaged gradient partition, summed over the data-parallel group, here
    with `norm_type=1`. DeepSpeed masks a non-finite norm to -1; that is turned back into NaN (an overflow step).
    """
    direct = getattr(zero_optimizer, "get_grad_norm_direct", None)
    averaged = getattr(zero_optimizer, "averaged_gradients", None)
    if direct is None or not averaged or getattr(zero_optimizer, "has_moe_layers", False):
        return None
    if getattr(zero_optimizer, "cpu_offload", False) or getattr(zero_optimizer, "offload_optimizer", False):
        return None
    groups = getattr(zero_optimizer, "params_in_partition", None)  # stage 1/2
    if groups is None:
        groups = getattr(zero_optimizer, "fp16_groups", None)  # stage 3
    if groups is None:
        return None
    total = None
    for index, params in enumerate(groups):
        grads = averaged.get(index) if isinstance(averaged, dict) else averaged[index]
        if grads is None:
            return None
        norm = direct(grads, params, norm_type=1).float()
        total = norm if total is None else total + norm
    if total is None:
        return None
    return torch.where(total < 0, torch.full_like(total, math.nan), total)


class RefinementCallback(TrainerCallback, ExportableState):
    r"""Record the gradient norms of every optimizer step and write a refined schedule file (arXiv 2310.07831).

    Usage: `Trainer(..., callbacks=[RefinementCallback()])`. Train once (e.g. with `lr_scheduler_type=
    "linear_refined"` and no file, i.e. linear decay); the main process writes `refined_schedule.safetensors` into
    `output_dir` at the end and into every `checkpoint-N/`. A later run uses it with
    `lr_scheduler_kwargs={"schedule_file": ".../refined_schedule.safetensors"}`.

    What is recorded at optimizer step t (0-based, one record per optimizer step, never per micro-batch):
    - `grad_norm_l2`, `grad_norm_l1`: norms of the gradient the optimizer is about to apply, after gradient
      accumulation, the cross-rank average and fp16 unscaling, and **before clipping**. The l2 value is the very
      tensor the Trainer logs as `grad_norm`. The l1 value is measured on the clipped gradient and divided by the
      clipping coefficient ``min(1, max_grad_norm / (grad_norm + 1e-6))`` that torch applied, which restores the
      pre-clip l1 norm exactly up to float rounding.
    - `lr`: the learning rate of the first parameter group used by that step.
    - `skipped`: the optimizer reported a skipped step (`optimizer.step_was_skipped`) or the norm is not finite
      (fp16 overflow; the default fused AdamW does not report its skips, the non-finite norm catches them).

    How it gets the pre-clip norm: the Trainer computes it in `Trainer._get_grad_norm` and hands it to callbacks only
    at logging steps. At `on_train_begin` the callback finds the Trainer that is calling it (the first frame up the
    call stack whose `self` is a trainer owning this callback, the same object transformers' own
    `JITCheckpointCallback.set_trainer` receives) and wraps that trainer's `_get_grad_norm` to keep its result.
    `set_trainer(trainer)` does the same explicitly. It also moves itself first in the callback list, so the
    `grad_norm_l1` / `grad_norm_l2` it adds to the logs reach TensorBoard, W&B and `trainer_state.json`.

    Cost: two fused norm passes over the gradients per step; the values stay on the device and are copied to the host
    in one batch at logging steps, at checkpoints and every `flush_every` steps (no host sync of its own per step).

    Args:
        tau (`float`, *optional*, defaults to 0.1): median-filter window as a fraction of the run (paper's τ).
        norm (`str`, *optional*): "l1" or "l2". Defaults to "l1" for Adam-family optimizers, "l2" otherwise.
        power (`float`, *optional*): weight power p. Defaults to 1 for "l1" and 2 for "l2".
        file_name (`str`, *optional*, defaults to "refined_schedule.safetensors").
        flush_every (`int`, *optional*, defaults to 256): copy pending norms to the host at least this often.

    Example:
        ```python
        import hf_linear_decay
        trainer = Trainer(model, args, train_dataset=data, callbacks=[hf_linear_decay.RefinementCallback()])
        ```
    """

    def __init__(self, tau: float = DEFAULT_TAU, norm: str | None = None, power: float | None = None,
                 file_name: str = SCHEDULE_FILE_NAME, flush_every: int = 256):
        # User-provided settings
        self.tau = _check_tau(tau)
        if norm not in (None, "l1", "l2"):
            raise ValueError(f"`norm` must be 'l1', 'l2' or None (choose by optimizer), got norm={norm!r}.")
        self.norm = norm
        self.power = None if power is None else _check_power(power)
        if not file_name or os.path.basename(file_name) != file_name:
            raise ValueError(f"`file_name` must be a plain file name, got file_name={file_name!r}.")
        self.file_name = file_name
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"`flush_every` must be a positive integer, got flush_every={flush_every!r}.")
        self.flush_every = flush_every
        # Internal state: host records, one entry per optimizer step from step 0
        self.grad_norm_l2: list[float] = []
        self.grad_norm_l1: list[float] = []
        self.lr: list[float] = []
        self.skipped: list[bool] = []
        self._pending: list[list] = []  # [device tensor([l2, l1]), lr, optimizer_reported_skip]
        self._pre_clip_l2 = None
        self._deepspeed_l1 = None
        self._deepspeed_lr = math.nan
        self.deepspeed_l1_method = None  # "partitions" or "full_grad" once a DeepSpeed step was measured
        self._trainer = None
        self._run = RunInfo()
        self._resolved_norm = norm

    # ----- binding to the trainer -------------------------------------------------------------------------------
    def set_trainer(self, trainer) -> None:
        """Bind to `trainer` (done automatically at `on_train_begin`); idempotent."""
        self._trainer = trainer
        original = trainer._get_grad_norm
        if getattr(original, "_hf_linear_decay_callback", None) is not self:

            def keep_pre_clip_norm(model, grad_norm=None):
                result = original(model, grad_norm)
                self._pre_clip_l2 = result
                return result

            keep_pre_clip_norm._hf_linear_decay_callback = self
            trainer._get_grad_norm = keep_pre_clip_norm
        handler = trainer.callback_handler
        if handler.callbacks[0] is not self:
            # A new list, not an in-place edit: the handler may be iterating over the old one right now.
            handler.callbacks = [self] + [callback for callback in handler.callbacks if callback is not self]

    def _find_trainer(self):
        frame = sys._getframe(1)
        while frame is not None:
            candidate = frame.f_locals.get("self")
            handler = getattr(candidate, "callback_handler", None)
            if handler is not None and hasattr(candidate, "_get_grad_norm"):
                if any(callback is self for callback in getattr(handler, "callbacks", ())):
                    return candidate
            frame = frame.f_back
        return None

    # ----- records ------------------------------------------------------------------------------------------------
    @property
    def num_recorded_steps(self) -> int:
        return len(self.grad_norm_l2) + len(self._pending)

    def _flush(self) -> None:
        """Copy pending device values to the host: one synchronisation for the whole batch."""
        if not self._pending:
            return
        values = torch.stack([entry[0] for entry in self._pending]).cpu().tolist()
        for (l2, l1), (_, lr, reported_skip) in zip(values, self._pending):
            self.grad_norm_l2.append(l2)
            self.grad_norm_l1.append(l1)
            self.lr.append(lr)
            self.skipped.append(bool(reported_skip) or not (math.isfinite(l2) and math.isfinite(l1)))
        self._pending = []

    def _truncate(self, num_steps: int) -> None:
        self._flush()
        for values in (self.grad_norm_l2, self.grad_norm_l1, self.lr, self.skipped):
            del values[num_steps:]

    def _pad_missing(self, num_steps: int) -> None:
        """Steps run before this callback was attached (resume from a checkpoint without its state): unknown."""
        missing = num_steps - len(self.grad_norm_l2)
        if missing > 0:
            logger.warning("RefinementCallback: no record for the first %d steps (the checkpoint has none); they are "
                           "marked skipped and filled from neighbouring steps when refining.", missing)
            self.grad_norm_l2 += [math.nan] * missing
            self.grad_norm_l1 += [math.nan] * missing
            self.lr += [math.nan] * missing
            self.skipped += [True] * missing

    # ----- ExportableState --------------------------------------------------------------------------------------
    def state(self) -> dict:
        self._flush()
        return {
            "args": {"tau": self.tau, "norm": self.norm, "power": self.power, "file_name": self.file_name,
                     "flush_every": self.flush_every},
            "attributes": {"grad_norm_l2": list(self.grad_norm_l2), "grad_norm_l1": list(self.grad_norm_l1),
                           "lr": list(self.lr), "skipped": [bool(flag) for flag in self.skipped]},
        }

    def _load(self, attributes: dict) -> None:
        self._pending = []
        self.grad_norm_l2 = [float(v) for v in attributes.get("grad_norm_l2", [])]
        self.grad_norm_l1 = [float(v) for v in attributes.get("grad_norm_l1", [])]
        self.lr = [float(v) for v in attributes.get("lr", [])]
        self.skipped = [bool(v) for v in attributes.get("skipped", [])]

    # ----- events -------------------------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None,
                       optimizer=None, **kwargs):
        name = type(self).__name__
        saved = state.stateful_callbacks.get(name) if isinstance(state.stateful_callbacks, dict) else None
        if isinstance(saved, list):  # several instances of this class: take the first
            saved = saved[0] if saved else None
        if state.global_step > 0 and isinstance(saved, dict) and self.num_recorded_steps == 0:
            self._load(saved.get("attributes", {}))
        if isinstance(state.stateful_callbacks, dict):
            # A checkpoint saved without this callback has no entry, and the Trainer's save would hit a KeyError.
            state.stateful_callbacks.setdefault(name, self.state())
        self._truncate(state.global_step)
        self._pad_missing(state.global_step)

        if self._trainer is None:
            trainer = self._find_trainer()
            if trainer is not None:
                self.set_trainer(trainer)
        if self._trainer is None and args.max_grad_norm and args.max_grad_norm > 0:
            raise RuntimeError(
                "RefinementCallback could not find the Trainer that runs it, so it cannot see the pre-clipping gradient "
                "norm while clipping is on (max_grad_norm > 0). Call `callback.set_trainer(trainer)` before "
                "`trainer.train()`, or set max_grad_norm=0."
            )
        if optimizer is not None and type(optimizer).__name__ == "DeepSpeedOptimizerWrapper":
            self._watch_deepspeed_step(optimizer.optimizer, model)
        optimizer_name = type(_unwrap_optimizer(optimizer)).__name__ if optimizer is not None else str(args.optim)
        self._resolved_norm = self.norm or default_norm_for_optimizer(optimizer_name)
        self._run = RunInfo(
            optimizer=optimizer_name,
            base_lr=float(args.learning_rate),
            world_size=int(args.world_size),
            gradient_accumulation_steps=int(args.gradient_accumulation_steps),
            per_device_train_batch_size=int(args.per_device_train_batch_size),
            max_grad_norm=float(args.max_grad_norm or 0.0),
            precision="fp16" if args.fp16 else "bf16" if args.bf16 else "fp32",
            source="RefinementCallback",
        )

    def _watch_deepspeed_step(self, zero_optimizer, model) -> None:
        """DeepSpeed steps inside `backward`, so no callback ever sees a gradient (every `p.grad` is None).

        Wrap the ZeRO optimizer's `step`, which the engine calls right after the gradients were reduced and before
        they are clipped and applied, and measure the l1 norm there (divided by the fp16 loss scale); the pre-clip l2
        norm comes from the Trainer as usual. The l1 norm is taken from this rank's own gradient partitions with
        DeepSpeed's norm routine (`get_grad_norm_direct(..., norm_type=1)`: one small all-reduce per parameter group,
        exact, no gather) where the optimizer has the plain ZeRO layout; otherwise (CPU offload, MoE, other optimizer
        classes) from `deepspeed.utils.safe_get_full_grad`, which gathers each full gradient (collective under ZeRO-3).
        """
        if getattr(zero_optimizer.step, "_hf_linear_decay_callback", None) is self:
            return
        original_step = zero_optimizer.step
        parameters = list(model.parameters())

        def step_and_measure(*args, **kwargs):
            l1 = _zero_partition_l1(zero_optimizer)
            if l1 is not None:
                self.deepspeed_l1_method = "partitions"
            else:
                from deepspeed.utils import safe_get_full_grad

                self.deepspeed_l1_method = "full_grad"
                for parameter in parameters:
                    grad = safe_get_full_grad(parameter)
                    if grad is not None:
                        part = torch.linalg.vector_norm(grad.detach(), 1, dtype=torch.float32)
                        l1 = part if l1 is None else l1 + part
            if l1 is not None:
                scale = getattr(zero_optimizer, "loss_scale", None) or 1.0
                self._deepspeed_l1 = l1 / float(scale)
            # With a DeepSpeed `optimizer` block the engine also steps the LR scheduler inside backward, so by
            # on_pre_optimizer_step the optimizer already holds the next step's LR: read the one this step uses here.
            self._deepspeed_lr = float(zero_optimizer.param_groups[0]["lr"])
            return original_step(*args, **kwargs)

        step_and_measure._hf_linear_decay_callback = self
        zero_optimizer.step = step_and_measure

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                              model=None, optimizer=None, **kwargs):
        if self.num_recorded_steps != state.global_step:
            self._truncate(state.global_step)
            self._pad_missing(state.global_step)
        post_clip = model_grad_norms(model)
        pre_clip_l2, self._pre_clip_l2 = self._pre_clip_l2, None
        if post_clip is None:
            deepspeed_l1, self._deepspeed_l1 = self._deepspeed_l1, None
            if deepspeed_l1 is None or pre_clip_l2 is None:
                raise RuntimeError(
                    "RefinementCallback found no gradients at on_pre_optimizer_step and no DeepSpeed measurement; "
                    "is the model frozen, or is this an unsupported engine?"
                )
            # Under DeepSpeed the measured l1 is pre-clip already (measured before the engine clips).
            pre_l2 = torch.as_tensor(float(pre_clip_l2), device=deepspeed_l1.device)
            self._pending.append([torch.stack([pre_l2, deepspeed_l1.float()]), self._deepspeed_lr, False])
            return
        if pre_clip_l2 is None:
            if args.max_grad_norm and args.max_grad_norm > 0:
                raise RuntimeError("RefinementCallback did not see the Trainer's pre-clipping gradient norm this step; "
                                   "call `callback.set_trainer(trainer)` before training.")
            entry = post_clip.detach().float()
        else:
            if isinstance(pre_clip_l2, torch.Tensor):
                from torch.distributed.tensor import DTensor

                if isinstance(pre_clip_l2, DTensor):
                    pre_clip_l2 = pre_clip_l2.full_tensor()
                pre_clip_l2 = pre_clip_l2.detach().to(post_clip.device, torch.float32)
            else:
                pre_clip_l2 = torch.tensor(float(pre_clip_l2), device=post_clip.device)
            l1 = post_clip[1]
            if args.max_grad_norm and args.max_grad_norm > 0:
                # The same coefficient torch's clip_grads_with_norm_ multiplied the gradients by; undo it for l1.
                coefficient = torch.clamp(args.max_grad_norm / (pre_clip_l2 + 1e-6), max=1.0)
                l1 = l1 / coefficient
            entry = torch.stack([pre_clip_l2, l1])
        lr = optimizer.param_groups[0]["lr"] if optimizer is not None else math.nan
        self._pending.append([entry, float(lr), False])

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._pending and getattr(optimizer, "step_was_skipped", False):
            self._pending[-1][2] = True

    def on_step_end(self, args, state, control, **kwargs):
        if len(self._pending) >= self.flush_every:
            self._flush()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "grad_norm" not in logs or self.num_recorded_steps == 0:
            return
        self._flush()
        extra = {"grad_norm_l1": self.grad_norm_l1[-1], "grad_norm_l2": self.grad_norm_l2[-1]}
        logs.update(extra)
        last = state.log_history[-1] if state.log_history else None
        if isinstance(last, dict) and last.get("step") == state.global_step and "grad_norm" in last:
            last.update(extra)

    def _check_ranks_agree(self) -> None:
        """Every rank records the same (averaged) gradient; if they disagree the file would be wrong: fail loudly."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        mine = (len(self.grad_norm_l2), self.grad_norm_l2, self.grad_norm_l1, self.lr, self.skipped)
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        reference = everyone[0]
        for rank, theirs in enumerate(everyone[1:], start=1):
            same = theirs[0] == reference[0] and theirs[4] == reference[4] and all(
                np.allclose(theirs[i], reference[i], rtol=1e-6, atol=0, equal_nan=True) for i in (1, 2, 3)
            )
            if not same:
                raise RuntimeError(
                    f"RefinementCallback: rank {rank} recorded different gradient norms or learning rates than rank 0 "
                    f"({theirs[0]} vs {reference[0]} steps); the schedule file would describe only one rank's view. "
                    "This means the gradients were not synchronised across ranks at the optimizer step; please report "
                    "the backend and configuration."
                )

    def on_save(self, args, state, control, **kwargs):
        self._flush()
        self._check_ranks_agree()
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self.write_schedule_file(os.path.join(folder, self.file_name))

    def on_train_end(self, args, state, control, **kwargs):
        self._flush()
        self._check_ranks_agree()
        if state.is_world_process_zero:
            self.write_schedule_file(os.path.join(args.output_dir, self.file_name))

    # ----- output -------------------------------------------------------------------------------------------------
    def schedule_file(self) -> ScheduleFile:
        """The record so far as a `ScheduleFile`, refined with this callback's norm, power and tau."""
        self._flush()
        norm = self._resolved_norm or "l2"
        return ScheduleFile.from_record(
            grad_norm_l2=self.grad_norm_l2,
            grad_norm_l1=self.grad_norm_l1,
            lr=self.lr,
            skipped=self.skipped,
            norm=norm,
            tau=self.tau,
            power=self.power,  # None: the paper's pairing for `norm`
            run=self._run,
        )

    def write_schedule_file(self, path) -> str | None:
        """Write the refined schedule file atomically; skipped (with a warning) while fewer than 2 valid steps exist."""
        try:
            schedule = self.schedule_file()
        except ValueError as error:
            logger.warning("RefinementCallback: not writing %s yet: %s", path, error)
            return None
        return save_schedule_file(schedule, path)
