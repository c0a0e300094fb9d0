"""The schedule file: a prior run's per-step record plus the refined schedule, as safetensors + string metadata.

Layout (format version 1), every tensor of length T = number of optimizer steps of the recorded run:

| tensor | dtype | meaning |
|---|---|---|
| `grad_norm_l2` | float64 | pre-clipping l2 norm of the gradient applied at step t (NaN everywhere if not recorded) |
| `grad_norm_l1` | float64 | pre-clipping l1 norm of that gradient (NaN everywhere if not recorded) |
| `skipped` | uint8 | 1 if the optimizer step was skipped (fp16 overflow) or the norm was non-finite |
| `lr` | float64 | learning rate used at step t (NaN everywhere if not recorded) |
| `multipliers` | float64 | the refined schedule: values in [0, 1], peak 1, last 0 |

The metadata (all strings) is listed in `METADATA_KEYS`. No pickle anywhere: safetensors stores raw little-endian
arrays and a JSON header. Files are written atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

import numpy as np

from ._atomic import write_bytes_atomically
from .constants import DEFAULT_POWER_FOR_NORM, DEFAULT_TAU, FORMAT_NAME, FORMAT_VERSION
from .refine import refine

__all__ = ["RECORDABLE_FIELDS", "RunInfo", "ScheduleFile", "ScheduleFileError", "load_schedule_file", "save_schedule_file"]

TENSOR_DTYPES = {
    "grad_norm_l2": np.dtype(np.float64),
    "grad_norm_l1": np.dtype(np.float64),
    "skipped": np.dtype(np.uint8),
    "lr": np.dtype(np.float64),
    "multipliers": np.dtype(np.float64),
}
#: Tensors that a source may or may not provide; an unrecorded one is stored as all-NaN.
RECORDABLE_FIELDS = ("grad_norm_l2", "grad_norm_l1", "lr")
NORM_TENSOR = {"l2": "grad_norm_l2", "l1": "grad_norm_l1"}


class ScheduleFileError(ValueError):
    """A schedule file cannot be read or does not hold what it should. The message says which field and the fix."""


def _package_version() -> str:
    from . import __version__

    return __version__


@dataclass
class RunInfo:
    """Facts about the run that produced the record; `None` means unknown (e.g. norms imported from a CSV)."""

    optimizer: str | None = None
    base_lr: float | None = None
    world_size: int | None = None
    gradient_accumulation_steps: int | None = None
    per_device_train_batch_size: int | None = None
    max_grad_norm: float | None = None
    precision: str | None = None
    source: str | None = None

    _FLOATS = ("base_lr", "max_grad_norm")
    _INTS = ("world_size", "gradient_accumulation_steps", "per_device_train_batch_size")

    def to_metadata(self) -> dict[str, str]:
        return {f.name: "unknown" if getattr(self, f.name) is None else str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path) -> RunInfo:
        values = {}
        for f in fields(cls):
            raw = metadata.get(f.name, "unknown")
            if raw == "unknown":
                values[f.name] = None
            elif f.name in cls._FLOATS or f.name in cls._INTS:
                try:
                    values[f.name] = int(raw) if f.name in cls._INTS else float(raw)
                except ValueError:
                    raise ScheduleFileError(
                        f"{path}: metadata `{f.name}` must be a number or 'unknown', got {raw!r}; "
                        "rewrite the file with `hf-linear-decay refine`."
                    ) from None
            else:
                values[f.name] = raw
        return cls(**values)


#: Metadata keys every version-1 file carries, in the order they are written.
METADATA_KEYS = (
    "format",
    "format_version",
    "package_version",
    "num_steps",
    "tau",
    "norm",
    "power",
    "recorded",
    *(f.name for f in fields(RunInfo)),
    "created_at",
)


@dataclass
class ScheduleFile:
    """In-memory form of a schedule file.

    Attributes:
        grad_norm_l2, grad_norm_l1, lr (`np.ndarray` float64): per-step records (all-NaN when not recorded, see
            `recorded`).
        skipped (`np.ndarray` bool): steps whose optimizer update was skipped or whose norm was non-finite.
        multipliers (`np.ndarray` float64): the refined schedule, peak 1, last 0.
        tau (`float`), norm (`str`, "l1" or "l2"), power (`float`): how `multipliers` was refined.
        recorded (`tuple[str]`): which of `grad_norm_l2`, `grad_norm_l1`, `lr` hold real values.
        run (`RunInfo`): facts about the recorded run.
        created_at (`str`): ISO 8601 creation time (UTC).
        package_version (`str`): hf_linear_decay version that wrote the file.
    """

    grad_norm_l2: np.ndarray
    grad_norm_l1: np.ndarray
    skipped: np.ndarray
    lr: np.ndarray
    multipliers: np.ndarray
    tau: float = DEFAULT_TAU
    norm: str = "l2"
    power: float = 2.0
    recorded: tuple[str, ...] = RECORDABLE_FIELDS
    run: RunInfo = field(default_factory=RunInfo)
    created_at: str = ""
    package_version: str = ""

    @property
    def num_steps(self) -> int:
        return int(self.multipliers.shape[0])

    @property
    def grad_norms(self) -> np.ndarray:
        """The norm sequence the schedule was refined from (`grad_norm_l1` or `grad_norm_l2`, per `norm`)."""
        return getattr(self, NORM_TENSOR[self.norm])

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            "grad_norm_l2": np.ascontiguousarray(self.grad_norm_l2, dtype=np.float64),
            "grad_norm_l1": np.ascontiguousarray(self.grad_norm_l1, dtype=np.float64),
            "skipped": np.ascontiguousarray(self.skipped, dtype=np.uint8),
            "lr": np.ascontiguousarray(self.lr, dtype=np.float64),
            "multipliers": np.ascontiguousarray(self.multipliers, dtype=np.float64),
        }

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "package_version": self.package_version or _package_version(),
            "num_steps": str(self.num_steps),
            "tau": repr(float(self.tau)),
            "norm": self.norm,
            "power": repr(float(self.power)),
            "recorded": ",".join(self.recorded),
            **self.run.to_metadata(),
            "created_at": self.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_record(
        cls,
        *,
        grad_norm_l2=None,
        grad_norm_l1=None,
        lr=None,
        skipped=None,
        norm: str = "l2",
        tau: float = DEFAULT_TAU,
        power: float | None = None,
        run: RunInfo | None = None,
    ) -> ScheduleFile:
        """Build a schedule file from a per-step record, refining the schedule from the `norm` sequence.

        Unrecorded fields (`None`) are stored as all-NaN and left out of `recorded`. A step is flagged `skipped` when
        `skipped` says so or when the norm used for refinement is not finite; such steps are filled from their
        neighbours for the refinement (see `hf_linear_decay.refine.fill_invalid_norms`).

        Args:
            norm (`str`, *optional*, defaults to "l2"): which norm to refine from, "l1" or "l2".
            power (`float`, *optional*): defaults to the paper's pairing, 2 for "l2" and 1 for "l1".
        """
        if norm not in NORM_TENSOR:
            raise ValueError(f"`norm` must be 'l1' or 'l2', got norm={norm!r}.")
        if power is None:
            power = DEFAULT_POWER_FOR_NORM[norm]
        given = {"grad_norm_l2": grad_norm_l2, "grad_norm_l1": grad_norm_l1, "lr": lr}
        if given[NORM_TENSOR[norm]] is None:
            raise ValueError(f"`norm={norm!r}` needs `{NORM_TENSOR[norm]}`, which this record does not have.")
        num_steps = len(given[NORM_TENSOR[norm]])
        arrays = {}
        for name, values in given.items():
            if values is None:
                arrays[name] = np.full(num_steps, np.nan)
                continue
            arrays[name] = np.asarray(values, dtype=np.float64)
            if arrays[name].shape != (num_steps,):
                raise ValueError(f"`{name}` has shape {arrays[name].shape}, expected ({num_steps},) like `{NORM_TENSOR[norm]}`.")
        flags = np.zeros(num_steps, dtype=bool) if skipped is None else np.asarray(skipped).astype(bool)
        if flags.shape != (num_steps,):
            raise ValueError(f"`skipped` has shape {flags.shape}, expected ({num_steps},).")
        for name in NORM_TENSOR.values():
            if given[name] is not None:
                flags = flags | ~np.isfinite(arrays[name])
        refinement = refine(arrays[NORM_TENSOR[norm]], tau=tau, power=power, skipped=flags)
        return cls(
            grad_norm_l2=arrays["grad_norm_l2"],
            grad_norm_l1=arrays["grad_norm_l1"],
            skipped=flags,
            lr=arrays["lr"],
            multipliers=refinement.multipliers,
            tau=refinement.tau,
            norm=norm,
            power=refinement.power,
            recorded=tuple(name for name in RECORDABLE_FIELDS if given[name] is not None),
            run=run or RunInfo(),
        )

    def refined_again(self, *, tau: float | None = None, norm: str | None = None, power: float | None = None):
        """A copy whose `multipliers` are refined anew from this file's raw norms (`None` keeps the file's value).

        Changing `norm` without giving `power` uses the paper's pairing for the new norm.
        """
        norm = self.norm if norm is None else norm
        if norm not in NORM_TENSOR:
            raise ValueError(f"`norm` must be 'l1' or 'l2', got norm={norm!r}.")
        if NORM_TENSOR[norm] not in self.recorded:
            raise ValueError(
                f"`norm={norm!r}` needs `{NORM_TENSOR[norm]}`, which this file does not record "
                f"(it records {list(self.recorded)}); choose norm={self.norm!r}."
            )
        if power is None:
            power = self.power if norm == self.norm else DEFAULT_POWER_FOR_NORM[norm]
        return ScheduleFile.from_record(
            **{name: getattr(self, name) for name in self.recorded},
            skipped=self.skipped,
            norm=norm,
            tau=self.tau if tau is None else tau,
            power=power,
            run=self.run,
        )

    def validate(self, path="<in memory>") -> None:
        """Raise `ScheduleFileError` naming the first field that breaks the format's rules."""
        _validate(self.tensors(), self.metadata(), path)


