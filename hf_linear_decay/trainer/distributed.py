"""torch.distributed helpers for the callback: checking that every rank recorded the same values.

Nothing here reads rank or world state at import: every function asks `torch.distributed` when it is called.
"""

from __future__ import annotations

import numpy as np
import torch


def _active():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def first_disagreeing_rank(values: np.ndarray, rtol: float = 1e-6) -> int | None:
    """All-gather a small float64 vector from every rank (one collective); the first rank whose vector differs from
    rank 0's beyond `rtol` (relative to the larger magnitude), or `None` when all agree or the run is not distributed.
    Every rank gets the same answer."""
    dist = _active()
    if dist is None:
        return None
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    mine = torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    reference = everyone[0].cpu().numpy()
    for rank, theirs in enumerate(everyone[1:], start=1):
        theirs = theirs.cpu().numpy()
        scale = np.maximum(np.abs(reference), np.abs(theirs))
        if (np.abs(theirs - reference) > rtol * scale).any():
            return rank
    return None
