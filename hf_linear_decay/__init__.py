"""hf_linear_decay: linear-decay and gradient-norm-refined learning-rate schedules for the Hugging Face Trainer.

`import hf_linear_decay` registers the `linear_refined` Trainer scheduler type (the only import-time work; it takes
effect when transformers loads, so importing the package stays free of torch and transformers). The names below are
loaded on first use.
"""

from ._version import __version__
from .registration import register

register()

# Public name -> defining module. Resolved lazily (PEP 562) so that `hf-linear-decay inspect` never imports torch.
_EXPORTS = {
    "SCHEDULER_NAME": "registration",
    "SCHEDULE_FILE_NAME": "schedule_file",
    "RECORD_FILE_NAME": "schedule_file",
    "ScheduleFileError": "schedule_file",
    "load_schedule_file": "schedule_file",
    "save_schedule_file": "schedule_file",
    "load_record_file": "schedule_file",
    "NormRecord": "record",
    "RunInfo": "record",
    "RefinedSchedule": "methods",
    "RefinementSettings": "methods",
    "build_schedule": "methods",
    "Refinement": "refine",
    "refine": "refine",
    "refine_schedule": "refine",
    "resample_schedule": "shapes",
    "RefinementCallback": "callback",
    "get_linear_refined_schedule": "scheduler",
}

__all__ = ["__version__", "register", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
