"""The refinement maths (hf_linear_decay.core.refine) against hand-computed cases, scipy, and the slow twin."""


import numpy as np
import pytest
from scipy import ndimage

from tests.reference import reference_fill_invalid, reference_median_filter, reference_refine
from hf_linear_decay.core.refine import (
    check_power,
    check_tau,
    fill_invalid_norms,
    filter_width,
    median_filter_norms,
    multipliers_from_smoothed_norms,
    refine,
    refine_schedule,
)
from hf_linear_decay.core.shapes import linear_decay

LENGTHS = (2, 3, 7, 50, 333, 1000)
TAUS = (0.01, 0.1, 0.25, 0.5, 1.0)


@pytest.mark.parametrize(
    "num_steps, tau, expected",
    [(100, 0.1, 11), (1000, 0.1, 101), (10, 0.1, 1), (5, 0.1, 1), (20, 0.1, 3), (100, 0.58, 59), (7, 1.0, 7), (2, 1.0,
                                                                                                               3)],
)
def test_filter_width_formula(num_steps, tau, expected):
    assert filter_width(num_steps, tau) == expected


@pytest.mark.parametrize("tau", [0, -0.1, 1.0001, float("nan"), float("inf"), "0.1", True, None])
def test_bad_tau_is_a_clear_error(tau):
    with pytest.raises(ValueError, match=r"`tau` must be a number in \(0, 1\].*tau="):
        refine([1.0, 2.0, 3.0], tau=tau)


@pytest.mark.parametrize("power", [0, -1, float("inf"), float("nan"), "2", False])
def test_bad_power_is_a_clear_error(power):
    with pytest.raises(ValueError, match=r"`power` must be a finite number > 0, got power="):
        refine([1.0, 2.0, 3.0], power=power)


def test_validators_name_the_parameter_they_check():
    with pytest.raises(ValueError, match=r"^`--tau` must be a number in \(0, 1\].*got --tau=2"):
        check_tau(2, name="--tau")
    with pytest.raises(ValueError, match=r"^`lr_scheduler_kwargs\['power'\]` must be a finite number > 0"):
        check_power(-1, name="lr_scheduler_kwargs['power']")
    assert check_tau(np.float32(0.25)) == 0.25 and type(check_tau(1)) is float


def test_median_filter_padding_by_hand():
    # width 5 (T=7, tau=5/7 -> 2*floor(2.5)+1): the start repeats 5, the end mirrors ...3, 7 | 3, 8.
    norms = [5.0, 1.0, 4.0, 2.0, 8.0, 3.0, 7.0]
    smoothed = median_filter_norms(norms, tau=5 / 7)
    np.testing.assert_array_equal(smoothed, [5.0, 4.0, 4.0, 3.0, 4.0, 3.0, 7.0])


@pytest.mark.parametrize("num_steps", LENGTHS)
@pytest.mark.parametrize("tau", TAUS)
def test_median_filter_matches_scipy_on_the_padded_input(num_steps, tau):
    norms = np.random.default_rng(num_steps).lognormal(size=num_steps)
    half = filter_width(num_steps, tau) // 2
    start = np.full(half, norms[0])
    end = norms[-2 : -2 - half : -1] if half else np.empty(0)  # mirror without repeating the last value
    padded = np.concatenate([start, norms, end])
    expected = ndimage.median_filter(padded, size=2 * half + 1, mode="constant")[half : half + num_steps]
    np.testing.assert_array_equal(median_filter_norms(norms, tau), expected)
    np.testing.assert_array_equal(median_filter_norms(norms, tau), reference_median_filter(norms, tau))


@pytest.mark.parametrize("num_steps", LENGTHS)
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.0])
def test_fast_refinement_matches_reference(num_steps, tau, power):
    rng = np.random.default_rng(1000 * num_steps + int(100 * tau))
    norms = rng.lognormal(sigma=1.0, size=num_steps) * np.linspace(3, 1, num_steps)
    fast = refine_schedule(norms, tau=tau, power=power)
    slow = np.array(reference_refine(norms, tau, power))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_steps", LENGTHS)
def test_fast_refinement_matches_reference_with_bad_entries(num_steps):
    rng = np.random.default_rng(7)
    norms = rng.lognormal(size=num_steps)
    bad = rng.random(num_steps) < 0.2
    bad[rng.integers(num_steps)] = False
    bad[(rng.integers(num_steps) + 1) % num_steps] = False
    kinds = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0])
    norms[bad] = kinds[rng.integers(len(kinds), size=bad.sum())]
    skipped = rng.random(num_steps) < 0.05
    skipped[~bad] &= rng.random((~bad).sum()) < 0.5
    if (~(bad | skipped)).sum() < 2:
        skipped[:] = False
    result = refine(norms, tau=0.1, power=2, skipped=skipped)
    assert result.num_filled == int((bad | skipped).sum())
    np.testing.assert_allclose(result.filled_norms, reference_fill_invalid(norms, skipped), rtol=1e-13)
    np.testing.assert_allclose(result.multipliers, reference_refine(norms, 0.1, 2, skipped), rtol=0, atol=1e-12)
    assert np.isfinite(result.multipliers).all()


