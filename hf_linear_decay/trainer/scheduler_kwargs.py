"""`lr_scheduler_kwargs` of `linear_refined`: validated once where they enter, and the schedule file read once.

A Trainer run enters here at construction: the automatic recorder (`auto_recorder.AutoRecorder.on_init_end`) calls
`prepare`, which checks every key, loads the schedule file (and refines its record again when `method`, `norm`,
`tau` or `power` are given), so that a mistake fails before data and model work. When the Trainer later builds its
scheduler, `get_linear_refined_schedule` asks `prepared_for` with the same kwargs and gets that very result, as long
as the file on disk is unchanged; only a scheduler built outside a Trainer does the work itself. No torch here
(`registration` imports this module, and `import hf_linear_decay` imports registration: only the standard library
at import time).
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass, field

__all__ = ["SCHEDULER_NAME", "PreparedSchedule", "SchedulerOptions", "parse_scheduler_kwargs", "prepare",
           "prepared_for", "uses_linear_refined"]

SCHEDULER_NAME = "linear_refined"


def uses_linear_refined(args) -> bool:
    """Whether `TrainingArguments` ask for `linear_refined`."""
    return str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == SCHEDULER_NAME


def _check_path(value, *, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and os.path.exists(str(value)):
        # transformers turns a digit-only JSON string ("2024") into an int; a file of that name is what was meant.
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a path, got the number {value!r}: transformers converts a file name made "
                         "of digits into a number, and no file of that name exists here; give the path with a folder, "
                         f"e.g. './{value}'.")
    try:
        path = os.fspath(value)
    except TypeError:
        raise ValueError(f"`{name}` must be a path (str or os.PathLike), got {value!r}.") from None
    if not path:
        raise ValueError(f"`{name}` is empty: give the path of a schedule file for pass 2, or drop the key for pass 1 "
                         "(linear decay, recorded).")
    return path


def _check_flag(value, *, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false, got {value!r}.")
    return value


def _validators() -> dict:
    """Key -> validator of the keys this module owns (`record_norms`: pass 1 records by default, pass 2 only when it
    is true). The refinement keys are checked by `RefinementSettings` when they meet the file's settings."""
    from ..core.adaptive import check_adapt_options

    return {"schedule_file": _check_path, "record_norms": _check_flag, "resume_without_record": _check_flag,
            "adapt": _check_flag, "adapt_options": check_adapt_options}


SCHEDULER_KEYS = ("schedule_file", "method", "norm", "tau", "power", "method_options", "record_norms",
                  "resume_without_record", "adapt", "adapt_options")
REFINEMENT_KEYS = {"method": "method", "norm": "norm", "tau": "tau", "power": "power", "method_options": "options"}


@dataclass(frozen=True)
class SchedulerOptions:
    """Validated `lr_scheduler_kwargs`: the schedule file, refinement overrides, whether to record norms, and, for an
    adaptive run, adapt's options (every one filled in; `None` when the run does not adapt)."""

    schedule_file: str | None = None
    overrides: dict = field(default_factory=dict)  # RefinementSettings fields, checked when they meet the file's
    record_norms: bool | None = None
    resume_without_record: bool = False
    adapt: dict | None = None

    @property
    def records(self) -> bool:
        """Whether the run records its norms: pass 1 unless turned off, pass 2 only when asked."""
        return self.record_norms is not False if self.schedule_file is None else self.record_norms is True


