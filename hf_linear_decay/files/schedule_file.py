"""Our two file formats, safetensors + string metadata, no pickle: the schedule file and the record file.

**Schedule file** (`refined_schedule.safetensors`, format `hf_linear_decay.refined_schedule`): a record and the
schedule refined from it, tensors of length T (optimizer steps): `grad_norm_l2`, `grad_norm_l1` (pre-clip norms, one
per row of `core.norms.NORM_TYPES`), `lr` (float64), `skipped` (uint8: optimizer skip, unknown, non-finite or ≤ 0
norm) and `multipliers` (float64 in [0, 1], peak 1; the refinements end at 0, a kept or followed schedule where pass
1's LR ended); metadata `adaptive` holds what an adaptive run planned and decided (JSON). An unrecorded column is
all NaN (or absent) and not in metadata `recorded`. **Record file** (`norm_record.safetensors`, format
`hf_linear_decay.norm_record`): the record without a schedule, as checkpoints keep it. What each version holds is
the table in `formats` (a new tensor or key is a new version; old versions keep loading). Writes are atomic; a file
is opened once, its header checked first.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timezone

import numpy as np

from .._version import __version__
from ..core.record import NORM_COLUMNS, RECORD_COLUMNS, NormRecord, RunInfo
from ..core.schedule import RefinedSchedule, schedule_problem
from ..core.settings import RefinementSettings
from .atomic import write_bytes_atomically
from .paths import check_readable_file
from .safetensors_io import SafetensorsFault, read_header, read_tensor

__all__ = ["RECORD_FILE_NAME", "SCHEDULE_FILE_NAME", "ScheduleFileError", "load_record_file", "load_schedule_file",
           "read_safetensors_input", "save_record_file", "save_schedule_file", "schedule_metadata"]

from .formats import (FLOAT_TENSORS, RECORD_FILE_NAME, RECORD_FORMAT, RECORD_KEYS, RECORD_LAYOUTS, RECORD_VERSION,
                      SCHEDULE_FILE_NAME, SCHEDULE_FORMAT, SCHEDULE_KEYS, SCHEDULE_LAYOUTS, SCHEDULE_VERSION, Layout)


class ScheduleFileError(ValueError):
    """A schedule or record file cannot be read or does not hold what it should; the message names the fix."""


def _fail(path, message: str):
    raise ScheduleFileError(f"{path}: {message}")


# ----- writing --------------------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record_tensors(record: NormRecord) -> dict:
    tensors = {name: np.ascontiguousarray(record.column(name)) for name in RECORD_COLUMNS}
    tensors["skipped"] = record.skipped.astype(np.uint8)
    return tensors


def _record_metadata(record: NormRecord, file_format: str, version: int) -> dict:
    return {"format": file_format, "format_version": str(version), "package_version": __version__,
            "num_steps": str(len(record)), "recorded": ",".join(record.recorded), **record.run.to_strings(),
            "created_at": _now()}


def schedule_metadata(schedule: RefinedSchedule) -> dict[str, str]:
    """The metadata a schedule file of `schedule` holds (as written, or as read when it was loaded)."""
    metadata = _record_metadata(schedule.record, SCHEDULE_FORMAT, SCHEDULE_VERSION)
    settings = schedule.settings
    metadata.update(method=settings.method, tau=repr(float(settings.tau)), norm=str(settings.norm),
                    power=repr(float(settings.power)), method_options=json.dumps(settings.options, sort_keys=True),
                    adaptive=json.dumps(schedule.adaptive, sort_keys=True) if schedule.adaptive else "")
    metadata.update({key: value for key, value in (("created_at", schedule.created_at),
                                                    ("package_version", schedule.package_version)) if value})
    return {key: metadata[key] for key in SCHEDULE_KEYS}


def save_schedule_file(schedule: RefinedSchedule, path) -> str:
    """Validate `schedule` and write it to `path` atomically; returns the path. Call it from one process only."""
    from safetensors.numpy import save

    tensors = _record_tensors(schedule.record)
    tensors["multipliers"] = np.ascontiguousarray(schedule.multipliers, dtype=np.float64)
    _check_schedule(tensors["multipliers"], schedule.record, schedule.settings, os.fspath(path))
    metadata = {**schedule_metadata(schedule), "package_version": __version__, "created_at": _now()}
    return write_bytes_atomically(path, save(tensors, metadata=metadata))


def save_record_file(record: NormRecord, path) -> str:
    """Write a record (no schedule) to `path` atomically; returns the path."""
    from safetensors.numpy import save

    metadata = _record_metadata(record, RECORD_FORMAT, RECORD_VERSION)
    return write_bytes_atomically(path, save(_record_tensors(record), metadata={key: metadata[key]
                                                                                for key in RECORD_KEYS}))


# ----- reading --------------------------------------------------------------------------------------------------------
def _header(path, handle):
    """Metadata, tensor index and data offset of an open safetensors file, or a clear error."""
    try:
        return read_header(handle)
    except SafetensorsFault as fault:
        if fault.kind == "foreign":
            _fail(path, f"{fault}; pass a schedule file (.safetensors), or give CSV/text norms and trainer_state.json "
                        "files to `hf-linear-decay refine`.")
        truncated = str(fault).startswith("truncated")
        hint = ("the write was probably interrupted. Use the copy in a checkpoint folder, or refine the run's record "
                "again." if truncated else "rewrite it with `hf-linear-decay refine`.")
        _fail(path, f"the safetensors data is {'truncated or corrupt' if truncated else 'damaged'} "
                    f"({os.fstat(handle.fileno()).st_size} bytes; {fault}); {hint}")
    except OSError as error:
        _fail(path, f"cannot be read ({error.strerror or error}); check the disk and the file.")


def _version(path, metadata: dict, expected_format: str, layouts: dict, what: str) -> int:
    """The format version of a file of `expected_format` that this package can read, or a clear error."""
    if metadata.get("format") != expected_format:
        if metadata.get("format") == RECORD_FORMAT:
            _fail(path, "a record file (the norms a run recorded, as each checkpoint keeps them), not a schedule; "
                        f"make a schedule from it with `hf-linear-decay refine {path} -o {SCHEDULE_FILE_NAME}` and "
                        "pass that.")
        _fail(path, f"not a {what} (metadata `format` is {metadata.get('format')!r}, expected {expected_format!r}); "
                    "pass a file written by RefinementCallback or `hf-linear-decay refine`.")
    version_text = metadata.get("format_version", "")
    if not re.fullmatch(r"[0-9]{1,6}", version_text) or int(version_text) < 1:
        _fail(path, f"metadata `format_version` must be a positive integer, got {version_text!r}; the file is damaged.")
    latest = max(layouts)
    if int(version_text) > latest:
        _fail(path, f"format version {version_text} is newer than this hf_linear_decay ({__version__}) can read "
                    "(version "
                    f"{latest}); upgrade hf_linear_decay (`pip install -U hf_linear_decay`).")
    return int(version_text)


def _read_tensors(path, handle, index, offset, layout: Layout, num_steps: int, recorded, skip=()) -> dict:
    # A norm this version's writer did not record may be absent (a file written before a norm joined the table).
    required = [name for name in layout.tensors if name not in RECORD_COLUMNS or name in recorded]
    missing, unexpected = [n for n in required if n not in index], [n for n in index if n not in layout.tensors]
    if missing or unexpected:
        _fail(path, f"tensors missing {missing}, unexpected {unexpected}; expected {list(layout.tensors)}.")
    tensors = {}
    for name in layout.tensors:
        if name not in index:
            continue
        entry = index[name]
        expected = "float64" if name in FLOAT_TENSORS else "uint8"
        held = str(entry.numpy_dtype) if entry.numpy_dtype is not None else entry.dtype
        if held != expected:
            _fail(path, f"tensor `{name}` has dtype {held}, expected {expected}; rewrite the file.")
        if entry.shape != (num_steps,):
            _fail(path, f"tensor `{name}` has shape {entry.shape}, expected ({num_steps},) from metadata `num_steps`; "
                        "the file is damaged or was edited by hand.")
        if name in skip:  # described by the header, not needed by the caller: not read
            continue
        try:
            tensors[name] = read_tensor(handle, entry, offset)
        except OSError as error:
            _fail(path, f"cannot be read ({error.strerror or error}); check the disk and the file.")
    return {**{name: np.full(num_steps, np.nan) for name in RECORD_COLUMNS}, **tensors}


def _record_from(path, handle, index, offset, metadata, layout: Layout, min_steps: int,
                 skip=()) -> tuple[NormRecord, dict]:
    missing = [key for key in layout.keys if key not in metadata]
    if missing:
        _fail(path, f"metadata is missing {missing}; the file is damaged or was not written by hf_linear_decay.")
    if not re.fullmatch(r"[0-9]{1,12}", metadata["num_steps"]) or int(metadata["num_steps"]) < min_steps:
        _fail(path, f"metadata `num_steps` must be an integer >= {min_steps}, got {metadata['num_steps']!r}.")
    num_steps = int(metadata["num_steps"])
    recorded = tuple(name for name in metadata["recorded"].split(",") if name)
    unknown = [name for name in recorded if name not in RECORD_COLUMNS]
    if unknown:
        _fail(path, f"metadata `recorded` names unknown columns {unknown}; allowed: {list(RECORD_COLUMNS)}.")
    tensors = _read_tensors(path, handle, index, offset, layout, num_steps, recorded, skip)
    skipped = tensors["skipped"]
    if not np.isin(skipped, (0, 1)).all():
        _fail(path, "tensor `skipped` must hold only 0 and 1.")
    for name in RECORD_COLUMNS:
        values = tensors[name]
        if name not in recorded:
            if not np.isnan(values).all():
                _fail(path, f"tensor `{name}` is not listed in metadata `recorded` and must then be all NaN.")
            continue
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(values) & ((values > 0) if name in NORM_COLUMNS else (values >= 0))) & (skipped == 0)
        if bad.any():
            step = int(np.flatnonzero(bad)[0])
            _fail(path, f"tensor `{name}` holds {float(values[step])!r} at step {step}, which is not flagged "
                        "`skipped`; "
                        + ("recorded norms must be finite and > 0." if name in NORM_COLUMNS else
                           "recorded values must be finite and >= 0."))
    try:
        run = RunInfo.from_strings(metadata)
    except ValueError as error:
        _fail(path, f"metadata {error}; rewrite the file with `hf-linear-decay refine`.")
    record = NormRecord.from_columns({name: tensors[name] for name in recorded}, skipped.astype(bool), run)
    return record, tensors


def _check_schedule(multipliers: np.ndarray, record: NormRecord, settings: RefinementSettings, path) -> None:
    problem = schedule_problem(multipliers, record, settings.norm)
    if problem:
        _fail(path, problem)


def _settings_from(metadata: dict, path) -> RefinementSettings:
    numbers = {}
    for key in ("tau", "power"):
        try:
            numbers[key] = float(metadata[key])
        except ValueError:
            _fail(path, f"metadata `{key}` must be a number, got {metadata[key]!r}; refine the record again.")
    try:
        options = json.loads(metadata.get("method_options", "{}"), parse_constant=lambda name: math.nan)
        return RefinementSettings(method=metadata.get("method", "paper"), norm=metadata["norm"], options=options,
                                  **numbers)
    except (ValueError, RecursionError) as error:
        _fail(path, f"metadata {error}; refine the record again with valid settings.")


_SCHEDULE_WHAT, _RECORD_WHAT = "schedule file (.safetensors)", "record file (norm_record.safetensors)"


def _schedule_from(path, handle, header) -> RefinedSchedule:
    metadata, index, offset = header
    version = _version(path, metadata, SCHEDULE_FORMAT, SCHEDULE_LAYOUTS, _SCHEDULE_WHAT)
    record, tensors = _record_from(path, handle, index, offset, metadata, SCHEDULE_LAYOUTS[version], min_steps=2)
    settings = _settings_from(metadata, path)
    _check_schedule(tensors["multipliers"], record, settings, path)
    return RefinedSchedule(record=record, multipliers=tensors["multipliers"], settings=settings,
                           created_at=metadata["created_at"], package_version=metadata["package_version"],
                           adaptive=_adaptive_from(metadata, path))


def _adaptive_from(metadata: dict, path) -> dict | None:
    text = metadata.get("adaptive", "")
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("plan"), dict):
        _fail(path, f"metadata `adaptive` must be a JSON object with the run's `plan`, got {text[:60]!r}; the file is "
                    "damaged.")
    return value


def _record_file_from(path, handle, header) -> NormRecord:
    metadata, index, offset = header
    version = _version(path, metadata, RECORD_FORMAT, RECORD_LAYOUTS, _RECORD_WHAT)
    return _record_from(path, handle, index, offset, metadata, RECORD_LAYOUTS[version], min_steps=0)[0]


def load_schedule_file(path) -> RefinedSchedule:
    """Read and validate a schedule file of any known version. Raises `ScheduleFileError` with the reason and fix.

    Version 1 (0.1.x) has no `method` (it was always "paper"); version 2 no `method_options` and `weight_decay`;
    version 3 no `adaptive`.
    """
    path = check_readable_file(path, ScheduleFileError, f"pass the path of a {_SCHEDULE_WHAT}")
    with _open(path) as handle:
        return _schedule_from(path, handle, _header(path, handle))


def load_record_file(path) -> NormRecord:
    """Read and validate a record file (the callback's record in a checkpoint) of any known version."""
    path = check_readable_file(path, ScheduleFileError, f"pass the path of a {_RECORD_WHAT}")
    with _open(path) as handle:
        return _record_file_from(path, handle, _header(path, handle))


def _open(path):
    try:
        return open(path, "rb")
    except OSError as error:
        _fail(path, f"cannot be read ({error.strerror or error}); check the disk and the file.")


def read_safetensors_input(path, handle) -> tuple[NormRecord, RefinementSettings | None]:
    """From an open file: a schedule file's record and the settings it was refined with, or a record file's record and
    `None`, told apart by the header's `format` (one of the CLI's input readers). A schedule's multipliers are not
    read: what refines the record again is its record and its settings."""
    header = _header(path, handle)
    if header[0].get("format") == RECORD_FORMAT:
        return _record_file_from(path, handle, header), None
    metadata, index, offset = header
    version = _version(path, metadata, SCHEDULE_FORMAT, SCHEDULE_LAYOUTS, _SCHEDULE_WHAT)
    record, _ = _record_from(path, handle, index, offset, metadata, SCHEDULE_LAYOUTS[version], min_steps=2,
                             skip=("multipliers",))
    return record, _settings_from(metadata, path)
