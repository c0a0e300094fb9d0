"""Gradient norms on every backend a single process can build; FSDP and real ZeRO are in test_distributed.py."""

import math
import types

import pytest
import torch

from hf_linear_decay.trainer.grad_norms import gradient_norms
from hf_linear_decay.core.norms import NORM_TYPES
from tests.tiny import TinyRegressor


def with_gradients(dtype=torch.float32):
    model = TinyRegressor().to(dtype)
    x, y = torch.randn(16, 8, dtype=dtype), torch.randn(16, dtype=dtype)
    model(x, labels=y)["loss"].backward()
    return model


def test_plain_gradients_give_one_norm_per_table_row():
    model = with_gradients()
    norms, method = gradient_norms(model)
    flat = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
    assert method == "tensors" and list(norms) == list(NORM_TYPES)
    for name, row in NORM_TYPES.items():
        assert norms[name].dtype == torch.float32 and norms[name].dim() == 0
        assert float(norms[name]) == pytest.approx(float(torch.linalg.vector_norm(flat, row.order)), rel=1e-6)


def test_bf16_gradients_accumulate_in_float32():
    model = with_gradients(torch.bfloat16)
    norms, _ = gradient_norms(model)
    flat = torch.cat([p.grad.float().flatten() for p in model.parameters()])
    assert norms["l1"].dtype == torch.float32
    assert float(norms["l1"]) == pytest.approx(float(flat.abs().sum()), rel=1e-6)


def test_no_gradients_gives_none():
    assert gradient_norms(TinyRegressor()) == (None, "tensors")


class ZeroStandIn:
    """Stage-1/2-like layout: two parameter groups; `get_grad_norm_direct` as DeepSpeed computes it (masks to -1)."""

    def __init__(self, groups):
        self.params_in_partition = [[object()] * len(group) for group in groups]
        self.averaged_gradients = {index: group for index, group in enumerate(groups)}

    def get_grad_norm_direct(self, gradients, params, norm_type=2):
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in gradients]),
                                         norm_type)
        return total if torch.isfinite(total) else torch.tensor(-1.0)


def test_zero_partitions_combine_group_norms_like_the_norm_itself():
    groups = [[torch.tensor([3.0, -4.0])], [torch.tensor([12.0]), torch.tensor([-1.0, 2.0])]]
    norms, method = gradient_norms(zero_optimizer=ZeroStandIn(groups))
    flat = torch.tensor([3.0, -4.0, 12.0, -1.0, 2.0])
    assert method == "partitions"
    assert float(norms["l2"]) == pytest.approx(float(flat.norm()), rel=1e-6)
    assert float(norms["l1"]) == pytest.approx(float(flat.abs().sum()), rel=1e-6)


def test_zero_overflow_in_any_group_is_nan():
    groups = [[torch.tensor([3.0])], [torch.tensor([math.inf])]]
    norms, _ = gradient_norms(zero_optimizer=ZeroStandIn(groups))
    assert all(math.isnan(float(value)) for value in norms.values())


def test_zero_without_the_partition_layout_falls_back_to_full_gradients(fake_deepspeed):
    model = TinyRegressor()
    grads = [torch.randn_like(p) for p in model.parameters()]
    for parameter, grad in zip(model.parameters(), grads):
        parameter.full_grad = grad
    norms, method = gradient_norms(zero_optimizer=types.SimpleNamespace(), parameters=list(model.parameters()))
    assert method == "full_grad"
    assert float(norms["l1"]) == pytest.approx(sum(float(g.abs().sum()) for g in grads), rel=1e-6)
