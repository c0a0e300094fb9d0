"""Refinement settings and methods: validation, defaults resolved per record, the one way to build a schedule."""

import re

import numpy as np
import pytest

from hf_linear_decay.core.methods import METHODS, check_method
from hf_linear_decay.core.schedule import RefinedSchedule, build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.core.record import NormRecord, RunInfo
from hf_linear_decay.core.refine import refine_schedule


def record(optimizer=None, columns=("grad_norm_l2", "grad_norm_l1", "lr"), num_steps=40):
    rng = np.random.default_rng(1)
    values = {"grad_norm_l2": rng.lognormal(size=num_steps), "grad_norm_l1": rng.lognormal(size=num_steps) * 30,
              "lr": np.linspace(1, 0, num_steps)}
    return NormRecord.from_columns({name: values[name] for name in columns}, run=RunInfo(optimizer=optimizer))


@pytest.mark.parametrize("optimizer, columns, norm, power", [
    ("AdamW", ("grad_norm_l2", "grad_norm_l1"), "l1", 1.0),
    ("SGD", ("grad_norm_l2", "grad_norm_l1"), "l2", 2.0),
    (None, ("grad_norm_l1",), "l1", 1.0),
    (None, ("grad_norm_l2",), "l2", 2.0),
    (None, ("grad_norm_l2", "grad_norm_l1"), "l2", 2.0),
])
def test_defaults_resolve_per_record(optimizer, columns, norm, power):
    resolved = RefinementSettings().resolved(record(optimizer, columns))
    assert (resolved.method, resolved.norm, resolved.power, resolved.tau) == ("auto", norm, power, 0.1)


def test_build_schedule_is_the_papers_refinement_of_the_chosen_norm():
    source = record("AdamW")
    schedule = build_schedule(source, RefinementSettings(method="paper", tau=0.3))
    np.testing.assert_array_equal(schedule.multipliers, refine_schedule(source.grad_norm_l1, tau=0.3, power=1.0))
    explicit = build_schedule(source, RefinementSettings(method="paper", norm="l2", power=3))
    np.testing.assert_array_equal(explicit.multipliers, refine_schedule(source.grad_norm_l2, power=3))
    assert isinstance(schedule, RefinedSchedule) and schedule.settings.norm == "l1"


def test_schedule_reads_through_to_record_and_settings():
    schedule = build_schedule(record("AdamW"))
    assert (schedule.method, schedule.norm, schedule.tau, schedule.power) == ("auto", "l1", 0.1, 1.0)
    assert schedule.run.optimizer == "AdamW" and schedule.num_steps == 40
    np.testing.assert_array_equal(schedule.grad_norms, schedule.record.grad_norm_l1)
    np.testing.assert_array_equal(schedule.lr, schedule.record.lr)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        schedule.nonsense


def test_updated_keeps_unset_values_and_resets_power_with_a_new_norm():
    settings = RefinementSettings(norm="l1", power=1.5, tau=0.2)
    assert settings.updated(tau=None, norm=None) == settings
    assert settings.updated(norm="l2") == RefinementSettings(norm="l2", power=None, tau=0.2)
    assert settings.updated(norm="l2", power=3) == RefinementSettings(norm="l2", power=3, tau=0.2)
    assert settings.updated(tau=0.5).power == 1.5


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "magic"}, r"`method` must be one of \['auto', 'paper'.*got method='magic'"),
    ({"norm": "l3"}, r"`norm` must be one of"),
    ({"tau": 0}, r"`tau` must be a number in \(0, 1\]"),
    ({"power": -2}, r"`power` must be a finite number > 0"),
])
def test_settings_are_validated_on_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RefinementSettings(**kwargs)


def test_missing_norm_and_too_few_valid_steps_are_clear_errors():
    with pytest.raises(ValueError, match="no l1 norms"):
        build_schedule(record(columns=("grad_norm_l2",)), RefinementSettings(norm="l1"))
    broken = NormRecord.from_columns({"grad_norm_l2": [np.nan] * 9 + [1.0]})
    with pytest.raises(ValueError, match="need at least 2 valid gradient norms"):
        build_schedule(broken)