def _fail(path, message: str) -> None:
    raise ScheduleFileError(f"{path}: {message}")


def _validate_metadata(metadata: dict[str, str], path) -> dict:
    """Check the metadata of a version-1 file and return its parsed values."""
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        _fail(path, f"metadata is missing {missing}; the file is damaged or was not written by hf_linear_decay.")
    parsed = {}
    try:
        parsed["num_steps"] = int(metadata["num_steps"])
        parsed["tau"] = float(metadata["tau"])
        parsed["power"] = float(metadata["power"])
    except ValueError as error:
        _fail(path, f"metadata `num_steps`, `tau` and `power` must be numbers ({error}); rewrite the file.")
    if not 0 < parsed["tau"] <= 1:
        _fail(path, f"metadata `tau` must be in (0, 1], got {metadata['tau']}; re-refine with a valid --tau.")
    if not (math.isfinite(parsed["power"]) and parsed["power"] > 0):
        _fail(path, f"metadata `power` must be a finite number > 0, got {metadata['power']}; re-refine with --power.")
    if metadata["norm"] not in NORM_TENSOR:
        _fail(path, f"metadata `norm` must be 'l1' or 'l2', got {metadata['norm']!r}; re-refine with --norm.")
    recorded = tuple(name for name in metadata["recorded"].split(",") if name)
    unknown = [name for name in recorded if name not in RECORDABLE_FIELDS]
    if unknown:
        _fail(path, f"metadata `recorded` names unknown fields {unknown}; allowed: {list(RECORDABLE_FIELDS)}.")
    if NORM_TENSOR[metadata["norm"]] not in recorded:
        _fail(path, f"metadata says the schedule was refined from `{NORM_TENSOR[metadata['norm']]}`, which the file "
                    "does not record; re-refine with the norm it has.")
    parsed["recorded"] = recorded
    return parsed


