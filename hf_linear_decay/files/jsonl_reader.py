"""JSON lines of per-step metrics as a record: one object per line, as many loggers write them.

Each line is an object; lines with a norm key are used: `grad_norm_l1`, `grad_norm_l2`, or `grad_norm` (the pre-clip
l2 norm the Trainer logs), with an optional step key (`step`, `global_step`, `_step`, ...; else the line number) and
`learning_rate`. `--column NAME` picks another key for the norm.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..core.norms import DEFAULT_NORM, NORM_TYPES
from ..core.record import NormRecord, RunInfo
from .steps import NormInputError, fill_every_step, step_number
from .table_reader import STEP_COLUMNS
from .trainer_state_reader import parse_json

__all__ = ["looks_like_json_lines", "record_from_json_lines"]


def looks_like_json_lines(text: str) -> bool:
    """At least two non-blank lines, the first of them a complete JSON object on its own (a pretty-printed JSON
    document starts with a lone `{`, and a one-line document has no second line)."""
    import json

    lines = [line for line in text.splitlines() if line.strip()][:2]
    if len(lines) < 2 or not lines[1].lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except ValueError:
        return False


def record_from_json_lines(text: str, path, column: str | None, norm: str | None) -> NormRecord:
    keys = [column] if column else [n.tensor for n in NORM_TYPES.values()] + ["grad_norm"]
    points, chosen = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        entry = parse_json(line, f"{path}: line {number}")
        if not isinstance(entry, dict):
            raise NormInputError(f"{path}: line {number} is not a JSON object; expected one object per line.")
        key = chosen or next((k for k in keys if k in entry), None)
        if key is None or key not in entry:
            continue
        chosen, value = key, entry[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise NormInputError(f"{path}: line {number} has {key} {value!r:.60}; expected a number or null.")
        step_key = next((k for k in STEP_COLUMNS if k in entry), None)
        step = step_number(entry[step_key], path, f"line {number}") if step_key else len(points)
        points.append((step, math.nan if value is None else float(value), entry.get("learning_rate")))
    if len(points) < 2:
        wanted = f"`{column}`" if column else "`grad_norm_l1`, `grad_norm_l2` or `grad_norm`"
        raise NormInputError(f"{path}: {len(points)} lines hold {wanted}; need at least 2 (pass --column NAME for "
                             "another key).")
    steps = np.array([step for step, _, _ in points])
    per_step, interpolated = fill_every_step(steps, [value for _, value, _ in points], f"key {chosen!r}", path)
    named = [n.name for n in NORM_TYPES.values() if n.name in chosen.lower()]
    norm = norm or (named[0] if len(named) == 1 else DEFAULT_NORM)
    columns = {NORM_TYPES[norm].tensor: per_step}
    if all(isinstance(lr, (int, float)) and not isinstance(lr, bool) for _, _, lr in points):
        columns["lr"], _ = fill_every_step(steps, [float(lr) for _, _, lr in points], "learning_rate", path)
    record = NormRecord.from_columns(columns, run=RunInfo(source=f"{os.path.basename(path)} key {chosen!r}"))
    if interpolated:
        record.notes.append(f"interpolated the norm linearly on {interpolated} of {per_step.size} steps between lines")
    return record
