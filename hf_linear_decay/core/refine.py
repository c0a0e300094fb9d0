"""Gradient-norm refinement of a learning-rate schedule (arXiv 2310.07831, Algorithms 1 and 2).

Pure numpy/scipy: this module imports neither torch nor transformers nor accelerate, so it can be read, reused and
tested on its own. ``tests/reference.py`` holds slow loop versions of the same maths; the tests check that
the two agree.

Notation follows the paper (Defazio, Cutkosky, Mehta, Mishchenko, "Optimal Linear Decay Learning Rate Schedules and
Further Refinements"):

- ``T`` optimizer steps of a *prior* run, indexed ``t = 0 .. T-1`` here;
- ``G_t`` the gradient-norm statistic recorded at step ``t`` (l2 norm for SGD, l1 norm for Adam);
- ``ĝ_t`` the median-filtered ``G_t``;
- the refined schedule ``η_t ∝ ĝ_t^(-p) · Σ_{s>t} ĝ_s^(-p)``, with ``η_{T-1} = 0`` and ``max_t η_t = 1``.

With constant norms the schedule is exactly linear decay to zero, ``η_t = (T-1-t)/(T-1)``, the paper's
worst-case-optimal schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Default smoothing fraction τ: the median-filter window covers about ``τ · T`` steps (the paper's value).
DEFAULT_TAU = 0.1

__all__ = ["DEFAULT_TAU", "Refinement", "check_power", "check_tau", "fill_invalid_norms", "filter_width",
           "median_filter_norms", "multipliers_from_smoothed_norms", "refine", "refine_schedule", "refinement_of"]


def check_tau(tau, *, name: str = "tau") -> float:
    """Return `tau` as a float if it is a number in (0, 1], else raise a `ValueError` naming `name`."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)) or not 0 < tau <= 1:
        raise ValueError(
            f"`{name}` must be a number in (0, 1] (the median-filter window as a fraction of the run), got "
            f"{name}={tau!r}; "
            f"the paper's default is {DEFAULT_TAU}."
        )
    return float(tau)


def check_power(power, *, name: str = "power") -> float:
    """Return `power` as a float if it is a finite number > 0, else raise a `ValueError` naming `name`."""
    if (
        isinstance(power, bool)
        or not isinstance(power, (int, float, np.floating, np.integer))
        or not math.isfinite(power)
        or power <= 0
    ):
        raise ValueError(
            f"`{name}` must be a finite number > 0, got {name}={power!r}; use 2 with l2 norms (SGD, Alg. 1) "
            "or 1 with l1 norms (Adam, Alg. 2)."
        )
    return float(power)