def _validate(tensors: dict[str, np.ndarray], metadata: dict[str, str], path) -> dict:
    if metadata.get("format") != FORMAT_NAME:
        _fail(
            path,
            f"not an hf_linear_decay schedule file (metadata `format` is {metadata.get('format')!r}, expected "
            f"{FORMAT_NAME!r}); pass a file written by RefinementCallback or `hf-linear-decay refine`, or refine "
            "this run's norms with `hf-linear-decay refine` first.",
        )
    version_text = metadata.get("format_version", "")
    if not version_text.isdigit():
        _fail(path, f"metadata `format_version` must be an integer, got {version_text!r}; the file is damaged.")
    if int(version_text) > FORMAT_VERSION:
        _fail(
            path,
            f"format version {version_text} is newer than this hf_linear_decay ({_package_version()}) can read "
            f"(version {FORMAT_VERSION}); upgrade hf_linear_decay (`pip install -U hf_linear_decay`).",
        )
    if int(version_text) < 1:
        _fail(path, f"format version {version_text} does not exist; the file is damaged.")
    parsed = _validate_metadata(metadata, path)

    missing = [name for name in TENSOR_DTYPES if name not in tensors]
    extra = [name for name in tensors if name not in TENSOR_DTYPES]
    if missing or extra:
        _fail(path, f"tensors missing {missing}, unexpected {extra}; expected exactly {list(TENSOR_DTYPES)}.")
    num_steps = parsed["num_steps"]
    if num_steps < 2:
        _fail(path, f"metadata `num_steps` is {num_steps}; a schedule needs at least 2 steps.")
    for name, dtype in TENSOR_DTYPES.items():
        array = tensors[name]
        if array.dtype != dtype:
            _fail(path, f"tensor `{name}` has dtype {array.dtype}, expected {dtype}; rewrite the file with this version.")
        if array.shape != (num_steps,):
            _fail(path, f"tensor `{name}` has shape {tuple(array.shape)}, expected ({num_steps},) from metadata "
                        "`num_steps`; the file is damaged or was edited by hand.")

    skipped = tensors["skipped"]
    if not np.isin(skipped, (0, 1)).all():
        _fail(path, "tensor `skipped` must hold only 0 and 1.")
    for name in RECORDABLE_FIELDS:
        array = tensors[name]
        if name not in parsed["recorded"]:
            if not np.isnan(array).all():
                _fail(path, f"tensor `{name}` is not listed in metadata `recorded` and must then be all NaN.")
            continue
        # A non-finite value is legitimate only on a step flagged as skipped (fp16 overflow, or a step run before
        # recording started).
        bad = (~np.isfinite(array) & (skipped == 0)) | (np.isfinite(array) & (array < 0))
        if bad.any():
            step = int(np.flatnonzero(bad)[0])
            _fail(path, f"tensor `{name}` holds {float(array[step])!r} at step {step}; recorded values must be finite and "
                        ">= 0 (they may be non-finite only where `skipped` is 1).")
    multipliers = tensors["multipliers"]
    if not np.isfinite(multipliers).all():
        step = int(np.flatnonzero(~np.isfinite(multipliers))[0])
        _fail(path, f"tensor `multipliers` is not finite at step {step}; re-refine the file with `hf-linear-decay refine`.")
    if multipliers.min() < 0 or abs(multipliers.max() - 1.0) > 1e-9 or multipliers[-1] != 0:
        _fail(
            path,
            "tensor `multipliers` must lie in [0, 1] with peak 1 and last value 0, got min "
            f"{multipliers.min():.6g}, max {multipliers.max():.6g}, last {multipliers[-1]:.6g}; re-refine the file.",
        )
    return parsed


