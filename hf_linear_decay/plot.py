"""Plot a schedule file: raw and smoothed gradient norms, and the refined schedule beside linear and cosine decay."""

from __future__ import annotations

import os

from ._atomic import atomic_path
from .refine import cosine_decay, fill_invalid_norms, linear_decay, median_filter_norms
from .schedule_file import ScheduleFile


def plot_schedule(schedule: ScheduleFile, path, *, title: str | None = None) -> str:
    """Write a two-panel PNG (or any format matplotlib knows from the extension) to `path`; returns the path.

    Needs matplotlib (`pip install hf_linear_decay[plots]`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: `pip install 'hf_linear_decay[plots]'`") from None

    raw = schedule.grad_norms
    filled, invalid = fill_invalid_norms(raw, schedule.skipped)
    smoothed = median_filter_norms(filled, schedule.tau)
    steps = range(schedule.num_steps)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    top.plot(steps, filled, color="tab:gray", alpha=0.45, linewidth=0.8, label=f"raw {schedule.norm} norm")
    top.plot(steps, smoothed, color="tab:blue", linewidth=1.8, label=f"median-filtered (tau={schedule.tau:g})")
    if invalid.any():
        top.scatter([i for i in steps if invalid[i]], filled[invalid], color="tab:red", s=10, label="skipped / filled")
    top.set_yscale("log")
    top.set_ylabel(f"gradient {schedule.norm} norm")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(steps, schedule.multipliers, color="tab:green", linewidth=2.0, label=f"refined (p={schedule.power:g})")
    bottom.plot(steps, linear_decay(schedule.num_steps), color="black", linestyle="--", linewidth=1, label="linear decay")
    bottom.plot(steps, cosine_decay(schedule.num_steps), color="tab:orange", linestyle=":", linewidth=1.3, label="cosine")
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("LR multiplier (peak = 1)")
    bottom.set_ylim(-0.02, 1.05)
    bottom.legend(loc="best", fontsize=8)
    bottom.grid(alpha=0.3)
    figure.suptitle(title or f"Refined schedule, T={schedule.num_steps}")
    figure.tight_layout()
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as temp_path:
            figure.savefig(temp_path, dpi=110, format=extension)
    finally:
        plt.close(figure)
    return os.fspath(path)
