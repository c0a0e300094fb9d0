"""Scale: a 10-million-step schedule file, and the callback's save/resume path at 1M steps on many ranks.

    python -m benchmarks.bench_scale                         # 10M steps, 1M steps x 16 ranks
    python -m benchmarks.bench_scale --steps 1000000 --ranks 64 --rank_steps 1000000

Part 1 writes a schedule file of `--steps` steps (both norms and the LR recorded), then times each operation in a
fresh process (so imports and peak memory are its own): load, scheduler build (load + resample + LambdaLR),
`hf-linear-decay inspect`, `export --csv`, `plot`. Each time is printed as a ratio to reading the file's bytes
once (measured in the same run), with its absolute value and the target; peak memory (max RSS) as a ratio to
the file's size. Part 2 starts `--ranks` gloo processes, each holding a `--rank_steps`-step record in a
RefinementCallback (no model), and times `on_save` (rank check + record and schedule files) and a resume
(`on_train_begin` of a fresh callback from the saved checkpoint), and measures how many bytes the callback's entry
in trainer_state.json grows per recorded step.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

TARGETS = {"load": 2.0, "scheduler build": 2.0, "inspect": 2.0, "export": 10.0, "plot": 5.0}
MEMORY_TARGET = 4.0  # peak RSS / file size

# name -> (untimed set-up: the imports a program has done already, timed operation). The CLI commands are timed
# whole, imports included: that is what a user waits for.
OPERATIONS = {
    "read bytes": ("", "open(PATH, 'rb').read()"),
    "load": ("from hf_linear_decay.files.schedule_file import load_schedule_file", "load_schedule_file(PATH)"),
    "scheduler build": ("import torch, hf_linear_decay\nfrom hf_linear_decay.trainer.scheduler import "
                        "get_linear_refined_schedule\n"
                        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)",
                        "get_linear_refined_schedule(opt, 0, STEPS, schedule_file=PATH)"),
    "inspect": ("", "from hf_linear_decay.tools.cli import main; assert main(['inspect', PATH]) == 0"),
    "export": ("", "from hf_linear_decay.tools.cli import main; assert main(['export', PATH, '--csv']) == 0"),
    "plot": ("", "from hf_linear_decay.tools.cli import main; assert main(['plot', PATH, '-o', PATH + '.png']) == 0"),
}

# Peak RSS from /proc (VmHWM, per address space): getrusage's ru_maxrss survives exec and would report the parent's.
CHILD = """
import sys, time
def peak_rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
PATH, STEPS = {path!r}, {steps}
{setup}
before = peak_rss()
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
print("RESULT", elapsed, peak_rss(), before, file=sys.stderr)
"""


def timed(name, path, steps):
    setup, body = OPERATIONS[name]
    result = subprocess.run([sys.executable, "-c", CHILD.format(path=path, steps=steps, setup=setup, body=body)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = [line for line in result.stderr.splitlines() if line.startswith("RESULT")]
    if result.returncode != 0 or not line:
        raise SystemExit(f"{name} failed:\n{result.stderr[-2000:]}")
    _, seconds, peak, before = line[0].split()
    return float(seconds), int(peak), int(before)


def part_one(steps, folder):
    import numpy as np

    from hf_linear_decay.core.schedule import build_schedule
    from hf_linear_decay.core.record import NormRecord, RunInfo
    from hf_linear_decay.files.schedule_file import save_schedule_file

    rng = np.random.default_rng(0)
    decay = np.linspace(3, 1, steps)
    record = NormRecord.from_columns({"grad_norm_l2": rng.lognormal(size=steps) * decay,
                                      "grad_norm_l1": rng.lognormal(size=steps) * decay * 30,
                                      "lr": np.linspace(1e-3, 0, steps)}, run=RunInfo(optimizer="AdamW"))
    start = time.perf_counter()
    schedule = build_schedule(record)
    refine_seconds = time.perf_counter() - start
    path = os.path.join(folder, "refined_schedule.safetensors")
    save_schedule_file(schedule, path)
    del record, schedule
    size = os.path.getsize(path)
    print(f"## {steps:,}-step schedule file: {size / 2**20:.0f} MiB (refining it took {refine_seconds:.1f} s)\n")
    baseline, _, interpreter = timed("read bytes", path, steps)
    print("Peak memory is the process's max RSS above a bare interpreter's, as a ratio to the file size.\n")
    print("| operation | seconds | ratio to reading the file | target | peak memory / file size |")
    print("|---|---|---|---|---|")
    print(f"| read the file's bytes | {baseline:.2f} | 1.0 | - | - |")
    for name in ("load", "scheduler build", "inspect", "export", "plot"):
        seconds, peak, _ = timed(name, path, steps)
        verdict = "met" if seconds < TARGETS[name] else "NOT met"
        memory = (peak - interpreter) / size
        print(f"| {name} | {seconds:.2f} | {seconds / baseline:.1f} | < {TARGETS[name]:g} s: {verdict} | "
              f"{memory:.2f} (< {MEMORY_TARGET:g}: {'met' if memory < MEMORY_TARGET else 'NOT met'}) |")


RANK_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import torch.distributed as dist
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from hf_linear_decay import RefinementCallback
    from recipes.gloo_exit import leave_process_group

    folder, steps = sys.argv[1], int(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    args = TrainingArguments(output_dir=folder, use_cpu=True, report_to="none", max_grad_norm=0.0)
    rng = np.random.default_rng(0)  # every rank the same record, as ranks do after the gradient all-reduce
    norms = rng.lognormal(size=steps)
    callback = RefinementCallback()
    callback.record.append({"grad_norm_l2": norms, "grad_norm_l1": norms * 30, "lr": np.linspace(1e-3, 0, steps)},
                           np.zeros(steps, bool))
    state, control = TrainerState(global_step=steps, is_world_process_zero=rank == 0), TrainerControl()
    os.makedirs(os.path.join(folder, f"checkpoint-{steps}"), exist_ok=True)
    dist.barrier()
    start, cpu = time.perf_counter(), time.process_time()
    entry = callback.state() if rank == 0 else None  # the Trainer asks only the saving rank for its state
    callback.on_save(args, state, control)
    save_cpu = time.process_time() - cpu
    dist.barrier()
    save = time.perf_counter() - start
    state.stateful_callbacks = {"RefinementCallback": entry}
    if rank == 0:
        state.save_to_json(os.path.join(folder, f"checkpoint-{steps}", "trainer_state.json"))
    dist.barrier()
    loaded = TrainerState.load_from_json(os.path.join(folder, f"checkpoint-{steps}", "trainer_state.json"))
    loaded.is_world_process_zero = rank == 0
    fresh = RefinementCallback()
    start, cpu = time.perf_counter(), time.process_time()
    fresh.on_train_begin(args, loaded, control)
    resume_cpu = time.process_time() - cpu
    dist.barrier()
    resume = time.perf_counter() - start
    assert len(fresh.record) == steps and fresh.record.sha256() == callback.record.sha256()
    cpus = [None] * dist.get_world_size()
    dist.all_gather_object(cpus, (save_cpu, resume_cpu))
    if rank == 0:
        small = RefinementCallback()
        small.record.append({"grad_norm_l2": norms[:1000], "grad_norm_l1": norms[:1000], "lr": norms[:1000]},
                            np.zeros(1000, bool))
        growth = (len(json.dumps(entry)) - len(json.dumps(small.state()))) / (steps - 1000)
        print(json.dumps({"save": save, "resume": resume, "growth": growth, "save_cpu": max(c[0] for c in cpus),
                          "resume_cpu": max(c[1] for c in cpus)}))
    leave_process_group()
""")


