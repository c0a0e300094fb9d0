"""The per-step record of a training run: gradient norms, learning rate and skip flags, one entry per optimizer step.

`NormRecord` is the one record type. The callback appends to it while training; every reader (schedule files,
`trainer_state.json`, CSV) returns one; the schedule file stores one next to its multipliers; the refinement reads
one. Its columns come from the norm table (`hf_linear_decay.core.norms.NORM_TYPES`) plus `lr`. numpy only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .norms import NORM_TYPES, norm_type

__all__ = ["NORM_COLUMNS", "RECORD_COLUMNS", "NormRecord", "RunInfo"]

#: Columns holding gradient norms, in table order.
NORM_COLUMNS = tuple(norm.tensor for norm in NORM_TYPES.values())
#: Every float column of a record.
RECORD_COLUMNS = NORM_COLUMNS + ("lr",)


@dataclass
class RunInfo:
    """Facts about the run that produced a record; `None` means unknown (e.g. norms imported from a CSV)."""

    optimizer: str | None = None
    base_lr: float | None = None
    world_size: int | None = None
    gradient_accumulation_steps: int | None = None
    per_device_train_batch_size: int | None = None
    max_grad_norm: float | None = None
    precision: str | None = None
    source: str | None = None
    weight_decay: float | None = None

    @property
    def global_batch_size(self) -> int | None:
        parts = (self.per_device_train_batch_size, self.gradient_accumulation_steps, self.world_size)
        return None if None in parts else math.prod(parts)

    def to_strings(self) -> dict[str, str]:
        return {key: "unknown" if value is None else str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_strings(cls, strings: dict) -> RunInfo:
        """Inverse of `to_strings`; raises `ValueError` naming the field whose value does not parse."""
        values = {}
        for field in fields(cls):
            raw = strings.get(field.name, "unknown")
            if raw is None or raw == "unknown":
                values[field.name] = None
                continue
            kind = {"int | None": int, "float | None": float}.get(field.type, str)
            try:
                values[field.name] = kind(raw)
            except (TypeError, ValueError):
                message = f"run field `{field.name}` must be {kind.__name__} or 'unknown', got {raw!r}"
                raise ValueError(message) from None
        return cls(**values)


class NormRecord:
    """Per-step columns (`grad_norm_l2`, `grad_norm_l1`, `lr`, float64) and `skipped` flags, growable in place.

    `recorded` names the columns that hold data; an unrecorded column reads as all-NaN. A step is `skipped` when
    the optimizer skipped it (fp16 overflow), when it was not recorded (resumed without a record), or when a
    recorded norm is not a finite positive number: such a step cannot describe the gradient, and the refinement
    fills it from its neighbours.

    Attributes:
        recorded (`tuple[str]`): recorded columns, in `RECORD_COLUMNS` order.
        run (`RunInfo`): facts about the recorded run.
        notes (`list[str]`): what a reader had to do to build it (e.g. interpolation between logging steps).
    """

    def __init__(self, recorded=RECORD_COLUMNS, run: RunInfo | None = None, capacity: int = 64):
        unknown = [name for name in recorded if name not in RECORD_COLUMNS]
        if unknown:
            raise ValueError(f"unknown record columns {unknown}; a record has {list(RECORD_COLUMNS)}.")
        self.recorded = tuple(name for name in RECORD_COLUMNS if name in recorded)
        self.run = run or RunInfo()
        self.notes: list[str] = []
        self._length = 0
        self._columns = {name: np.full(capacity, np.nan) for name in RECORD_COLUMNS}
        self._skipped = np.zeros(capacity, dtype=bool)

    @classmethod
    def from_columns(cls, columns: dict, skipped=None, run: RunInfo | None = None) -> NormRecord:
        """A record from whole columns; `None` or missing columns are unrecorded. All columns must have one length."""
        given = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items() if values is not None}
        lengths = {name: values.shape for name, values in given.items()}
        if len(set(lengths.values())) > 1 or any(len(shape) != 1 for shape in lengths.values()):
            raise ValueError(f"record columns must be 1-D and of one length, got shapes {lengths}.")
        record = cls(recorded=tuple(given), run=run, capacity=0)
        num_steps = next(iter(lengths.values()))[0] if lengths else (0 if skipped is None else len(skipped))
        record.append(given, np.zeros(num_steps, bool) if skipped is None else skipped)
        return record

    def __len__(self) -> int:
        return self._length

    def column(self, name: str) -> np.ndarray:
        """The values of column `name` for every recorded step (a read-only view; all-NaN if unrecorded)."""
        if name not in self._columns:
            raise KeyError(f"no record column {name!r}; a record has {list(RECORD_COLUMNS)}.")
        view = self._columns[name][: self._length]
        view.flags.writeable = False
        return view

    def __getattr__(self, name):
        if name in RECORD_COLUMNS:
            return self.column(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def skipped(self) -> np.ndarray:
        view = self._skipped[: self._length]
        view.flags.writeable = False
        return view

    def norms(self, norm: str) -> np.ndarray:
        """The recorded values of one norm (`"l1"`, `"l2"`); raises if the record does not hold it."""
        column = norm_type(norm).tensor
        if column not in self.recorded:
            held = [n.name for n in NORM_TYPES.values() if n.tensor in self.recorded]
            raise ValueError(f"this record has no {norm} norms (column `{column}`); it holds {held or 'no norms'}.")
        return self.column(column)

    def _reserve(self, num_steps: int) -> None:
        capacity = self._skipped.size
        if num_steps <= capacity:
            return
        capacity = max(num_steps, 2 * capacity, 64)  # doubling: appending step by step stays O(1) amortised
        for name, values in self._columns.items():
            grown = np.full(capacity, np.nan)
            grown[: self._length] = values[: self._length]
            self._columns[name] = grown
        grown_flags = np.zeros(capacity, dtype=bool)
        grown_flags[: self._length] = self._skipped[: self._length]
        self._skipped = grown_flags

    def append(self, values: dict, skipped) -> None:
        """Append steps: `values` maps recorded column names to sequences of one length; `skipped` flags them."""
        flags = np.asarray(skipped, dtype=bool).reshape(-1)
        extra = [name for name in values if name not in self.recorded]
        if extra:
            raise ValueError(f"columns {extra} are not recorded by this record (it records {list(self.recorded)}).")
        start, stop = self._length, self._length + flags.size
        self._reserve(stop)
        for name, column in values.items():
            column = np.asarray(column, dtype=np.float64).reshape(-1)
            if column.size != flags.size:
                raise ValueError(f"column `{name}` has {column.size} values for {flags.size} steps.")
            self._columns[name][start:stop] = column
        unusable = flags.copy()
        for name in NORM_COLUMNS:
            if name in self.recorded:
                with np.errstate(invalid="ignore"):
                    unusable |= ~(np.isfinite(self._columns[name][start:stop]) & (self._columns[name][start:stop] > 0))
        self._skipped[start:stop] = unusable
        self._length = stop

    def truncate(self, num_steps: int) -> None:
        """Forget the steps from `num_steps` on (a resumed run redoes them)."""
        if num_steps < self._length:
            for values in self._columns.values():
                values[num_steps : self._length] = np.nan
            self._skipped[num_steps : self._length] = False
            self._length = max(0, num_steps)

    def pad_to(self, num_steps: int) -> int:
        """Add unknown (NaN, skipped) steps up to `num_steps`; returns how many were added."""
        missing = num_steps - self._length
        if missing > 0:
            self.append({}, np.ones(missing, dtype=bool))
        return max(0, missing)

    def copy(self) -> NormRecord:
        record = NormRecord.from_columns({name: self.column(name) for name in self.recorded}, self.skipped, self.run)
        record.notes = list(self.notes)
        return record

    # ----- JSON state (old checkpoints kept the record inline in trainer_state.json) -------------------------------
    def state(self) -> dict:
        """The record as plain JSON types (NaN as null)."""
        def as_list(values):
            return [value if math.isfinite(value) else None for value in values.tolist()]

        return {"recorded": list(self.recorded), "skipped": self.skipped.tolist(), "run": self.run.to_strings(),
                **{name: as_list(self.column(name)) for name in self.recorded}}

    @classmethod
    def from_state(cls, state: dict) -> NormRecord:
        """Inverse of `state`; also reads version 0.1.0 callback attributes (four lists, no `recorded`).

        Raises `ValueError` naming the field that does not hold what it should."""
        recorded = state.get("recorded", [name for name in RECORD_COLUMNS if name in state])
        if not isinstance(recorded, list) or not all(isinstance(name, str) for name in recorded):
            raise ValueError(f"`recorded` must be a list of column names, got {recorded!r:.60}")
        run = state.get("run", {})
        if not isinstance(run, dict):
            raise ValueError(f"`run` must be an object of run facts, got {run!r:.60}")
        columns = {}
        for name in recorded:
            values = state.get(name)
            if not isinstance(values, list) or not all(v is None or (isinstance(v, (int, float)) and
                                                                     not isinstance(v, bool)) for v in values):
                raise ValueError(f"column `{name}` must be a list of numbers or nulls, got {str(values)[:60]}")
            columns[name] = [math.nan if value is None else float(value) for value in values]
        skipped = state.get("skipped", [])
        if not isinstance(skipped, list):
            raise ValueError(f"`skipped` must be a list of flags, got {skipped!r:.60}")
        return cls.from_columns(columns, [bool(flag) for flag in skipped] or None, RunInfo.from_strings(run))

    # ----- identity -------------------------------------------------------------------------------------------------
    def sha256(self) -> str:
        """Digest of the recorded columns and flags: equal records, equal digests."""
        digest = hashlib.sha256(",".join(self.recorded).encode())
        for name in self.recorded:
            digest.update(np.ascontiguousarray(self.column(name)).tobytes())
        digest.update(np.packbits(self.skipped).tobytes())
        return digest.hexdigest()

    def fingerprint(self, start: int = 0) -> np.ndarray:
        """A few sums over the steps from `start` on (count, per column: finite count, sum, step-weighted sum).

        Ranks compare fingerprints instead of whole records: values that agree to float rounding give fingerprints
        that agree to a relative 1e-6, and a different value at any step changes a sum.
        """
        steps = np.arange(start, self._length, dtype=np.float64) + 1.0
        parts = [float(self._length - start), float(self.skipped[start:].sum()),
                 float((steps * self.skipped[start:]).sum())]
        for name in RECORD_COLUMNS:
            values = self.column(name)[start:]
            finite = np.isfinite(values)
            parts += [float(finite.sum()), float(values[finite].sum()), float((steps[finite] * values[finite]).sum())]
        return np.array(parts)
