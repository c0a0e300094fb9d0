"""The adaptive run (`lr_scheduler_kwargs={"adapt": true}`): its plan, its rule, and real Trainer runs."""

import itertools
import json
import math
import os
import re

import numpy as np
import pytest

from hf_linear_decay.core.adaptive import (ADAPT_OPTIONS, AdaptivePlan, AdaptiveWatch, check_adapt_options,
                                           describe_adaptive)
from hf_linear_decay.core.refinements import CALM_START
from tests.reference import reference_adaptive_decision, reference_adaptive_multiplier


def transformers_multipliers(name, num_steps, warmup, **kwargs):
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=num_steps,
                              scheduler_specific_kwargs=kwargs)
    return np.array([scheduler.lr_lambdas[0](step) for step in range(num_steps)])


# ----- the plan: a pure function of the step --------------------------------------------------------------------------
@pytest.mark.parametrize("num_steps, warmup", [(600, 30), (97, 0), (10, 3)])
def test_an_undecided_linear_start_is_transformers_linear_exactly(num_steps, warmup):
    plan = AdaptivePlan.from_options(num_steps, warmup, {})
    np.testing.assert_array_equal(plan.multipliers(), transformers_multipliers("linear", num_steps, warmup))
    kept = plan.decided("linear", plan.deadline)  # no rise by the deadline: nothing changes
    np.testing.assert_array_equal(kept.multipliers(), plan.multipliers())


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
def test_a_stable_start_that_cools_down_is_transformers_wsd_exactly(shape):
    plan = AdaptivePlan.from_options(600, 30, {"start": "stable", "shape": shape}).decided("cooldown", 120)
    wsd = transformers_multipliers("warmup_stable_decay", 600, 30, num_decay_steps=120, decay_type=shape)
    np.testing.assert_array_equal(plan.multipliers(), wsd)


def test_every_plan_matches_its_reference_twin():
    for start, switch, shape, decision in itertools.product(("linear", "stable"), ("hold", "peak"),
                                                            ("1-sqrt", "linear"), (None, "cooldown", "linear")):
        for num_steps, warmup, fraction, decided_at in [(600, 30, 0.2, 108), (50, 0, 0.1, 7), (31, 5, 0.5, 12)]:
            plan = AdaptivePlan(num_steps, warmup, start, switch, fraction, shape, decision=decision,
                                decided_at=decided_at if decision else None)
            expected = [reference_adaptive_multiplier(t, num_steps, warmup, start, switch, fraction, shape, decision,
                                                      decided_at) for t in range(num_steps)]
            np.testing.assert_allclose(plan.multipliers(), expected, rtol=1e-13, atol=1e-15,
                                       err_msg=f"{start} {switch} {shape} {decision} {num_steps}")


def test_after_a_switch_the_lr_returns_to_the_peak_or_holds_then_cools_down():
    linear = AdaptivePlan.from_options(600, 30, {"switch": "hold"})
    held = linear.decided("cooldown", 108).multipliers()
    at_switch = linear.multiplier(108)
    np.testing.assert_array_equal(held[:108], linear.multipliers()[:108])  # the past is not rewritten
    np.testing.assert_array_equal(held[108:480], at_switch)
    assert held[480] == at_switch and held[-1] < 0.05 * at_switch and np.all(np.diff(held[480:]) < 0)
    peak = AdaptivePlan.from_options(600, 30, {}).decided("cooldown", 108).multipliers()  # the default: the peak
    assert peak[108] == at_switch and peak[138] == 1.0 and np.all(np.diff(peak[108:139]) > 0)
    np.testing.assert_array_equal(peak[138:480], 1.0)
    stable = AdaptivePlan.from_options(600, 30, {"start": "stable"})
    turned = stable.decided("linear", 180).multipliers()  # no rise by the deadline: linear decay from there
    np.testing.assert_array_equal(turned[30:181], 1.0)
    np.testing.assert_allclose(turned[180:], (600 - np.arange(180, 600)) / 420)


def test_the_plan_is_plain_values_that_survive_a_weights_only_checkpoint(tmp_path):
    import torch

    plan = AdaptivePlan.from_options(600, 30, {"switch": "peak"}).decided("cooldown", 99)
    torch.save({"plan": plan.state()}, tmp_path / "state.pt")
    restored = torch.load(tmp_path / "state.pt", weights_only=True)["plan"]
    assert AdaptivePlan(**restored) == plan


