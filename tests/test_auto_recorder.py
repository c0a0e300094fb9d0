"""The flag alone: pass 1 records by itself, mistakes fail at Trainer construction, pass 2 is checked against pass 1."""

import logging
import os
import pathlib

import numpy as np
import pytest
import torch
from transformers import Trainer

import hf_linear_decay  # noqa: F401  (registers)
from hf_linear_decay import RefinementCallback, load_record_file, load_schedule_file
from hf_linear_decay.trainer.auto_recorder import AutoRecorder, run_differences
from hf_linear_decay.core.record import RunInfo
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.shapes import resample_schedule
from tests.tiny import BreaksAt, RegressionData, SkipsNonFiniteSGD, StopAt, TinyRegressor, assert_follows

HERE = os.path.dirname(os.path.abspath(__file__))


def recorders(trainer):
    return [member for member in trainer.callback_handler.callbacks if isinstance(member, RefinementCallback)]


def test_every_trainer_gets_an_auto_recorder():
    assert AutoRecorder in __import__("transformers.trainer", fromlist=["x"]).DEFAULT_CALLBACKS


def test_pass_1_records_without_a_callback(make_args):
    args = make_args()
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData())
    trainer.train()
    (recorder,) = recorders(trainer)
    schedule = load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert schedule.num_steps == 12 and schedule.run.optimizer == "AdamW" and schedule.norm == "l1"
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "loss" in entry]
    np.testing.assert_allclose(schedule.grad_norm_l2, logged, rtol=1e-6)  # bound: pre-clip norms, clipping is on
    assert load_record_file(os.path.join(args.output_dir,
                                         "norm_record.safetensors")).sha256() == schedule.record.sha256()


def test_an_explicit_callback_takes_precedence(make_args):
    explicit = RefinementCallback(tau=0.5)
    trainer = Trainer(TinyRegressor(), make_args(), train_dataset=RegressionData(), callbacks=[explicit])
    trainer.train()
    assert recorders(trainer) == [explicit]
    assert load_schedule_file(os.path.join(trainer.args.output_dir, "refined_schedule.safetensors")).tau == 0.5


@pytest.mark.parametrize("case", ["record_norms_false", "other_scheduler", "custom_scheduler"])
def test_no_recording_when_turned_off_or_not_linear_refined(make_args, case):
    model = TinyRegressor()
    optimizers = (None, None)
    if case == "record_norms_false":
        args = make_args(lr_scheduler_kwargs={"record_norms": False})
    elif case == "other_scheduler":
        args = make_args(lr_scheduler_type="linear")
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        optimizers = (optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
        args = make_args()
    trainer = Trainer(model, args, train_dataset=RegressionData(), optimizers=optimizers)
    trainer.train()
    assert recorders(trainer) == [] and not os.path.exists(os.path.join(args.output_dir,
                                                                        "refined_schedule.safetensors"))


@pytest.mark.parametrize("kwargs, message", [
    ({"schedule": "x"}, r"unknown keys \['schedule'\]"),
    ({"schedule_file": "{tmp}/missing.safetensors"}, "no such file"),
    ({"schedule_file": "{tmp}"}, "is a directory, not a file; did you mean .*refined_schedule.safetensors"),
    ({"schedule_file": "{tmp}/refined_schedule.safetensors", "tau": 2}, r"lr_scheduler_kwargs\['tau'\]"),
    ({"record_norms": "no"}, r"`lr_scheduler_kwargs\['record_norms'\]` must be true or false"),
    ({"schedule_file": ""}, r"`lr_scheduler_kwargs\['schedule_file'\]` is empty: give the path of a schedule file for "
                            r"pass 2, or drop the key for pass 1"),
    ({"schedule_file": None}, r"`lr_scheduler_kwargs\['schedule_file'\]` is null: give the path"),
    ({"schedule_file": "{tmp}/norm_record.safetensors"},
     r"norm_record.safetensors: a record file \(the norms a run recorded, as each checkpoint keeps them\), not a "
     r"schedule; make a schedule from it with `hf-linear-decay refine .*norm_record.safetensors -o "
     r"refined_schedule.safetensors` and pass that"),
])
def test_mistakes_fail_at_trainer_construction(make_args, tmp_path, kwargs, message):
    Trainer(TinyRegressor(), make_args(output_dir=str(tmp_path)), train_dataset=RegressionData()).train()
    kwargs = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in kwargs.items()}
    args = make_args(output_dir=str(tmp_path / "pass2"), lr_scheduler_kwargs=kwargs)
    with pytest.raises(ValueError, match=message):
        Trainer(TinyRegressor(), args, train_dataset=RegressionData())  # before train(): no data or model work wasted


