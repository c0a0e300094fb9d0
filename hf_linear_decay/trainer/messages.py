"""What a user reads from a run: every line the Trainer integration logs goes through `say`, which decides "main
process, once" in one place.

Lines go to the package's loggers at WARNING, the level transformers shows by default, and only on the main process
(global rank 0, asked of `torch.distributed` when it is running, else of the launcher's `RANK` variable, at call time:
nothing is cached at import). An event that comes back within a run (every checkpoint save) is said once through
that run's `Once`.
"""

from __future__ import annotations

import logging
import os

__all__ = ["Once", "is_main_process", "next_step", "say", "wrote_line"]


def is_main_process() -> bool:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"  # a launcher's process before the process group exists


def say(logger: logging.Logger, text: str, *args) -> bool:
    """Log `text % args` at WARNING on the main process. Returns whether the line was logged."""
    if not is_main_process():
        return False
    logger.warning(text, *args)
    return True


class Once:
    """The lines one run has said: `say` each key's line the first time only."""

    def __init__(self):
        self.said: set = set()

    def say(self, key, logger: logging.Logger, text: str, *args) -> bool:
        if key in self.said:
            return False
        self.said.add(key)
        return say(logger, text, *args)


def next_step(schedule, path: str) -> str:
    """What to do with the schedule file at `path`: follow it in pass 2, or, when it repeats pass 1's schedule, keep
    pass 1's model (said before the user pays for the same run twice)."""
    from ..core.describe import compare_with_pass_one

    if schedule.adaptive is not None:
        return f"a later run follows the same schedule with --lr_scheduler_kwargs '{{\"schedule_file\": \"{path}\"}}'"
    if compare_with_pass_one(schedule).repeats:
        return "pass 1 already ran this schedule: keep its model rather than run it again"
    return f"follow it in pass 2: --lr_scheduler_kwargs '{{\"schedule_file\": \"{path}\"}}'"


def wrote_line(schedule, path: str) -> str:
    """The end of pass 1 in one line: the file, what it holds and why, where to look, and what to do next."""
    from ..core.adaptive import describe_adaptive
    from ..core.describe import describe_schedule

    if schedule.adaptive is not None:
        what = f"{schedule.num_steps} steps, {describe_adaptive(schedule.adaptive)}"
    else:
        what = describe_schedule(schedule) + (f"; {schedule.explanation}" if schedule.explanation else "")
    return f"RefinementCallback: wrote {path} ({what}). Look at it: hf-linear-decay inspect {path} ; " \
           f"{next_step(schedule, path)}"
