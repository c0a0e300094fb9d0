"""Every schedule the comparison harness runs, as LR multipliers of length T, made by the code users run.

Baselines come from transformers' own schedulers (`get_scheduler`), refined schedules from this package's file and
`linear_refined` scheduler (a record -> `build_schedule` -> schedule file -> `get_scheduler("linear_refined",
schedule_file=...)`), so the harness measures exactly what `lr_scheduler_type=...` gives. The remaining candidates
of the robust-default study are transformations of the paper's pieces, written here.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

WARMUP_FRACTION = 0.05
WSD_DECAY_FRACTION = 0.2


def scheduler_multipliers(name: str, num_steps: int, warmup: int = 0, **kwargs) -> np.ndarray:
    """The multipliers `transformers.get_scheduler(name, ...)` applies at steps 0..T-1 (base LR 1)."""
    import torch
    from transformers import get_scheduler

    import hf_linear_decay  # noqa: F401  (linear_refined)

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=num_steps,
                              scheduler_specific_kwargs=kwargs)
    lr_lambda = scheduler.lr_lambdas[0]
    return np.array([lr_lambda(step) for step in range(num_steps)], dtype=np.float64)


def baselines(num_steps: int) -> dict[str, np.ndarray]:
    warmup = max(1, round(WARMUP_FRACTION * num_steps))
    return {
        "linear": scheduler_multipliers("linear", num_steps),
        "linear_warmup": scheduler_multipliers("linear", num_steps, warmup),
        "cosine": scheduler_multipliers("cosine", num_steps),
        "cosine_warmup": scheduler_multipliers("cosine", num_steps, warmup),
        "wsd": scheduler_multipliers("warmup_stable_decay", num_steps, warmup,
                                     num_decay_steps=round(WSD_DECAY_FRACTION * num_steps)),
        "constant": np.ones(num_steps),
    }


def refined_through_the_package(record, method: str, num_steps: int, **settings) -> np.ndarray:
    """Refine `record` with the package's `method`, write the schedule file, read it back through `linear_refined`."""
    from hf_linear_decay.core.schedule import build_schedule
    from hf_linear_decay.core.settings import RefinementSettings
    from hf_linear_decay.files.schedule_file import save_schedule_file

    schedule = build_schedule(record, RefinementSettings(method=method, **settings), force=True)
    with tempfile.TemporaryDirectory() as folder:
        path = save_schedule_file(schedule, os.path.join(folder, "refined_schedule.safetensors"))
        return scheduler_multipliers("linear_refined", num_steps, schedule_file=path)


def _peak_one(values: np.ndarray) -> np.ndarray:
    return values / values.max()


def candidates(record, paper: np.ndarray, optimizer_norm: str) -> dict[str, np.ndarray]:
    """The robust-default candidates built from the paper's schedule and pieces (no pass beyond pass 1)."""
    from hf_linear_decay.core.norms import NORM_TYPES
    from hf_linear_decay.core.refine import refine
    from hf_linear_decay.core.refinements import settle_step, settled_level
    from hf_linear_decay.core.shapes import linear_decay

    num_steps = paper.size
    linear = linear_decay(num_steps)
    seen = refine(record.norms(optimizer_norm), power=NORM_TYPES[optimizer_norm].default_power,
                  skipped=record.skipped)
    smoothed = seen.smoothed_norms
    settled = settled_level(smoothed)
    out = {
        "blend_half": _peak_one(0.5 * (paper + linear)),
        "peak_then_linear": np.where(np.arange(num_steps) < np.argmax(paper), paper,
                                     np.interp(np.arange(num_steps), [np.argmax(paper), num_steps - 1], [1.0, 0.0])),
        "clip_2x": _peak_one(np.clip(paper, linear / 2, 2 * linear)),
    }
    # Linear decay times a linear ramp that ends where the smoothed norm has settled (guarded's ramp, no gate).
    out["ramp_until_settled"] = _peak_one(linear * np.minimum(1.0, np.arange(num_steps) / settle_step(smoothed)))
    # The paper's own warm-up factor (settled / ĝ_t)^p, made monotone, on linear decay (no tail-sum anneal).
    power = NORM_TYPES[optimizer_norm].default_power
    weight = np.minimum(1.0, np.maximum.accumulate((settled / smoothed) ** power))
    out["norm_warmup_linear"] = _peak_one(linear * weight)
    return out


def area(multipliers: np.ndarray) -> float:
    """Mean multiplier relative to linear decay's (1 = the same total LR)."""
    from hf_linear_decay.core.shapes import area_ratio_to_linear

    return area_ratio_to_linear(multipliers)
