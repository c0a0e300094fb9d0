"""The adaptive run's decision: when the rule switches on each problem, and what each variant decided in its runs.

    python -m benchmarks.adaptive_rule            # -> benchmarks/results/lm_study/adaptive_rule.md

Two views, both from committed results (no training here):

1. The rule replayed on recorded runs (`hf_linear_decay.core.adaptive.AdaptiveWatch`, exactly as the callback reads
   the record while training). Up to its decision an adaptive run with a linear start is the linear-decay run of the
   same seed and LR, step for step, and one with a stable start is the WSD run's stable phase: so the LM study's
   pass-1 records (every LR and seed of `linear_warmup`) and WSD records (`wsd_sqrt_20`) say when, and whether, the
   rule fires, for the default and for other thresholds and deadlines.
2. What the adaptive runs decided: every LM run of `adapt_*` keeps its decision (step and reading); the convex suite
   keeps the decisions of the ten seeds at each adaptive schedule's best LR.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from benchmarks.lm_problems import CALIBRATION_PROBLEMS, HERE, PROBLEMS, REFERENCE

LM_DIR = os.path.join(HERE, "results", "lm_study")
CONVEX_SUMMARY = os.path.join(HERE, "results", "convex", "summary.json")
#: Rules replayed besides the default: (rise, deadline as a fraction of the run).
VARIANTS = ((1.3, 0.3), (1.25, 0.3), (1.2, 0.3), (1.4, 0.3), (1.3, 0.2), (1.3, 0.4))
ADAPTIVE = ("adapt", "adapt_stable", "adapt_hold_r125", "adapt_peak_r125", "adapt_hold")


def replay(record, rise: float, decide_by: float, start: str) -> tuple[str, int]:
    """`(decision, step)` the rule takes on `record` (its l1 norms, as for AdamW), fed step by step."""
    from hf_linear_decay.core.adaptive import AdaptivePlan, AdaptiveWatch

    num_steps = len(record)
    warmup = int(np.argmax(record.lr >= record.lr.max()))
    watch = AdaptiveWatch(AdaptivePlan.from_options(num_steps, warmup, {"rise": rise, "decide_by": decide_by,
                                                                        "start": start}))
    norms, skipped = record.norms("l1"), record.skipped
    for step in range(1, num_steps + 1):
        if watch.is_check(step):
            plan, _ = watch.decide(norms[:step], skipped[:step], step)
            if plan is not None:
                return plan.decision, step
    return "none", num_steps


def records(problem: str, name: str):
    """`(lr, seed, record)` of every kept record of schedule `name` on `problem`."""
    from hf_linear_decay.files.schedule_file import load_schedule_file

    for path in sorted(glob.glob(os.path.join(LM_DIR, "pass1", problem, f"{name}_lr*_s*.safetensors"))):
        stem = os.path.basename(path)[len(name) + 3: -len(".safetensors")]
        lr, seed = stem.split("_s")
        yield float(lr), int(seed), load_schedule_file(path).record


def best_lr(problem: str, name: str, out_dir: str = LM_DIR) -> float | None:
    path = os.path.join(out_dir, f"summary_{problem}.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle).get(name, {}).get("best_lr")


def replay_table(problems) -> list[str]:
    lines = ["| problem (role) | record | LR | " + " | ".join(f"rise {r:g}, by {d:.0%}" for r, d in VARIANTS) + " |",
             "|---" * (3 + len(VARIANTS)) + "|"]
    for problem in problems:
        role = "calibration" if problem in CALIBRATION_PROBLEMS else "held out"
        for name, start in ((REFERENCE, "linear"), ("wsd_sqrt_20", "stable")):
            best = best_lr(problem, name)
            by_lr = {}
            for lr, _, record in records(problem, name):  # (the deadline comes long before WSD's cooldown)
                cells = by_lr.setdefault(lr, [[] for _ in VARIANTS])
                for index, (rise, decide_by) in enumerate(VARIANTS):
                    decision, step = replay(record, rise, decide_by, start)
                    cells[index].append(f"{step / len(record):.0%}" if decision == "cooldown" else "no")
            for lr, cells in sorted(by_lr.items()):
                mark = " (best)" if best is not None and np.isclose(lr, best) else ""
                lines.append(f"| {problem} ({role}) | {name} | {lr:g}{mark} | "
                             + " | ".join(", ".join(cell) for cell in cells) + " |")
    return lines


def decisions_table(problems, out_dir: str = LM_DIR) -> list[str]:
    """What each adaptive run of a study (its results folder `out_dir`) decided: at the best LR, per seed, and how
    many runs of its grid switched."""
    lines = ["| problem | schedule | best LR | at the best LR (per seed) | over the whole grid |",
             "|---|---|---|---|---|"]
    for problem in problems:
        for name in ADAPTIVE:
            runs = []
            for path in sorted(glob.glob(os.path.join(out_dir, "runs", problem, f"{name}_lr*_s*.json"))):
                with open(path) as handle:
                    runs.append(json.load(handle))
            if not runs:
                continue
            best = best_lr(problem, name, out_dir)

            def said(run):
                plan = (run.get("adaptive") or {}).get("plan") or {}
                if plan.get("decision") == "cooldown":
                    return f"cooldown at {plan['decided_at'] / plan['num_steps']:.0%}"
                return "linear" if plan.get("decision") == "linear" else "?"

            at_best = [said(run) for run in runs if best is not None and np.isclose(run["lr"], best)]
            switched = sum(said(run).startswith("cooldown") for run in runs)
            lines.append(f"| {problem} | {name} | {best if best is not None else '-'} | {'; '.join(at_best) or '-'} | "
                         f"{switched} of {len(runs)} runs switched to the cooldown |")
    return lines


def convex_table() -> list[str]:
    if not os.path.isfile(CONVEX_SUMMARY):
        return ["(no convex summary)"]
    with open(CONVEX_SUMMARY) as handle:
        summary = json.load(handle)
    lines = ["| optimizer | schedule | problems where a seed switched (seeds of 10, at the best LR) |", "|---|---|---|"]
    for optimizer, problems in summary.items():
        for name in ADAPTIVE:
            hits = []
            for problem, results in problems.items():
                decisions = results.get(name, {}).get("decisions", [])
                switched = [step for decision, step in decisions if decision == "cooldown"]
                if switched:
                    hits.append(f"{problem} ({len(switched)}, at step {', '.join(map(str, switched))} of 1000)")
            lines.append(f"| {optimizer} | {name} | {'; '.join(hits) or 'none'} |")
    return lines


def main():
    from hf_linear_decay.core.adaptive import DECIDE_BY, RISE_TO_SWITCH

    problems = [name for name in PROBLEMS if os.path.isdir(os.path.join(LM_DIR, "pass1", name))]
    lines = ["# The adaptive run's decision", "", "Command: `python -m benchmarks.adaptive_rule` (from the committed "
             "records and runs). The default rule: switch to the cooldown at the first check (every 1% of the run) "
             f"where the l1 norm's median over the last 10% of the run is at least {RISE_TO_SWITCH:g}x its lowest "
             f"level at any earlier check, the norm did not start steeply, by {DECIDE_BY:.0%} of the run at the "
             "latest; then back to the peak LR and a 1-sqrt cooldown over the last 20%. Chosen on python_tiny's "
             "records and the convex suite's pass 1s (the deadline, 30%), then on docs_tiny's runs with the first "
             "rule, rise 1.25 (holding the LR at the switch lost to returning to the peak) and on the convex suite's "
             "adaptive runs (at 1.25 one seed of ten on vehicle switched, with both optimizers; at 1.3, auto's own "
             "threshold, none did). docs_tiny_long (10.7 tokens per parameter) and docs_20tpp (20) did not set the "
             "adaptive rule (they are held out for it).", "",
             "## The rule replayed on recorded runs", "",
             "Where the rule switches, as a fraction of the run, for each seed (no: it does not switch by the "
             "deadline). `linear_warmup` rows are what a linear start sees, `wsd_sqrt_20` rows what a stable start "
             "sees (the same run up to the decision).", ""]
    lines += replay_table(problems)
    lines += ["", "## What the adaptive runs decided (LM study)", ""] + decisions_table(problems)
    lines += ["", "## What the adaptive runs decided (convex suite)", ""] + convex_table()
    text = "\n".join(lines) + "\n"
    with open(os.path.join(LM_DIR, "adaptive_rule.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
