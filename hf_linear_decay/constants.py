"""Names and numbers shared by the file format, the scheduler, the callback and the CLI."""

#: Name registered as a Trainer ``lr_scheduler_type``.
SCHEDULER_NAME = "linear_refined"

#: Default file name of a schedule file written by the callback and the CLI.
SCHEDULE_FILE_NAME = "refined_schedule.safetensors"

#: Value of the ``format`` metadata key; a safetensors file without it is not ours.
FORMAT_NAME = "hf_linear_decay.refined_schedule"

#: Version of the schedule file layout. Bump it when a reader of the old version would misread a new file.
FORMAT_VERSION = 1

#: Default smoothing fraction tau: the median-filter window covers about ``tau * T`` steps.
DEFAULT_TAU = 0.1

#: Norm statistic -> the refinement power the paper pairs it with (Alg. 1: l2 & p=2 for SGD, Alg. 2: l1 & p=1 for Adam).
DEFAULT_POWER_FOR_NORM = {"l2": 2.0, "l1": 1.0}