def parse_scheduler_kwargs(kwargs) -> SchedulerOptions:
    """Validate `lr_scheduler_kwargs` for linear_refined (each key once, with its name in the message)."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"`lr_scheduler_kwargs` for linear_refined must be a JSON object (a dict), got "
                         f"{type(kwargs).__name__} {kwargs!r:.80}; e.g. "
                         "--lr_scheduler_kwargs '{\"schedule_file\": \"run1/refined_schedule.safetensors\"}'.")
    unknown = sorted(set(kwargs) - set(SCHEDULER_KEYS), key=str)
    if unknown:
        raise ValueError(f"`lr_scheduler_kwargs` for linear_refined got unknown keys {unknown}; allowed keys are "
                         f"{list(SCHEDULER_KEYS)}, e.g. "
                         "'{\"schedule_file\": \"run1/refined_schedule.safetensors\"}'.")
    if "schedule_file" in kwargs and kwargs["schedule_file"] is None:
        raise ValueError("`lr_scheduler_kwargs['schedule_file']` is null: give the path of a schedule file for pass 2, "
                         "or drop the key for pass 1 (linear decay, recorded).")
    validators = _validators()
    checked = {key: validators[key](value, name=f"lr_scheduler_kwargs['{key}']")
               for key, value in kwargs.items() if value is not None and key in validators}
    overrides = {field: kwargs[key] for key, field in REFINEMENT_KEYS.items() if kwargs.get(key) is not None}
    if "schedule_file" not in checked and overrides:
        raise ValueError("`lr_scheduler_kwargs` keys `method`, `norm`, `tau`, `power` and `method_options` re-refine a "
                         "schedule file's record; also pass `schedule_file`, or drop them for plain linear decay.")
    adapt = checked.get("adapt", False)
    if "adapt_options" in checked and not adapt:
        raise ValueError("`lr_scheduler_kwargs['adapt_options']` sets up an adaptive run; add \"adapt\": true, or drop "
                         "it.")
    if adapt and "schedule_file" in checked:
        raise ValueError("`lr_scheduler_kwargs['adapt']` makes the schedule of a run without a schedule file, and "
                         f"`schedule_file` ({checked['schedule_file']}) already fixes it; drop one of the two.")
    if adapt and checked.get("record_norms") is False:
        raise ValueError("`lr_scheduler_kwargs['adapt']` decides from the norms the run records; "
                         "`record_norms: false` would leave it nothing to read. Drop `record_norms`.")
    if adapt and "adapt_options" not in checked:
        checked["adapt_options"] = validators["adapt_options"]({}, name="lr_scheduler_kwargs['adapt_options']")
    return SchedulerOptions(checked.get("schedule_file"), overrides, checked.get("record_norms"),
                            checked.get("resume_without_record", False), checked["adapt_options"] if adapt else None)


@dataclass(eq=False)
class PreparedSchedule:
    """The validated options and, for pass 2, the schedule to follow (the file's, or its record refined again)."""

    options: SchedulerOptions
    schedule: object | None = None  # RefinedSchedule
    file_identity: tuple | None = None
    in_trainer: bool = False  # prepared at Trainer construction: the run's lines are the AutoRecorder's to say


def _file_identity(path: str) -> tuple:
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _key(kwargs) -> str:
    """The cache key of some kwargs, the schedule file as the path it names: `2024` (transformers' int for a file
    named by digits), `"2024"` and `Path("2024")` are one key."""
    normal = dict(kwargs or {})
    path = normal.get("schedule_file")
    if path is not None and not isinstance(path, bool):
        normal["schedule_file"] = str(path) if isinstance(path, (int, float)) else os.fspath(path)
    return json.dumps(normal, sort_keys=True, default=str)


#: Prepared schedules by their kwargs, alive as long as the Trainer-side holder keeps them (weak values).
_PREPARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def prepare(kwargs, *, remember: bool = False) -> PreparedSchedule:
    """Validate `kwargs` and load what they name; with `remember`, hand the result to the scheduler built later."""
    from ..core.schedule import build_schedule
    from ..core.settings import RefinementSettings
    from ..files.schedule_file import load_schedule_file

    options = parse_scheduler_kwargs(kwargs)
    prepared = PreparedSchedule(options)
    if options.schedule_file is not None:
        names = {field: f"lr_scheduler_kwargs['{key}']" for key, field in REFINEMENT_KEYS.items()}
        given = [name for name in options.overrides if name != "options"]
        # The refinement keys first, once, before the file is read (its method decides which options are valid).
        overrides = RefinementSettings(names=names, **{name: options.overrides[name] for name in given})
        schedule = load_schedule_file(options.schedule_file)
        prepared.file_identity = _file_identity(options.schedule_file)
        if options.overrides:  # the file's author already accepted its record: a diverged one is not refused again
            settings = schedule.settings.taking(overrides, given, names=names,
                                                options=options.overrides.get("options"))
            schedule = build_schedule(schedule.record, settings, force=True)
        prepared.schedule = schedule
    if remember:
        prepared.in_trainer = True
        _PREPARED[_key(kwargs)] = prepared
    return prepared


def prepared_for(kwargs) -> PreparedSchedule:
    """What `prepare` made for these kwargs at Trainer construction if the file is unchanged, else a fresh result."""
    prepared = _PREPARED.get(_key(kwargs)) if isinstance(kwargs, dict) else None
    if prepared is not None:
        path = prepared.options.schedule_file
        try:
            if path is None or _file_identity(path) == prepared.file_identity:
                return prepared
        except OSError:
            pass  # gone since: read it again below, which says what is wrong
    return prepare(kwargs)
