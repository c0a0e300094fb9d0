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