def test_a_path_object_is_accepted_and_stays_serialisable(make_args, tmp_path):
    Trainer(TinyRegressor(), make_args(output_dir=str(tmp_path)), train_dataset=RegressionData()).train()
    path = pathlib.Path(tmp_path) / "refined_schedule.safetensors"
    args = make_args(output_dir=str(tmp_path / "pass2"), lr_scheduler_kwargs={"schedule_file": path})
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData())
    assert '"schedule_file": "' + str(path) in args.to_json_string()
    trainer.train()
    multipliers = resample_schedule(load_schedule_file(path).multipliers, 12)
    assert_follows(trainer.state.log_history, 0.05, multipliers)


def test_run_differences_says_which_differences_matter():
    recorded = RunInfo(optimizer="AdamW", world_size=2, gradient_accumulation_steps=2, per_device_train_batch_size=8,
                       max_grad_norm=1.0, precision="bf16")
    same_batch = RunInfo(optimizer="Adafactor", world_size=4, gradient_accumulation_steps=1,
                         per_device_train_batch_size=8, max_grad_norm=1.0, precision="bf16")
    assert run_differences(recorded, same_batch) == []  # the same global batch and optimizer family: nothing to say
    other = RunInfo(optimizer="SGD", world_size=1, gradient_accumulation_steps=1, per_device_train_batch_size=4,
                    max_grad_norm=0.0, precision="fp16")
    lines = run_differences(recorded, other)
    assert lines[0].startswith("global batch 4 (4 per device × 1 accumulation × 1 process) here vs global batch 32")
    assert "another family" in lines[1] and "max_grad_norm 0 here vs 1" in lines[2] and "precision fp16" in lines[3]
    assert run_differences(recorded, recorded) == [] and run_differences(RunInfo(), other) == []


def test_pass_2_warns_per_difference_with_pass_1(make_args, caplog):
    first = make_args(output_dir=make_args().output_dir + "1")
    Trainer(TinyRegressor(), first, train_dataset=RegressionData()).train()
    path = os.path.join(first.output_dir, "refined_schedule.safetensors")
    second = make_args(output_dir=make_args().output_dir + "2", per_device_train_batch_size=4, optim="sgd",
                       lr_scheduler_kwargs={"schedule_file": path})
    with caplog.at_level(logging.WARNING, logger="hf_linear_decay.trainer.auto_recorder"):
        Trainer(TinyRegressor(), second, train_dataset=RegressionData()).train()
    messages = [r.getMessage() for r in caplog.records if r.name == "hf_linear_decay.trainer.auto_recorder"]
    assert messages[0].startswith(f"linear_refined: following {path} (12 steps, method auto, l1 norms: identical to "
                                  "pass 1's schedule; why: not the LM regime (")  # why it kept pass 1's schedule
    warnings = messages[1:]
    assert len(warnings) == 2
    assert "global batch 4 (4 per device × 1 accumulation × 1 process) here vs global batch 8" in warnings[0]
    assert "optimizer SGD here vs AdamW when recorded: another family" in warnings[1]


def test_a_resumed_pass_2_keeps_its_schedule_when_the_file_changes(make_args, caplog):
    pass1 = make_args(output_dir=make_args().output_dir + "p1")
    Trainer(TinyRegressor(), pass1, train_dataset=RegressionData()).train()
    path = os.path.join(pass1.output_dir, "refined_schedule.safetensors")
    original = resample_schedule(load_schedule_file(path).multipliers, 12)
    pass2 = make_args(output_dir=make_args().output_dir + "p2", save_strategy="steps", save_steps=4,
                      lr_scheduler_kwargs={"schedule_file": path})
    Trainer(TinyRegressor(), pass2, train_dataset=RegressionData(), callbacks=[StopAt(4)]).train()
    # Refined again in between (another tau) into another file, which the resumed run is given: it differs.
    from hf_linear_decay.tools.cli import main

    other = os.path.join(pass1.output_dir, "refined_again.safetensors")
    assert main(["refine", path, "-o", other, "--method", "paper", "--tau", "0.9"]) == 0
    assert not np.allclose(resample_schedule(load_schedule_file(other).multipliers, 12), original)
    pass2.lr_scheduler_kwargs = {"schedule_file": other}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_linear_decay"):
        trainer = Trainer(TinyRegressor(), pass2, train_dataset=RegressionData())
        trainer.train(resume_from_checkpoint=os.path.join(pass2.output_dir, "checkpoint-4"))
    assert_follows(trainer.state.log_history, 0.05, original)  # steps 0-3 were logged before the stop
    # One story: the checkpoint's schedule, which the LRs follow; the new file is named as not followed, and nothing
    # describes it as if it were.
    said = [message for message in caplog.messages if message.startswith("linear_refined")]
    assert len(said) == 1, said
    assert said[0].startswith(f"linear_refined: resuming with the schedule pinned in the checkpoint (from {path}, ")
    assert f"); {other} now holds another schedule (sha256 " in said[0] and "which this run does not follow" in said[0]


