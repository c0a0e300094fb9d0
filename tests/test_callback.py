"""RefinementCallback in real Trainer runs on a tiny CPU model."""

import json
import math
import os

import numpy as np
import pytest
from transformers import Trainer

import hf_linear_decay
from hf_linear_decay import RefinementCallback, load_record_file, load_schedule_file
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.refine import refine_schedule
from hf_linear_decay.core.shapes import resample_schedule
from tests.tiny import BreaksAt, RegressionData, SkipsNonFiniteSGD, StopAt, TinyRegressor, assert_follows


def train(args, callbacks=(), data=None, resume=None):
    trainer = Trainer(TinyRegressor(), args, train_dataset=data or RegressionData(), callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry and "train_runtime" not in entry]


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0, 1e6])
def test_recorded_l2_is_the_trainers_pre_clip_grad_norm(make_args, max_grad_norm):
    callback = RefinementCallback()
    trainer = train(make_args(max_grad_norm=max_grad_norm), [callback])
    logged_norms = logged(trainer, "grad_norm")
    assert len(callback.record) == 12 == len(logged_norms) and callback.measurement == "tensors"
    np.testing.assert_allclose(callback.record.grad_norm_l2, logged_norms, rtol=1e-6)
    if max_grad_norm == 1.0:
        assert min(logged_norms) > 1.0  # clipping really was active on every step
    # The callback's values reach the logs (and so trainer_state.json and every reporter).
    np.testing.assert_allclose(logged(trainer, "grad_norm_l1"), callback.record.grad_norm_l1, rtol=1e-12)
    np.testing.assert_allclose(logged(trainer, "grad_norm_l2"), logged_norms, rtol=1e-6)


def test_pre_clip_l1_is_unaffected_by_clipping(make_args):
    # Step 0 sees the same model and batch with or without clipping: its pre-clip l1 must agree.
    unclipped, clipped = RefinementCallback(), RefinementCallback()
    train(make_args(max_grad_norm=0.0, max_steps=1, output_dir=make_args().output_dir + "a"), [unclipped])
    train(make_args(max_grad_norm=0.01, max_steps=1, output_dir=make_args().output_dir + "b"), [clipped])
    assert clipped.record.grad_norm_l2[0] > 100 * 0.01  # heavily clipped
    assert clipped.record.grad_norm_l1[0] == pytest.approx(unclipped.record.grad_norm_l1[0], rel=1e-6)
    assert clipped.record.grad_norm_l2[0] == pytest.approx(unclipped.record.grad_norm_l2[0], rel=1e-6)


def test_gradient_accumulation_gives_one_record_per_optimizer_step(make_args):
    accumulated, plain = RefinementCallback(), RefinementCallback()
    trainer = train(make_args(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=5,
                              output_dir=make_args().output_dir + "ga"), [accumulated])
    train(make_args(per_device_train_batch_size=8, max_steps=5, output_dir=make_args().output_dir + "bs"), [plain])
    assert len(accumulated.record.grad_norm_l2) == 5 and len(accumulated.record.lr) == 5
    np.testing.assert_allclose(accumulated.record.grad_norm_l2, logged(trainer, "grad_norm"), rtol=1e-6)
    # Same global batch, same data order: same norms as the un-accumulated run.
    np.testing.assert_allclose(accumulated.record.grad_norm_l2, plain.record.grad_norm_l2, rtol=1e-5)
    np.testing.assert_allclose(accumulated.record.grad_norm_l1, plain.record.grad_norm_l1, rtol=1e-5)


def test_records_lr_and_writes_the_file(make_args, tmp_path):
    callback = RefinementCallback(method="paper")
    args = make_args(warmup_steps=2)
    trainer = train(args, [callback])
    assert callback.record.lr == pytest.approx(logged(trainer, "learning_rate"), rel=1e-12)
    schedule = load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert schedule.num_steps == 12 and schedule.norm == "l1" and schedule.power == 1.0  # AdamW -> Alg. 2
    np.testing.assert_array_equal(schedule.grad_norm_l1, callback.record.grad_norm_l1)
    np.testing.assert_array_equal(schedule.lr, callback.record.lr)
    np.testing.assert_allclose(schedule.multipliers, refine_schedule(callback.record.grad_norm_l1, power=1), atol=1e-15)
    assert schedule.run.optimizer == "AdamW" and schedule.run.world_size == 1 and schedule.run.base_lr == 0.05
    assert schedule.run.precision == "fp32" and schedule.run.max_grad_norm == 1.0
    assert not schedule.skipped.any()


