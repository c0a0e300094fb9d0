"""The refinement methods' functions: from a pass 1 record to a schedule shape (multipliers, peak 1, last 0).

Each returns ``(multipliers, explanation)``; the explanation says in one line what it did and why. They trust their
settings (validated where they entered). The table that names them is `methods.METHODS`; the evidence behind each
threshold is in `benchmarks/results/lm_study/results.md` (LMs) and `benchmarks/results/convex/results.md`.
numpy/scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .refine import filter_width, refinement_of

def paper_method(record, settings) -> tuple[np.ndarray, str]:
    """arXiv 2310.07831 Alg. 1/2 exactly: ``η_t ∝ ĝ_t^-p · Σ_{s>t} ĝ_s^-p`` from the median-filtered norms."""
    result = refinement_of(record.norms(settings.norm), settings.tau, settings.power, record.skipped)
    return result.multipliers, (f"the paper's refinement of the {settings.norm} norms (power {settings.power:g}, "
                                f"median window {result.filter_width} step{'s' * (result.filter_width != 1)})")


#: `guarded` adds a warm-up only when pass 1's smoothed norm started at least this many times above its settled level
#: (the median over the second half); the warm-up lasts until the norm falls below `SETTLED_WITHIN` times that level.
STEEP_START, SETTLED_WITHIN = 100.0, 1.5


def pass_one_shape(record) -> np.ndarray:
    """The schedule pass 1 ran: its recorded LRs over their peak, every step included (transformers' `linear` ends at
    1/(T - W), not 0). Without recorded LRs, transformers' `linear` without warm-up, ``(T - t) / T``
    (`pass_one_lr_assumed` says so)."""
    lr = record.lr
    if not pass_one_lr_assumed(record):
        return lr / lr.max()
    return (len(record) - np.arange(len(record))) / max(1, len(record))


def pass_one_lr_assumed(record) -> bool:
    """Whether pass 1's schedule is an assumption (no usable recorded LRs) rather than what the record holds."""
    lr = record.lr
    return not ("lr" in record.recorded and np.isfinite(lr).all() and lr.max() > 0)


def followed_method(record, settings) -> tuple[np.ndarray, str]:
    """The schedule pass 1 followed, exactly (its recorded LRs over their peak): a run that follows it repeats pass
    1's LRs, last step included."""
    if pass_one_lr_assumed(record):
        return pass_one_shape(record), ("pass 1's schedule, assumed to be transformers' linear decay without warm-up "
                                        "(the record holds no LRs)")
    return pass_one_shape(record), "the schedule pass 1 followed (its recorded LRs)"


