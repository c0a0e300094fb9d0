"""The private Trainer and DeepSpeed APIs the callback relies on, each checked directly, and the binding itself.

If an upgrade of transformers, accelerate or DeepSpeed moves one of them, a test here fails by name.
"""

import inspect
import math
import re
import os

import pytest
import torch
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler, TrainerCallback

import hf_linear_decay  # noqa: F401
from hf_linear_decay import RefinementCallback
from hf_linear_decay.trainer.binding import find_trainer, innermost_optimizer, zero_optimizer_of
from tests.tiny import RegressionData, StopAt, TinyRegressor


def test_trainer_private_api_is_where_the_binding_expects_it():
    parameters = list(inspect.signature(Trainer._get_grad_norm).parameters)
    assert parameters == ["self", "model", "grad_norm"], parameters
    assert inspect.signature(Trainer._get_grad_norm).parameters["grad_norm"].default is None
    source = inspect.getsource(Trainer._inner_training_loop)
    assert "resume_from_checkpoint" in inspect.signature(Trainer._inner_training_loop).parameters
    assert "callback_handler.on_train_begin" in source
    assert "self._get_grad_norm(" in inspect.getsource(Trainer._run_epoch)
    handler = CallbackHandler([], None, None, None, None)
    assert isinstance(handler.callbacks, list)


def test_deepspeed_private_api_is_where_the_binding_expects_it():
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.stage3 import DeepSpeedZeroOptimizer_Stage3
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    for cls, groups in ((DeepSpeedZeroOptimizer, "params_in_partition"), (DeepSpeedZeroOptimizer_Stage3,
                                                                          "fp16_groups")):
        source = inspect.getsource(cls)  # (stage 3 wraps the method for NVTX, hiding its signature)
        assert re.search(r"def get_grad_norm_direct\(self, gradients, params, norm_type=2\)", source), cls
        assert f"self.{groups} =" in source and "self.averaged_gradients" in source, cls
        assert "loss_scale" in dir(cls), cls
    from accelerate.utils.deepspeed import DeepSpeedOptimizerWrapper

    # The binding finds the ZeRO optimizer behind accelerate's wrapper by the wrapper's class name and `.optimizer`.
    inner = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    wrapper = DeepSpeedOptimizerWrapper.__new__(DeepSpeedOptimizerWrapper)
    wrapper.optimizer = inner
    assert zero_optimizer_of(wrapper) is inner and innermost_optimizer(wrapper) is inner
    assert zero_optimizer_of(inner) is None
    assert "self.optimizer = optimizer" in inspect.getsource(DeepSpeedOptimizerWrapper.__mro__[1].__init__)


class SeesTheBinding(TrainerCallback):
    def __init__(self):
        self.seen = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.seen = find_trainer(self)


def test_find_trainer_sees_the_trainer_and_the_checkpoint_being_resumed(make_args):
    args = make_args(max_steps=4, save_strategy="steps", save_steps=2)
    Trainer(TinyRegressor(), args, train_dataset=RegressionData(), callbacks=[StopAt(2)]).train()
    probe = SeesTheBinding()
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData(), callbacks=[probe])
    checkpoint = os.path.join(args.output_dir, "checkpoint-2")
    trainer.train(resume_from_checkpoint=checkpoint)
    assert probe.seen[0] is trainer and probe.seen[1]["resume_from_checkpoint"] == checkpoint
    assert find_trainer(probe) == (None, {})  # outside a Trainer call


def test_a_callback_reused_for_another_trainer_listens_to_that_one_only(make_args):
    callback = RefinementCallback()
    first = Trainer(TinyRegressor(), make_args(max_steps=3), train_dataset=RegressionData(), callbacks=[callback])
    first.train()
    second = Trainer(TinyRegressor(), make_args(max_steps=5, learning_rate=0.01), train_dataset=RegressionData(),
                     callbacks=[callback])
    second.train()  # with clipping on: crashed in 0.1.0 (stayed bound to the first trainer)
    assert callback.bound_trainer is second and len(callback.record) == 5
    logged = [entry["grad_norm"] for entry in second.state.log_history if "grad_norm" in entry and "loss" in entry]
    assert callback.record.grad_norm_l2 == pytest.approx(logged, rel=1e-6)
    first._get_grad_norm(first.model)  # the first trainer's wrapper no longer delivers to the callback
    assert callback._pre_clip_l2 is None


