"""File formats, safetensors + string metadata, no pickle: the schedule file and the record file.

**Schedule file** (`refined_schedule.safetensors`, format `hf_linear_decay.refined_schedule`, version 2): a record
and the schedule refined from it. Tensors, each of length T (optimizer steps):

| tensor | dtype | meaning |
|---|---|---|
| `grad_norm_l2`, `grad_norm_l1` | float64 | pre-clip norms at step t (one tensor per row of `norms.NORM_TYPES`) |
| `lr` | float64 | learning rate used at step t |
| `skipped` | uint8 | 1 = unusable step: optimizer skip (fp16 overflow), unknown, non-finite or ≤ 0 norm |
| `multipliers` | float64 | the refined schedule: in [0, 1], peak 1, last 0 |

An unrecorded column is all NaN and absent from metadata `recorded`. Metadata: `SCHEDULE_KEYS`. Version 1 (0.1.x)
has no `method` key (it was always "paper") and still loads. **Record file** (`norm_record.safetensors`, format
`hf_linear_decay.norm_record`, version 1): the same record tensors and run metadata without a schedule; checkpoints
keep the callback's record in it.

Writers write the newest version atomically; each version has its own reader.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields
from datetime import datetime, timezone

import numpy as np

from .atomic import write_bytes_atomically
from .paths import check_readable_file
from .._version import __version__
from ..core.methods import RefinedSchedule, RefinementSettings
from ..core.norms import NORM_TYPES
from ..core.record import NORM_COLUMNS, RECORD_COLUMNS, NormRecord, RunInfo

__all__ = ["RECORD_FILE_NAME", "SCHEDULE_FILE_NAME", "ScheduleFileError", "load_record_file", "load_schedule_file",
           "looks_like_safetensors", "save_record_file", "save_schedule_file", "schedule_metadata"]

SCHEDULE_FILE_NAME = "refined_schedule.safetensors"
RECORD_FILE_NAME = "norm_record.safetensors"
SCHEDULE_FORMAT, SCHEDULE_VERSION = "hf_linear_decay.refined_schedule", 2
RECORD_FORMAT, RECORD_VERSION = "hf_linear_decay.norm_record", 1

RECORD_TENSORS = {**{name: np.dtype(np.float64) for name in RECORD_COLUMNS}, "skipped": np.dtype(np.uint8)}
SCHEDULE_TENSORS = {**RECORD_TENSORS, "multipliers": np.dtype(np.float64)}
RUN_KEYS = tuple(field.name for field in fields(RunInfo))
RECORD_KEYS = ("format", "format_version", "package_version", "num_steps", "recorded", *RUN_KEYS, "created_at")
SCHEDULE_KEYS = RECORD_KEYS[:4] + ("method", "tau", "norm", "power") + RECORD_KEYS[4:]


class ScheduleFileError(ValueError):
    """A schedule or record file cannot be read or does not hold what it should; the message names the fix."""


def _fail(path, message: str):
    raise ScheduleFileError(f"{path}: {message}")


# ----- writing --------------------------------------------------------------------------------------------------------
def _record_payload(record: NormRecord, file_format: str, version: int) -> tuple[dict, dict]:
    tensors = {name: np.ascontiguousarray(record.column(name)) for name in RECORD_COLUMNS}
    tensors["skipped"] = record.skipped.astype(np.uint8)
    metadata = {"format": file_format, "format_version": str(version), "package_version": __version__,
                "num_steps": str(len(record)), "recorded": ",".join(record.recorded), **record.run.to_strings(),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return tensors, metadata


def schedule_metadata(schedule: RefinedSchedule) -> dict[str, str]:
    """The metadata a schedule file of `schedule` holds (as written, or as read when it was loaded)."""
    _, metadata = _record_payload(schedule.record, SCHEDULE_FORMAT, SCHEDULE_VERSION)
    settings = schedule.settings
    metadata.update(method=settings.method, tau=repr(float(settings.tau)), norm=str(settings.norm),
                    power=repr(float(settings.power)))
    metadata.update({key: value for key, value in (("created_at", schedule.created_at),
                                                    ("package_version", schedule.package_version)) if value})
    return {key: metadata[key] for key in SCHEDULE_KEYS}


def save_schedule_file(schedule: RefinedSchedule, path) -> str:
    """Validate `schedule` and write it to `path` atomically; returns the path. Call it from one process only."""
    from safetensors.numpy import save

    tensors, _ = _record_payload(schedule.record, SCHEDULE_FORMAT, SCHEDULE_VERSION)
    tensors["multipliers"] = np.ascontiguousarray(schedule.multipliers, dtype=np.float64)
    _check_schedule(tensors["multipliers"], schedule.record, schedule.settings, os.fspath(path))
    metadata = {**schedule_metadata(schedule), "package_version": __version__,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_bytes_atomically(path, save(tensors, metadata=metadata))


def save_record_file(record: NormRecord, path) -> str:
    """Write a record (no schedule) to `path` atomically; returns the path."""
    from safetensors.numpy import save

    tensors, metadata = _record_payload(record, RECORD_FORMAT, RECORD_VERSION)
    return write_bytes_atomically(path, save(tensors, metadata=metadata))


# ----- reading --------------------------------------------------------------------------------------------------------
def looks_like_safetensors(path) -> bool:
    """Whether a file starts like safetensors: an 8-byte little-endian header length whose upper 4 bytes are zero.

    No text file (CSV, JSON) has four zero bytes there, whatever its first characters are.
    """
    with open(path, "rb") as raw:
        head = raw.read(8)
    return len(head) == 8 and head[4:] == bytes(4) and 2 <= int.from_bytes(head, "little") < 100_000_000


def file_format(path) -> str | None:
    """The `format` metadata of a safetensors file, or `None` if it has none or cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as reader:
            return (reader.metadata() or {}).get("format")
    except Exception:  # any unreadable file: the loader that follows gives the precise error
        return None