def test_a_diverged_pass_1_is_refused_with_the_reason(make_args, caplog, capsys):

    args = make_args(max_steps=16, max_grad_norm=0.0, output_dir=make_args().output_dir + "div")
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(BreaksAt(range(7, 17), float("nan")), args, train_dataset=RegressionData())  # 10 of 16
        trainer.train()
    assert not os.path.exists(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert "10 of 16 steps (62%) were skipped" in caplog.text and "force" in caplog.text
    record = load_record_file(os.path.join(args.output_dir, "norm_record.safetensors"))  # nothing is lost
    assert int(record.skipped.sum()) == 10
    trainer.save_state()  # trainer_state.json beside it, pointing at the record
    from hf_linear_decay.tools.cli import main

    state, out = os.path.join(args.output_dir, "trainer_state.json"), os.path.join(args.output_dir,
                                                                                   "forced.safetensors")
    assert main(["refine", state, "-o", out]) == 2
    assert "the run diverged or overflowed" in capsys.readouterr().err and not os.path.exists(out)
    assert main(["refine", os.path.join(args.output_dir, "norm_record.safetensors"), "-o", out, "--force"]) == 0
    assert load_schedule_file(out).skipped.sum() == 10


def test_a_few_skipped_steps_only_warn(make_args, caplog):
    args = make_args(max_grad_norm=0.0, output_dir=make_args().output_dir + "once")
    model = BreaksAt([3])  # 1 of 12 steps overflows
    with caplog.at_level(logging.WARNING, logger="hf_linear_decay.core.methods"):
        Trainer(model, args, train_dataset=RegressionData(),
                optimizers=(SkipsNonFiniteSGD(model.parameters(), lr=0.05), None)).train()
    assert load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors")).skipped.sum() == 1
    assert "1 of 12 steps (8%) were skipped" in caplog.text


def test_pass_2_records_too_when_asked(make_args):
    first = make_args(output_dir=make_args().output_dir + "r1")
    Trainer(TinyRegressor(), first, train_dataset=RegressionData()).train()
    path = os.path.join(first.output_dir, "refined_schedule.safetensors")
    second = make_args(output_dir=make_args().output_dir + "r2",
                       lr_scheduler_kwargs={"schedule_file": path, "record_norms": True})
    trainer = Trainer(TinyRegressor(), second, train_dataset=RegressionData())
    trainer.train()
    assert len(recorders(trainer)) == 1
    again = load_schedule_file(os.path.join(second.output_dir, "refined_schedule.safetensors"))
    assert again.num_steps == 12 and again.run.source == "RefinementCallback"
    assert_follows(trainer.state.log_history, 0.05, resample_schedule(load_schedule_file(path).multipliers, 12))


@pytest.mark.slow
def test_what_the_user_sees_on_stderr_with_no_logging_set_up(tmp_path):
    """Pass 1 says where its file is and what the refinement did; pass 2 says what it follows: on stderr, once,
    with transformers' and Python's logging left as a script leaves them."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom transformers import Trainer, TrainingArguments\nfrom tests.tiny import RegressionData, "
        "TinyRegressor\nkw = eval(sys.argv[2])\nargs = TrainingArguments(sys.argv[1], "
        "lr_scheduler_type='linear_refined', max_steps=6, use_cpu=True, report_to='none', disable_tqdm=True, "
        "lr_scheduler_kwargs=kw)\n"
        "Trainer(TinyRegressor(), args, train_dataset=RegressionData()).train()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(folder, kwargs):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / folder), repr(kwargs)], cwd=root,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return [line for line in done.stderr.splitlines() if "linear_refined" in line or "RefinementCallback" in line]

    first = run("p1", {})
    path = tmp_path / "p1" / "refined_schedule.safetensors"
    assert len(first) == 1 and first[0].startswith(f"RefinementCallback: wrote {path} (6 steps, method auto, l1 norms")
    assert f"hf-linear-decay inspect {path}" in first[0]
    assert first[0].endswith("pass 1 already ran this schedule: keep its model rather than run it again")
    second = run("p2", {"schedule_file": str(path)})
    assert len(second) == 1 and second[0].startswith(
        f"linear_refined: following {path} (6 steps, method auto, l1 norms: identical to pass 1's schedule; why: not "
        "the LM regime (the norm rose ")  # a kept schedule says why, as pass 1's line did
    assert second[0].endswith("kept pass 1's schedule: the l1 norm started at 1.1x its settled level and a warm-up "
                              "needs 100x)")


def test_a_kept_schedule_runs_pass_ones_lrs_exactly_last_step_included(make_args, tmp_path, capsys):
    """transformers' `linear` ends at 1/T, not 0: a schedule that keeps pass 1's must give the very same LRs, and what
    the user reads (inspect, compare) must call them equal only because they are."""
    import json

    from hf_linear_decay.tools.cli import main

    first = Trainer(TinyRegressor(), make_args(output_dir=str(tmp_path / "p1")), train_dataset=RegressionData())
    first.train()
    path = tmp_path / "p1" / "refined_schedule.safetensors"
    schedule = load_schedule_file(path)
    assert schedule.method == "auto" and "kept pass 1's schedule" in build_schedule(schedule.record).explanation
    second = Trainer(TinyRegressor(), make_args(output_dir=str(tmp_path / "p2"),
                                                lr_scheduler_kwargs={"schedule_file": str(path)}),
                     train_dataset=RegressionData())
    second.train()
    lrs = [[entry["learning_rate"] for entry in trainer.state.log_history if "loss" in entry]
           for trainer in (first, second)]
    assert lrs[0] == lrs[1] and lrs[1][-1] == 0.05 / 12 > 0  # bit for bit, the last step's 1/T included
    capsys.readouterr()
    assert main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["equals_reference"] and summary["max_below_reference"] == summary["max_above_reference"] == 0.0
    from hf_linear_decay.tools.curves import compare_figure, read_run

    for trainer in (first, second):
        trainer.save_state()
    figure = compare_figure([read_run(str(tmp_path / "p1")), read_run(str(tmp_path / "p2"))])
    labels = [line.get_label() for line in figure.axes[0].lines]  # the LR panel
    assert labels == ["p1", "p2 (= p1)"]


def test_a_kept_schedule_from_norms_without_lrs_is_transformers_linear_and_says_it_assumed_so(tmp_path, capsys):
    from transformers import get_scheduler

    from hf_linear_decay.tools.cli import main
    from hf_linear_decay.trainer.scheduler import get_linear_refined_schedule

    source = tmp_path / "norms.csv"
    source.write_text("grad_norm_l2\n" + "".join(f"{value!r}\n" for value in np.linspace(3.0, 2.0, 40).tolist()))
    out = tmp_path / "kept.safetensors"
    assert main(["refine", str(source), "-o", str(out), "--method", "guarded"]) == 0
    err = capsys.readouterr().err
    assert "kept pass 1's schedule (assumed: transformers' linear decay; no LRs recorded)" in err
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    ours = get_linear_refined_schedule(optimizer, 0, 40, schedule_file=str(out))
    theirs = get_scheduler("linear", torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4), 0, 40)
    assert [ours.lr_lambdas[0](t) for t in range(40)] == [theirs.lr_lambdas[0](t) for t in range(40)]
    assert main(["inspect", str(out)]) == 0
    assert "vs linear decay (T-t)/T (assumed: no LRs recorded): equals it" in capsys.readouterr().out


@pytest.mark.slow
def test_the_end_of_run_line_starts_a_line_of_its_own_after_the_progress_bar(tmp_path):
    """With tqdm's bar on (the default outside notebooks), pass 1's line comes after the bar is closed."""
    import subprocess
    import sys

    script = ("import sys\nfrom transformers import Trainer, TrainingArguments\nfrom tests.tiny import "
              "RegressionData, TinyRegressor\nargs = TrainingArguments(sys.argv[1], "
              "lr_scheduler_type='linear_refined', max_steps=6, use_cpu=True, report_to='none', disable_tqdm=False)\n"
              "Trainer(TinyRegressor(), args, train_dataset=RegressionData()).train()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "it/s]" in done.stderr or "s/it]" in done.stderr  # the bar was drawn
    lines = done.stderr.split("\n")
    wrote = [line for line in lines if "RefinementCallback: wrote" in line]
    assert len(wrote) == 1 and wrote[0].startswith("RefinementCallback: wrote"), wrote
