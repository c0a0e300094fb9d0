"""Compare training runs from their `trainer_state.json`: LR schedules, train and eval loss, and a table.

`hf-linear-decay compare RUN_DIR... [-o compare.png]`. A run is a Trainer `output_dir` (its `trainer_state.json`, else
that of its latest `checkpoint-N/`) or a `trainer_state.json` itself. JSON only: no torch.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from ..files.paths import check_readable_file

__all__ = ["RunCurves", "compare_figure", "compare_table", "plot_runs", "read_run"]


class RunCurves:
    """The logged curves of one run: `(step, value)` lists for `learning_rate`, `loss` and `eval_loss`."""

    def __init__(self, name: str, path: str, history: list):
        self.name, self.path = name, path
        self.curves = {key: [(entry["step"], float(entry[key])) for entry in history
                             if isinstance(entry, dict) and isinstance(entry.get(key), (int, float))
                             and not isinstance(entry.get(key), bool) and isinstance(entry.get("step"), int)]
                       for key in ("learning_rate", "loss", "eval_loss")}

    def last(self, key):
        return self.curves[key][-1][1] if self.curves[key] else math.nan

    def best(self, key):
        values = [value for _, value in self.curves[key] if math.isfinite(value)]
        return min(values) if values else math.nan


def _state_path(run: str) -> str:
    if os.path.isdir(run):
        direct = os.path.join(run, "trainer_state.json")
        if os.path.isfile(direct):
            return direct
        checkpoints = [(int(m.group(1)), name) for name in os.listdir(run)
                       if (m := re.fullmatch(r"checkpoint-(\d+)", name)) and
                       os.path.isfile(os.path.join(run, name, "trainer_state.json"))]
        if not checkpoints:
            raise ValueError(f"{run}: no trainer_state.json in it or in a checkpoint-N/ folder; pass a Trainer "
                             "output_dir (call trainer.save_state() at the end, or save checkpoints).")
        return os.path.join(run, max(checkpoints)[1], "trainer_state.json")
    return check_readable_file(run, ValueError, "pass a Trainer output_dir or its trainer_state.json")


def read_run(run: str, name: str | None = None) -> RunCurves:
    path = _state_path(run)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error}).") from None
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"{path}: not a trainer_state.json (not JSON text); `compare` takes Trainer output folders or "
                         "their trainer_state.json files (`inspect` and `plot` read schedule files).") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise ValueError(f"{path}: no `log_history` list; is this a Trainer trainer_state.json?")
    folder = run if os.path.isdir(run) else os.path.dirname(os.path.abspath(run))
    label = name or os.path.basename(os.path.normpath(folder))
    return RunCurves(label, path, state["log_history"])


def compare_table(runs: list[RunCurves]) -> str:
    """Markdown: final train loss, final and best eval loss, and the final eval loss relative to the first run."""
    reference = runs[0].last("eval_loss")
    lines = ["| run | steps | final train loss | final eval loss | best eval loss | eval vs first |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        steps = max((step for curve in run.curves.values() for step, _ in curve), default=0)
        final = run.last("eval_loss")
        comparable = math.isfinite(final) and math.isfinite(reference) and reference != 0
        relative = f"{100 * (final / reference - 1):+.2f}%" if comparable else "-"

        def show(value):
            return f"{value:.4f}" if math.isfinite(value) else "-"

        lines.append(f"| {run.name} | {steps} | {show(run.last('loss'))} | {show(final)} | "
                     f"{show(run.best('eval_loss'))} "
                     f"| {relative} |")
    return "\n".join(lines)


PANELS = (("learning_rate", "learning rate"), ("loss", "train loss"), ("eval_loss", "eval loss"))
#: Line styles for a run whose curve repeats an earlier run's exactly: drawn over it, still visible.
_REPEAT_STYLES = ((0, (5, 4)), (0, (1, 3)), (0, (3, 2, 1, 2)))


def _close(first: list, second: list) -> bool:
    """Two curves at the same steps that a plot cannot tell apart: within 0.5% of the range they span, everywhere."""
    if len(first) != len(second) or [step for step, _ in first] != [step for step, _ in second]:
        return False
    a, b = (np.array([value for _, value in curve]) for curve in (first, second))
    span = max(a.max(), b.max()) - min(a.min(), b.min())
    return bool(np.all(np.abs(a - b) <= 0.005 * span)) if span > 0 else bool(np.all(a == b))


def compare_figure(runs: list[RunCurves]):
    """Three panels (LR, train loss, eval loss) against the optimizer step, one line per run. A panel without data
    says so; a curve identical to an earlier run's (or within 0.5% of their span: a plot cannot tell them apart) is
    drawn dashed over it and its legend says "= that run" (or "≈ that run")."""
    from .plot import pyplot

    figure, axes = pyplot().subplots(3, 1, figsize=(8, 9), sharex=True)
    for (key, label), axis in zip(PANELS, axes):
        drawn = []
        for run in runs:
            if not run.curves[key]:
                continue
            steps, values = zip(*run.curves[key])
            same = next(((name, "=" if curve == run.curves[key] else "≈") for name, curve in drawn
                         if _close(curve, run.curves[key])), None)
            style = {"linestyle": _REPEAT_STYLES[len(drawn) % len(_REPEAT_STYLES)], "linewidth": 2.0} if same else {}
            axis.plot(steps, values, marker="o" if key == "eval_loss" and len(steps) < 30 else None, markersize=3,
                      linewidth=style.pop("linewidth", 1.2),
                      label=run.name + (f" ({same[1]} {same[0]})" if same else ""), **style)
            drawn.append((run.name, run.curves[key]))
        if not drawn:
            axis.text(0.5, 0.5, f"no {label} logged", ha="center", va="center", transform=axis.transAxes,
                      color="gray")
            axis.set_yticks([])
        else:
            axis.legend(fontsize=8)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("optimizer step")
    figure.tight_layout()
    return figure


def plot_runs(runs: list[RunCurves], path) -> str:
    """`compare_figure` saved to `path` (PNG, SVG or PDF by its extension); returns the path."""
    from .plot import save_figure

    return save_figure(compare_figure(runs), path)
