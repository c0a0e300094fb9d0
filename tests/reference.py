"""Slow, obviously-correct twins of `hf_linear_decay.core.refine`, used by the tests as the oracle.

Everything is a plain Python loop over steps, following the paper's formulas symbol by symbol. Do not use these in
training code: the median filter is O(T · width · log width) and the tail sums O(T²).
"""

from __future__ import annotations

import math


def reference_filter_width(num_steps: int, tau: float) -> int:
    return 2 * math.floor(round(tau * num_steps, 9) / 2) + 1


def reference_fill_invalid(norms, skipped=None) -> list[float]:
    """Each invalid step takes the straight line between the nearest valid steps before and after it."""
    values = [float(x) for x in norms]
    flags = [bool(s) for s in skipped] if skipped is not None else [False] * len(values)
    valid = [i for i, x in enumerate(values) if math.isfinite(x) and x > 0 and not flags[i]]
    out = []
    for i, x in enumerate(values):
        if i in valid:
            out.append(x)
            continue
        before = [j for j in valid if j < i]
        after = [j for j in valid if j > i]
        if not before:
            out.append(values[after[0]])
        elif not after:
            out.append(values[before[-1]])
        else:
            j, k = before[-1], after[0]
            out.append(values[j] + (values[k] - values[j]) * (i - j) / (k - j))
    return out


def reference_median_filter(norms, tau: float) -> list[float]:
    """ĝ_t = median of the window of `width` values centred on t.

    Outside the sequence: before the start the first value repeats; after the end the sequence is mirrored without
    repeating the last value (index T-1+k reads T-1-k).
    """
    values = [float(x) for x in norms]
    n = len(values)
    half = reference_filter_width(n, tau) // 2

    def value_at(index: int) -> float:
        if index < 0:
            return values[0]
        if index >= n:
            return values[(n - 1) - (index - (n - 1))]
        return values[index]

    smoothed = []
    for t in range(n):
        window = sorted(value_at(t + k) for k in range(-half, half + 1))
        smoothed.append(window[half])
    return smoothed


def reference_multipliers(smoothed_norms, power: float) -> list[float]:
    """η_t = ĝ_t^(-p) · Σ_{s>t} ĝ_s^(-p), divided by its maximum."""
    weights = [g ** (-power) for g in smoothed_norms]
    schedule = []
    for t in range(len(weights)):
        tail = math.fsum(weights[s] for s in range(t + 1, len(weights)))
        schedule.append(weights[t] * tail)
    peak = max(schedule)
    return [eta / peak for eta in schedule]


def reference_refine(norms, tau: float, power: float, skipped=None) -> list[float]:
    return reference_multipliers(reference_median_filter(reference_fill_invalid(norms, skipped), tau), power)


def reference_resample(multipliers, num_steps: int) -> list[float]:
    """Value at new step i: walk the old grid j/(T-1) to find the segment holding i/(N-1), interpolate linearly."""
    old = [float(x) for x in multipliers]
    if num_steps == 1:
        return [old[0]]
    out = []
    for i in range(num_steps):
        progress = i / (num_steps - 1)
        position = progress * (len(old) - 1)
        j = min(int(math.floor(position)), len(old) - 2)
        frac = position - j
        out.append(old[j] * (1 - frac) + old[j + 1] * frac)
    return out


def reference_adaptive_multiplier(t: int, T: int, W: int, start: str, switch: str, fraction: float, shape: str,
                                  decision, d) -> float:
    """An adaptive run's LR multiplier at step t, written out case by case from the plan's description."""
    if t < W:
        return t / max(1, W)

    def linear(step):  # transformers' `linear` after its warm-up
        return max(0.0, (T - step) / max(1, T - W))

    undecided = linear if start == "linear" else (lambda step: 1.0)
    if decision is None or t < d:
        return undecided(t)
    if decision == "linear":
        return linear(t) if start == "linear" else max(0.0, (T - t) / max(1, T - d))
    c = max(W, T - max(1, round(fraction * T)))

    def held(step):
        if start == "stable":
            return 1.0
        if switch == "hold":
            return linear(d)
        return min(1.0, linear(d) + (1.0 - linear(d)) * (step - d) / max(1, W))

    if t < c:
        return held(t)
    progress = (t - c) / max(1, T - c)
    return max(0.0, held(c) * (1.0 - (math.sqrt(progress) if shape == "1-sqrt" else progress)))


def reference_adaptive_decision(norms, skipped, T: int, deadline: int, rise: float, calm_start: float,
                                tau: float = 0.1):
    """`(decision, check step, rise)` of the adaptive rule over a whole record, loop by loop: every T//100 steps
    from the first with a full window (τ·T) behind it, until the deadline; the level is the median of the window's
    valid values; the start is the median of the first half window with the first value repeated in front."""
    width = reference_filter_width(T, tau)
    every = max(1, T // 100)
    valid = [i for i in range(len(norms)) if not skipped[i] and math.isfinite(norms[i]) and norms[i] > 0]

    def median(values):
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    half = width // 2
    first = [norms[i] for i in valid if i <= half]
    start = median([first[0]] * half + first)
    checks = [s for s in range(every, deadline + 1, every) if s >= width] or [deadline]
    levels = {}
    for s in checks:
        window = [norms[i] for i in valid if s - width <= i < s]
        levels[s] = median(window) if window else math.nan
        seen = [levels[c] for c in levels if not math.isnan(levels[c])]
        lowest = min(seen) if seen else math.nan
        now = levels[s] / lowest
        if start / lowest < calm_start and now >= rise:
            return "cooldown", s, now
        if s == checks[-1]:
            return "linear", s, now
    return None, None, None
