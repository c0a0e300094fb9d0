"""Numbers that describe a refined schedule: where it peaks, how long it warms up, how it compares with linear decay."""

from __future__ import annotations

import numpy as np

from ..core.adaptive import describe_adaptive
from ..core.schedule import RefinedSchedule
from ..core.refine import filter_width
from ..files.schedule_file import schedule_metadata
from ..core.describe import compare_with_pass_one
from ..core.refinements import norm_profile
from ..core.shapes import area_ratio_to_linear, linear_decay

#: A schedule has "warmed up" at the first step where it reaches this fraction of its peak.
WARMUP_LEVEL = 0.9

#: Shapes that fared badly in the studies (each schedule at its own best LR): (flag, test, what was measured, and
#: where). The numbers stay in the results files, which the studies rewrite: benchmarks/results/convex/results.md
#: (logistic regression, SGD and Adam, 10 seeds) and benchmarks/results/lm_study/results.md (Llama-style LMs, AdamW
#: with weight decay, 3 seeds).
CONVEX, LM = "benchmarks/results/convex/results.md", "benchmarks/results/lm_study/results.md"
SHAPE_FLAGS = (
    ("late peak", lambda s: s["peak_fraction"] > 0.2,
     f"peaks after 20% of training: in the convex suite such schedules ended worse than linear decay except where "
     f"the norms fell by two orders of magnitude early ({CONVEX})"),
    ("long warm-up", lambda s: s["warmup_fraction"] > 0.15,
     f"reaches 90% of its peak after 15% of training: in the convex suite such schedules mostly ended worse than "
     f"linear decay, and where one won, a plain 5% warm-up got most of the gain ({CONVEX})"),
    ("slow anneal", lambda s: s["second_half_ratio_to_linear"] > 1.3 and not s["lm_regime"],
     f"its second half lies over 1.3x above linear decay's while pass 1's norms did not rise as its LR decayed: in "
     f"the convex suite such schedules ended worse than linear decay ({CONVEX}). Where the norms rose, as on the LM "
     "study's problems, the cooldown shape that stays high late won: this flag is not raised there."),
    ("fast anneal", lambda s: s["second_half_ratio_to_linear"] < 0.7,
     f"its second half lies well below linear decay's (norms that rise late, as an LM's do, cut the late LR): the "
     f"paper's schedule did so on the LM study's problems and ended worse than linear decay there ({LM})"),
    ("non-monotone", lambda s: s["largest_rise_after_peak"] > 0.1,
     f"rises again by over 0.1 after its peak: in the convex suite such schedules mostly ended worse than linear "
     f"decay ({CONVEX}); humps follow bumps in the recorded norms; try a larger tau"),
)


def summarize_schedule(schedule: RefinedSchedule) -> dict:
    """Summary used by `hf-linear-decay inspect` (its `--json` output is exactly this dict).

    Distances are to the reference of `core.describe`: pass 1's own schedule (its recorded LRs) when the record holds
    it, else linear decay as the Trainer runs it, (T-t)/T; `reference` names which. The shape flags compare with
    linear decay to 0, 1 - t/(T-1), as the studies measured them.
    """
    multipliers = schedule.multipliers
    num_steps = schedule.num_steps
    comparison = compare_with_pass_one(schedule)
    difference = multipliers - comparison.reference
    linear = linear_decay(num_steps)
    peak_step = int(np.argmax(multipliers))
    after_peak = multipliers[peak_step:]
    warmup_steps = int(np.argmax(multipliers >= WARMUP_LEVEL * multipliers.max()))
    above, below = int(np.argmax(difference)), int(np.argmin(difference))
    half = num_steps // 2
    summary = {
        "num_steps": num_steps,
        "method": schedule.method,
        "norm": schedule.norm,
        "power": schedule.power,
        "tau": schedule.tau,
        "method_options": dict(schedule.options),
        "filter_width": filter_width(num_steps, schedule.tau),
        "peak_step": peak_step,
        "peak_fraction": peak_step / (num_steps - 1),
        "warmup_steps": warmup_steps,
        "warmup_fraction": warmup_steps / (num_steps - 1),
        "reference": comparison.label,
        "equals_reference": comparison.equal,
        "repeats_reference": comparison.repeats,
        "mean_minus_reference": float(difference.mean()),
        "max_above_reference": float(difference[above]),
        "max_above_reference_step": above,
        "max_below_reference": float(difference[below]),
        "max_below_reference_step": below,
        "area_ratio_to_reference": comparison.area_ratio,
        "area_ratio_to_linear": area_ratio_to_linear(multipliers),
        "rises_after_peak": int((np.diff(after_peak) > 1e-12).sum()),
        "largest_rise_after_peak": float(np.max(after_peak - np.minimum.accumulate(after_peak))),
        "second_half_ratio_to_linear": float(multipliers[half:].sum() / max(linear[half:].sum(), 1e-300)),
        **_profile(schedule),
        "skipped_steps": int(schedule.skipped.sum()),
        "recorded": list(schedule.recorded),
        "adaptive": describe_adaptive(schedule.adaptive) if schedule.adaptive else None,
        "decided_at": schedule.adaptive["plan"]["decided_at"] if schedule.adaptive else None,
        "metadata": schedule_metadata(schedule),
    }
    # The flags judge refined shapes against the studies; a followed schedule is what a run did, not a proposal.
    refined = schedule.method != "followed"
    summary["flags"] = [{"flag": flag, "reason": reason} for flag, test, reason in SHAPE_FLAGS
                        if refined and test(summary)]
    return summary


