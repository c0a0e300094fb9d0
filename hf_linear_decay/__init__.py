"""hf_linear_decay: linear-decay and gradient-norm-refined learning-rate schedules for the Hugging Face Trainer."""

__version__ = "0.1.0"

from .constants import SCHEDULE_FILE_NAME, SCHEDULER_NAME
from .refine import Refinement, refine, refine_schedule, resample_schedule
from .schedule_file import RunInfo, ScheduleFile, ScheduleFileError, load_schedule_file, save_schedule_file

__all__ = [
    "SCHEDULER_NAME",
    "SCHEDULE_FILE_NAME",
    "Refinement",
    "RunInfo",
    "ScheduleFile",
    "ScheduleFileError",
    "__version__",
    "load_schedule_file",
    "refine",
    "refine_schedule",
    "resample_schedule",
    "save_schedule_file",
]
