"""Read per-step gradient-norm records from the files users already have.

Three kinds of input, told apart by content, not by name:

- one of our schedule files (safetensors): its raw norms, skip flags, LRs and run facts;
- a Trainer `trainer_state.json`: the logged `grad_norm` (the pre-clip l2 norm) and `learning_rate` of each logging
  step, linearly interpolated between logging steps when `logging_steps > 1`;
- a CSV or text file of norms: one value per line, or a named column (e.g. a W&B export with a `Step` column).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .schedule_file import NORM_TENSOR, RunInfo, ScheduleFile, load_schedule_file, looks_like_safetensors

__all__ = ["NormRecord", "read_norm_record"]

STEP_COLUMNS = ("step", "_step", "steps", "global_step", "trainer/global_step", "train/global_step")
# W&B exports add `<metric>__MIN` / `<metric>__MAX` columns next to each metric when points were sampled.
_IGNORED_SUFFIXES = ("__min", "__max", "_step")


class NormInputError(ValueError):
    """An input file cannot be turned into a norm record. The message names the file, the problem and the fix."""


@dataclass
class NormRecord:
    """A per-step record read from a file; unrecorded fields are `None`."""

    grad_norm_l2: np.ndarray | None = None
    grad_norm_l1: np.ndarray | None = None
    lr: np.ndarray | None = None
    skipped: np.ndarray | None = None
    run: RunInfo = field(default_factory=RunInfo)
    default_norm: str = "l2"
    default_tau: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_schedule_file(self, *, norm: str | None = None, tau: float, power: float | None = None) -> ScheduleFile:
        norm = norm or self.default_norm
        if norm not in NORM_TENSOR:
            raise NormInputError(f"`--norm` must be 'l1' or 'l2', got {norm!r}.")
        if getattr(self, NORM_TENSOR[norm]) is None:
            available = [n for n, name in NORM_TENSOR.items() if getattr(self, name) is not None]
            raise NormInputError(
                f"`--norm {norm}` needs {NORM_TENSOR[norm]}, which this input does not have; use --norm {available[0]}."
            )
        return ScheduleFile.from_record(
            grad_norm_l2=self.grad_norm_l2,
            grad_norm_l1=self.grad_norm_l1,
            lr=self.lr,
            skipped=self.skipped,
            norm=norm,
            tau=tau,
            power=power,
            run=self.run,
        )


def _fill_every_step(steps, values, what: str, path, first: int | None = None, last: int | None = None):
    """Place (step, value) points on every step from `first` to `last` (defaults: the first and last logged step).

    Returns the per-step values and how many steps had to be interpolated. Non-finite values at logged steps stay as
    they are (they mark skipped steps); a step without a point takes the linear interpolation of the finite
    neighbours, or the nearest finite value before the first / after the last point.
    """
    order = np.argsort(steps, kind="stable")
    steps, values = np.asarray(steps)[order], np.asarray(values)[order]
    if (np.diff(steps) == 0).any():
        duplicate = int(steps[np.flatnonzero(np.diff(steps) == 0)[0]])
        raise NormInputError(f"{path}: step {duplicate} appears twice in the {what}; keep one value per step.")
    first = int(steps[0]) if first is None else first
    last = int(steps[-1]) if last is None else last
    offsets = (steps - first).astype(np.int64)
    num_steps = last - first + 1
    per_step = np.full(num_steps, np.nan)
    per_step[offsets] = values
    missing = np.ones(num_steps, dtype=bool)
    missing[offsets] = False
    finite = np.isfinite(values)
    if missing.any():
        if finite.sum() < 2:
            raise NormInputError(f"{path}: fewer than 2 finite values in the {what}; nothing to interpolate from.")
        per_step[missing] = np.interp(np.flatnonzero(missing), offsets[finite], values[finite])
    return per_step, int(missing.sum())


def _read_trainer_state(state: dict, path) -> NormRecord:
    history = state.get("log_history")
    if not isinstance(history, list):
        raise NormInputError(f"{path}: `log_history` must be a list; is this a Trainer trainer_state.json?")
    points = [
        (entry["step"], entry["grad_norm"], entry.get("learning_rate"))
        for entry in history
        if isinstance(entry, dict) and "grad_norm" in entry and "step" in entry
    ]
    if len(points) < 2:
        raise NormInputError(
            f"{path}: the log history has {len(points)} entries with `grad_norm`; need at least 2. Train with "
            "`logging_steps=1` (or a small value) so that the Trainer logs the gradient norm."
        )
    # The Trainer logs at `step` = global_step after the update, so logged step s describes optimizer step s-1.
    steps = np.array([int(s) - 1 for s, _, _ in points], dtype=np.int64)
    if steps.min() < 0:
        raise NormInputError(f"{path}: a log entry has step {int(steps.min()) + 1}; steps start at 1.")
    norms = np.array([math.nan if g is None else float(g) for _, g, _ in points])
    # The run covers optimizer steps 0 .. global_step-1 even when the first or last step was not a logging step.
    last = max(int(state.get("global_step") or 0), int(steps.max()) + 1) - 1
    record = NormRecord(default_norm="l2")
    record.grad_norm_l2, interpolated = _fill_every_step(steps, norms, "logged grad_norm", path, first=0, last=last)
    if all(lr is not None for _, _, lr in points):
        lrs = np.array([float(lr) for _, _, lr in points])
        record.lr, _ = _fill_every_step(steps, lrs, "logged learning_rate", path, first=0, last=last)
    num_steps = record.grad_norm_l2.size
    record.skipped = ~np.isfinite(record.grad_norm_l2)
    if interpolated:
        logging_steps = state.get("logging_steps")
        record.notes.append(
            f"interpolated the gradient norm (and learning rate) linearly on {interpolated} of {num_steps} steps "
            f"between logging steps (logging_steps={logging_steps}); log every step for an exact record"
        )
    record.run = RunInfo(
        per_device_train_batch_size=state.get("train_batch_size"),
        source=f"trainer_state.json ({os.path.basename(os.path.dirname(os.path.abspath(path))) or '.'})",
    )
    return record


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(text: str, path, column: str | None) -> NormRecord:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise NormInputError(f"{path}: the file holds no values; expected one norm per line or a CSV with a header.")
    dialect = "excel-tab" if "\t" in lines[0] else "excel"
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO("\n".join(lines)), dialect)]
    has_header = not all(_is_number(cell) or cell == "" for cell in rows[0])
    if has_header:
        header, rows = rows[0], rows[1:]
    else:
        header = None
        if max(len(row) for row in rows) != 1 or column is not None:
            raise NormInputError(
                f"{path}: a file without a header row must hold one norm per line; add a header row naming the "
                "columns and pass --column NAME."
            )
    width = len(header) if header else 1
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise NormInputError(f"{path}: line {number} has {len(row)} fields, the header has {width}.")

    def values_of(index: int, name: str) -> np.ndarray:
        out = np.empty(len(rows))
        for number, row in enumerate(rows):
            cell = row[index]
            if cell == "":
                out[number] = math.nan
            elif _is_number(cell):
                out[number] = float(cell)
            else:
                raise NormInputError(f"{path}: column {name!r} holds {cell!r} on data row {number + 1}; expected a number.")
        return out

    record = NormRecord()
    step_index = None
    if header is None:
        norms, column_name = values_of(0, "1"), None
        steps = np.arange(len(rows))
    else:
        lowered = [name.lower() for name in header]
        step_index = next((i for i, name in enumerate(lowered) if name in STEP_COLUMNS), None)
        if column is not None:
            if column not in header:
                raise NormInputError(f"{path}: --column {column!r} is not in the header {header}.")
            norm_index = header.index(column)
        else:
            candidates = [
                i for i, name in enumerate(lowered) if i != step_index and not name.endswith(_IGNORED_SUFFIXES)
            ]
            if len(candidates) != 1:
                raise NormInputError(
                    f"{path}: cannot tell which column holds the norms among {header}; pass --column NAME."
                )
            norm_index = candidates[0]
        column_name = header[norm_index]
        norms = values_of(norm_index, column_name)
        steps = values_of(step_index, header[step_index]) if step_index is not None else np.arange(len(rows))
        if not np.isfinite(steps).all() or (steps != np.round(steps)).any():
            raise NormInputError(f"{path}: the step column {header[step_index]!r} must hold whole numbers.")
    per_step, interpolated = _fill_every_step(steps.astype(np.int64), norms, f"column {column_name or 1}", path)
    if interpolated:
        record.notes.append(
            f"interpolated the norm linearly on {interpolated} of {per_step.size} steps missing from the step column"
        )
    record.default_norm = "l1" if column_name and "l1" in column_name.lower() else "l2"
    setattr(record, NORM_TENSOR[record.default_norm], per_step)
    record.skipped = ~np.isfinite(per_step)
    record.run = RunInfo(source=f"{os.path.basename(path)}" + (f" column {column_name!r}" if column_name else ""))
    return record


def read_norm_record(path, *, column: str | None = None, norm: str | None = None) -> NormRecord:
    """Read a per-step norm record from a schedule file, a `trainer_state.json` or a CSV/text file of norms.

    Args:
        path: the input file.
        column (`str`, *optional*): CSV column holding the norms (default: the only non-step column).
        norm (`str`, *optional*): "l1" or "l2": what the CSV values are. Defaults to "l1" when the column name contains
            "l1", else "l2". For a trainer_state.json only "l2" exists; for a schedule file it selects the raw norm.

    Raises:
        NormInputError / ScheduleFileError (both `ValueError`): with the file, the problem and the fix.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NormInputError(f"{path}: no such file.")
    if path.endswith(".safetensors") or looks_like_safetensors(path):
        if column is not None:
            raise NormInputError(f"{path}: --column applies to CSV input, not to schedule files.")
        schedule = load_schedule_file(path)
        record = NormRecord(
            grad_norm_l2=schedule.grad_norm_l2 if "grad_norm_l2" in schedule.recorded else None,
            grad_norm_l1=schedule.grad_norm_l1 if "grad_norm_l1" in schedule.recorded else None,
            lr=schedule.lr if "lr" in schedule.recorded else None,
            skipped=schedule.skipped,
            run=schedule.run,
            default_norm=schedule.norm,
            default_tau=schedule.tau,
        )
        return record
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise NormInputError(
            f"{path}: not a schedule file, trainer_state.json or CSV/text file (it is not UTF-8 text)."
        ) from None
    if text.lstrip().startswith("{"):
        try:
            state = json.loads(text)
        except json.JSONDecodeError as error:
            raise NormInputError(f"{path}: invalid JSON ({error}); pass an intact trainer_state.json.") from None
        if not isinstance(state, dict) or "log_history" not in state:
            raise NormInputError(f"{path}: a JSON file without `log_history`; pass a Trainer trainer_state.json.")
        if column is not None:
            raise NormInputError(f"{path}: --column applies to CSV input, not to trainer_state.json.")
        if norm == "l1":
            raise NormInputError(
                f"{path}: a trainer_state.json logs only the l2 `grad_norm`; use --norm l2, or record l1 norms with "
                "RefinementCallback."
            )
        return _read_trainer_state(state, path)
    record = _read_table(text, path, column)
    if norm is not None and norm != record.default_norm:
        if norm not in NORM_TENSOR:
            raise NormInputError(f"`--norm` must be 'l1' or 'l2', got {norm!r}.")
        values = getattr(record, NORM_TENSOR[record.default_norm])
        setattr(record, NORM_TENSOR[record.default_norm], None)
        setattr(record, NORM_TENSOR[norm], values)
        record.default_norm = norm
    return record