# ----- the rule -------------------------------------------------------------------------------------------------------
def run_rule(norms, num_steps=None, warmup=0, skipped=None, **options):
    """Feed the rule a record step by step, as the callback does; `(plan or None, reading)` at the decision."""
    norms = np.asarray(norms, dtype=float)
    skipped = np.zeros(len(norms), bool) if skipped is None else np.asarray(skipped)
    watch = AdaptiveWatch(AdaptivePlan.from_options(num_steps or len(norms), warmup, options))
    for step in range(1, len(norms) + 1):
        if watch.is_check(step):
            plan, reading = watch.decide(norms[:step], skipped[:step], step)
            if plan is not None:
                return plan, reading
    return None, None


def lm_like(num_steps=600, rise_from=0.1, rise=2.0, seed=0):
    """A noisy norm that falls a little, then rises `rise`x from `rise_from` of the run to its end, fast at first (the
    LM shape: benchmarks/results/rule_signals.md)."""
    t = np.arange(num_steps) / num_steps
    after = np.sqrt(np.clip((t - rise_from) / (1 - rise_from), 0, 1))
    level = np.where(t < rise_from, 1.0 + 2 * (rise_from - t), 1.0 + (rise - 1) * after)
    return level * np.random.default_rng(seed).lognormal(0, 0.1, num_steps) * 50


def test_a_rising_norm_switches_early_and_a_falling_one_never():
    plan, reading = run_rule(lm_like(rise=2.5), warmup=30)
    assert plan.decision == "cooldown" and 0.1 < plan.decided_at / 600 < 0.3, plan
    assert reading.rise >= 1.3 and reading.start < CALM_START and 60 <= reading.lowest_at <= 90
    falling = 50 * np.geomspace(1.0, 0.5, 600) * np.random.default_rng(1).lognormal(0, 0.1, 600)
    plan, reading = run_rule(falling)
    assert plan.decision == "linear" and plan.decided_at == 180 and reading.rise < 1.1  # the deadline: 30% of 600


def test_a_steep_start_is_not_the_lm_regime_even_if_the_norm_then_rises():
    steep = lm_like(rise=3.0)
    steep[:40] *= np.geomspace(400, 1, 40)
    plan, reading = run_rule(steep)
    assert plan.decision == "linear" and reading.start >= CALM_START and reading.rise >= 1.3


@pytest.mark.parametrize("seed", range(6))
def test_the_rule_matches_its_reference_twin(seed):
    rng = np.random.default_rng(seed)
    num_steps = int(rng.integers(20, 900))
    norms = lm_like(num_steps, rise_from=rng.uniform(0.05, 0.3), rise=rng.uniform(0.5, 3.0), seed=seed)
    skipped = rng.random(num_steps) < 0.03
    norms[rng.random(num_steps) < 0.01] = np.nan
    options = {"decide_by": float(rng.uniform(0.1, 0.6)), "rise": float(rng.uniform(1.05, 1.6))}
    plan, reading = run_rule(norms, skipped=skipped, **options)
    decision, step, rise = reference_adaptive_decision(norms, skipped, num_steps, plan.deadline, options["rise"],
                                                       CALM_START)
    assert (plan.decision, plan.decided_at) == (decision, step)
    if not math.isnan(reading.rise):
        assert reading.rise == pytest.approx(rise, rel=1e-12)


def test_a_resumed_watch_reads_what_an_uninterrupted_one_read():
    norms = lm_like()
    whole, _ = run_rule(norms, warmup=30)
    late = AdaptiveWatch(AdaptivePlan.from_options(600, 30, {}))  # a watch born at a resume: no cache
    skipped = np.zeros(600, bool)
    steps = [step for step in range(1, 601) if late.is_check(step) and step >= 96]
    decisions = [late.decide(norms[:step], skipped[:step], step)[0] for step in steps]
    assert next(plan for plan in decisions if plan is not None) == whole


def test_a_deadline_before_the_first_full_window_decides_there():
    plan, reading = run_rule(lm_like(100), start="stable", decide_by=0.05)  # window 11 steps, deadline step 5
    assert plan.decision == "linear" and plan.decided_at == 5 and math.isnan(reading.rise)
    assert "no full l1 window was recorded by the deadline" in describe_adaptive(
        {"plan": plan.state(), "norm": "l1", "reading": reading.__dict__})


# ----- options --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"start": "cosine"}, r"`adapt_options\['start'\]` must be one of \['linear', 'stable'\], got 'cosine'"),
    ({"rise": 0.9}, r"`adapt_options\['rise'\]` must be a number > 1 .* got 0.9; the default is 1.3"),
    ({"decide_by": 0.9}, r"decide_by 0.9 falls after the cooldown's start .* choose decide_by <= 0.8"),
    ({"fraction": 1.5}, r"`adapt_options\['fraction'\]` must be a fraction of the run in \(0, 1\), got 1.5"),
    ({"when": 3}, r"has \['when'\], which adapt does not take; its parameters: start \("),
    ("fast", r"`adapt_options` must be an object of adapt's parameters, got 'fast'"),
])
def test_bad_options_name_the_parameter_the_value_and_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        check_adapt_options(options)