def test_sgd_picks_l2_and_constructor_overrides(make_args):
    callback = RefinementCallback(tau=0.5)
    args = make_args(optim="sgd", output_dir=make_args().output_dir + "sgd")
    train(args, [callback])
    schedule = load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert (schedule.norm, schedule.power, schedule.tau) == ("l2", 2.0, 0.5)
    callback = RefinementCallback(norm="l2", power=3)
    args = make_args(output_dir=make_args().output_dir + "override")
    train(args, [callback])
    schedule = load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert (schedule.norm, schedule.power) == ("l2", 3.0)


def test_checkpoints_get_their_own_file(make_args):
    args = make_args(save_strategy="steps", save_steps=5)
    train(args, [RefinementCallback()])
    for step in (5, 10, 12):
        schedule = load_schedule_file(os.path.join(args.output_dir, f"checkpoint-{step}",
                                                   "refined_schedule.safetensors"))
        assert schedule.num_steps == step
        record = load_record_file(os.path.join(args.output_dir, f"checkpoint-{step}", "norm_record.safetensors"))
        assert record.sha256() == schedule.record.sha256()
    with open(os.path.join(args.output_dir, "checkpoint-5", "trainer_state.json")) as handle:
        saved = json.load(handle)["stateful_callbacks"]["RefinementCallback"]
    # trainer_state.json holds a pointer and a digest, not the record
    assert saved["attributes"]["num_steps"] == 5 and saved["attributes"]["record_file"] == "norm_record.safetensors"
    assert saved["attributes"]["sha256"] == load_record_file(
        os.path.join(args.output_dir, "checkpoint-5", "norm_record.safetensors")).sha256()
    assert saved["args"]["tau"] == 0.1
    with open(os.path.join(args.output_dir, "checkpoint-10", "trainer_state.json")) as handle:
        later = json.load(handle)["stateful_callbacks"]["RefinementCallback"]
    assert len(json.dumps(later)) == len(json.dumps(saved)) + 1  # 5 -> 10 steps: one more digit, nothing per step