def _as_1d_float(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of per-step values, got an array of shape {array.shape}.")
    return array


def filter_width(num_steps: int, tau: float = DEFAULT_TAU) -> int:
    """Odd median-filter window for a run of `num_steps` recorded steps.

    ``width = 2 * floor(tau * T / 2) + 1``. ``tau * T`` is rounded to 9 decimals first so that products such as
    ``0.58 * 100 = 57.99999999999999`` give the window the formula means (59), not one a float artefact gives (57).

    Args:
        num_steps (`int`): T, the number of recorded optimizer steps.
        tau (`float`, *optional*, defaults to 0.1): smoothing fraction, in (0, 1].
    """
    tau = check_tau(tau)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive integer, got num_steps={num_steps!r}.")
    return _width(num_steps, tau)


def _width(num_steps: int, tau: float) -> int:
    return 2 * math.floor(round(tau * num_steps, 9) / 2) + 1


def fill_invalid_norms(grad_norms, skipped=None) -> tuple[np.ndarray, np.ndarray]:
    """Replace the entries that cannot be used (skipped steps, non-finite, zero or negative norms).

    An invalid entry gets the linear interpolation between the nearest valid steps on either side; before the first
    or after the last valid step it gets that valid step's value.

    Args:
        grad_norms (1-D array-like): G_t, one value per optimizer step.
        skipped (1-D array-like of bool, *optional*): steps flagged as skipped (e.g. fp16 overflow); they are invalid
            whatever their recorded norm.

    Returns:
        `(filled, invalid)`: the filled float64 norms and the boolean mask of the entries that were replaced.

    Raises:
        ValueError: fewer than 2 valid steps remain.
    """
    norms = _as_1d_float(grad_norms, "grad_norms")
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(norms) | (norms <= 0)
    if skipped is not None:
        skipped = np.asarray(skipped).astype(bool)
        if skipped.shape != norms.shape:
            raise ValueError(
                f"`skipped` must have one flag per step ({norms.shape[0]}), got shape {skipped.shape}."
            )
        invalid |= skipped
    valid_steps = np.flatnonzero(~invalid)
    if valid_steps.size < 2:
        raise ValueError(
            f"need at least 2 valid gradient norms to refine a schedule, got {valid_steps.size} of {norms.size} "
            "(skipped, non-finite, zero and negative entries are not valid); record a longer run or check the input."
        )
    filled = norms.copy()
    if invalid.any():
        filled[invalid] = np.interp(np.flatnonzero(invalid), valid_steps, norms[valid_steps])
    return filled, invalid


def median_filter_norms(grad_norms, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Median-filter a gradient-norm sequence the way the paper smooths it (ĝ = median_filter(G, τT)).

    The window is ``filter_width(T, tau)`` steps, centred on each step. At the start the sequence is padded by
    repeating its first value; at the end it is padded by mirroring (``reflect``: the last value is not repeated), so
    the smoothed norms keep following a trend that is still rising or falling when training stops.

    Args:
        grad_norms (1-D array-like): finite norms, one per recorded step (see `fill_invalid_norms`).
        tau (`float`, *optional*, defaults to 0.1): window as a fraction of the run, in (0, 1].

    Returns:
        `np.ndarray` (float64) of the same length.
    """
    norms = _as_1d_float(grad_norms, "grad_norms")
    if norms.size == 0 or not np.isfinite(norms).all():
        raise ValueError("`grad_norms` must be a non-empty sequence of finite values; fill invalid steps first.")
    return _median_filter(norms, _width(norms.size, check_tau(tau)))


def _median_filter(norms: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    if half == 0:
        return norms.copy()
    # Only the end is padded by hand (reflect); scipy's `nearest` mode supplies the repeated first value at the start.
    padded = np.pad(norms, (0, half), mode="reflect")
    return ndimage.median_filter(padded, size=2 * half + 1, mode="nearest")[: norms.size]


def multipliers_from_smoothed_norms(smoothed_norms, power: float) -> np.ndarray:
    """Closed-form refined schedule from smoothed norms: ``η_t ∝ ĝ_t^(-p) · Σ_{s>t} ĝ_s^(-p)``, peak 1, last 0.

    The weights are computed as ``(min ĝ / ĝ_t)^p`` (a constant factor that the final division by the maximum removes)
    so that they lie in (0, 1] and cannot overflow, and so that constant norms give weights of exactly 1 and hence an
    exactly linear schedule.

    Args:
        smoothed_norms (1-D array-like): ĝ, finite and > 0, at least 2 entries.
        power (`float`): p > 0; 2 for l2 norms (Alg. 1), 1 for l1 norms (Alg. 2).
    """
    norms = _as_1d_float(smoothed_norms, "smoothed_norms")
    if norms.size < 2 or not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ValueError("`smoothed_norms` must hold at least 2 finite values > 0.")
    return _multipliers(norms, check_power(power))


def _multipliers(norms: np.ndarray, power: float) -> np.ndarray:
    weights = (norms.min() / norms) ** power
    # tail[t] = sum of weights strictly after t (the last step has an empty tail, hence a zero learning rate).
    tail = np.zeros_like(weights)
    tail[:-1] = np.cumsum(weights[:0:-1])[::-1]
    schedule = weights * tail
    peak = schedule.max()
    if not peak > 0:
        # Norms spanning > 300 orders of magnitude underflow every product: redo the same formula in log space.
        log_weights = -power * np.log(norms)
        log_tail = np.full_like(log_weights, -np.inf)
        log_tail[:-1] = np.logaddexp.accumulate(log_weights[:0:-1])[::-1]
        log_schedule = log_weights + log_tail
        return np.exp(log_schedule - log_schedule.max())
    return schedule / peak


@dataclass(frozen=True)
class Refinement:
    """Everything the refinement computed, for inspection and plotting.

    Attributes:
        multipliers (`np.ndarray`): the refined schedule η_t (peak 1, last 0).
        smoothed_norms (`np.ndarray`): ĝ_t, the median-filtered norms.
        filled_norms (`np.ndarray`): G_t with invalid entries filled from their neighbours.
        invalid (`np.ndarray` of bool): which steps were filled.
        filter_width (`int`): the median-filter window in steps.
        tau (`float`), power (`float`): the parameters used.
    """

    multipliers: np.ndarray
    smoothed_norms: np.ndarray
    filled_norms: np.ndarray
    invalid: np.ndarray
    filter_width: int
    tau: float
    power: float

    @property
    def num_filled(self) -> int:
        """Number of steps whose norm was invalid and was filled from neighbouring valid steps."""
        return int(self.invalid.sum())


def refine(grad_norms, *, tau: float = DEFAULT_TAU, power: float = 2.0, skipped=None) -> Refinement:
    """Refine a schedule from a prior run's per-step gradient norms (paper Alg. 1 for power 2, Alg. 2 for power 1).

    Steps:
    1. invalid entries (skipped, non-finite, ≤ 0) are filled from neighbouring valid steps (`fill_invalid_norms`);
    2. ``ĝ = median_filter(G, width = 2⌊τT/2⌋+1)``, first value repeated at the start, reflected at the end;
    3. ``η_t = ĝ_t^(-p) · Σ_{s>t} ĝ_s^(-p)``, so ``η_{T-1} = 0``; divided by its maximum.

    Args:
        grad_norms (1-D array-like): G_t, one entry per optimizer step of the prior run (l2 norms for SGD-type
            optimizers, l1 norms for Adam-type ones).
        tau (`float`, *optional*, defaults to 0.1): median-filter window as a fraction of the run, in (0, 1].
        power (`float`, *optional*, defaults to 2.0): p > 0.
        skipped (1-D array-like of bool, *optional*): steps to treat as invalid.

    Returns:
        `Refinement`. Its ``multipliers`` multiply the peak learning rate.

    Example:
        ```python
        >>> refine([1.0] * 5, power=2).multipliers
        array([1.  , 0.75, 0.5 , 0.25, 0.  ])
        ```
    """
    return refinement_of(grad_norms, check_tau(tau), check_power(power), skipped)


def refinement_of(grad_norms, tau: float, power: float, skipped=None) -> Refinement:
    """`refine` for settings that are already valid (the methods' entry: their settings were checked where they
    entered)."""
    filled, invalid = fill_invalid_norms(grad_norms, skipped)
    width = _width(filled.size, tau)
    smoothed = _median_filter(filled, width)
    return Refinement(multipliers=_multipliers(smoothed, power), smoothed_norms=smoothed, filled_norms=filled,
                      invalid=invalid, filter_width=width, tau=tau, power=power)


def refine_schedule(grad_norms, *, tau: float = DEFAULT_TAU, power: float = 2.0, skipped=None) -> np.ndarray:
    """Shortcut for ``refine(...).multipliers``: the refined schedule, peak 1, last 0."""
    return refine(grad_norms, tau=tau, power=power, skipped=skipped).multipliers