class ZeroOptimizer:
    """Stands in for a ZeRO optimizer without the partition layout: holds the loss scale; `step` applies the update."""

    def __init__(self, lr, loss_scale):
        self.param_groups = [{"lr": lr}]
        self.loss_scale = loss_scale
        self.steps = 0

    def step(self):
        self.steps += 1


class DeepSpeedOptimizerWrapper:  # the class name is what the binding recognises, as accelerate's wrapper
    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups


def drive_one_zero_step(tmp_path, full_grads, engine_l2, loss_scale):
    model = TinyRegressor()
    for parameter, grad in zip(model.parameters(), full_grads):
        parameter.full_grad = grad * loss_scale  # what ZeRO holds before unscaling (fp16)
        assert parameter.grad is None
    zero = ZeroOptimizer(lr=0.01, loss_scale=loss_scale)
    wrapper = DeepSpeedOptimizerWrapper(zero)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_grad_norm=1.0)
    state, control = TrainerState(), TrainerControl()
    callback = RefinementCallback()
    callback.bound_trainer = object()  # bound: the pre-clip l2 arrives through the wrapped Trainer._get_grad_norm
    callback.on_train_begin(args, state, control, model=model, optimizer=wrapper)
    zero.step()  # the engine calls it inside backward ...
    zero.param_groups[0]["lr"] = 0.009  # ... and then steps a DS-wrapped LR scheduler
    callback.receive_pre_clip_l2(engine_l2)  # DeepSpeed's global norm (a float), as the Trainer hook delivers it
    callback.on_pre_optimizer_step(args, state, control, model=model, optimizer=wrapper)
    callback._flush()
    assert zero.steps == 1 and callback.record.run.optimizer == "ZeroOptimizer"
    return callback


def test_zero_step_wrapper_measures_the_unscaled_pre_clip_norms_and_the_steps_lr(fake_deepspeed, tmp_path):
    grads = [torch.randn_like(p) for p in TinyRegressor().parameters()]
    callback = drive_one_zero_step(tmp_path, grads, engine_l2=2.5, loss_scale=1024.0)
    assert callback.record.grad_norm_l1[0] == pytest.approx(sum(float(g.abs().sum()) for g in grads), rel=1e-6)
    assert callback.record.grad_norm_l2[0] == pytest.approx(2.5)  # the engine's value is the one the Trainer logs
    assert callback.record.lr[0] == 0.01 and callback.measurement == "full_grad"
    assert not callback.record.skipped.any()


def test_zero_overflow_seen_only_by_the_measured_norm_is_flagged(fake_deepspeed, tmp_path):
    # The engine's l2 is finite here, so only the wrapped step's own measurement can flag the step.
    grads = [torch.full_like(p, math.inf) for p in TinyRegressor().parameters()]
    callback = drive_one_zero_step(tmp_path, grads, engine_l2=1.0, loss_scale=65536.0)
    assert callback.record.skipped.tolist() == [True] and math.isinf(callback.record.grad_norm_l1[0])


def test_the_trainer_asks_for_callback_states_before_it_writes_the_checkpoint_state():
    # The record of a checkpoint is written in `state()` (checkpoint_being_saved finds the folder): this holds only
    # while `_save_checkpoint` has its `output_dir` local and calls `cb.state()` before `save_to_json`.
    source = inspect.getsource(Trainer._save_checkpoint)
    assert "output_dir = os.path.join(run_dir, checkpoint_folder)" in source
    assert source.index("cb.state()") < source.index("self.state.save_to_json(")
    assert "def _save_checkpoint(self, model" in source
