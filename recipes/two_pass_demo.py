"""Two-pass demo on CPU: pass 1 records gradient norms under linear decay, pass 2 follows the refined schedule.

    python recipes/two_pass_demo.py                       # about 4 minutes on 2 CPU cores
    python recipes/two_pass_demo.py --max_steps 1200 --skip_cosine --output_dir demo_long

What it does, with no downloads:
- data: the Python standard library's own source files (text every machine with Python has), as bytes; whole files
  are held out for evaluation (a hash of the file name picks them), so evaluation text was never trained on;
- model: a 3-layer GPT-2 (byte vocabulary, 0.37 M parameters) built from a config, trained from scratch;
- pass 1: `lr_scheduler_type="linear_refined"` without a file (plain linear decay) + `RefinementCallback`, which
  writes `OUTPUT_DIR/pass1_linear/refined_schedule.safetensors`;
- pass 2: the same model, data order and peak LR with `lr_scheduler_kwargs={"schedule_file": ...}`, once with the
  file's schedule (the default refinement, `guarded`) and once refined again with the paper's exact algorithm
  (`"method": "paper"`);
- a run with transformers' cosine schedule, for comparison (`--skip_cosine` drops it);
- prints a table (final eval loss per schedule, where the refined schedule peaks) and writes
  `OUTPUT_DIR/refined_schedule.png`.

Expect the losses to be close: one seed, one peak LR and a few hundred steps say little about which schedule is
better, and refinement is not a free win (see the README's evidence section, which sweeps LRs and seeds). The point
is the workflow. With the default refinement, pass 2 follows pass 1's schedule unless the norms started steeply.
"""

from __future__ import annotations

import argparse
import json
import os
import sysconfig
import time

import torch

import hf_linear_decay
from hf_linear_decay.tools.curves import compare_table, plot_runs, read_run
from hf_linear_decay.tools.plot import plot_schedule
from byte_lm import ByteChunks, stdlib_bytes, tiny_gpt
from hf_linear_decay.tools.summary import summarize_schedule
from transformers import Trainer, TrainingArguments


def train_once(name, args_common, train_set, eval_set, block_size, seed, lr_scheduler_type, lr_scheduler_kwargs=None,
               callbacks=()):
    args = TrainingArguments(output_dir=os.path.join(args_common["output_dir"], name),
                             lr_scheduler_type=lr_scheduler_type, lr_scheduler_kwargs=lr_scheduler_kwargs or {},
                             **{k: v for k, v in args_common.items() if k != "output_dir"})
    trainer = Trainer(tiny_gpt(block_size, seed), args, train_dataset=train_set, eval_dataset=eval_set,
                      callbacks=list(callbacks))
    start = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_state()  # trainer_state.json in the run folder, for `hf-linear-decay compare`
    return {"name": name, "eval_loss": metrics["eval_loss"], "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--max_steps", type=int, default=500)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--train_bytes", type=int, default=4_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_blocks", type=int, default=256, help="held-out blocks to evaluate on")
    parser.add_argument("--skip_cosine", action="store_true", help="do not train the cosine-decay comparison run")
    options = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    train_bytes, eval_bytes = stdlib_bytes(options.train_bytes)
    train_set = ByteChunks(train_bytes, options.block_size)
    eval_set = ByteChunks(eval_bytes, options.block_size, limit=options.eval_blocks)
    print(f"data: {len(train_bytes):,} training bytes, {len(eval_set) * options.block_size:,} held-out bytes "
          f"(Python {sysconfig.get_python_version()} standard library)")
    common = dict(output_dir=options.output_dir, per_device_train_batch_size=options.batch_size,
                  per_device_eval_batch_size=32, max_steps=options.max_steps, learning_rate=options.learning_rate,
                  weight_decay=0.0, max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to="none",
                  use_cpu=True, seed=options.seed, data_seed=options.seed, disable_tqdm=True,
                  dataloader_num_workers=0, optim="adamw_torch")

    recorder = hf_linear_decay.RefinementCallback()
    results = [train_once("pass1_linear", common, train_set, eval_set, options.block_size, options.seed,
                          "linear_refined", callbacks=[recorder])]
    schedule_path = os.path.join(options.output_dir, "pass1_linear", hf_linear_decay.SCHEDULE_FILE_NAME)
    results.append(train_once("pass2_refined", common, train_set, eval_set, options.block_size, options.seed,
                              "linear_refined", {"schedule_file": schedule_path}))
    results.append(train_once("pass2_paper", common, train_set, eval_set, options.block_size, options.seed,
                              "linear_refined", {"schedule_file": schedule_path, "method": "paper"}))
    if not options.skip_cosine:
        results.append(train_once("cosine", common, train_set, eval_set, options.block_size, options.seed, "cosine"))

    schedule = hf_linear_decay.load_schedule_file(schedule_path)
    summary = summarize_schedule(schedule)
    plot_path = plot_schedule(schedule, os.path.join(options.output_dir, "refined_schedule.png"),
                              title=f"tiny GPT on stdlib bytes: {schedule.norm} norms, T={schedule.num_steps}")
    linear_loss = results[0]["eval_loss"]
    print()
    print("| schedule | final eval loss | vs linear | time (s) |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['name']} | {row['eval_loss']:.4f} | {100 * (row['eval_loss'] / linear_loss - 1):+.2f}% | "
              f"{row['seconds']:.0f} |")
    print()
    print(f"refined schedule ({schedule.method}, {schedule.norm} norms, power {schedule.power:g}, tau "
          f"{schedule.tau:g}): peak at step "
          f"{summary['peak_step']} of {schedule.num_steps} ({100 * summary['peak_fraction']:.1f}%), "
          f"{summary['warmup_steps']} steps to 90% of peak, area ratio to linear {summary['area_ratio_to_linear']:.2f}")
    print(f"schedule file: {schedule_path}")
    runs = [read_run(os.path.join(options.output_dir, row["name"])) for row in results]
    print()
    print(compare_table(runs))
    print(f"curves:        {plot_runs(runs, os.path.join(options.output_dir, 'compare.png'))} "
          f"(hf-linear-decay compare {' '.join(os.path.join(options.output_dir, row['name']) for row in results)})")
    print(f"plot:          {plot_path}")
    with open(os.path.join(options.output_dir, "results.json"), "w") as handle:
        json.dump({"results": results, "schedule_summary": {k: v for k, v in summary.items() if k != "metadata"}},
                  handle, indent=2)


if __name__ == "__main__":
    main()
