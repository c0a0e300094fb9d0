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
from hf_linear_decay.core.shapes import resample_schedule
from tests.tiny import BreaksAt, RegressionData, SkipsNonFiniteSGD, StopAt, TinyRegressor, assert_follows

HERE = os.path.dirname(os.path.abspath(__file__))


def recorders(trainer):
    return [member for member in trainer.callback_handler.callbacks if isinstance(member, RefinementCallback)]


def test_every_trainer_gets_an_activator():
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
    lines = run_differences(recorded, same_batch)
    assert len(lines) == 2 and "same global batch, harmless" in lines[0] and "same family, harmless" in lines[1]
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
    assert messages[0] == (f"linear_refined: following {path} (12 steps, method auto, l1 norms: identical to "
                           "pass 1's schedule)")
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
    with caplog.at_level(logging.WARNING, logger="hf_linear_decay.trainer.scheduler"):
        trainer = Trainer(TinyRegressor(), pass2, train_dataset=RegressionData())
        trainer.train(resume_from_checkpoint=os.path.join(pass2.output_dir, "checkpoint-4"))
    assert_follows(trainer.state.log_history, 0.05, original)  # steps 0-3 were logged before the stop
    warning = next(r.getMessage() for r in caplog.records if "pinned in the checkpoint" in r.getMessage())
    # The pinned schedule's file first, then the file this run was given (not the old one twice).
    assert warning.index(path) < warning.index(other) and warning.count(path) == 1


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
    assert second == [f"linear_refined: following {path} (6 steps, method auto, l1 norms: identical to pass 1's "
                      "schedule)"]
