"""The callback's DeepSpeed path, driven by hand on CPU (DeepSpeed itself needs a GPU: benchmarks/gpu_check.sh).

DeepSpeed runs the optimizer step inside backward, so every `p.grad` is None at the callbacks. The callback wraps the
ZeRO optimizer's `step` and measures l1 there. Real ZeRO-1/2/3 runs (DS_ACCELERATOR=cpu) are in test_distributed.py
and take the exact partition path; here a stand-in optimizer without ZeRO's partition layout drives the fallback,
`deepspeed.utils.safe_get_full_grad`, from a stand-in module that returns known loss-scaled full gradients.
"""

import sys
import types

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_linear_decay import RefinementCallback
from tiny import TinyRegressor


class ZeroOptimizer:
    """Stands in for a ZeRO optimizer: holds the loss scale; its step applies the update and moves the LR on."""

    def __init__(self, lr, loss_scale):
        self.param_groups = [{"lr": lr}]
        self.loss_scale = loss_scale
        self.steps = 0

    def step(self):
        self.steps += 1


class DeepSpeedOptimizerWrapper:  # the class name is what the callback recognises, as accelerate's wrapper
    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups


@pytest.fixture
def fake_deepspeed(monkeypatch):
    utils = types.ModuleType("deepspeed.utils")
    utils.safe_get_full_grad = lambda parameter: getattr(parameter, "full_grad", None)
    package = types.ModuleType("deepspeed")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "deepspeed", package)
    monkeypatch.setitem(sys.modules, "deepspeed.utils", utils)


def test_deepspeed_step_wrapper_measures_unscaled_pre_clip_l1_and_the_steps_lr(fake_deepspeed, tmp_path):
    model = TinyRegressor()
    scale = 1024.0
    true_grads = [torch.randn_like(p) for p in model.parameters()]
    for parameter, grad in zip(model.parameters(), true_grads):
        parameter.full_grad = grad * scale  # what ZeRO holds before unscaling (fp16)
        assert parameter.grad is None
    zero = ZeroOptimizer(lr=0.01, loss_scale=scale)
    wrapper = DeepSpeedOptimizerWrapper(zero)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_grad_norm=1.0)
    state, control = TrainerState(), TrainerControl()
    callback = RefinementCallback()
    callback._trainer = object()  # bound: the pre-clip l2 arrives through the wrapped Trainer._get_grad_norm
    callback.on_train_begin(args, state, control, model=model, optimizer=wrapper)
    assert callback._run.optimizer == "ZeroOptimizer"

    zero.step()  # the engine calls it inside backward ...
    zero.param_groups[0]["lr"] = 0.009  # ... and then steps a DS-wrapped LR scheduler
    callback._pre_clip_l2 = 2.5  # DeepSpeed's global norm (a float), kept by the Trainer hook
    callback.on_pre_optimizer_step(args, state, control, model=model, optimizer=wrapper)
    callback._flush()
    expected_l1 = sum(float(g.abs().sum()) for g in true_grads)
    assert zero.steps == 1
    assert callback.grad_norm_l2 == [2.5]
    assert callback.grad_norm_l1[0] == pytest.approx(expected_l1, rel=1e-6)
    assert callback.lr == [0.01]
    assert callback.skipped == [False]
    assert callback.deepspeed_l1_method == "full_grad"


def test_deepspeed_overflow_is_flagged(fake_deepspeed, tmp_path):
    model = TinyRegressor()
    for parameter in model.parameters():
        parameter.full_grad = torch.full_like(parameter, float("inf"))
    zero = ZeroOptimizer(lr=0.01, loss_scale=65536.0)
    wrapper = DeepSpeedOptimizerWrapper(zero)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_grad_norm=1.0)
    state, control = TrainerState(), TrainerControl()
    callback = RefinementCallback()
    callback._trainer = object()
    callback.on_train_begin(args, state, control, model=model, optimizer=wrapper)
    zero.step()
    callback._pre_clip_l2 = float("inf")  # DeepSpeed reports an infinite global norm on overflow
    callback.on_pre_optimizer_step(args, state, control, model=model, optimizer=wrapper)
    callback._flush()
    assert callback.skipped == [True]
