"""Run benchmarks/gpu_train.py under every backend on one GPU and print a table of relative errors.

    bash benchmarks/gpu_check.sh            # (wrapper: installs carried wheels, then runs this)

For each backend x precision the recorded norms are compared with the plain (non-distributed) run of the same
precision over the first steps (later steps drift apart through rounding), and the recorded l2 with the Trainer's
logged grad_norm over all steps (same quantity by construction: should agree to ~1e-6). fp16 rows also count the
overflow steps flagged as skipped (the default fused AdamW does not report them; the callback must still flag them).
"""

import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("plain", "fp32"), ("plain", "bf16"), ("plain", "fp16"), ("fsdp2", "fp32"), ("fsdp2", "bf16"),
         ("zero2", "bf16"), ("zero2", "fp16"), ("zero3", "bf16"), ("zero3", "fp16")]
COMPARE_STEPS = 5


def run(backend, precision, out_dir):
    out = os.path.join(out_dir, f"{backend}_{precision}.json")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "benchmarks.gpu_train", "--backend", backend, "--precision", precision, "--out", out]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=os.path.dirname(HERE))
    with open(os.path.join(out_dir, f"{backend}_{precision}.log"), "w") as handle:
        handle.write(result.stdout + result.stderr)
    if result.returncode != 0:
        return None, (result.stderr.strip().splitlines() or ["?"])[-1][:120]
    return json.load(open(out)), None


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-30))) if ok.any() else float("nan")


def main():
    out_dir = os.environ.get("OUT") or os.path.join(HERE, "gpu_check_output")
    os.makedirs(out_dir, exist_ok=True)
    try:
        import deepspeed  # noqa: F401
        have_deepspeed = True
    except ImportError:
        have_deepspeed = False
    records, rows = {}, []
    for backend, precision in CASES:
        if backend.startswith("zero") and not have_deepspeed:
            rows.append(f"| {backend} | {precision} | - | - | - | - | - | not run: deepspeed not installed |")
            continue
        record, error = run(backend, precision, out_dir)
        records[(backend, precision)] = record
        if record is None:
            rows.append(f"| {backend} | {precision} | - | - | - | - | - | FAILED: {error} |")
            continue
        plain = records.get(("plain", precision))
        n = COMPARE_STEPS
        l2_err = rel(record["grad_norm_l2"][:n], plain["grad_norm_l2"][:n]) if plain and backend != "plain" else 0.0
        l1_err = rel(record["grad_norm_l1"][:n], plain["grad_norm_l1"][:n]) if plain and backend != "plain" else 0.0
        logged = rel(record["grad_norm_l2"], record["logged_grad_norm"])
        steps = len(record["grad_norm_l2"])
        finite = int(np.isfinite(record["grad_norm_l1"]).sum())
        rows.append(f"| {backend} | {precision} | {steps} | {sum(record['skipped'])} | {l2_err:.2e} | {l1_err:.2e} | "
                    f"{logged:.2e} | ok ({finite} finite l1) |")
    table = ["| backend | precision | steps | skipped | l2 rel err vs plain (first 5) | l1 rel err vs plain (first 5) "
             "| l2 vs logged grad_norm | status |", "|---|---|---|---|---|---|---|---|", *rows]
    print("\n".join(table))
    with open(os.path.join(out_dir, "table.md"), "w") as handle:
        handle.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