def save_schedule_file(schedule: ScheduleFile, path) -> str:
    """Validate `schedule` and write it to `path` atomically (temporary file in the same folder, fsync, rename).

    Call it from one process only (the Trainer's world process zero): the rename is atomic, but two writers would
    race. Returns the path written.
    """
    from safetensors.numpy import save

    path = os.fspath(path)
    tensors, metadata = schedule.tensors(), schedule.metadata()
    _validate(tensors, metadata, path)
    return write_bytes_atomically(path, save(tensors, metadata=metadata))


def looks_like_safetensors(path) -> bool:
    """Whether the file starts like safetensors: an 8-byte little-endian header length of sane size.

    Lengths below 100 MB leave the upper four bytes zero, which no text file (CSV, JSON) has, so text is never
    mistaken for safetensors whatever its first characters are.
    """
    with open(path, "rb") as raw:
        head = raw.read(8)
    return len(head) == 8 and head[4:] == bytes(4) and 2 <= int.from_bytes(head, "little") < 100_000_000


def load_schedule_file(path) -> ScheduleFile:
    """Read and validate a schedule file. Raises `ScheduleFileError` with the reason and the fix."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScheduleFileError(f"{path}: no such file; pass the path of a `.safetensors` schedule file.")
    try:
        with safe_open(path, framework="np") as reader:
            metadata = dict(reader.metadata() or {})
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        if looks_like_safetensors(path):
            raise ScheduleFileError(
                f"{path}: the safetensors data is truncated or corrupt ({os.path.getsize(path)} bytes; {error}); the write was probably "
                "interrupted. Use the copy in a checkpoint folder, or refine again from the run's trainer_state.json."
            ) from None
        raise ScheduleFileError(
            f"{path}: not a safetensors file ({error}); pass a `.safetensors` schedule file, or give CSV/text norms "
            "and trainer_state.json files to `hf-linear-decay refine`."
        ) from None
    parsed = _validate(tensors, metadata, path)
    return ScheduleFile(
        grad_norm_l2=tensors["grad_norm_l2"],
        grad_norm_l1=tensors["grad_norm_l1"],
        skipped=tensors["skipped"].astype(bool),
        lr=tensors["lr"],
        multipliers=tensors["multipliers"],
        tau=parsed["tau"],
        norm=metadata["norm"],
        power=parsed["power"],
        recorded=parsed["recorded"],
        run=RunInfo.from_metadata(metadata, path),
        created_at=metadata["created_at"],
        package_version=metadata["package_version"],
    )
