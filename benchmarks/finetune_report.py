"""The fine-tuning study's report: one table per problem, what `auto` read from each pass 1, and one overview.

    python -m benchmarks.finetune_report            # rebuild results.md, runs.csv and the PNG from the summaries

The tables and tests are the LM study's (`lm_report`): each schedule at its own best LR, the mean final eval loss
over the reference's (linear decay with warm-up), the seeds' range and a paired test.
"""

from __future__ import annotations

import os

from benchmarks.adaptive_rule import decisions_table
from benchmarks.lm_report import load_summaries, overview, problem_facts, save_report, table


def profile_line(summary: dict) -> str:
    profile = summary["linear_warmup"].get("norm_profile")
    if not profile:
        return ""
    decision = "the cooldown (the LM regime)" if profile["rises_under_decay"] else (
        f"pass 1's schedule kept ({profile['why_not']})")
    return (f"What `auto` read from pass 1 (linear decay at its best LR, seed 0): the l1 norm started at "
            f"{profile['start']:.2f}x its settled level and rose {profile['rise']:.2f}x from its minimum at "
            f"{100 * profile['minimum_at']:.0f}% of the run; `auto` gave {decision}.")


def write_report(out_dir: str) -> str:
    summaries = load_summaries(out_dir)
    lines = ["# Fine-tuning study: each schedule at its own best peak LR", "",
             "Command: `python -m benchmarks.finetune_study --all --jobs 2` (runs cached under `runs/`; "
             "`python -m benchmarks.finetune_report` rebuilds this file). The base model is the LM study's "
             "`python_tiny` Llama pretrained once (`base/`); AdamW, no weight decay, clipping 1.0, a 3% warm-up, two "
             "epochs of a fixed subset, 3 seeds shared by every schedule; final eval loss on held-out data.", ""]
    for problem, summary in summaries.items():
        facts = problem_facts(out_dir, problem)
        head = f"## {problem}"
        if facts:
            head += f": {facts['parameters']:,} trained parameters, {facts['tokens'] / 1e6:.2f}M tokens"
        lines += [head, "", *table(summary), "", profile_line(summary), ""]
    lines += ["## All problems", "", overview(summaries), "", "## What the adaptive run decided", "",
              *decisions_table(summaries, out_dir)]
    return save_report(out_dir, lines, summaries, "finetune_study.png")


if __name__ == "__main__":
    import sys

    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "finetune_study")
    print(write_report(sys.argv[1] if len(sys.argv) > 1 else default))
