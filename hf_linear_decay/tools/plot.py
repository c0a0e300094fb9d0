"""Plot a schedule file: raw and smoothed gradient norms, and the refined schedule beside linear and cosine decay.

Long runs are drawn from a min/max envelope of at most `MAX_POINTS` buckets (a figure has about 2,000 pixels across),
so a 10-million-step file plots in seconds and its spikes stay visible. Above `SMOOTHING_STEPS` steps the displayed
median-filtered norms are computed on every k-th step (the legend says so); the schedule itself is drawn exactly.
"""

from __future__ import annotations

import os

import numpy as np

from ..files.atomic import atomic_path
from ..core.schedule import RefinedSchedule
from ..core.refine import fill_invalid_norms, filter_width, median_filter_norms
from ..core.describe import compare_with_pass_one
from ..core.shapes import cosine_decay

MAX_POINTS = 2000
SMOOTHING_STEPS = 1_000_000


def envelope(values, max_points: int = MAX_POINTS):
    """`(steps, mean, low, high)` of `values` in at most `max_points` equal buckets of consecutive steps."""
    values = np.asarray(values, dtype=np.float64)
    if values.size <= max_points:
        steps = np.arange(values.size, dtype=np.float64)
        return steps, values, values, values
    edges = np.linspace(0, values.size, max_points + 1).astype(np.int64)
    counts = np.diff(edges)
    return ((edges[:-1] + edges[1:] - 1) / 2, np.add.reduceat(values, edges[:-1]) / counts,
            np.minimum.reduceat(values, edges[:-1]), np.maximum.reduceat(values, edges[:-1]))


def _draw(axis, values, label: str, stride: int = 1, **style) -> None:
    steps, mean, low, high = envelope(values)
    axis.plot(steps * stride, mean, label=label, **style)
    if low is not mean:
        axis.fill_between(steps * stride, low, high, color=style.get("color"), alpha=0.2, linewidth=0)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), or a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: `pip install 'hf_linear_decay[plots]'`") from None
    return plt


def save_figure(figure, path) -> str:
    """Save `figure` atomically in the format the extension of `path` names (PNG by default), then close it."""
    plt = pyplot()
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as temp_path:
            figure.savefig(temp_path, dpi=110, format=extension)
    finally:
        plt.close(figure)
    return os.fspath(path)


def _label_log_axis(axis, values) -> None:
    """Enough labelled ticks on a log axis whose range is less than a few decades (matplotlib labels only powers of
    ten, often one or none there)."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    finite = np.asarray(values)[np.isfinite(values) & (np.asarray(values) > 0)]
    if finite.size and np.log10(finite.max() / finite.min()) < 3:
        axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))


def plot_schedule(schedule: RefinedSchedule, path, *, title: str | None = None) -> str:
    """Write a two-panel PNG (or any format matplotlib knows from the extension) to `path`; returns the path.

    Needs matplotlib (`pip install hf_linear_decay[plots]`).
    """
    plt = pyplot()

    # The paper's smoothing of the norms the schedule came from, to show what the refinement saw.
    filled, invalid = fill_invalid_norms(schedule.grad_norms, schedule.skipped)
    stride = -(-schedule.num_steps // SMOOTHING_STEPS)
    smoothed = median_filter_norms(filled[::stride], schedule.tau)
    label = f"median-filtered (tau={schedule.tau:g}, {filter_width(schedule.num_steps, schedule.tau)} steps)"
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    _draw(top, filled, f"raw {schedule.norm} norm", color="tab:gray", alpha=0.6, linewidth=0.8)
    _draw(top, smoothed, label + (f", shown from every {stride}th step" if stride > 1 else ""), stride,
          color="tab:blue", linewidth=1.8)
    if invalid.any():
        shown = np.flatnonzero(invalid)[:: max(1, int(invalid.sum()) // MAX_POINTS)]
        top.scatter(shown, filled[shown], color="tab:red", s=10, label=f"skipped / filled ({int(invalid.sum())})")
    top.set_yscale("log")
    _label_log_axis(top, filled)
    top.set_ylabel(f"gradient {schedule.norm} norm")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    comparison = compare_with_pass_one(schedule)
    same = ", equals " if comparison.equal else ", repeats " if comparison.repeats else ""
    refined = ("followed by the adaptive run" if schedule.adaptive else
               f"refined ({schedule.method}{same + comparison.label if same else ''})")
    _draw(bottom, comparison.reference, comparison.label, color="black", linestyle="--", linewidth=1)
    _draw(bottom, schedule.multipliers, refined, color="tab:green", linewidth=2.0,
          **({"linestyle": (0, (4, 3))} if comparison.repeats else {}))  # dashed over the reference when they match
    _draw(bottom, cosine_decay(schedule.num_steps), "cosine", color="tab:orange", linestyle=":", linewidth=1.3)
    decided_at = schedule.adaptive["plan"]["decided_at"] if schedule.adaptive else None
    if decided_at is not None:  # where an adaptive run took its decision, in both panels
        decision = schedule.adaptive["plan"]["decision"]
        for axis in (top, bottom):
            axis.axvline(decided_at, color="tab:purple", linestyle="-.", linewidth=1.2,
                         label=f"adaptive run: {decision} from step {decided_at}" if axis is bottom else None)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("LR multiplier (peak = 1)")
    bottom.set_ylim(-0.02, 1.05)
    bottom.legend(loc="best", fontsize=8)
    bottom.grid(alpha=0.3)
    figure.suptitle(title or f"Refined schedule, T={schedule.num_steps}")
    figure.tight_layout()
    return save_figure(figure, path)
