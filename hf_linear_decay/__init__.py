"""hf_linear_decay: linear-decay and gradient-norm-refined learning-rate schedules for the Hugging Face Trainer.

`import hf_linear_decay` registers the `linear_refined` Trainer scheduler type (the only import-time work; it takes
effect when transformers loads, so importing the package stays free of torch and transformers). The names below are
loaded on first use.
"""

from ._version import __version__
from .trainer.registration import register

register()

# Public name -> defining module. Resolved lazily (PEP 562) so that `hf-linear-decay inspect` never imports torch.
_EXPORTS = {
    "SCHEDULER_NAME": "trainer.scheduler_kwargs",
    "SCHEDULE_FILE_NAME": "files.schedule_file",
    "RECORD_FILE_NAME": "files.schedule_file",
    "ScheduleFileError": "files.schedule_file",
    "load_schedule_file": "files.schedule_file",
    "save_schedule_file": "files.schedule_file",
    "load_record_file": "files.schedule_file",
    "NormRecord": "core.record",
    "RunInfo": "core.record",
    "RefinedSchedule": "core.schedule",
    "RefinementSettings": "core.settings",
    "build_schedule": "core.schedule",
    "Refinement": "core.refine",
    "refine": "core.refine",
    "refine_schedule": "core.refine",
    "resample_schedule": "core.shapes",
    "RefinementCallback": "trainer.callback",
    "get_linear_refined_schedule": "trainer.scheduler",
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