def part_two(ranks, steps, folder):
    script = os.path.join(folder, "rank.py")
    with open(script, "w") as handle:
        handle.write(RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                             script, os.path.join(folder,
                                                  "ranks"), str(steps)], capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"rank simulation failed:\n{result.stderr[-3000:]}")
    numbers = json.loads(lines[-1])
    cores = os.cpu_count()
    print(f"\n## {steps:,}-step record on {ranks} gloo ranks (no model; callback save and resume)\n")
    print(f"With {ranks} processes on {cores} cores the wall time mostly measures waiting for a core; the busiest "
          "rank's "
          "CPU time is what a rank with a core of its own spends (the target applies to it).\n")
    print("| operation | busiest rank's CPU (s) | wall, all ranks (s) | target |\n|---|---|---|---|")
    for name, label in (("save", "on_save (rank check; rank 0 writes the record and schedule files)"),
                        ("resume", "resume (on_train_begin: read and verify the checkpoint's record)")):
        print(f"| {label} | {numbers[name + '_cpu']:.2f} | {numbers[name]:.2f} | < 1 s: "
              f"{'met' if numbers[name + '_cpu'] < 1 else 'NOT met'} |")
    print(f"| trainer_state.json growth per recorded step | {numbers['growth']:.6f} bytes | 0 bytes: "
          f"{'met' if numbers['growth'] < 1e-4 else 'NOT met'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--ranks", type=int, default=16)
    parser.add_argument("--rank_steps", type=int, default=1_000_000)
    parser.add_argument("--skip_ranks", action="store_true")
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="hf_linear_decay_scale_")
    try:
        part_one(options.steps, folder)
        if not options.skip_ranks:
            part_two(options.ranks, options.rank_steps, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