def test_second_run_follows_the_file(make_args, caplog):
    first = make_args(output_dir=make_args().output_dir + "pass1")
    train(first, [RefinementCallback()])
    path = os.path.join(first.output_dir, "refined_schedule.safetensors")
    multipliers = resample_schedule(load_schedule_file(path).multipliers, 20)
    recorder = RefinementCallback()
    second = make_args(output_dir=make_args().output_dir + "pass2", max_steps=20, learning_rate=0.02,
                       lr_scheduler_kwargs={"schedule_file": path})
    with caplog.at_level("WARNING", logger="hf_linear_decay"):
        trainer = train(second, [recorder])
    assert ", resampled from its 12 steps to this run's 20 by training progress" in caplog.text
    np.testing.assert_allclose(recorder.record.lr, 0.02 * multipliers, rtol=1e-12, atol=1e-18)
    assert_follows(trainer.state.log_history, 0.02, multipliers)
    # warm-up on top: a linear ramp times the refined multipliers
    ramped = RefinementCallback()
    third = make_args(output_dir=make_args().output_dir + "pass3", max_steps=20, learning_rate=0.02, warmup_steps=4,
                      lr_scheduler_kwargs={"schedule_file": path, "tau": 0.5})
    train(third, [ramped])
    loaded = load_schedule_file(path)
    rerefined = resample_schedule(build_schedule(loaded.record, loaded.settings.updated(tau=0.5)).multipliers, 20)
    ramp = np.minimum(np.arange(20) / 4, 1.0)
    np.testing.assert_allclose(ramped.record.lr, 0.02 * rerefined * ramp, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("restore_flag", [False, True])
def test_resume_writes_the_same_file_as_an_uninterrupted_run(make_args, restore_flag):
    common = dict(max_steps=10, save_strategy="steps", save_steps=4,
                  restore_callback_states_from_checkpoint=restore_flag)
    full = make_args(output_dir=make_args().output_dir + "full", **common)
    train(full, [RefinementCallback()])
    broken = make_args(output_dir=make_args().output_dir + "broken", **common)
    train(broken, [RefinementCallback(), StopAt(4)])
    assert load_schedule_file(os.path.join(broken.output_dir, "refined_schedule.safetensors")).num_steps == 4
    train(broken, [RefinementCallback()], resume=os.path.join(broken.output_dir, "checkpoint-4"))
    expected = load_schedule_file(os.path.join(full.output_dir, "refined_schedule.safetensors"))
    resumed = load_schedule_file(os.path.join(broken.output_dir, "refined_schedule.safetensors"))
    for name in ("grad_norm_l2", "grad_norm_l1", "lr", "skipped", "multipliers"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(expected, name), err_msg=name)
    assert resumed.record.sha256() == expected.record.sha256()


def test_resume_from_a_checkpoint_without_the_callback(make_args):
    # no recorder in the first part: record_norms=False stops the automatic one; the explicit one still records
    args = make_args(max_steps=8, save_strategy="steps", save_steps=4, lr_scheduler_kwargs={"record_norms": False})
    train(args, [StopAt(4)])
    callback = RefinementCallback()
    train(args, [callback], resume=os.path.join(args.output_dir, "checkpoint-4"))  # must not raise KeyError on save
    # Half of the steps were never recorded: too many to refine without --force; the record itself is kept.
    assert not os.path.exists(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    record = load_record_file(os.path.join(args.output_dir, "norm_record.safetensors"))
    assert len(record) == 8
    np.testing.assert_array_equal(record.skipped, [1, 1, 1, 1, 0, 0, 0, 0])
    assert np.isfinite(build_schedule(record, force=True).multipliers).all()


def test_skipped_steps_are_flagged(make_args):
    callback = RefinementCallback()
    args = make_args(max_grad_norm=0.0, output_dir=make_args().output_dir + "skip")
    model = BreaksAt([4])  # step 3's loss is infinite, so its gradient is non-finite, like an fp16 overflow
    optimizer = SkipsNonFiniteSGD(model.parameters(), lr=0.05)
    scheduler = hf_linear_decay.get_linear_refined_schedule(optimizer, 0, 12)
    trainer = Trainer(model, args, train_dataset=RegressionData(), callbacks=[callback],
                      optimizers=(optimizer, scheduler))
    trainer.train()
    assert callback.record.skipped.tolist() == [False, False, False, True] + [False] * 8
    assert not math.isfinite(callback.record.grad_norm_l2[3])
    schedule = load_schedule_file(os.path.join(args.output_dir, "refined_schedule.safetensors"))
    assert schedule.skipped.tolist() == callback.record.skipped.tolist() and np.isfinite(schedule.multipliers).all()
    assert schedule.norm == "l2"  # SGD subclass


def test_constructor_validation():
    with pytest.raises(ValueError, match="`tau` must be a number in"):
        RefinementCallback(tau=0)
    with pytest.raises(ValueError, match=r"`norm` must be one of \['l2', 'l1'\]"):
        RefinementCallback(norm="linf")
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        RefinementCallback(method="magic")
    with pytest.raises(ValueError, match="`flush_every` must be a positive integer"):
        RefinementCallback(flush_every=0)
    with pytest.raises(ValueError, match="`power` must be a finite number > 0"):
        RefinementCallback(power=-1)
    with pytest.raises(ValueError, match="`file_name` must be a plain file name"):
        RefinementCallback(file_name="a/b.safetensors")


def test_no_host_sync_per_step(make_args, monkeypatch):
    # Values are copied to the host in batches: with logging every 6 steps and flush_every=4, 12 steps need at most
    # 3 + 2 + 1 copies (flushes at step ends, logging steps and train end), never 12.
    calls = []
    original = RefinementCallback._flush

    def counting(self):
        if self._pending:
            calls.append(len(self._pending))
        return original(self)

    monkeypatch.setattr(RefinementCallback, "_flush", counting)
    callback = RefinementCallback(flush_every=4)
    train(make_args(logging_steps=6, output_dir=make_args().output_dir + "sync"), [callback])
    assert sum(calls) == 12 and len(calls) <= 6 and max(calls) >= 4


def test_two_callbacks_both_resume_their_record(make_args):
    # transformers saves both instances' states as a list [init0, init1, saved0, saved1]; 0.1.0 took the empty one.
    common = dict(max_steps=8, save_strategy="steps", save_steps=4)
    full = make_args(output_dir=make_args().output_dir + "full2", **common)
    reference = RefinementCallback()
    train(full, [reference])
    broken = make_args(output_dir=make_args().output_dir + "broken2", **common)
    other = dict(tau=0.5, file_name="tau05.safetensors")
    train(broken, [RefinementCallback(), RefinementCallback(**other), StopAt(4)])
    first, second = RefinementCallback(), RefinementCallback(**other)
    train(broken, [first, second], resume=os.path.join(broken.output_dir, "checkpoint-4"))
    for callback in (first, second):
        assert callback.record.sha256() == reference.record.sha256()
        assert not callback.record.skipped.any()
    assert load_schedule_file(os.path.join(broken.output_dir, "tau05.safetensors")).tau == 0.5


def test_two_callbacks_writing_one_file_are_an_error(make_args):
    args = make_args(output_dir=make_args().output_dir + "clash")
    with pytest.raises(ValueError, match="two RefinementCallbacks of this Trainer would write refined_schedule"):
        train(args, [RefinementCallback(), RefinementCallback(tau=0.5)])


def test_save_state_after_training_points_at_the_final_record(make_args):
    # run_clm.py and most scripts call trainer.save_state() at the end; without checkpoints the Trainer never
    # refreshed the callback's entry, which then pointed at an empty record.
    from hf_linear_decay.files.readers import read_record

    args = make_args(output_dir=make_args().output_dir + "state")
    trainer = train(args, [RefinementCallback()])
    trainer.save_state()
    record, _ = read_record(os.path.join(args.output_dir, "trainer_state.json"))
    assert len(record) == 12 and record.sha256() == load_record_file(
        os.path.join(args.output_dir, "norm_record.safetensors")).sha256()


@pytest.mark.slow
def test_a_kill_right_after_the_checkpoint_state_is_written_loses_no_record(make_args, tmp_path):
    """SIGKILL in the window where checkpoint-4/trainer_state.json exists (transformers resumes from it) and no
    on_save has run: the record that the state points to is already there, and the resumed run's final record is
    bit-identical to an uninterrupted one's."""
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed = subprocess.run([sys.executable, "-m", "tests.scripts.killed_at_checkpoint", str(tmp_path / "run"), "4"],
                            capture_output=True, text=True, cwd=root, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert (checkpoint / "trainer_state.json").is_file() and not (checkpoint / "refined_schedule.safetensors").exists()
    assert len(load_record_file(checkpoint / "norm_record.safetensors")) == 4
    common = dict(max_steps=8, save_strategy="steps", save_steps=4)
    resumed = make_args(output_dir=str(tmp_path / "run"), **common)
    train(resumed, resume=True)  # the latest checkpoint, as `resume_from_checkpoint=True` finds it
    uninterrupted = make_args(output_dir=str(tmp_path / "whole"), **common)
    train(uninterrupted)
    final = load_record_file(tmp_path / "run" / "norm_record.safetensors")
    assert final.sha256() == load_record_file(tmp_path / "whole" / "norm_record.safetensors").sha256()


def test_a_resume_whose_record_was_lost_stops_unless_told_to_go_on(make_args, tmp_path, caplog):
    from hf_linear_decay.trainer.resume import MissingRecordError

    args = make_args(output_dir=str(tmp_path / "run"), max_steps=8, save_strategy="steps", save_steps=2)
    train(args, [StopAt(4)])
    os.remove(tmp_path / "run" / "checkpoint-4" / "norm_record.safetensors")
    with pytest.raises(MissingRecordError) as error:
        train(args, resume=str(tmp_path / "run" / "checkpoint-4"))
    message = str(error.value)
    assert "checkpoint-4 points to a record of its 4 steps that cannot be used" in message
    assert "its norm_record.safetensors is missing (deleted, or not copied with the checkpoint)" in message
    assert "pass the path" not in message  # no command-line hint inside a Trainer
    assert "resume from " + str(tmp_path / "run" / "checkpoint-2") + ", which has its record" in message
    assert '{"resume_without_record": true}' in message
    args.lr_scheduler_kwargs = {"resume_without_record": True}
    os.remove(tmp_path / "run" / "refined_schedule.safetensors")  # the stopped first part's
    with caplog.at_level("WARNING", logger="hf_linear_decay"):
        train(args, resume=str(tmp_path / "run" / "checkpoint-4"))
    record = load_record_file(tmp_path / "run" / "norm_record.safetensors")
    np.testing.assert_array_equal(record.skipped, [1, 1, 1, 1, 0, 0, 0, 0])  # unknown, and said to be
    assert not (tmp_path / "run" / "refined_schedule.safetensors").exists()  # 50% unknown: refused (25% rule)
    said = [line for line in caplog.messages if line.startswith("RefinementCallback")]
    unknown = [line for line in said if "marked unknown" in line]
    assert len(unknown) == 1 and "Going on as asked (resume_without_record); its 4 steps before step 4" in unknown[0]
    assert not [line for line in said if "marked skipped" in line]
    refused = [line for line in said if "not writing" in line]  # at the end only, not at checkpoints 6 and 8
    assert len(refused) == 1 and "4 of 8 steps (50%)" in refused[0]


@pytest.mark.parametrize("method, says", [
    ("paper", "follow it in pass 2: --lr_scheduler_kwargs '{\"schedule_file\": "),
    ("guarded", "identical to pass 1's schedule"),
])
def test_end_of_pass_1_says_whether_a_second_run_is_worth_it(make_args, caplog, method, says):
    """A refined schedule that differs gets the pass-2 flag; one that repeats pass 1's gets told not to pay twice."""
    args = make_args(output_dir=make_args().output_dir + method)
    with caplog.at_level("WARNING", logger="hf_linear_decay.trainer.callback"):
        train(args, [RefinementCallback(method=method)])
    [line] = [record.getMessage() for record in caplog.records if "RefinementCallback: wrote" in record.getMessage()]
    assert says in line
    repeats = "pass 1 already ran this schedule: keep its model rather than run it again"
    assert (repeats in line) == (method == "guarded") and ("schedule_file" in line) == (method == "paper")