def test_every_method_returns_a_valid_schedule():
    for name in METHODS:
        multipliers = build_schedule(record("AdamW"), RefinementSettings(method=name)).multipliers
        assert multipliers.max() == pytest.approx(1.0) and multipliers[-1] == 0 and multipliers.min() >= 0
    assert check_method("paper") == "paper"


def test_diverged_records_are_refused_unless_forced_and_unknown_steps_count_too():
    from hf_linear_decay.core.schedule import DivergedRunError

    norms, lr = np.ones(20), np.linspace(1, 0, 20)
    norms[:6] = np.nan  # 30% recorded as unusable
    with pytest.raises(DivergedRunError, match=r"6 of 20 steps \(30%\) were skipped .*force=True"):
        build_schedule(NormRecord.from_columns({"grad_norm_l2": norms, "lr": lr}))
    assert build_schedule(NormRecord.from_columns({"grad_norm_l2": norms, "lr": lr}), force=True).num_steps == 20
    unknown = NormRecord.from_columns({"grad_norm_l2": norms, "lr": np.where(np.isnan(norms), np.nan, lr)})
    with pytest.raises(DivergedRunError, match=r"6 of 20 steps \(30%\) cannot be used \(0 skipped .*6 never recorded"):
        build_schedule(unknown)  # never recorded (a lost record): as unusable as a diverged step, and said so
    assert build_schedule(unknown, force=True).num_steps == 20


def test_guarded_is_pass_ones_schedule_unless_the_norms_start_steeply():
    from hf_linear_decay.core.refinements import SETTLED_WITHIN, STEEP_START, pass_one_shape
    from hf_linear_decay.core.shapes import linear_decay

    num_steps = 400
    GUARDED = RefinementSettings(method="guarded")
    lr = np.where(np.arange(num_steps) < 20, np.arange(num_steps) / 20, 1.0) * linear_decay(num_steps) * 1e-3
    gentle = np.linspace(10.0, 1.0, num_steps)  # falls 10x: no extra warm-up, pass 1's own shape (its warm-up kept)
    flat = NormRecord.from_columns({"grad_norm_l2": gentle, "lr": lr}, run=RunInfo(optimizer="SGD"))
    np.testing.assert_allclose(build_schedule(flat, GUARDED).multipliers, pass_one_shape(flat))
    shape = pass_one_shape(flat)
    np.testing.assert_array_equal(shape, lr / lr.max())  # pass 1's LRs exactly, its warm-up and last step included
    assert shape[10] < shape[20]
    steep = np.concatenate([np.geomspace(STEEP_START * 3, 2.0, 80), np.ones(num_steps - 80)])
    record = NormRecord.from_columns({"grad_norm_l2": steep}, run=RunInfo(optimizer="SGD"))  # no LR: linear decay
    multipliers = build_schedule(record, GUARDED).multipliers
    trainer_linear = (num_steps - np.arange(num_steps)) / num_steps  # assumed: transformers' linear, no warm-up
    smoothed = __import__("hf_linear_decay.core.refine", fromlist=["refine"]).refine(steep).smoothed_norms
    ramp_end = int(np.argmax(smoothed < SETTLED_WITHIN * np.median(smoothed[200:])))
    assert 60 < ramp_end < 100
    expected = trainer_linear * np.minimum(1, np.arange(num_steps) / ramp_end)
    np.testing.assert_allclose(multipliers, expected / expected.max(), atol=1e-12)
    assert np.argmax(multipliers) == ramp_end and multipliers[0] == 0 and multipliers[-1] > 0
    assert np.all(np.diff(multipliers[ramp_end:]) < 0)  # linear after the warm-up: no hump, no fast anneal