def test_defaults_fill_every_option():
    assert check_adapt_options({}) == {key: option.default for key, option in ADAPT_OPTIONS.items()}


# ----- real Trainer runs ----------------------------------------------------------------------------------------------
def adaptive_run(output_dir, callbacks=(), resume=None, **overrides):
    from transformers import PrinterCallback, Trainer, TrainingArguments

    import hf_linear_decay  # noqa: F401
    from tests.tiny import NormalisedRegressor, RegressionData, adaptive_args

    trainer = Trainer(NormalisedRegressor(), TrainingArguments(**adaptive_args(str(output_dir), **overrides)),
                      train_dataset=RegressionData(256), callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def logged_lrs(trainer):
    return np.array([entry["learning_rate"] for entry in trainer.state.log_history if "loss" in entry])


SWITCH_LINE = re.compile(r"^linear_refined: adapting at step (\d+) of 200 \(\d+%\): the l1 norm rose 1\.\d\dx over "
                         r"its lowest level \(at step \d+\), as in LLM pretraining; now a 10-step warm-up, then linear "
                         r"decay until step \1, then back to the peak LR and held, then a 1-sqrt cooldown over the "
                         r"last 20% of the run \(from step 160\)\.$", re.M)


def launch_adaptive(output_dir, *flags, processes=1):
    """`tests.scripts.ddp_train --adapt` in fresh processes (torchrun for several): its stderr, as a user sees it
    with no logging set up, and each rank's report."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    done = subprocess.run([*launcher, "-m", "tests.scripts.ddp_train", "--output_dir", str(output_dir),
                           "--batch_size", str(8 // processes), "--adapt", "--max_steps", "200", *flags],
                          capture_output=True, text=True, cwd=root, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.load(open(os.path.join(output_dir, f"record_rank{rank}.json"))) for rank in range(processes)]
    return done.stderr, reports


@pytest.mark.slow
def test_an_adaptive_run_switches_once_says_so_and_writes_what_it_followed(tmp_path):
    from hf_linear_decay import load_schedule_file
    from hf_linear_decay.tools.summary import format_summary, summarize_schedule

    err, (report,) = launch_adaptive(tmp_path / "run")
    switches = SWITCH_LINE.findall(err)
    assert len(switches) == 1, err
    step = int(switches[0])
    assert 20 <= step <= 60
    plan = AdaptivePlan.from_options(200, 10, {}).decided("cooldown", step)
    assert report["plan"] == plan.state()
    np.testing.assert_array_equal(report["logged_lr"], 0.05 * plan.multipliers())  # the LRs it ran: the plan's
    path = tmp_path / "run" / "refined_schedule.safetensors"
    wrote = [line for line in err.splitlines() if line.startswith("RefinementCallback: wrote")]
    assert len(wrote) == 1 and f"adaptive run (linear start), decided at step {step} (" in wrote[0]
    assert "a later run follows the same schedule with --lr_scheduler_kwargs" in wrote[0]
    assert len([line for line in err.splitlines() if "linear_refined" in line or "RefinementCallback" in line]) == 2
    schedule = load_schedule_file(path)
    assert schedule.method == "followed" and schedule.adaptive["plan"] == plan.state()
    assert schedule.adaptive["reading"]["rise"] >= 1.25
    np.testing.assert_array_equal(schedule.multipliers, plan.multipliers())
    np.testing.assert_allclose(schedule.lr, 0.05 * plan.multipliers(), rtol=1e-15)
    # a later run that follows the file runs the very same LRs
    again = adaptive_run(tmp_path / "again", lr_scheduler_kwargs={"schedule_file": str(path)}, warmup_steps=0)
    np.testing.assert_array_equal(logged_lrs(again), report["logged_lr"])
    text = format_summary(summarize_schedule(schedule))
    assert f"adaptive:             adaptive run (linear start), decided at step {step} (" in text
    assert "warning:" not in text  # the shape flags judge refined proposals, not what a run followed


@pytest.mark.slow
def test_the_plot_marks_the_switch(tmp_path):
    pytest.importorskip("matplotlib")
    from hf_linear_decay import load_schedule_file
    from hf_linear_decay.tools.plot import plot_schedule

    adaptive_run(tmp_path / "run")
    schedule = load_schedule_file(tmp_path / "run" / "refined_schedule.safetensors")
    import matplotlib.pyplot as plt

    captured = {}
    original = plt.Figure.savefig

    def keep(figure, *args, **kwargs):
        captured["figure"] = figure
        return original(figure, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        plot_schedule(schedule, tmp_path / "schedule.png")
    finally:
        plt.Figure.savefig = original
    top, bottom = captured["figure"].axes
    decided_at = schedule.adaptive["plan"]["decided_at"]
    marks = [line for line in bottom.lines if line.get_label() == f"adaptive run: cooldown from step {decided_at}"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [decided_at, decided_at]
    assert any(list(line.get_xdata()) == [decided_at, decided_at] for line in top.lines)


@pytest.mark.slow
def test_a_stable_start_turns_to_linear_decay_where_the_norm_does_not_rise(tmp_path, caplog):
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from tests.tiny import RegressionData, TinyRegressor, adaptive_args

    args = adaptive_args(str(tmp_path), weight_decay=0.0, learning_rate=0.01,
                         lr_scheduler_kwargs={"adapt": True, "adapt_options": {"start": "stable"}})
    trainer = Trainer(TinyRegressor(), TrainingArguments(**args), train_dataset=RegressionData(256))
    trainer.remove_callback(PrinterCallback)  # TinyRegressor's norm at this LR does not rise: no LM regime
    trainer.train()
    err = "\n".join(caplog.messages)
    line = re.findall(r"^linear_refined: adapting at step 60 of 200 \(30%\): the l1 norm did not rise \(\d\.\d\dx its "
                      r"lowest level by step 60; 1\.3x means the LM regime\); now a 10-step warm-up, then the peak LR "
                      r"held, then linear decay to zero from step 60\.$", err, re.M)
    assert len(line) == 1, err
    plan = AdaptivePlan.from_options(200, 10, {"start": "stable"}).decided("linear", 60)
    np.testing.assert_array_equal(logged_lrs(trainer), 0.01 * plan.multipliers())


@pytest.mark.parametrize("kwargs, message", [
    ({"adapt": True, "schedule_file": "x.safetensors"}, r"makes the schedule of a run without a schedule file"),
    ({"adapt_options": {"start": "stable"}}, r"sets up an adaptive run; add \"adapt\": true"),
    ({"adapt": True, "record_norms": False}, r"`record_norms: false` would leave it nothing to read"),
    ({"adapt": "yes"}, r"`lr_scheduler_kwargs\['adapt'\]` must be true or false, got 'yes'"),
    ({"adapt": True, "adapt_options": {"rise": 1}}, r"`lr_scheduler_kwargs\['adapt_options'\]\['rise'\]` must be a "
                                                    r"number > 1"),
])
def test_adapt_mistakes_fail_at_trainer_construction(make_args, kwargs, message):
    from transformers import Trainer

    from tests.tiny import RegressionData, TinyRegressor

    with pytest.raises(ValueError, match=message):
        Trainer(TinyRegressor(), make_args(lr_scheduler_kwargs=kwargs), train_dataset=RegressionData())


@pytest.mark.slow
def test_gradient_accumulation_takes_the_same_decision_as_the_whole_batch(tmp_path):
    whole = adaptive_run(tmp_path / "whole")
    accumulated = adaptive_run(tmp_path / "ga", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    np.testing.assert_allclose(logged_lrs(accumulated), logged_lrs(whole), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [60, 20], ids=["after-the-switch", "before-the-switch"])
def test_a_kill_and_resume_gives_the_lrs_of_an_uninterrupted_run(tmp_path, kill_at):
    """SIGKILL right after checkpoint-N's state is written, then `resume_from_checkpoint=True`: the decision (in the
    scheduler's checkpoint after the switch, taken again from the restored record before it) and every LR and norm
    are those of an uninterrupted run."""
    import signal
    import subprocess
    import sys

    from hf_linear_decay import load_record_file, load_schedule_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed = subprocess.run([sys.executable, "-m", "tests.scripts.killed_at_checkpoint", str(tmp_path / "run"),
                             str(kill_at), "adapt"], capture_output=True, text=True, cwd=root, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = adaptive_run(tmp_path / "run", resume=True, save_strategy="steps", save_steps=kill_at)
    whole = adaptive_run(tmp_path / "whole", save_strategy="steps", save_steps=kill_at)
    np.testing.assert_array_equal(logged_lrs(resumed), logged_lrs(whole))  # the checkpoint's history, then the rest
    assert load_record_file(tmp_path / "run" / "norm_record.safetensors").sha256() == \
        load_record_file(tmp_path / "whole" / "norm_record.safetensors").sha256()
    run, whole = (load_schedule_file(tmp_path / folder / "refined_schedule.safetensors") for folder in ("run", "whole"))
    assert run.record.sha256() == whole.record.sha256()
    np.testing.assert_array_equal(run.multipliers, whole.multipliers)
    assert run.adaptive == whole.adaptive and run.adaptive["plan"]["decision"] == "cooldown"  # what it read, too
