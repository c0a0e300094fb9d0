"""Two gloo ranks whose records differ: RefinementCallback must refuse to write (on every rank).

    torchrun --standalone --nproc_per_node 2 tests/scripts/rank_disagreement.py OUT_DIR [--agree]
"""

import json
import os
import sys

import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hf_linear_decay import RefinementCallback  # noqa: E402
from tiny import leave_process_group  # noqa: E402


def main():
    out_dir, agree = sys.argv[1], "--agree" in sys.argv
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    callback = RefinementCallback()
    callback.grad_norm_l2 = [1.0, 2.0, 3.0]
    callback.grad_norm_l1 = [10.0, 20.0, 30.0 if (agree or rank == 0) else 31.0]
    callback.lr = [0.1, 0.05, 0.0]
    callback.skipped = [False, False, False]
    try:
        callback._check_ranks_agree()
        outcome = "agreed"
    except RuntimeError as error:
        outcome = str(error)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"outcome": outcome}, handle)
    leave_process_group()


if __name__ == "__main__":
    main()
