"""What the default's rule reads from each study's pass 1, and what it decides: the calibration and the held-out check.

    python -m benchmarks.rule_signals            # -> benchmarks/results/rule_signals.md

`auto` turns pass 1 into a cooldown (WSD) shape when pass 1's smoothed norm did not start steeply (below
`CALM_START` times its settled level), rose at least `RISE_UNDER_DECAY` times from its minimum (reached in the first
half) to the end, and pass 1's LR decayed below half its peak (`core.refinements.NormProfile`); the table also gives
the rise by 30% of the run (`early_rise`, what the adaptive run reads by its deadline). The thresholds were
set from the LM study's `python_tiny` and the first five convex problems (iris, wine, breast_cancer, digits, glass);
the other convex problems and the `docs` LM problems were not used to set them. The convex pass 1 is the one the
convex study refines (linear decay at linear decay's best LR, the pilot seed); the LM pass 1 is the reference at its
best LR, seed 0.
"""

from __future__ import annotations

import json
import os

from benchmarks import convex_suite, schedule_shapes
from benchmarks.convex_study import ConvexStudy, OPTIMIZER_NORM

HERE = os.path.dirname(os.path.abspath(__file__))
CALIBRATION = {"python_tiny", "iris", "wine", "breast_cancer", "digits", "glass"}


def profile(record, norm=None):
    from hf_linear_decay.core.refinements import norm_profile
    from hf_linear_decay.core.settings import RefinementSettings

    return norm_profile(record, RefinementSettings(method="auto", norm=norm).resolved(record))


def convex_rows(data_dir: str, summary: dict):
    for optimizer, problems in summary.items():
        for problem, results in problems.items():
            study = ConvexStudy(problem, convex_suite.load_problem(problem, data_dir), optimizer, 1000, range(10), 25,
                                3.0)
            record = study.pass_one(schedule_shapes.baselines(1000)["linear"], results["linear"]["best_lr"])
            yield f"{problem} ({optimizer})", problem, profile(record, OPTIMIZER_NORM[optimizer])


def pass_one_records(lm_dir: str, name: str):
    """`(problem, best LR, record)` of each LM problem's seed-0 run of schedule `name` at its best LR, where the study
    kept its record (the reference always; `wsd_sqrt_20` too)."""
    from benchmarks.lm_report import load_summaries
    from hf_linear_decay.files.schedule_file import load_schedule_file

    for problem, summary in load_summaries(lm_dir).items():
        lr = summary.get(name, {}).get("best_lr")
        path = os.path.join(lm_dir, "pass1", problem, f"{name}_lr{lr:g}_s0.safetensors") if lr else ""
        if os.path.isfile(path):
            yield problem, lr, load_schedule_file(path).record


def lm_rows(lm_dir: str):
    for problem, _, record in pass_one_records(lm_dir, "linear_warmup"):
        yield f"{problem} (AdamW, LM)", problem, profile(record)


def stable_phase_rise(record) -> tuple[float, float]:
    """(minimum's fraction of the run, the smoothed l1 norm at the end of the constant-LR phase over that minimum)
    for a WSD run's record: whether the norm rises without any LR decay."""
    import numpy as np

    from benchmarks.lm_candidates import stable_phase_end
    from hf_linear_decay.core.refine import refinement_of

    smoothed = refinement_of(record.norms("l1"), 0.1, 1.0, record.skipped).smoothed_norms  # what `auto` reads
    stable_end = stable_phase_end(record.lr)
    skip = len(smoothed) // 10
    minimum = skip + int(np.argmin(smoothed[skip:stable_end + 1]))
    return minimum / (len(smoothed) - 1), float(smoothed[stable_end] / smoothed[minimum])


def stable_rows(lm_dir: str):
    for problem, lr, record in pass_one_records(lm_dir, "wsd_sqrt_20"):
        yield problem, lr, *stable_phase_rise(record)


def main():
    from hf_linear_decay.core.refinements import CALM_START, EARLY_BY, RISE_UNDER_DECAY

    convex_dir = os.path.join(HERE, "results", "convex")
    summary = json.load(open(os.path.join(convex_dir, "summary.json")))
    rows = list(lm_rows(os.path.join(HERE, "results", "lm_study")))
    rows += list(convex_rows(os.path.join(HERE, "data", "convex"), summary))
    lines = ["# What `auto` reads from pass 1, and what it decides", "",
             f"Command: `python -m benchmarks.rule_signals`. Rule: start < {CALM_START:g}, rise >= "
             f"{RISE_UNDER_DECAY:g} from a minimum in the first half, pass 1's LR decayed below half its peak -> "
             f"cooldown; else guarded. The rise by {EARLY_BY:.0%} of the run is what the adaptive run reads by its "
             "deadline (not part of `auto`'s rule).", "",
             "| pass 1 | used to set the thresholds | start (x settled) | rise (end / minimum) | minimum at | "
             f"rise by {EARLY_BY:.0%} | LR at the end | auto gives |", "|---|---|---|---|---|---|---|---|"]
    for label, problem, found in rows:
        used = "yes" if problem in CALIBRATION else "no (held out)"
        gives = "cooldown" if found.rises_under_decay else "guarded"
        lines.append(f"| {label} | {used} | {found.start:.2f} | {found.rise:.2f} | {100 * found.minimum_at:.0f}% | "
                     f"{found.early_rise:.2f} | {found.lr_end:.3f} | {gives} |")
    lines += ["", "The norm at a constant LR: WSD (1-sqrt, 20%) runs at their best LR, seed 0, recorded by "
              "`RefinementCallback`; the smoothed l1 norm at the last step of the stable phase over its minimum after "
              "the first 10%:", "", "| LM problem | WSD peak LR | minimum at | stable-phase end / minimum |",
              "|---|---|---|---|"]
    for problem, lr, minimum_at, rise in stable_rows(os.path.join(HERE, "results", "lm_study")):
        lines.append(f"| {problem} | {lr:g} | {100 * minimum_at:.0f}% | {rise:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "results", "rule_signals.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
