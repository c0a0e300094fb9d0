"""The LM study's report: one table per problem, the targets, the study's CPU time, and figures (from the summaries).

    python -m benchmarks.lm_report                  # rebuild results.md and the PNGs from summary_*.json

Each schedule at its own best peak LR; the ratio is its mean final eval loss over the reference's (linear decay with a
5% warm-up), with the per-seed range; **win**/_loss_ when a paired t-test on the per-seed log-ratios gives p < 0.05
and the means differ by more than 1% (`study_report.paired`).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from benchmarks.lm_problems import ADAPTIVE_NAMES, CALIBRATION_PROBLEMS, PROBLEMS, REFERENCE, WSD_NAMES
from benchmarks.study_report import PRACTICAL_MARGIN, paired, paired_pvalue

#: The one-run target of the adaptive schedule: within this of the best of linear decay and WSD, and of schedule-free.
ONE_RUN_MARGIN = 0.003

RUN_COLUMNS = ("problem", "name", "lr", "seed", "eval_loss", "seconds", "parameters", "tokens", "key")
BASELINE_NAMES = ("cosine_warmup", "cosine10_warmup", "wsd_linear_10", "wsd_linear_20", "wsd_sqrt_10", "wsd_sqrt_20")


def load_summaries(out_dir: str) -> dict:
    """Every problem's summary, in the study's order (then any other problem by name)."""
    summaries = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "summary_*.json"))):
        with open(path) as handle:
            summaries[os.path.basename(path)[len("summary_"):-len(".json")]] = json.load(handle)
    order = list(PROBLEMS)
    return dict(sorted(summaries.items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order),
                                                          item[0])))


def problem_facts(out_dir: str, problem: str) -> dict:
    """Parameters, tokens, tokens per parameter and steps of a problem, from one of its cached runs."""
    for path in sorted(glob.glob(os.path.join(out_dir, "runs", problem, f"{REFERENCE}_*.json"))):
        with open(path) as handle:
            run = json.load(handle)
        return {"parameters": run["parameters"], "tokens": run["tokens"],
                "tokens_per_parameter": run["tokens"] / run["parameters"]}
    return {}


def table(summary: dict) -> list[str]:
    reference = summary[REFERENCE]["per_seed"]
    lines = ["| schedule | best peak LR | grid | final eval loss (mean, seeds) | vs reference | seed range | paired p "
             "| verdict | area vs pass 1 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, result in summary.items():
        per_seed = np.asarray(result["per_seed"], dtype=float)
        if name == REFERENCE:
            ratio, low, high, verdict = 1.0, 1.0, 1.0, "reference"
        else:
            ratio, low, high, verdict = paired(per_seed, reference)
        mark = {"win": "**", "loss": "_"}.get(verdict, "")
        p = paired_pvalue(per_seed, reference) if name != REFERENCE else float("nan")
        same = np.max(np.abs(per_seed / np.asarray(reference) - 1)) < 1e-4  # the reference's runs again, to float noise
        pvalue = "- (= reference)" if name != REFERENCE and same else "-" if not np.isfinite(p) else f"{p:.3f}"
        edge = " (edge)" if result.get("edge") else ""
        grid = ", ".join(f"{lr:g}" for lr in result["grid"])
        area = f"{result['area']:.2f}" if "area" in result else "-"
        lines.append(f"| {name} | {result['best_lr']:g}{edge} | {grid} | {per_seed.mean():.4f} "
                     f"({', '.join(f'{x:.4f}' for x in per_seed)}) "
                     f"| {mark}{100 * (ratio - 1):+.2f}%{mark} | {low:.3f}-{high:.3f} | {pvalue} | {verdict} "
                     f"| {area} |")
    return lines


def targets(summary: dict, default: str) -> list[str]:
    """The default against the targets: a paired win of >= 1% over the reference, and not worse than the best of
    cosine and WSD (not a paired loss against it)."""
    if default not in summary:
        return [f"- the default (`{default}`) was not run on this problem"]
    ratio, _, _, verdict = paired(summary[default]["per_seed"], summary[REFERENCE]["per_seed"])
    baselines = [name for name in BASELINE_NAMES if name in summary]
    best = min(baselines, key=lambda name: np.mean(summary[name]["per_seed"]))
    against, _, _, against_verdict = paired(summary[default]["per_seed"], summary[best]["per_seed"])
    met_one = verdict == "win" and ratio <= 1 - PRACTICAL_MARGIN
    return [f"- beats linear decay with warm-up by >= 1% (paired win): {100 * (ratio - 1):+.2f}%, {verdict}: "
            f"**{'met' if met_one else 'not met'}**",
            f"- not worse than the best of cosine and WSD (here `{best}`): {100 * (against - 1):+.2f}%, "
            f"{against_verdict}: **{'met' if against_verdict != 'loss' else 'not met'}**"]


def best_anchor(summary: dict) -> str | None:
    """The best of linear decay and WSD on one problem (the one-run target's anchor), or None without a WSD."""
    anchors = [name for name in (REFERENCE, *WSD_NAMES) if name in summary]
    return min(anchors, key=lambda name: np.mean(summary[name]["per_seed"])) if len(anchors) > 1 else None


def target_cells(summary: dict, name: str, best: str, ranges: bool = True) -> tuple[list[str], bool]:
    """`name` against `best` and against schedule-free AdamW: a cell each (mean ratio, the seeds' range with
    `ranges`, the paired p-value; "-" where there is nothing to compare), and whether both are within the target."""
    cells, met = [], True
    for other in (best, "schedule_free"):
        if other not in summary or other == name and not ranges:
            cells.append("-")
            continue
        ratio, low, high, _ = paired(summary[name]["per_seed"], summary[other]["per_seed"])
        p = paired_pvalue(summary[name]["per_seed"], summary[other]["per_seed"])
        shown = "-" if not np.isfinite(p) else f"{p:.3f}"
        spread = f"{low:.3f}-{high:.3f}, " if ranges else ""
        cells.append(f"{100 * (ratio - 1):+.2f}% ({spread}p {shown})")
        met = met and ratio <= 1 + ONE_RUN_MARGIN
    return cells, met


def one_run(summary: dict) -> list[str]:
    """Cost 1.00 runs against the best of linear decay and WSD (whichever wins on this problem) and schedule-free
    AdamW, each at its own best LR: the mean ratio, the seeds' range and the paired p-value."""
    best = best_anchor(summary)
    if best is None:
        return []
    lines = [f"One run (cost 1.00), against the best of linear decay and WSD here (`{best}`) and schedule-free AdamW; "
             f"target for an adaptive run: within {ONE_RUN_MARGIN:.1%} of both:", "",
             f"| schedule | vs `{best}` (range, p) | vs schedule_free (range, p) | target |", "|---|---|---|---|"]
    for name in (REFERENCE, *WSD_NAMES, "cosine_warmup", "schedule_free", *ADAPTIVE_NAMES, "auto"):
        if name not in summary:
            continue
        cells, met = target_cells(summary, name, best)
        target = ("**met**" if met else "not met") if name in ADAPTIVE_NAMES else ""
        label = f"{name} (two runs: cost 2.00)" if name == "auto" else name
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {target} |")
    return lines


def one_run_overview(out_dir: str, summaries: dict) -> list[str]:
    """Every problem in one table: each adaptive start against the best of linear decay and WSD there and against
    schedule-free AdamW (the mean ratio and the paired p-value), and whether it met the one-run target."""
    lines = ["| problem | tokens per parameter | best of linear and WSD | schedule | vs that best (p) | "
             "vs schedule_free (p) | target |", "|---|---|---|---|---|---|---|"]
    for problem, summary in summaries.items():
        best, facts = best_anchor(summary), problem_facts(out_dir, problem)
        if best is None or not facts:
            continue
        for name in (*ADAPTIVE_NAMES, "schedule_free"):
            if name not in summary:
                continue
            cells, met = target_cells(summary, name, best, ranges=False)
            target = ("**met**" if met else "not met") if name in ADAPTIVE_NAMES else ""
            lines.append(f"| {problem} | {facts['tokens_per_parameter']:.1f} | {best} | {name} | {cells[0]} | "
                         f"{cells[1]} | {target} |")
    return lines


def wsd_gain_by_budget(out_dir: str, summaries: dict) -> list[str]:
    """WSD's gain over linear decay (both with warm-up, each at its best LR) against the tokens per parameter."""
    lines = ["| problem | tokens per parameter | best WSD | vs linear decay (range, p) |", "|---|---|---|---|"]
    rows = []
    for problem, summary in summaries.items():
        facts = problem_facts(out_dir, problem)
        wsd = [name for name in WSD_NAMES if name in summary]
        if not facts or not wsd or REFERENCE not in summary:
            continue
        best = min(wsd, key=lambda name: np.mean(summary[name]["per_seed"]))
        ratio, low, high, _ = paired(summary[best]["per_seed"], summary[REFERENCE]["per_seed"])
        p = paired_pvalue(summary[best]["per_seed"], summary[REFERENCE]["per_seed"])
        rows.append((facts["tokens_per_parameter"], f"| {problem} | {facts['tokens_per_parameter']:.1f} | {best} | "
                     f"{100 * (ratio - 1):+.2f}% ({low:.3f}-{high:.3f}, p {p:.3f}) |"))
    return lines + [row for _, row in sorted(rows)]


def write_report(out_dir: str, default: str | None = None) -> str:
    from hf_linear_decay.core.methods import DEFAULT_METHOD

    default = default or DEFAULT_METHOD
    summaries = load_summaries(out_dir)
    lines = ["# LM study: each schedule at its own best peak LR", "",
             "Command: `python -m benchmarks.lm_study --all --jobs 2` (runs cached under `runs/`; "
             "`python -m benchmarks.lm_report` rebuilds this file). Llama-style models, BPE, AdamW β=(0.9, 0.95), "
             "weight decay 0.1, clipping 1.0, 5% warm-up for the baselines, final eval loss on held-out documents.", ""]
    seconds = 0.0
    for problem, summary in summaries.items():
        facts = problem_facts(out_dir, problem)
        seconds += sum(result.get("seconds", 0.0) for result in summary.values())
        role = "set the default's thresholds" if problem in CALIBRATION_PROBLEMS else "held out from the default"
        if facts:
            lines.append(f"## {problem} ({role}): {facts['parameters'] / 1e6:.2f}M parameters, "
                         f"{facts['tokens'] / 1e6:.2f}M tokens, {facts['tokens_per_parameter']:.1f} tokens per "
                         "parameter")
        else:
            lines.append(f"## {problem} ({role})")
        if summary[REFERENCE].get("grid_seeds", 0) == 1 and len(summary[REFERENCE].get("finalists", {})) > 1:
            lines += ["", f"Each schedule's grid ran on seed 0 (extended at an edge); every seed ran at the grid's "
                      f"{len(summary[REFERENCE]['finalists'])} best LRs and the best mean over the seeds is the "
                      "schedule's LR (the grid's means are seed 0's)."]
        elif summary[REFERENCE].get("grid_seeds", 0) == 1:
            lines += ["", "Each schedule's LR was chosen on seed 0 (the grid, extended at an edge); seeds 1 and 2 ran "
                      "at that LR only (the grid's means are seed 0's)."]
        lines += [""] + table(summary) + ["", f"Default (`{default}`):"] + targets(summary, default) + [""]
        lines += one_run(summary) + [""] if one_run(summary) else []
        profile = summary[REFERENCE].get("norm_profile")
        if profile:
            fires = "fires" if profile["rises_under_decay"] else "does not fire"
            lines += [f"Pass 1's smoothed norm (what `auto` reads): started at {profile['start']:.2f}x its settled "
                      f"level, rose {profile['rise']:.2f}x from its minimum at {100 * profile['minimum_at']:.0f}% of "
                      f"the run to its end, pass 1's LR ended at {profile['lr_end']:.3f} of its peak: the cooldown "
                      f"rule {fires}.", ""]
        cheaper = cheaper_runs(summary, default)
        if cheaper:
            lines += ["Cheaper second runs (cost: optimizer steps of pass 1 and pass 2 over one run's):", ""]
            lines += cheaper + [""]
    lines.append(f"Training time of all runs: {seconds / 3600:.1f} CPU-hours (one thread each).")
    lines += ["", "## All problems", "", overview(summaries)]
    lines += ["", "## WSD's gain over linear decay against the budget", ""] + wsd_gain_by_budget(out_dir, summaries)
    lines += ["", "## One run: the adaptive starts and schedule-free AdamW against the best of linear decay and WSD",
              "", f"Target for an adaptive run: within {ONE_RUN_MARGIN:.1%} of both (cost 1.00 runs).", ""]
    lines += one_run_overview(out_dir, summaries)
    return save_report(out_dir, lines, summaries, "lm_study.png")


def save_report(out_dir: str, lines: list[str], summaries: dict, figure: str) -> str:
    """results.md from `lines`, the figure of `summaries` and runs.csv, in `out_dir`; returns the text."""
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(text)
    if summaries:
        _plot(summaries, os.path.join(out_dir, figure))
    write_runs_csv(out_dir)
    return text


def write_runs_csv(out_dir: str) -> int:
    """Every cached run, one row each, as `runs.csv` beside the report (atomically); returns the row count."""
    import csv

    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "runs", "*", "*.json"))):
        with open(path) as handle:
            run = json.load(handle)
        rows.append([run.get(column) for column in RUN_COLUMNS])
    target = os.path.join(out_dir, "runs.csv")
    with open(target + ".tmp", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RUN_COLUMNS)
        writer.writerows(rows)
    os.replace(target + ".tmp", target)
    return len(rows)


