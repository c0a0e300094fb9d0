"""Global gradient norms on every backend, on the device, without a host synchronisation.

`gradient_norms` returns one float32 tensor per row of the norm table (`norms.NORM_TYPES`, e.g. `{"l2": ..., "l1":
...}`) for whatever holds the gradient:

- plain tensors (single process; DDP, whose gradients are already averaged and identical on every rank, so no
  cross-rank reduction is needed);
- DTensor gradients (FSDP2, including hybrid (replicate, shard) meshes): each device mesh's norm is reduced over its
  own mesh with `full_tensor()`, which counts replicated shards once;
- FSDP1 models (flat-parameter shards): the root module's own `clip_grad_norm_` with an infinite threshold, which
  knows the sharding strategy, including NO_SHARD and hybrid;
- DeepSpeed ZeRO 1/2/3 (every `p.grad` is None there): this rank's gradient partitions through DeepSpeed's own norm
  routine, summed over the data-parallel group like DeepSpeed's l2; `safe_get_full_grad` where that layout is absent.
"""

from __future__ import annotations

import math

import torch

from ..core.norms import NORM_TYPES

__all__ = ["gradient_norms"]


def _per_tensor_norms(grads: list[torch.Tensor], order: float) -> list[torch.Tensor]:
    # One multi-tensor kernel per (device, dtype) group on GPU; accumulate in float32 even for bf16/fp16 gradients.
    try:
        return list(torch._foreach_norm(grads, order, dtype=torch.float32))
    except (AttributeError, RuntimeError, TypeError):  # very old torch or an exotic tensor subclass
        return [torch.linalg.vector_norm(g, order, dtype=torch.float32) for g in grads]


def _combine(norms: list[torch.Tensor], order: float) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(norms), order)


def _tensor_norms(parameters, skip=()) -> dict[str, torch.Tensor] | None:
    from torch.distributed.tensor import DTensor

    groups: dict[object, list[torch.Tensor]] = {}
    for parameter in parameters:
        grad = parameter.grad
        if grad is not None:
            groups.setdefault(grad.device_mesh if isinstance(grad, DTensor) else ("plain", grad.device),
                              []).append(grad)
    if not groups:
        return None
    result = {}
    for name, norm in NORM_TYPES.items():
        if name in skip:
            continue
        parts, device = [], None
        for grads in groups.values():
            part = _combine(_per_tensor_norms(grads, norm.order), norm.order)
            part = part.full_tensor() if isinstance(part, DTensor) else part
            device = device or part.device
            parts.append(part.to(device))
        result[name] = _combine(parts, norm.order)
    return result


def _zero_partition_norms(zero_optimizer) -> dict[str, torch.Tensor] | None:
    """Norms of the loss-scaled gradient from this rank's ZeRO partitions, or None where the layout differs.

    Private DeepSpeed API, verified against deepspeed 0.19.8 (tests/test_distributed.py runs ZeRO-1/2/3 and fails if
    this path is not taken): stage 1/2 `params_in_partition` and stage 3 `fp16_groups` with `averaged_gradients`, and
    `get_grad_norm_direct(grads, params, norm_type)`, which all-reduces over the data-parallel group and masks a
    non-finite result to -1 (turned back into NaN: an overflow step).
    """
    direct = getattr(zero_optimizer, "get_grad_norm_direct", None)
    averaged = getattr(zero_optimizer, "averaged_gradients", None)
    if direct is None or not averaged or getattr(zero_optimizer, "has_moe_layers", False):
        return None
    if getattr(zero_optimizer, "cpu_offload", False) or getattr(zero_optimizer, "offload_optimizer", False):
        return None
    groups = getattr(zero_optimizer, "params_in_partition", None)
    groups = groups if groups is not None else getattr(zero_optimizer, "fp16_groups", None)
    if groups is None:
        return None
    result = {}
    for name, norm in NORM_TYPES.items():
        parts = []
        for index, params in enumerate(groups):
            grads = averaged.get(index) if isinstance(averaged, dict) else averaged[index]
            if grads is None:
                return None
            parts.append(torch.as_tensor(direct(grads, params, norm_type=norm.order)).float())
        parts = torch.stack([part.to(parts[0].device) for part in parts])
        total = torch.linalg.vector_norm(parts, norm.order)  # the group norms combine like the norm itself
        result[name] = torch.where((parts < 0).any(), torch.full_like(total, math.nan), total)
    return result


def _full_gradient_norms(parameters) -> dict[str, torch.Tensor] | None:
    from deepspeed.utils import safe_get_full_grad  # gathers each full gradient (a collective under ZeRO-3)

    grads = [grad.detach() for grad in (safe_get_full_grad(p) for p in parameters) if grad is not None]
    if not grads:
        return None
    return {name: _combine(_per_tensor_norms(grads, n.order), n.order) for name, n in NORM_TYPES.items()}


def gradient_norms(model=None, *, zero_optimizer=None, parameters=None,
                   skip=()) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Global norms of the gradient the optimizer is about to apply, and how they were measured.

    Args:
        model: the model the Trainer hands to callbacks (plain, DDP-unwrapped, FSDP2 or FSDP1 root).
        zero_optimizer: under DeepSpeed, the ZeRO optimizer (call this inside its `step`, before it clips and
            applies the gradient); the values are then loss-scaled, as DeepSpeed holds them.
        parameters: under DeepSpeed, the model's parameters (for the `safe_get_full_grad` fallback).
        skip: names of norms not to measure (the one the Trainer computed already), outside DeepSpeed.

    Returns:
        `({norm name: float32 tensor}, measured_by)`, `measured_by` one of "tensors", "fsdp1", "partitions",
        "full_grad" (the measurement path, not to be confused with a refinement method); the
        dict is `None` when there is no gradient.
    """
    if zero_optimizer is not None:
        norms = _zero_partition_norms(zero_optimizer)
        return (norms, "partitions") if norms is not None else (_full_gradient_norms(parameters or []), "full_grad")
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed support
        FullyShardedDataParallel = ()
    if isinstance(model, FullyShardedDataParallel) and model._is_root is not False:
        if not any(p.grad is not None for p in model.parameters()):
            return None, "fsdp1"
        # An infinite threshold makes the clip coefficient exactly 1: the call only measures (one collective each).
        return {name: model.clip_grad_norm_(float("inf"), norm_type=n.order).float() for name,
                n in NORM_TYPES.items() if name not in skip}, "fsdp1"
    return _tensor_norms(model.parameters(), skip), "tensors"
