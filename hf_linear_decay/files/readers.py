"""Read a per-step `NormRecord` from the files users already have (numpy only).

Three kinds of input, told apart by content, not by name:

- one of our schedule files (safetensors): its record, and the settings it was refined with; or a record file
  (a checkpoint's `norm_record.safetensors`);
- a Trainer `trainer_state.json`: the exact record of `RefinementCallback` when the run had one (both norms, every
  step); otherwise the logged `grad_norm` (the pre-clip l2 norm) and `learning_rate` of each logging step, linearly
  interpolated between logging steps;
- a CSV or text file of norms: one value per line, or a named column (e.g. a W&B export with a `Step` column).

Every problem raises `NormInputError` (a `ValueError`) naming the file, the problem and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np

from .paths import check_readable_file
from ..core.norms import NORM_TYPES, check_norm
from ..core.record import NormRecord, RunInfo
from .checkpoint_record import saved_callback_record
from .schedule_file import RECORD_FORMAT, file_format, load_record_file, load_schedule_file, looks_like_safetensors

__all__ = ["MAX_STEPS", "NormInputError", "read_record"]

STEP_COLUMNS = ("step", "_step", "steps", "global_step", "trainer/global_step", "train/global_step")
# W&B exports add `<metric>__MIN` / `<metric>__MAX` columns next to each metric when points were sampled.
_IGNORED_SUFFIXES = ("__min", "__max", "_step")
#: Largest run a record may describe, and the most steps interpolated per given value: memory follows the input.
MAX_STEPS = 100_000_000
MAX_STEPS_PER_VALUE = 10_000


class NormInputError(ValueError):
    """An input file cannot be turned into a norm record. The message names the file, the problem and the fix."""


def _step_number(value, path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise NormInputError(f"{path}: {where} has step {value!r}; steps must be whole numbers.")
    if not 0 <= value <= MAX_STEPS:
        raise NormInputError(f"{path}: {where} has step {int(value):,}; steps must lie in 0..{MAX_STEPS:,}.")
    return int(value)


def _fill_every_step(steps, values, what: str, path, first: int = None, last: int = None):
    """Place (step, value) points on every step `first..last`; returns the per-step values and how many were filled.

    Non-finite values at given steps stay (they mark skipped steps); a step without a point takes the linear
    interpolation of the finite neighbours, or the nearest finite value before the first / after the last point.
    """
    order = np.argsort(steps, kind="stable")
    steps, values = np.asarray(steps, dtype=np.int64)[order], np.asarray(values, dtype=np.float64)[order]
    if (np.diff(steps) == 0).any():
        duplicate = int(steps[np.flatnonzero(np.diff(steps) == 0)[0]])
        raise NormInputError(f"{path}: step {duplicate} appears twice in the {what}; keep one value per step.")
    first = int(steps[0]) if first is None else first
    last = int(steps[-1]) if last is None else last
    num_steps = last - first + 1
    if num_steps > MAX_STEPS_PER_VALUE * len(steps):
        raise NormInputError(
            f"{path}: the {what} covers steps {first:,}..{last:,} with only {len(steps):,} values; filling "
            f"{num_steps - len(steps):,} steps from them would invent the record (at most {MAX_STEPS_PER_VALUE:,} steps "
            "per value are interpolated). Log more often (e.g. `logging_steps=1`) or check the step column.")
    per_step = np.full(num_steps, np.nan)
    per_step[steps - first] = values
    missing = np.ones(num_steps, dtype=bool)
    missing[steps - first] = False
    finite = np.isfinite(values)
    if missing.any():
        if finite.sum() < 2:
            raise NormInputError(f"{path}: fewer than 2 finite values in the {what}; nothing to interpolate from.")
        per_step[missing] = np.interp(np.flatnonzero(missing), (steps - first)[finite], values[finite])
    return per_step, int(missing.sum())


def _read_trainer_state(state: dict, path) -> NormRecord:
    global_step = _step_number(state.get("global_step") or 0, path, "`global_step`")
    saved = (state.get("stateful_callbacks") or {}).get("RefinementCallback")
    try:
        record = saved_callback_record(saved, os.path.dirname(os.path.abspath(path)), global_step, path)
    except ValueError as error:
        raise NormInputError(str(error)) from None
    if record is not None:
        if len(record) < global_step:
            record.notes.append(f"the callback's record covers {len(record)} of {global_step} steps; the rest are "
                                "marked skipped and filled when refining")
            record.pad_to(global_step)
        return record
    history = state.get("log_history")
    if not isinstance(history, list):
        raise NormInputError(f"{path}: `log_history` must be a list; is this a Trainer trainer_state.json?")
    points = []
    for index, entry in enumerate(history):
        if not (isinstance(entry, dict) and "grad_norm" in entry and "step" in entry):
            continue
        where = f"log_history[{index}]"
        step = _step_number(entry["step"], path, where)
        norm, lr = entry["grad_norm"], entry.get("learning_rate")
        for name, value in (("grad_norm", norm), ("learning_rate", lr)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise NormInputError(f"{path}: {where} has {name} {value!r}; expected a number or null.")
        if step < 1:
            raise NormInputError(f"{path}: {where} has step {step}; logged steps start at 1.")
        points.append((step - 1, math.nan if norm is None else float(norm), lr))
    if len(points) < 2:
        raise NormInputError(f"{path}: the log history has {len(points)} entries with `grad_norm`; need at least 2. Train "
                             "with `logging_steps=1`, or record the run with RefinementCallback (exact, both norms).")
    # The Trainer logs at `step` = global_step after the update, so logged step s describes optimizer step s-1.
    steps = np.array([step for step, _, _ in points])
    last = max(global_step, int(steps.max()) + 1) - 1
    columns = {"grad_norm_l2": None, "lr": None}
    columns["grad_norm_l2"], interpolated = _fill_every_step(steps, [n for _, n, _ in points], "logged grad_norm", path, 0, last)
    if all(lr is not None for _, _, lr in points):
        columns["lr"], _ = _fill_every_step(steps, [float(lr) for _, _, lr in points], "logged learning_rate", path, 0, last)
    folder_name = os.path.basename(os.path.dirname(os.path.abspath(path))) or "."
    record = NormRecord.from_columns(columns, run=RunInfo(per_device_train_batch_size=state.get("train_batch_size"),
                                                          source=f"trainer_state.json ({folder_name})"))
    record.notes.append("no RefinementCallback record in this file: used the logged grad_norm (l2 only; Adam-type "
                        "runs refine from l1 norms, which RefinementCallback records)")
    if interpolated:
        record.notes.append(f"interpolated the gradient norm (and learning rate) linearly on {interpolated} of "
                            f"{len(record)} steps between logging steps (logging_steps={state.get('logging_steps')}); "
                            "log every step for an exact record")
    return record


def _is_number(text: str) -> bool:
    try:
        return float(text) is not None
    except ValueError:
        return False


def _read_table(text: str, path, column: str | None, norm: str | None) -> NormRecord:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise NormInputError(f"{path}: the file holds no values; expected one norm per line or a CSV with a header.")
    dialect = "excel-tab" if "\t" in lines[0] else "excel"
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO("\n".join(lines)), dialect)]
    except csv.Error as error:
        raise NormInputError(f"{path}: not a readable CSV ({error}); expected one norm per line or a CSV.") from None
    header = rows[0] if not all(_is_number(cell) or cell == "" for cell in rows[0]) else None
    rows = rows[1:] if header else rows
    if not rows:
        raise NormInputError(f"{path}: the CSV has a header row but no values below it.")
    if header is None and (max(len(row) for row in rows) != 1 or column is not None):
        raise NormInputError(f"{path}: a file without a header row must hold one norm per line; add a header row "
                             "naming the columns and pass --column NAME.")
    width = len(header) if header else 1
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise NormInputError(f"{path}: line {number} has {len(row)} fields, the header has {width}.")

    def values_of(index: int, name: str) -> np.ndarray:
        out = np.empty(len(rows))
        for number, row in enumerate(rows):
            if row[index] != "" and not _is_number(row[index]):
                raise NormInputError(f"{path}: column {name!r} holds {row[index][:40]!r} on data row {number + 1}; "
                                     "expected a number.")
            out[number] = float(row[index]) if row[index] != "" else math.nan
        return out

    column_name, steps = None, np.arange(len(rows), dtype=np.float64)
    if header is None:
        norms = values_of(0, "1")
    else:
        lowered = [name.lower() for name in header]
        step_index = next((i for i, name in enumerate(lowered) if name in STEP_COLUMNS), None)
        if column is not None and column not in header:
            raise NormInputError(f"{path}: --column {column!r} is not in the header {header}.")
        candidates = [header.index(column)] if column is not None else [
            i for i, name in enumerate(lowered) if i != step_index and not name.endswith(_IGNORED_SUFFIXES)]
        if len(candidates) != 1:
            raise NormInputError(f"{path}: cannot tell which column holds the norms among {header}; pass --column NAME.")
        column_name = header[candidates[0]]
        norms = values_of(candidates[0], column_name)
        if step_index is not None:
            steps = values_of(step_index, header[step_index])
    steps = np.array([_step_number(float(s), path, f"the step column (row {i + 1})") for i, s in enumerate(steps)])
    per_step, interpolated = _fill_every_step(steps, norms, f"column {column_name or 1}", path)
    named = [name for name in NORM_TYPES if column_name and name in column_name.lower()]
    norm = norm or (named[0] if len(named) == 1 else "l2")
    source = os.path.basename(path) + (f" column {column_name!r}" if column_name else "")
    record = NormRecord.from_columns({NORM_TYPES[norm].tensor: per_step}, run=RunInfo(source=source))
    if interpolated:
        record.notes.append(f"interpolated the norm linearly on {interpolated} of {per_step.size} steps missing from "
                            "the step column")
    return record


def read_record(path, *, column: str | None = None, norm: str | None = None):
    """Read a per-step record from a schedule file, a `trainer_state.json` or a CSV/text file of norms.

    Args:
        column (`str`, *optional*): CSV column holding the norms (default: the only non-step column).
        norm (`str`, *optional*): for CSV input, what the values are ("l1" when the column name contains "l1", else
            "l2"); other inputs hold their own norms and ignore it here (the refinement chooses among them).

    Returns:
        `(record, settings)`: the record, and for a schedule file the settings it was refined with (else `None`).
    """
    if norm is not None:
        check_norm(norm)
    path = check_readable_file(path, NormInputError, "pass a schedule file, a trainer_state.json or a CSV of norms")
    if path.endswith(".safetensors") or looks_like_safetensors(path):
        if column is not None:
            raise NormInputError(f"{path}: --column applies to CSV input, not to schedule files.")
        if file_format(path) == RECORD_FORMAT:  # a checkpoint's norm_record.safetensors
            return load_record_file(path), None
        schedule = load_schedule_file(path)
        return schedule.record, schedule.settings
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise NormInputError(f"{path}: not a schedule file, trainer_state.json or CSV/text file (not UTF-8 text).") from None
    except OSError as error:
        raise NormInputError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if not text.lstrip().startswith("{"):
        return _read_table(text, path, column, norm), None
    try:
        state = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise NormInputError(f"{path}: invalid JSON ({error}); pass an intact trainer_state.json.") from None
    if not isinstance(state, dict) or "log_history" not in state:
        raise NormInputError(f"{path}: a JSON file without `log_history`; pass a Trainer trainer_state.json.")
    if column is not None:
        raise NormInputError(f"{path}: --column applies to CSV input, not to trainer_state.json.")
    return _read_trainer_state(state, path), None