def cheaper_runs(summary: dict, default: str) -> list[str]:
    """The default from a full pass 1 and from shorter ones, and WSD in one run, by cost and gain."""
    rows = [(default, 2.0, "pass 1 over the whole run, then pass 2")]
    rows += [(name, 1 + int(name.split("_from_")[1][:-3]) / 100, f"pass 1 over {name.split('_from_')[1][:-3]}% of "
              "the steps, resampled") for name in summary if name.startswith(f"{default}_from_")]
    if len(rows) == 1:
        return []
    rows.append(("wsd_sqrt_20", 1.0, "no pass 1: the shape `auto` gives on LMs, chosen by hand"))
    lines = ["| run | cost (runs) | how | vs reference |", "|---|---|---|---|"]
    for name, cost, how in rows:
        if name in summary:
            lines.append(f"| {name} | {cost:.2f} | {how} | "
                         f"{verdict_cell(summary[name]['per_seed'], summary[REFERENCE]['per_seed'], 2, marks=False)} |")
    return lines


def verdict_cell(per_seed, reference, digits: int, marks: bool = True) -> str:
    """`+x.x% (low-high, verdict)` of a schedule against the reference (`paired`), win bold and loss italic."""
    ratio, low, high, verdict = paired(per_seed, reference)
    mark = {"win": "**", "loss": "_"}.get(verdict, "") if marks else ""
    return f"{mark}{100 * (ratio - 1):+.{digits}f}%{mark} ({low:.3f}-{high:.3f}, {verdict})"


