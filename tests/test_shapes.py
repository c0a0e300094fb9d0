"""Baseline shapes and resampling (hf_linear_decay.core.shapes) against hand-computed values and the reference twin."""

import numpy as np
import pytest

from tests.reference import reference_resample
from hf_linear_decay.core.refine import refine_schedule
from hf_linear_decay.core.shapes import cosine_decay, linear_decay, resample_schedule


@pytest.mark.parametrize("old, new", [(10, 10), (10, 3), (7, 1000), (1000, 37), (2, 5), (5, 2), (12, 1)])
def test_resample_matches_reference(old, new):
    schedule = refine_schedule(np.random.default_rng(old).lognormal(size=old))
    resampled = resample_schedule(schedule, new)
    np.testing.assert_allclose(resampled, reference_resample(schedule, new), rtol=0, atol=1e-14)
    assert resampled.shape == (new,)
    assert resampled[0] == schedule[0]
    if new > 1:
        assert resampled[-1] == schedule[-1]


def test_resample_same_length_returns_the_schedule_unchanged():
    schedule = refine_schedule(np.random.default_rng(5).lognormal(size=99))
    resampled = resample_schedule(schedule, 99)
    np.testing.assert_array_equal(resampled, schedule)
    assert resampled is not schedule


def test_resampled_linear_decay_stays_linear():
    np.testing.assert_allclose(resample_schedule(linear_decay(101), 57), linear_decay(57), atol=1e-14)


def test_resample_by_progress_by_hand():
    # old points at progress 0, .5, 1 -> new points at 0, .25, .5, .75, 1
    np.testing.assert_allclose(resample_schedule([1.0, 0.5, 0.0], 5), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(resample_schedule([0.0, 1.0, 0.6, 0.0], 7), [0.0, 0.5, 1.0, 0.8, 0.6, 0.3, 0.0])


@pytest.mark.parametrize("num_steps", [0, -3, 2.5, True])
def test_resample_rejects_bad_lengths(num_steps):
    with pytest.raises(ValueError, match="`num_steps` must be an integer >= 1"):
        resample_schedule([1.0, 0.0], num_steps)



def test_linear_and_cosine_by_hand():
    np.testing.assert_array_equal(linear_decay(5), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(cosine_decay(3), [1.0, 0.5, 0.0], atol=1e-16)
    with pytest.raises(ValueError, match="`num_steps` must be an integer >= 2, got num_steps=1"):
        linear_decay(1)


def test_resample_rejects_a_single_value_schedule():
    with pytest.raises(ValueError, match="at least 2 values"):
        resample_schedule([1.0], 3)
