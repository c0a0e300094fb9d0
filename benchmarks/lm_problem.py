"""The LM problem of the comparison harness: a small GPT through the real path (Trainer + linear_refined).

Each run is one process (`python -m benchmarks.lm_problem run ...`, printing a JSON line), so `--jobs` runs go in
parallel. Baselines use transformers' scheduler types; linear decay runs as `linear_refined` without a file (the
same LRs), so `RefinementCallback` records them by itself; the refined schedules are `linear_refined` with the best
linear-with-warm-up run's schedule file (seed 0 as pass 1), one per refinement method the package ships.

Sizes: `cpu` is a 0.37M-parameter byte-level GPT-2 on the Python standard library's sources (as the README's demo),
400 steps of 16 x 128 bytes; `gpu` is a 6-layer 384-wide model, 2000 steps of 32 x 256, bf16.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {
    "cpu": dict(steps=400, batch=16, block=128, n_embd=96, n_layer=3, n_head=4, train_bytes=2_000_000,
                eval_blocks=128, grid=[1e-3, 2e-3, 4e-3, 8e-3], bf16=False),
    "gpu": dict(steps=2000, batch=32, block=256, n_embd=384, n_layer=6, n_head=6, train_bytes=30_000_000,
                eval_blocks=512, grid=[5e-4, 1e-3, 2e-3, 4e-3], bf16=True),
}
WARMUP = 0.05


def train_one(schedule: str, lr: float, seed: int, size: str, out_dir: str, schedule_file: str | None = None,
              method: str | None = None) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    import hf_linear_decay  # noqa: F401
    from recipes.byte_lm import ByteChunks, stdlib_bytes, tiny_gpt

    config = SIZES[size]
    torch.set_num_threads(1 if size == "cpu" else max(1, os.cpu_count() // 2))
    train_bytes, eval_bytes = stdlib_bytes(config["train_bytes"])
    steps, warmup = config["steps"], round(WARMUP * config["steps"])
    kinds = {  # schedule -> (lr_scheduler_type, warmup_steps, lr_scheduler_kwargs)
        "linear": ("linear_refined", 0, {}), "linear_warmup": ("linear_refined", warmup, {}),
        "cosine": ("cosine", 0, {}), "cosine_warmup": ("cosine", warmup, {}),
        "wsd": ("warmup_stable_decay", warmup, {"num_decay_steps": round(0.2 * steps)}),
    }
    if schedule_file is not None:
        kind = ("linear_refined", 0, {"schedule_file": schedule_file, "method": method, "record_norms": False})
    else:
        kind = kinds[schedule]
    args = TrainingArguments(
        output_dir=out_dir, lr_scheduler_type=kind[0], warmup_steps=kind[1], lr_scheduler_kwargs=kind[2],
        per_device_train_batch_size=config["batch"], per_device_eval_batch_size=32, max_steps=steps, learning_rate=lr,
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to="none",
        use_cpu=size == "cpu", bf16=config["bf16"], seed=seed, data_seed=seed, disable_tqdm=True,
        dataloader_num_workers=0, optim="adamw_torch")
    model = tiny_gpt(config["block"], seed, n_embd=config["n_embd"], n_layer=config["n_layer"], n_head=config["n_head"])
    trainer = Trainer(model, args, train_dataset=ByteChunks(train_bytes, config["block"]),
                      eval_dataset=ByteChunks(eval_bytes, config["block"], limit=config["eval_blocks"]))
    trainer.train()
    loss = trainer.evaluate()["eval_loss"]
    path = os.path.join(out_dir, "refined_schedule.safetensors")
    return {"schedule": schedule, "lr": lr, "seed": seed, "eval_loss": float(loss) if math.isfinite(loss) else None,
            "schedule_file": path if os.path.exists(path) else None}


def _launch(job) -> dict:
    command = [sys.executable, "-m", "benchmarks.lm_problem", "run", json.dumps(job)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=os.path.dirname(HERE))
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"LM run {job} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_study(options) -> str:
    """Sweep every schedule over the LR grid and seeds in `--jobs` parallel processes; write the summaries and the
    report (reference: linear decay with a 5% warm-up, the usual baseline for AdamW on an LM)."""
    from benchmarks.study_report import report

    from hf_linear_decay.core.methods import METHODS

    config = SIZES[options.lm_size]
    seeds = list(range(options.lm_seeds))
    runs_dir = os.path.join(options.out_dir, f"lm_{options.lm_size}_runs")
    results, rows = {}, []

    def sweep(name, grid, extra=None):
        grid = list(grid)
        while True:
            jobs = [dict(schedule=name, lr=lr, seed=seed, size=options.lm_size,
                         out_dir=os.path.join(runs_dir, f"{name}_lr{lr:g}_s{seed}"), **(extra or {}))
                    for lr in grid for seed in seeds if (name, lr, seed) not in done]
            with ThreadPoolExecutor(options.jobs) as pool:
                for outcome in pool.map(_launch, jobs):
                    done[(name, outcome["lr"], outcome["seed"])] = outcome
                    rows.append(outcome)
            means = [np.mean([done[(name, lr, s)]["eval_loss"] or np.inf for s in seeds]) for lr in grid]
            best = int(np.argmin(means))
            if 0 < best < len(grid) - 1 or len(grid) >= len(config["grid"]) + 4:
                break
            grid = [grid[0] / 2] + grid if best == 0 else grid + [grid[-1] * 2]
        lr = grid[best]
        results[name] = {"best_lr": lr, "per_seed": [done[(name, lr, s)]["eval_loss"] or np.inf for s in seeds],
                         "edge": best in (0, len(grid) - 1), "area": 1.0}
        return lr

    done = {}
    for name in ("linear", "linear_warmup", "cosine", "cosine_warmup", "wsd"):
        sweep(name, config["grid"])
    pass_one = done[(("linear_warmup"), results["linear_warmup"]["best_lr"], 0)]["schedule_file"]
    from hf_linear_decay.files.schedule_file import load_schedule_file
    from benchmarks import schedule_shapes

    for method in METHODS:
        sweep(method, config["grid"], {"schedule_file": pass_one, "method": method})
        schedule = load_schedule_file(pass_one)
        from hf_linear_decay.core.schedule import build_schedule
        from hf_linear_decay.core.settings import RefinementSettings

        multipliers = build_schedule(schedule.record, RefinementSettings(method=method)).multipliers
        results[method].update(area=schedule_shapes.area(multipliers), refined=True)
    with open(os.path.join(options.out_dir, f"lm_{options.lm_size}_runs.json"), "w") as handle:
        json.dump(rows, handle, indent=1)
    with open(os.path.join(options.out_dir, f"lm_{options.lm_size}_summary.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    lm_dir = os.path.join(options.out_dir, f"lm_{options.lm_size}")
    os.makedirs(lm_dir, exist_ok=True)
    return report({"adamw": {f"lm_{options.lm_size}": results}}, lm_dir, reference="linear_warmup",
                  metric="final eval loss")


def rebuild_report(out_dir: str, size: str = "cpu") -> str:
    """The LM report again from the saved summary (no training)."""
    from benchmarks.study_report import report

    with open(os.path.join(out_dir, f"lm_{size}_summary.json")) as handle:
        results = json.load(handle)
    return report({"adamw": {f"lm_{size}": results}}, os.path.join(out_dir, f"lm_{size}"), reference="linear_warmup",
                  metric="final eval loss")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        print(json.dumps(train_one(**json.loads(sys.argv[2]))))
    else:
        print(__doc__)