def _read(path, expected_format: str, latest: int, what: str) -> tuple[dict, dict, int]:
    """Tensors, metadata and format version of a safetensors file of `expected_format`, or a clear error."""
    from safetensors import SafetensorError, safe_open

    path = check_readable_file(path, ScheduleFileError, f"pass the path of a {what}")
    try:
        with safe_open(path, framework="np") as reader:
            metadata = dict(reader.metadata() or {})
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as error:
        if looks_like_safetensors(path):
            _fail(path, f"the safetensors data is truncated or corrupt ({os.path.getsize(path)} bytes; {error}); the write "
                        "was probably interrupted. Use the copy in a checkpoint folder, or refine the run's record again.")
        _fail(path, f"not a safetensors file ({error}); pass a {what}, or give CSV/text norms and trainer_state.json "
                    "files to `hf-linear-decay refine`.")
    if metadata.get("format") != expected_format:
        _fail(path, f"not a {what} (metadata `format` is {metadata.get('format')!r}, expected {expected_format!r}); pass "
                    "a file written by RefinementCallback or `hf-linear-decay refine`.")
    version_text = metadata.get("format_version", "")
    if not re.fullmatch(r"[0-9]{1,6}", version_text) or int(version_text) < 1:
        _fail(path, f"metadata `format_version` must be a positive integer, got {version_text!r}; the file is damaged.")
    if int(version_text) > latest:
        _fail(path, f"format version {version_text} is newer than this hf_linear_decay ({__version__}) can read (version "
                    f"{latest}); upgrade hf_linear_decay (`pip install -U hf_linear_decay`).")
    return tensors, metadata, int(version_text)


def _record_from(tensors: dict, metadata: dict, path, keys, dtypes, min_steps: int) -> NormRecord:
    missing = [key for key in keys if key not in metadata]
    if missing:
        _fail(path, f"metadata is missing {missing}; the file is damaged or was not written by hf_linear_decay.")
    if not re.fullmatch(r"[0-9]{1,12}", metadata["num_steps"]) or int(metadata["num_steps"]) < min_steps:
        _fail(path, f"metadata `num_steps` must be an integer >= {min_steps}, got {metadata['num_steps']!r}.")
    num_steps = int(metadata["num_steps"])
    recorded = tuple(name for name in metadata["recorded"].split(",") if name)
    unknown = [name for name in recorded if name not in RECORD_COLUMNS]
    if unknown:
        _fail(path, f"metadata `recorded` names unknown columns {unknown}; allowed: {list(RECORD_COLUMNS)}.")
    # A column this version does not record may be absent (a file written before a norm joined the table).
    required = [name for name in dtypes if name not in RECORD_COLUMNS or name in recorded]
    missing, unexpected = [n for n in required if n not in tensors], [n for n in tensors if n not in dtypes]
    if missing or unexpected:
        _fail(path, f"tensors missing {missing}, unexpected {unexpected}; expected {list(dtypes)}.")
    tensors = {**{name: np.full(num_steps, np.nan) for name in RECORD_COLUMNS}, **tensors}
    for name, dtype in dtypes.items():
        if tensors[name].dtype != dtype:
            _fail(path, f"tensor `{name}` has dtype {tensors[name].dtype}, expected {dtype}; rewrite the file.")
        if tensors[name].shape != (num_steps,):
            _fail(path, f"tensor `{name}` has shape {tuple(tensors[name].shape)}, expected ({num_steps},) from metadata "
                        "`num_steps`; the file is damaged or was edited by hand.")
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
            _fail(path, f"tensor `{name}` holds {float(values[step])!r} at step {step}, which is not flagged `skipped`; "
                        f"recorded {'norms must be finite and > 0' if name in NORM_COLUMNS else 'values must be finite and >= 0'}.")
    try:
        run = RunInfo.from_strings(metadata)
    except ValueError as error:
        _fail(path, f"metadata {error}; rewrite the file with `hf-linear-decay refine`.")
    return NormRecord.from_columns({name: tensors[name] for name in recorded}, skipped.astype(bool), run)