def _profile(schedule: RefinedSchedule) -> dict:
    """What `auto` reads from the record (`core.refinements.NormProfile`), and whether it is the LM regime."""
    try:
        profile = norm_profile(schedule.record, schedule.settings)
    except ValueError:  # too few valid steps of the chosen norm to say
        return {"norm_profile": None, "lm_regime": False}
    return {"norm_profile": {"start": profile.start, "rise": profile.rise, "minimum_at": profile.minimum_at,
                             "lr_end": profile.lr_end}, "lm_regime": profile.rises_under_decay}


def format_summary(summary: dict) -> str:
    """Human-readable form of `summarize_schedule`'s output."""
    lines = [
        f"steps (T):            {summary['num_steps']}",
        f"refined by:           method {summary['method']}, {summary['norm']} norms, power {summary['power']:g}, "
        f"tau {summary['tau']:g} (median window {summary['filter_width']} step"
        f"{'s' * (summary['filter_width'] != 1)})" + "".join(f", {key} {value}" for key, value in
                                                       summary["method_options"].items()),
        f"peak:                 step {summary['peak_step']} ({100 * summary['peak_fraction']:.1f}% of training)",
        f"warm-up:              {summary['warmup_steps']} steps to reach {int(100 * WARMUP_LEVEL)}% of peak "
        f"({100 * summary['warmup_fraction']:.1f}%)",
        f"vs {summary['reference']}: " + (
            "equals it" if summary["equals_reference"] else
            "repeats it (a second run would be the first again); " * summary["repeats_reference"] +
            f"mean {summary['mean_minus_reference']:+.4f}; area ratio {summary['area_ratio_to_reference']:.3f}; max "
            f"above {summary['max_above_reference']:+.4f} at step {summary['max_above_reference_step']}; max below "
            f"{summary['max_below_reference']:+.4f} at step {summary['max_below_reference_step']}"),
        "after the peak:       " + (
            "decreases monotonically" if summary["rises_after_peak"] == 0
            else f"rises again on {summary['rises_after_peak']} steps (non-monotone; consider a larger --tau)"
        ),
        f"skipped steps:        {summary['skipped_steps']} (skipped, unknown, non-finite or zero norms; filled from "
        "neighbouring steps when refining)",
        f"recorded:             {', '.join(summary['recorded'])}",
    ]
    if summary["adaptive"]:
        lines.append(f"adaptive:             {summary['adaptive']}")
    profile = summary["norm_profile"]
    if profile:
        lines.append(f"pass 1's norm:        started at {profile['start']:.2f}x its settled level, rose "
                     f"{profile['rise']:.2f}x from its minimum at {100 * profile['minimum_at']:.0f}% of the run"
                     + (" as the LR decayed (the LM regime)" if summary["lm_regime"] else ""))
    for flag in summary["flags"]:
        lines.append(f"warning: {flag['flag']}: {flag['reason']}")
    lines.append("metadata:")
    lines += [f"  {key}: {value}" for key, value in summary["metadata"].items()]
    return "\n".join(lines)
