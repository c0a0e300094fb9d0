"""Raw FSDP2 (`fully_shard`) or FSDP1 on CPU/gloo: our norm functions must give the unsharded model's norms.

    torchrun --standalone --nproc_per_node 2 -m tests.scripts.fsdp2_norms OUT.json
    torchrun --standalone --nproc_per_node 4 -m tests.scripts.fsdp2_norms OUT.json --hsdp   # (replicate=2, shard=2)
    torchrun --standalone --nproc_per_node 2 -m tests.scripts.fsdp2_norms OUT.json --fsdp1 [--flat]
"""

import json
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from recipes.gloo_exit import leave_process_group
from hf_linear_decay.trainer.grad_norms import gradient_norms


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.Tanh(), nn.Linear(24, 8), nn.Tanh(), nn.Linear(8, 1))


def main():
    out_path, hsdp = sys.argv[1], "--hsdp" in sys.argv
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 16, generator=generator), torch.randn(32, 1, generator=generator)

    reference = build()
    nn.functional.mse_loss(reference(x), y).backward()
    grads = [p.grad for p in reference.parameters()]
    expected = [torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]), 2).item(),
                sum(g.abs().sum().item() for g in grads)]

    model = build()
    if "--fsdp1" in sys.argv:
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        model = FullyShardedDataParallel(model, use_orig_params="--flat" not in sys.argv,
                                         sharding_strategy=ShardingStrategy.FULL_SHARD, device_id=torch.device("cpu"))
        nn.functional.mse_loss(model(x), y).backward()
        placements = ["Shard(flat)"]
        local = [p.grad for p in model.parameters() if p.grad is not None]
    else:
        if hsdp:
            mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("replicate", "shard"))
        else:
            mesh = init_device_mesh("cpu", (world,))
        for layer in (model[0], model[2], model[4]):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        # Every rank sees the same batch, so the averaged gradient equals the reference gradient.
        nn.functional.mse_loss(model(x), y).backward()
        placements = sorted({str(p.grad.placements) for p in model.parameters() if p.grad is not None})
        local = [p.grad.to_local() for p in model.parameters() if p.grad is not None]
    norms, method = gradient_norms(model)
    measured = [norms["l2"].item(), norms["l1"].item()]
    # What a naive local sum + all_reduce(SUM) over the world would give (over-counts replicated shards):
    naive = torch.tensor([sum(float(g.pow(2).sum()) for g in local), sum(float(g.abs().sum()) for g in local)])
    dist.all_reduce(naive)
    result = {"rank": rank, "world": world, "placements": placements, "expected": expected, "measured": measured,
              "method": method,
              "naive": [naive[0].sqrt().item(), naive[1].item()]}
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        with open(out_path, "w") as handle:
            json.dump(gathered, handle)
    leave_process_group()


if __name__ == "__main__":
    main()