def _check_schedule(multipliers: np.ndarray, record: NormRecord, settings: RefinementSettings, path) -> None:
    if not np.isfinite(multipliers).all():
        _fail(path, f"tensor `multipliers` is not finite at step {int(np.flatnonzero(~np.isfinite(multipliers))[0])}; "
                    "refine the record again with `hf-linear-decay refine`.")
    if multipliers.shape != (len(record),) or len(record) < 2:
        _fail(path, f"tensor `multipliers` has shape {multipliers.shape} for a record of {len(record)} steps (>= 2 needed).")
    if multipliers.min() < 0 or abs(multipliers.max() - 1.0) > 1e-9 or multipliers[-1] != 0:
        _fail(path, f"tensor `multipliers` must lie in [0, 1] with peak 1 and last value 0, got min {multipliers.min():.6g}, "
                    f"max {multipliers.max():.6g}, last {multipliers[-1]:.6g}; refine the record again.")
    column = NORM_TYPES[settings.norm].tensor
    if column not in record.recorded:
        _fail(path, f"the schedule was refined from `{column}`, which the file does not record; refine with a norm it has.")
    valid = int((~record.skipped).sum())
    if valid < 2:
        _fail(path, f"only {valid} of {len(record)} steps are valid (the others were skipped, unknown or had non-finite "
                    "or zero norms); no run produces such a record: record the run again.")


def _read_schedule_v2(tensors, metadata, path) -> RefinedSchedule:
    record = _record_from(tensors, metadata, path, SCHEDULE_KEYS, SCHEDULE_TENSORS, min_steps=2)
    numbers = {}
    for key in ("tau", "power"):
        try:
            numbers[key] = float(metadata[key])
        except ValueError:
            _fail(path, f"metadata `{key}` must be a number, got {metadata[key]!r}; refine the record again.")
    try:
        settings = RefinementSettings(method=metadata["method"], norm=metadata["norm"], **numbers)
    except ValueError as error:
        _fail(path, f"metadata {error}; refine the record again with valid settings.")
    _check_schedule(tensors["multipliers"], record, settings, path)
    return RefinedSchedule(record=record, multipliers=tensors["multipliers"], settings=settings,
                           created_at=metadata["created_at"], package_version=metadata["package_version"])


def _read_schedule_v1(tensors, metadata, path) -> RefinedSchedule:
    return _read_schedule_v2(tensors, {**metadata, "method": "paper"}, path)  # 0.1.x only had the paper's method


_SCHEDULE_READERS = {1: _read_schedule_v1, 2: _read_schedule_v2}


def load_schedule_file(path) -> RefinedSchedule:
    """Read and validate a schedule file of any known version. Raises `ScheduleFileError` with the reason and fix."""
    tensors, metadata, version = _read(path, SCHEDULE_FORMAT, SCHEDULE_VERSION, "schedule file (.safetensors)")
    return _SCHEDULE_READERS[version](tensors, metadata, os.fspath(path))


def load_record_file(path) -> NormRecord:
    """Read and validate a record file (the callback's record in a checkpoint)."""
    tensors, metadata, _ = _read(path, RECORD_FORMAT, RECORD_VERSION, "record file (norm_record.safetensors)")
    return _record_from(tensors, metadata, os.fspath(path), RECORD_KEYS, RECORD_TENSORS, min_steps=0)

