"""A CSV or text file of norms as a record: one value per line, or a named column (e.g. a W&B export)."""

from __future__ import annotations

import csv
import io
import math
import os

import numpy as np

from ..core.norms import DEFAULT_NORM, NORM_TYPES
from ..core.record import NormRecord, RunInfo
from .steps import NormInputError, fill_every_step, step_number

__all__ = ["STEP_COLUMNS", "record_from_table"]

STEP_COLUMNS = ("step", "_step", "steps", "global_step", "trainer/global_step", "train/global_step")
# W&B exports add `<metric>__MIN` / `<metric>__MAX` columns next to each metric when points were sampled.
_IGNORED_SUFFIXES = ("__min", "__max", "_step")


def _is_number(text: str) -> bool:
    try:
        return float(text) is not None
    except ValueError:
        return False


def record_from_table(text: str, path, column: str | None, norm: str | None) -> NormRecord:
    """The record of a CSV/text file's norm column (`column`, else the only non-step column); `norm` says what the
    values are (default: l1 when the column's name says so, else l2)."""
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
            raise NormInputError(f"{path}: cannot tell which column holds the norms among {header}; pass --column "
                                 "NAME.")
        column_name = header[candidates[0]]
        norms = values_of(candidates[0], column_name)
        if step_index is not None:
            steps = values_of(step_index, header[step_index])
    steps = np.array([step_number(float(s), path, f"the step column (row {i + 1})") for i, s in enumerate(steps)])
    per_step, interpolated = fill_every_step(steps, norms, f"column {column_name or 1}", path)
    named = [name for name in NORM_TYPES if column_name and name in column_name.lower()]
    norm = norm or (named[0] if len(named) == 1 else DEFAULT_NORM)
    source = os.path.basename(path) + (f" column {column_name!r}" if column_name else "")
    record = NormRecord.from_columns({NORM_TYPES[norm].tensor: per_step}, run=RunInfo(source=source))
    if interpolated:
        record.notes.append(f"interpolated the norm linearly on {interpolated} of {per_step.size} steps missing from "
                            "the step column")
    return record
