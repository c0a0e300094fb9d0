"""Two gloo ranks whose records differ: RefinementCallback must refuse to write (on every rank).

    torchrun --standalone --nproc_per_node 2 -m tests.scripts.rank_disagreement OUT_DIR
"""

import json
import os
import sys

import torch.distributed as dist

from hf_linear_decay import RefinementCallback
from recipes.gloo_exit import leave_process_group


def check(agree: bool, rank: int) -> str:
    """Steps 0-2 agree and are checked; then step 3 differs on rank 1 (unless `agree`): only new steps are compared."""
    callback = RefinementCallback()
    callback.record.append({"grad_norm_l2": [1.0, 2.0, 3.0], "grad_norm_l1": [10.0, 20.0, 30.0],
                            "lr": [0.1, 0.05, 0.0]}, [False] * 3)
    outcomes = []
    for step_l1 in (None, 40.0 if (agree or rank == 0) else 40.001):
        if step_l1 is not None:
            callback.record.append({"grad_norm_l2": [4.0], "grad_norm_l1": [step_l1], "lr": [0.0]}, [False])
        try:
            callback._check_ranks_agree()
            outcomes.append("agreed")
        except RuntimeError as error:
            outcomes.append(str(error))
    return outcomes[-1] if outcomes[0] == "agreed" else "first check failed: " + outcomes[0]


def main():
    out_dir = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    outcomes = {"same-records": check(True, rank), "different-records": check(False, rank)}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(outcomes, handle)
    leave_process_group()


if __name__ == "__main__":
    main()