def settled_level(smoothed: np.ndarray) -> float:
    """The level a smoothed norm settled at: its median over the second half of the run."""
    return float(np.median(smoothed[len(smoothed) // 2:]))


def settle_step(smoothed: np.ndarray) -> int:
    """The first step where a smoothed norm is within `SETTLED_WITHIN` times its settled level (at least 1)."""
    return max(1, int(np.argmax(smoothed < SETTLED_WITHIN * settled_level(smoothed))))


def smoothed_norms(record, settings) -> np.ndarray:
    """ĝ, the paper's median-filtered norms of the record (what `guarded`, `cooldown` and `auto` read)."""
    return refinement_of(record.norms(settings.norm), settings.tau, settings.power, record.skipped).smoothed_norms


def guarded_method(record, settings, smoothed=None) -> tuple[np.ndarray, str]:
    """Pass 1's own schedule, plus a warm-up until the gradient norm settles if, and only if, it started steeply.

    The convex suite (`benchmarks/results/convex/results.md`) found the paper's schedule a large win where the norms
    fall by two orders of magnitude early in training (most of it from its long warm-up) and a loss elsewhere. So:
    with ĝ the paper's median-filtered norms and ĝ_∞ their median over the second half, if
    ``ĝ_0 ≥ STEEP_START · ĝ_∞`` the multipliers are pass 1's shape times a linear ramp that ends at the first step
    with ``ĝ_t < SETTLED_WITHIN · ĝ_∞``; otherwise pass 1's shape unchanged (usually linear decay). Never a
    faster-than-linear anneal, never a late peak.
    """
    smoothed = smoothed_norms(record, settings) if smoothed is None else smoothed
    shape = pass_one_shape(record)
    settled = settled_level(smoothed)
    start = smoothed[0] / settled
    if not start >= STEEP_START:
        assumed = " (assumed: transformers' linear decay; no LRs recorded)" if pass_one_lr_assumed(record) else ""
        return shape, (f"kept pass 1's schedule{assumed}: the {settings.norm} norm started at {start:.1f}x its settled "
                       f"level and a warm-up needs {STEEP_START:g}x")
    ramp_end = settle_step(smoothed)
    ramped = shape * np.minimum(1.0, np.arange(len(shape)) / ramp_end)
    return ramped / ramped.max(), (f"pass 1's schedule with a warm-up over {ramp_end} steps: the {settings.norm} "
                                   f"norm started {start:.0f}x above its settled level")


#: `auto` reads the LM regime from pass 1's norms: no steep start (below `CALM_START` times the settled level) and a
#: rise of at least `RISE_UNDER_DECAY` from the minimum (reached in the first half) to the end, while pass 1's LR
#: decayed to below half its peak. The calibration (lm_study's python_tiny; the convex suite's first five problems)
#: and the held-out checks are in benchmarks/results/lm_study/results.md.
CALM_START, RISE_UNDER_DECAY = 10.0, 1.3
#: `EARLY_BY`: the span the adaptive run reads before its deadline (`early_rise`); `auto` reports the rise by then but
#: does not require it. A round of lm_study's docs_20tpp that chose each LR on one seed had made it a condition of
#: `auto` (the WSD shape had not beaten linear decay there); with the LRs chosen on every seed the WSD shape gained
#: there while the condition kept linear decay, it bound on no other measured problem, and `auto` without it was
#: measured again: benchmarks/results/lm_study/results.md and rule_signals.md.
EARLY_BY = 0.3
#: Checks per run: the early rise (and the adaptive run's rule) reads the record at every `T // CHECKS_PER_RUN`-th
#: step (at least every step), each level the median of the last τ·T valid norms.
CHECKS_PER_RUN = 100
COOLDOWN_FRACTION = 0.2
COOLDOWN_SHAPES = ("1-sqrt", "linear")


@dataclass(frozen=True)
class NormProfile:
    """What a pass 1's smoothed norm did: `start` (its first value over the settled level), `rise` (its last value
    over its minimum after the first 10% of the run), `minimum_at` (that minimum's fraction of the run), `lr_end`
    (pass 1's last LR over its peak: how far it decayed) and `early_rise` (`early_rise`: how far it had risen by
    `EARLY_BY` of the run)."""

    start: float
    rise: float
    minimum_at: float
    lr_end: float
    early_rise: float = float("inf")  # the largest rise over the lowest earlier level by EARLY_BY of the run

    @property
    def rises_under_decay(self) -> bool:
        return not self.why_not()

    def why_not(self) -> str:
        """Why the profile is not the LM regime ("" when it is): the first condition that fails, in words."""
        if not self.start < CALM_START:
            return f"the norm started steeply, {self.start:.0f}x its settled level ({CALM_START:g}x allowed)"
        if not self.rise >= RISE_UNDER_DECAY:
            return f"the norm rose {self.rise:.2f}x from its minimum ({RISE_UNDER_DECAY:g}x needed)"
        if not self.minimum_at <= 0.5:
            return f"the norm's minimum came late, at {self.minimum_at:.0%} of the run (the first half needed)"
        if not self.lr_end <= 0.5:
            return f"pass 1's LR ended at {self.lr_end:.2f} of its peak (it never decayed below half)"
        return ""


def norm_profile(record, settings, smoothed=None) -> NormProfile:
    smoothed = smoothed_norms(record, settings) if smoothed is None else smoothed
    num_steps = len(smoothed)
    skip = num_steps // 10
    minimum = skip + int(np.argmin(smoothed[skip:]))
    lr_end = float(pass_one_shape(record)[-1])
    early = early_rise(record.norms(settings.norm), record.skipped, settings.tau)
    return NormProfile(float(smoothed[0] / settled_level(smoothed)), float(smoothed[-1] / smoothed[minimum]),
                       minimum / max(1, num_steps - 1), lr_end, early)


def check_steps(num_steps: int, window: int, last: int) -> range:
    """The steps up to `last` at which a run of `num_steps` reads its norms: every ``T // CHECKS_PER_RUN`` steps, the
    first with a full `window` behind it."""
    every = max(1, num_steps // CHECKS_PER_RUN)
    return range(-(-window // every) * every, last + 1, every)


def valid_norms(values, skipped) -> np.ndarray:
    """The norms among `values` that were measured: not skipped, finite and positive."""
    with np.errstate(invalid="ignore"):
        return values[~skipped & np.isfinite(values) & (values > 0)]


def trailing_level(norms, skipped, step: int, window: int) -> float:
    """The norm's level at check `step`: the median of the valid norms of the `window` steps before it (NaN if none)."""
    valid = valid_norms(norms[step - window: step], skipped[step - window: step])
    return float(np.median(valid)) if valid.size else math.nan


def early_rise(norms, skipped, tau: float) -> float:
    """How far the norm had risen by `EARLY_BY` of the run: the largest `trailing_level` at a check up to there over
    the lowest level at an earlier check (1.0 with fewer than two levels). The adaptive run reads the same levels while
    it trains (`core.adaptive.AdaptiveWatch`) and switches where this reaches its rise."""
    norms, skipped = np.asarray(norms, dtype=np.float64), np.asarray(skipped, dtype=bool)
    window = filter_width(len(norms), tau)
    levels = [trailing_level(norms, skipped, check, window)
              for check in check_steps(len(norms), window, int(EARLY_BY * len(norms)))]
    best, lowest = 1.0, math.inf
    for level in (level for level in levels if not math.isnan(level)):
        if lowest < math.inf:
            best = max(best, level / lowest)
        lowest = min(lowest, level)
    return best


def pass_one_warmup(record) -> int:
    """The steps pass 1 took to reach its peak LR (its warm-up; 0 without recorded LRs)."""
    shape = pass_one_shape(record)
    return int(np.argmax(shape >= 1.0 - 1e-12))


def cooldown_method(record, settings, smoothed=None) -> tuple[np.ndarray, str]:
    """Pass 1's warm-up, then its peak LR held, then a cooldown to 0 over the last `fraction` of the run: the
    warmup-stable-decay (WSD) shape. The 1-sqrt cooldown ``1 - sqrt((t - t_c) / (T - 1 - t_c))`` is Hägele et al.
    (2024)'s; where the norms start steeply the warm-up lasts until they settle, as `guarded` does."""
    fraction, kind = settings.options["fraction"], settings.options["shape"]
    num_steps = len(record)
    warmup = pass_one_warmup(record)
    guarded, _ = guarded_method(record, settings, smoothed)
    warmup = max(warmup, int(np.argmax(guarded >= 1.0 - 1e-12)))
    start = min(num_steps - 2, max(warmup, num_steps - max(1, round(fraction * num_steps))))
    progress = np.clip((np.arange(num_steps) - start) / max(1, num_steps - 1 - start), 0.0, 1.0)
    shape = 1.0 - (np.sqrt(progress) if kind == "1-sqrt" else progress)
    if warmup > 0:
        shape = shape * np.minimum(1.0, np.arange(num_steps) / warmup)
    shape[-1] = 0.0
    return shape / shape.max(), (f"pass 1's warm-up ({warmup} steps), its peak LR held, then a {kind} cooldown over "
                                 f"the last {fraction:.0%} of the run")


def auto_method(record, settings) -> tuple[np.ndarray, str]:
    """`cooldown` where pass 1's norms show the LM regime (`NormProfile.rises_under_decay`), else `guarded`.

    In that regime (weight decay with normalised layers: the norm grows as the LR decays, Defazio 2025) the late
    rise says nothing about the loss, and the paper's refinement, reading it as harder gradients, anneals faster
    than linear decay and loses; a long stable phase and a short cooldown won (lm_study). Elsewhere (the norms fall,
    as on the convex suite) pass 1's own schedule is kept unless the norms start steeply.
    """
    smoothed = smoothed_norms(record, settings)  # once: the profile and the shape read the same ĝ
    profile = norm_profile(record, settings, smoothed)
    if profile.rises_under_decay:
        multipliers, how = cooldown_method(record, settings, smoothed)
        return multipliers, (f"the {settings.norm} norm rose {profile.rise:.2f}x from {profile.minimum_at:.0%} of the "
                             "run to its end while pass 1's LR decayed (weight decay with normalised layers: the "
                             f"paper's refinement would anneal too fast): {how}")
    multipliers, how = guarded_method(record, settings, smoothed)
    return multipliers, f"not the LM regime ({profile.why_not()}): {how}"