def test_guarded_says_when_it_keeps_pass_ones_schedule():
    gentle = NormRecord.from_columns({"grad_norm_l2": np.linspace(10.0, 1.0, 100)}, run=RunInfo(optimizer="SGD"))
    explanation = build_schedule(gentle, RefinementSettings(method="guarded")).explanation
    assert explanation.startswith("kept pass 1's schedule (assumed: transformers' linear decay; no LRs recorded): the "
                                  "l2 norm started")
    assert "a warm-up needs 100x" in explanation
    with_lr = NormRecord.from_columns({"grad_norm_l2": np.linspace(10.0, 1.0, 100), "lr": np.linspace(1, 0.01, 100)},
                                      run=RunInfo(optimizer="SGD"))
    assert build_schedule(with_lr, RefinementSettings(method="guarded")).explanation.startswith(
        "kept pass 1's schedule: the l2 norm started")


def lm_record(num_steps=200, warmup=10, rise=2.0, start=0.5, lr_shape="linear"):
    """A pass 1 in the LM regime (AdamW, weight decay): the l1 norm dips to its minimum at 10% and then grows `rise`x
    as the LR decays, as lm_study's pass 1 norms do; the LR is linear decay with warm-up (or WSD's 1-sqrt cooldown)."""
    t = np.arange(num_steps)
    if lr_shape == "linear":
        lr = np.minimum(t / warmup, 1.0) * (num_steps - t) / (num_steps - warmup)
    else:  # warmup_stable_decay, 1-sqrt cooldown over the last 20%
        decay_start = num_steps - round(0.2 * num_steps)
        lr = np.minimum(t / warmup, 1.0) * (1 - np.sqrt(np.clip((t - decay_start) / (num_steps - decay_start), 0, 1)))
    minimum = num_steps // 10
    growth = 1 + (rise - 1) * (t - minimum) / (num_steps - minimum)
    norms = np.where(t < minimum, start + (1 - start) * t / minimum, growth)
    return NormRecord.from_columns({"grad_norm_l1": norms * 100, "lr": np.maximum(lr, 1e-6) * 1e-3},
                                   run=RunInfo(optimizer="AdamW"))


def test_auto_gives_a_wsd_cooldown_where_the_norm_rises_as_the_lr_decays():
    schedule = build_schedule(lm_record(), RefinementSettings(method="auto"))
    multipliers = schedule.multipliers
    np.testing.assert_allclose(multipliers[:10], np.arange(10) / 10)  # pass 1's warm-up, kept
    np.testing.assert_array_equal(multipliers[10:160], 1.0)  # the peak held until the last 20%
    progress = (np.arange(160, 200) - 160) / 39
    np.testing.assert_allclose(multipliers[160:199], (1 - np.sqrt(progress))[:-1])  # Hägele et al.'s 1-sqrt
    assert multipliers[-1] == 0.0
    assert "the l1 norm rose 1.97x from 10% of the run to its end" in schedule.explanation  # smoothed 2x rise
    assert "1-sqrt cooldown over the last 20%" in schedule.explanation


def test_cooldown_options_set_the_anneals_length_and_shape():
    settings = RefinementSettings(method="cooldown", options={"fraction": 0.5, "shape": "linear"})
    multipliers = build_schedule(lm_record(), settings).multipliers
    np.testing.assert_array_equal(multipliers[10:100], 1.0)
    np.testing.assert_allclose(multipliers[100:], 1 - (np.arange(100, 200) - 100) / 99)


@pytest.mark.parametrize("change, why, said", [
    ({"rise": 1.25}, "rises too little (RISE_UNDER_DECAY is 1.3)",
     r"the norm rose 1\.2\dx from its minimum \(1\.3x needed\)"),
    ({"start": 40.0}, "starts steeply: guarded's regime", r"the norm started steeply, \d+x its settled level"),
    ({"rise": 0.5}, "falls, as on the convex suite", r"the norm rose 1\.0\dx from its minimum \(1\.3x needed\)"),
])
def test_auto_keeps_guarded_outside_the_lm_regime(change, why, said):
    source = lm_record(**change)
    auto = build_schedule(source, RefinementSettings(method="auto"))
    guarded = build_schedule(source, RefinementSettings(method="guarded"))
    np.testing.assert_array_equal(auto.multipliers, guarded.multipliers, err_msg=why)
    assert re.match(r"not the LM regime \(" + said, auto.explanation), auto.explanation


