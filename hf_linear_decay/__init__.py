"""hf_linear_decay: linear-decay and gradient-norm-refined learning-rate schedules for the Hugging Face Trainer.

Importing the package registers the `linear_refined` Trainer scheduler type (the only import-time work).
"""

__version__ = "0.1.0"

from .constants import SCHEDULE_FILE_NAME, SCHEDULER_NAME
from .refine import Refinement, refine, refine_schedule, resample_schedule
from .schedule_file import RunInfo, ScheduleFile, ScheduleFileError, load_schedule_file, save_schedule_file
from .registration import register

register()

from .callback import RefinementCallback  # noqa: E402  (imports transformers, which registration loaded already)
from .scheduler import get_linear_refined_schedule  # noqa: E402

__all__ = [
    "SCHEDULER_NAME",
    "SCHEDULE_FILE_NAME",
    "RefinementCallback",
    "Refinement",
    "RunInfo",
    "ScheduleFile",
    "ScheduleFileError",
    "__version__",
    "get_linear_refined_schedule",
    "load_schedule_file",
    "refine",
    "refine_schedule",
    "register",
    "resample_schedule",
    "save_schedule_file",
]
