"""A Trainer `trainer_state.json` as a norm record: the callback's exact record when the run had one, else the
logged `grad_norm` (the pre-clip l2 norm) and `learning_rate`, interpolated between logging steps."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..core.record import NormRecord, RunInfo
from .checkpoint_record import saved_callback_record
from .steps import NormInputError, fill_every_step, step_number

__all__ = ["parse_json", "record_from_trainer_state"]


def _number(text: str):
    # Python refuses to turn digit strings of more than 4,300 digits into ints (with advice no CLI user can apply);
    # a number that long is no step or norm: keep it as a float (inf), which the checks below name.
    return int(text) if len(text) <= 30 else float(text)


def parse_json(text: str, path):
    """`json.loads` with one clear error for invalid, too deeply nested or overlong input."""
    try:
        return json.loads(text, parse_int=_number)
    except json.JSONDecodeError as error:
        raise NormInputError(f"{path}: invalid JSON ({error}); pass an intact trainer_state.json.") from None
    except RecursionError:
        raise NormInputError(f"{path}: invalid JSON (nested too deeply to be a trainer_state.json).") from None


def record_from_trainer_state(state, path) -> NormRecord:
    """The record a parsed trainer_state.json describes (see the module docstring)."""
    if isinstance(state, list):
        raise NormInputError(f"{path}: a JSON array, not a trainer_state.json (an object with `log_history`); for "
                             "per-step values, write one JSON object per line or a CSV.")
    if not isinstance(state, dict) or "log_history" not in state:
        raise NormInputError(f"{path}: a JSON file without `log_history`; pass a Trainer trainer_state.json.")
    global_step = step_number(state.get("global_step") or 0, path, "`global_step`")
    callbacks = state.get("stateful_callbacks")
    if callbacks is not None and not isinstance(callbacks, dict):
        raise NormInputError(f"{path}: `stateful_callbacks` must be an object, got {type(callbacks).__name__}; the "
                             "file is damaged.")
    try:
        record = saved_callback_record((callbacks or {}).get("RefinementCallback"),
                                       os.path.dirname(os.path.abspath(path)), global_step, path)
    except ValueError as error:
        raise NormInputError(str(error)) from None
    if record is not None:
        if len(record) < global_step:
            record.notes.append(f"the callback's record covers {len(record)} of {global_step} steps; the rest are "
                                "marked skipped and filled when refining")
            record.pad_to(global_step)
        return record
    return _from_log_history(state, global_step, path)


def _from_log_history(state: dict, global_step: int, path) -> NormRecord:
    history = state.get("log_history")
    if not isinstance(history, list):
        raise NormInputError(f"{path}: `log_history` must be a list; is this a Trainer trainer_state.json?")
    points = []
    for index, entry in enumerate(history):
        if not (isinstance(entry, dict) and "grad_norm" in entry and "step" in entry):
            continue
        where = f"log_history[{index}]"
        step = step_number(entry["step"], path, where)
        norm, lr = entry["grad_norm"], entry.get("learning_rate")
        for name, value in (("grad_norm", norm), ("learning_rate", lr)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise NormInputError(f"{path}: {where} has {name} {value!r:.60}; expected a number or null.")
        if step < 1:
            raise NormInputError(f"{path}: {where} has step {step}; logged steps start at 1.")
        points.append((step - 1, math.nan if norm is None else float(norm), lr))
    if len(points) < 2:
        raise NormInputError(f"{path}: the log history has {len(points)} entries with `grad_norm`; need at least 2. "
                             "Train "
                             "with `logging_steps=1`, or record the run with RefinementCallback (exact, both norms).")
    # The Trainer logs at `step` = global_step after the update, so logged step s describes optimizer step s-1.
    steps = np.array([step for step, _, _ in points])
    last = max(global_step, int(steps.max()) + 1) - 1
    columns = {"grad_norm_l2": None, "lr": None}
    columns["grad_norm_l2"], interpolated = fill_every_step(steps, [n for _, n, _ in points], "logged grad_norm", path,
                                                            0, last)
    if all(lr is not None for _, _, lr in points):
        columns["lr"], _ = fill_every_step(steps, [float(lr) for _, _, lr in points], "logged learning_rate", path, 0,
                                           last)
    folder_name = os.path.basename(os.path.dirname(os.path.abspath(path))) or "."
    batch = state.get("train_batch_size")
    record = NormRecord.from_columns(columns, run=RunInfo(
        per_device_train_batch_size=batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
        source=f"trainer_state.json ({folder_name})"))
    record.notes.append("no RefinementCallback record in this file: used the logged grad_norm (l2 only; Adam-type "
                        "runs refine from l1 norms, which RefinementCallback records)")
    if interpolated:
        record.notes.append(f"interpolated the gradient norm (and learning rate) linearly on {interpolated} of "
                            f"{len(record)} steps between logging steps (logging_steps={state.get('logging_steps')}); "
                            "log every step for an exact record")
    return record