def test_auto_keeps_pass_ones_schedule_when_pass_one_never_decayed():
    constant = NormRecord.from_columns({"grad_norm_l1": np.linspace(50.0, 120.0, 100), "lr": np.full(100, 1e-3)},
                                       run=RunInfo(optimizer="AdamW"))  # rising norm, but at a constant LR
    multipliers = build_schedule(constant, RefinementSettings(method="auto")).multipliers
    np.testing.assert_array_equal(multipliers[:-1], 1.0)


def test_a_schedule_that_repeats_pass_one_says_so():
    """`auto` on the record of a WSD run gives WSD back (off by the discretisation only): the user must read that a
    second run would repeat the first, not a neutral 'area 1.00x'."""
    from hf_linear_decay.core.describe import compare_with_pass_one, describe_schedule

    schedule = build_schedule(lm_record(lr_shape="wsd"), RefinementSettings(method="auto"))
    comparison = compare_with_pass_one(schedule)
    assert comparison.repeats and not comparison.equal and 0 < comparison.largest_difference <= 0.02
    assert "of pass 1's schedule at every step: a run that follows it repeats pass 1" in describe_schedule(schedule)
    differs = build_schedule(lm_record(), RefinementSettings(method="auto"))  # from linear decay: a new schedule
    assert not compare_with_pass_one(differs).repeats
    assert "area 1." in describe_schedule(differs) and "repeat" not in describe_schedule(differs)


def test_auto_gives_the_cooldown_where_the_norm_rises_only_late():
    """docs_20tpp's pass 1: the norm flat while the LR is high, then rising 2x as it decays. The rise by 30% of the run
    is not a condition of `auto` (with every seed at each grid's best LRs the WSD shape beat linear decay there): the
    whole-run rise from a minimum in the first half gives the cooldown, as it does where the rise starts at 10%."""
    from hf_linear_decay.core.refinements import norm_profile

    num_steps, warmup = 400, 20
    t = np.arange(num_steps)
    lr = np.minimum(t / warmup, 1.0) * (num_steps - t) / (num_steps - warmup)
    norms = np.where(t < 0.4 * num_steps, 1.0, 1.0 + (t - 0.4 * num_steps) / (0.6 * num_steps))
    record = NormRecord.from_columns({"grad_norm_l1": norms * 100, "lr": np.maximum(lr, 1e-6) * 1e-3},
                                     run=RunInfo(optimizer="AdamW"))
    settings = RefinementSettings(method="auto")
    assert norm_profile(record, settings.resolved(record)).early_rise == pytest.approx(1.0)  # flat by 30%
    schedule = build_schedule(record, settings)
    np.testing.assert_allclose(schedule.multipliers, build_schedule(record, RefinementSettings(
        method="cooldown")).multipliers)
    assert "1-sqrt cooldown" in schedule.explanation and "rose late" not in schedule.explanation
    early = build_schedule(lm_record(num_steps=400, warmup=20, rise=2.0), settings)
    assert "1-sqrt cooldown" in early.explanation  # the same whole-run rise, starting at 10%: the cooldown


@pytest.mark.parametrize("seed", [0, 1])
def test_the_early_rise_is_what_the_adaptive_run_reads_by_its_deadline(seed):
    """`early_rise` (what rule_signals reports for each pass 1) and the adaptive run's rule read the same levels: the
    largest rise the adaptive watch reads at its checks up to 30% of the run equals `early_rise`."""
    from hf_linear_decay.core.adaptive import AdaptivePlan, AdaptiveWatch
    from hf_linear_decay.core.refine import DEFAULT_TAU
    from hf_linear_decay.core.refinements import early_rise

    rng = np.random.default_rng(seed)
    num_steps = 500
    norms = np.exp(np.cumsum(rng.normal(0.0, 0.05, num_steps)))
    skipped = rng.random(num_steps) < 0.05
    watch = AdaptiveWatch(AdaptivePlan(num_steps, 25, rise=1e9))  # never switches: every check is read
    readings = [watch.reading(norms, skipped, step).rise for step in watch.check_steps(watch.plan.deadline)]
    assert early_rise(norms, skipped, DEFAULT_TAU) == pytest.approx(max([1.0, *readings]))