def all_names(summaries: dict) -> list[str]:
    """Every schedule of any problem, in the order they first appear (problems measure different candidates)."""
    return list(dict.fromkeys(name for summary in summaries.values() for name in summary))


def overview(summaries: dict) -> str:
    """One table over the problems (the README's): each schedule's ratio to the reference, with the verdict."""
    names = all_names(summaries)
    lines = ["| schedule | " + " | ".join(summaries) + " |", "|---" * (len(summaries) + 1) + "|"]
    for name in names:
        cells = []
        for summary in summaries.values():
            if name not in summary:
                cells.append("-")
                continue
            if name == REFERENCE:
                cells.append(f"{np.mean(summary[name]['per_seed']):.4f} (reference)")
                continue
            cells.append(verdict_cell(summary[name]["per_seed"], summary[REFERENCE]["per_seed"], 1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(summaries: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in all_names(summaries) if name != REFERENCE]
    figure, axis = plt.subplots(figsize=(max(8, 0.8 * len(names) + 3), 4.5))
    width = 0.8 / len(summaries)
    for index, (problem, summary) in enumerate(summaries.items()):
        reference = summary[REFERENCE]["per_seed"]
        # the bar: the mean over the reference's mean; the whisker: the per-seed (paired) ratios' range
        cells = [paired(summary[name]["per_seed"], reference)[:3] if name in summary else (np.nan,) * 3
                 for name in names]
        ratio, low, high = (100 * (np.asarray(column, dtype=float) - 1) for column in zip(*cells))
        axis.bar(np.arange(len(names)) + index * width, ratio, width, label=problem,
                 yerr=np.vstack([ratio - low, high - ratio]).clip(0), capsize=2, error_kw={"linewidth": 0.8})
    axis.axhline(0.0, color="black", linewidth=1)
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=35, ha="right", fontsize=8)
    axis.set_ylabel("final eval loss vs linear + warm-up (%)")
    axis.set_title("LM study: below 0 = better than linear decay with warm-up (each at its best LR; whiskers: the "
                   "seeds' range)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    import sys

    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "lm_study")
    print(write_report(sys.argv[1] if len(sys.argv) > 1 else default))
