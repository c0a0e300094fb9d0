"""The comparison tables and figures of the schedule studies: paired tests over seeds, ratios to a reference.

Shared by the convex suite (`benchmarks.convex_study`) and the LM studies; numpy/scipy/matplotlib only.
"""

from __future__ import annotations

import math
import os

import numpy as np


#: Differences smaller than this are ties whatever the test says (e.g. a last step at LR 0 instead of 1/T).
PRACTICAL_MARGIN = 0.01


def paired(per_seed, baseline):
    """Ratio of means, per-seed ratio range, and the verdict: win or loss when a paired test over seeds gives p < 0.05
    and the means differ by more than `PRACTICAL_MARGIN`, else tie. The test is Wilcoxon's signed-rank test on the
    per-seed log-ratios from 6 seeds on; below that it cannot reach p < 0.05, and a one-sample t-test on the
    log-ratios is used instead."""
    per_seed, baseline = np.asarray(per_seed), np.asarray(baseline)
    ratio = per_seed.mean() / baseline.mean()
    with np.errstate(all="ignore"):
        seed_ratios = per_seed / baseline
        logs = np.log(seed_ratios)
    if not np.isfinite(logs).all():
        verdict = "loss" if ratio > 1 else "win"
    elif abs(ratio - 1) <= PRACTICAL_MARGIN or np.allclose(logs, 0):
        verdict = "tie"
    else:
        p = paired_pvalue(per_seed, baseline)
        verdict = "tie" if p >= 0.05 else ("win" if ratio < 1 else "loss")
    return float(ratio), float(np.min(seed_ratios)), float(np.max(seed_ratios)), verdict


def paired_pvalue(per_seed, baseline) -> float:
    """The p-value of `paired`'s test (Wilcoxon from 6 seeds on, else a one-sample t-test on the log-ratios); nan when
    the ratios are all 1 or not finite."""
    from scipy.stats import ttest_1samp, wilcoxon

    with np.errstate(all="ignore"):
        logs = np.log(np.asarray(per_seed, dtype=float) / np.asarray(baseline, dtype=float))
    if not np.isfinite(logs).all() or np.allclose(logs, 0):
        return float("nan")
    return float(wilcoxon(logs).pvalue if len(logs) >= 6 else ttest_1samp(logs, 0.0).pvalue)


def report(summary, out_dir, reference="linear", metric="suboptimality"):
    """results.md and one PNG per optimizer from `summary[optimizer][problem][schedule]`."""
    lines = []
    for optimizer, problems in summary.items():
        names = [name for name in next(iter(problems.values())) if name != reference]
        lines += [f"## {optimizer.upper()}: each schedule at its own best LR, {metric} as a ratio to "
                  f"{reference}'s (per-seed min-max; **win**/_loss_ when a paired test over seeds (Wilcoxon from 6 "
                  f"seeds, else a t-test on log-ratios) gives p < 0.05 and the means differ by more than "
                  f"{PRACTICAL_MARGIN:.0%}; (edge): best LR at the grid's edge after extension)", "",
                  "| problem | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        stats = {name: {"ratios": [], "verdicts": []} for name in names}
        for problem, results in problems.items():
            cells = []
            for name in names:
                ratio, low, high, verdict = paired(results[name]["per_seed"], results[reference]["per_seed"])
                stats[name]["ratios"].append(ratio)
                stats[name]["verdicts"].append(verdict)
                mark = {"win": "**", "loss": "_", "tie": ""}[verdict]
                edge = " (edge)" if results[name]["edge"] else ""
                cells.append(f"{mark}{ratio:.2f}{mark} ({low:.2f}-{high:.2f}){edge}")
            lines.append(f"| {problem} | " + " | ".join(cells) + " |")
        geo = [math.exp(np.mean(np.log(stats[name]["ratios"]))) for name in names]
        lines.append("| **geo-mean** | " + " | ".join(f"{value:.2f}" for value in geo) + " |")
        lines.append("| **worst** | " + " | ".join(f"{max(stats[name]['ratios']):.2f}" for name in names) + " |")
        lines.append("| **W/T/L** | " + " | ".join(
            "/".join(str(stats[name]["verdicts"].count(v)) for v in ("win", "tie", "loss")) for name in names) + " |")
        refined = [name for name in names if next(iter(problems.values()))[name].get("refined")]
        lines += ["", f"Area (mean multiplier / linear decay's) of the refined schedules, {optimizer.upper()}:", "",
                  "| problem | " + " | ".join(refined) + " |", "|---" * (len(refined) + 1) + "|"]
        for problem, results in problems.items():
            lines.append(f"| {problem} | " + " | ".join(f"{results[name]['area']:.2f}" for name in refined) + " |")
        lines.append("")
        _plot(optimizer, problems, names, stats, os.path.join(out_dir, f"compare_{optimizer}.png"), reference, metric)
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(text + "\n")
    return text


def _plot(optimizer, problems, names, stats, path, reference, metric):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(8, 0.9 * len(names) + 3), 4.5))
    width = 0.8 / len(problems)
    for index, problem in enumerate(problems):
        ratios = [stats[name]["ratios"][index] for name in names]
        axis.bar(np.arange(len(names)) + index * width, ratios, width, label=problem)
    axis.axhline(1.0, color="black", linewidth=1)
    axis.set_yscale("log")
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=35, ha="right", fontsize=8)
    axis.set_ylabel(f"{metric} / {reference}'s (best LR each)")
    axis.set_title(f"{optimizer.upper()}: below 1 = better than {reference}")
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