@pytest.mark.parametrize("num_steps", [2, 3, 10, 1000, 4097])
@pytest.mark.parametrize("power", [1.0, 2.0, 0.7])
@pytest.mark.parametrize("value", [3.7, 1e-9, 12345.0])
def test_constant_norms_give_exactly_linear_decay(num_steps, power, value):
    schedule = refine_schedule(np.full(num_steps, value), power=power)
    np.testing.assert_array_equal(schedule, (num_steps - 1 - np.arange(num_steps)) / (num_steps - 1))
    np.testing.assert_array_equal(schedule, linear_decay(num_steps))


def test_norms_that_fall_ten_times_give_a_warmup():
    norms = np.concatenate([np.full(100, 10.0), np.ones(900)])
    schedule = refine_schedule(norms, tau=0.1, power=2)
    peak = int(np.argmax(schedule))
    assert 90 <= peak <= 110, peak
    # Before the drop the weight is (1/10)^2 of the weight after it: a warm-up from ~1% of the peak.
    assert schedule[0] < 0.02
    assert np.all(np.diff(schedule[:90]) <= 1e-15)  # flat-ish, slightly decaying tail-sum before the drop
    assert schedule[peak + 50] < schedule[peak]
    # After the peak the norms are constant again: linear decay from the peak to 0.
    tail = schedule[peak:]
    np.testing.assert_allclose(tail, tail[0] * np.linspace(1, 0, tail.size), atol=1e-12)


def test_norms_that_fall_give_a_longer_warmup_with_power_one_being_milder():
    norms = np.concatenate([np.full(100, 10.0), np.ones(900)])
    assert refine_schedule(norms, power=1)[0] > refine_schedule(norms, power=2)[0] * 5


def test_rising_tail_anneals_faster_than_linear():
    norms = np.concatenate([np.ones(500), np.linspace(1.0, 3.0, 500)])
    schedule = refine_schedule(norms, tau=0.1, power=2)
    linear = linear_decay(norms.size)
    assert np.argmax(schedule) == 0
    assert np.all(schedule[520:-1] < linear[520:-1])
    assert schedule[750] < 0.5 * linear[750]
    assert schedule[-1] == 0.0


@pytest.mark.parametrize("scale", [1e-8, 0.3, 7.0, 1e9])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_scaling_all_norms_changes_nothing(scale, power):
    norms = np.random.default_rng(3).lognormal(size=500)
    np.testing.assert_allclose(
        refine_schedule(norms * scale, power=power), refine_schedule(norms, power=power), rtol=1e-12, atol=1e-14
    )


def test_schedule_shape_invariants():
    norms = np.random.default_rng(11).lognormal(size=257)
    schedule = refine_schedule(norms)
    assert schedule.shape == norms.shape
    assert schedule.max() == 1.0 and schedule[-1] == 0.0 and schedule.min() >= 0


def test_extreme_norms_do_not_overflow():
    norms = np.array([1e-300, 1e300, 1e-10, 5.0, 1e200])
    schedule = refine_schedule(norms, tau=0.1, power=2)
    assert np.isfinite(schedule).all() and schedule.max() == 1.0 and schedule[-1] == 0.0
    # The smallest norms carry all the weight: step 0 (norm 1e-300) is the peak.
    assert np.argmax(schedule) == 0


def test_bad_entries_are_filled_from_neighbours_and_counted():
    norms = [np.nan, 2.0, np.inf, 4.0, 0.0, -3.0, 10.0, np.nan]
    filled, invalid = fill_invalid_norms(norms)
    np.testing.assert_array_equal(filled, [2.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 10.0])
    np.testing.assert_array_equal(invalid, [1, 0, 1, 0, 1, 1, 0, 1])
    result = refine(norms)
    assert result.num_filled == 5
    np.testing.assert_array_equal(result.multipliers, refine_schedule(filled))


def test_skipped_steps_are_treated_as_invalid():
    norms = [1.0, 1.0, 100.0, 1.0, 1.0]
    result = refine(norms, skipped=[0, 0, 1, 0, 0])
    assert result.num_filled == 1
    np.testing.assert_array_equal(result.multipliers, linear_decay(5))


@pytest.mark.parametrize("norms", [[], [1.0], [np.nan, np.nan, 1.0], [0.0, -1.0, np.inf], [np.nan] * 10])
def test_fewer_than_two_valid_steps_is_a_clear_error(norms):
    with pytest.raises(ValueError, match="need at least 2 valid gradient norms"):
        refine(norms)


def test_two_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="1-D sequence"):
        refine(np.ones((3, 3)))


def test_multipliers_reject_non_positive_smoothed_norms():
    with pytest.raises(ValueError, match="finite values > 0"):
        multipliers_from_smoothed_norms([1.0, 0.0, 2.0], 2)


def test_refinement_is_the_paper_formula_on_a_tiny_case():
    # T=4, no smoothing (tau 0.1 gives a window of 1): w = g^-2 = [1/4, 1, 1/16, 1]; the tails of strictly later
    # weights are [33/16, 17/16, 1, 0], so eta = w * tail = [33/64, 17/16, 1/16, 0], peak 17/16 at step 1.
    g = np.array([2.0, 1.0, 4.0, 1.0])
    np.testing.assert_allclose(refine_schedule(g, tau=0.1, power=2), [33 / 68, 1.0, 1 / 17, 0.0], rtol=1e-15)
