"""Global l2 and l1 norms of a model's gradients, on the device, without a host synchronisation.

Works for plain tensors (single process, DDP: the gradients are already averaged and identical on every rank, so no
cross-rank reduction is needed), for DTensor gradients (FSDP2, including hybrid (replicate, shard) meshes: each
device mesh's norm is reduced over its own mesh with `full_tensor()`, which counts replicated shards once), and for
FSDP1 models (flat-parameter shards: the root module's own `clip_grad_norm_` with an infinite threshold, which knows
the sharding strategy, including NO_SHARD and hybrid).
"""

from __future__ import annotations

import torch


def _per_tensor_norms(grads: list[torch.Tensor], order: float) -> list[torch.Tensor]:
    # One multi-tensor kernel per (device, dtype) group on GPU; accumulate in float32 even for bf16/fp16 gradients.
    try:
        return list(torch._foreach_norm(grads, order, dtype=torch.float32))
    except (AttributeError, RuntimeError, TypeError):  # very old torch or an exotic tensor subclass
        return [torch.linalg.vector_norm(g, order, dtype=torch.float32) for g in grads]


def _combine(norms: list[torch.Tensor], order: float) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(norms), order)


def global_grad_norms(parameters) -> torch.Tensor | None:
    """`tensor([l2, l1])` (float32) of all `p.grad` in `parameters`, as one vector; `None` if no gradient exists.

    Two passes over the gradients (one per norm); the result stays on the gradients' device.
    """
    from torch.distributed.tensor import DTensor

    groups: dict[object, list[torch.Tensor]] = {}
    for parameter in parameters:
        grad = parameter.grad
        if grad is None:
            continue
        key = grad.device_mesh if isinstance(grad, DTensor) else ("plain", grad.device)
        groups.setdefault(key, []).append(grad)
    if not groups:
        return None
    l2_parts, l1_parts = [], []
    device = None
    for grads in groups.values():
        l2 = _combine(_per_tensor_norms(grads, 2.0), 2.0)
        l1 = _combine(_per_tensor_norms(grads, 1.0), 1.0)
        if isinstance(l2, DTensor):
            l2, l1 = l2.full_tensor(), l1.full_tensor()
        device = device or l2.device
        l2_parts.append(l2.to(device))
        l1_parts.append(l1.to(device))
    return torch.stack([_combine(l2_parts, 2.0), _combine(l1_parts, 1.0)])


def model_grad_norms(model) -> torch.Tensor | None:
    """`tensor([l2, l1])` of a model's gradients, whatever wraps it (plain, DDP-unwrapped, FSDP2 or FSDP1 root)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed support
        FullyShardedDataParallel = ()
    if isinstance(model, FullyShardedDataParallel) and model._is_root is not False:
        if not any(p.grad is not None for p in model.parameters()):
            return None
        # An infinite threshold makes the clip coefficient exactly 1: the call only measures (two collectives).
        l2 = model.clip_grad_norm_(float("inf"), norm_type=2.0)
        l1 = model.clip_grad_norm_(float("inf"), norm_type=1.0)
        return torch.stack([l2.float(), l1.float().to(l2.device)])
    return global_grad_norms(model.parameters())
