"""Step-time cost of RefinementCallback, as a ratio measured in one run (interleaved repeats, same machine state).

    python -m benchmarks.bench_callback_overhead                 # small GPT on CPU, 5 repeats of 40 steps each
    python -m benchmarks.bench_callback_overhead --repeats 9 --steps 100 --n_embd 256

Each repeat trains the same model twice, once without and once with the callback, in alternating order, and times
the optimizer steps from the Trainer's own `train_runtime`. Prints the median ratio with/without and its spread;
absolute times on a shared machine mean little, the ratio is the figure to read.
"""

import argparse
import statistics

import torch

import hf_linear_decay
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from recipes.byte_lm import ByteChunks, stdlib_bytes


def timed_run(with_callback, train_set, options, output_dir):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=128, n_embd=options.n_embd, n_layer=options.n_layer,
                                       n_head=4))
    args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=8, max_steps=options.steps,
                             learning_rate=1e-3, lr_scheduler_type="linear_refined", logging_steps=options.steps,
                             # linear_refined records pass 1 by itself: "without" must turn that off
                             lr_scheduler_kwargs={"record_norms": False},
                             report_to="none", use_cpu=not torch.cuda.is_available(), save_strategy="no",
                             disable_tqdm=True, seed=0, max_grad_norm=1.0)
    callbacks = [hf_linear_decay.RefinementCallback()] if with_callback else []
    trainer = Trainer(model, args, train_dataset=train_set, callbacks=callbacks)
    return trainer.train().metrics["train_runtime"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--n_embd", type=int, default=128)
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--output_dir", default="/tmp/hf_linear_decay_bench")
    options = parser.parse_args()
    train_bytes, _ = stdlib_bytes(1_000_000)
    train_set = ByteChunks(train_bytes, 128)
    timed_run(True, train_set, options, options.output_dir)  # warm-up: imports, allocator, thread pools
    ratios = []
    for repeat in range(options.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        times = {flag: timed_run(flag, train_set, options, options.output_dir) for flag in order}
        ratios.append(times[True] / times[False])
        print(f"repeat {repeat}: without {times[False]:.2f} s, with {times[True]:.2f} s, ratio {ratios[-1]:.3f}")
    print(f"step time with / without RefinementCallback: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {options.repeats} interleaved repeats of "
          f"{options.steps} steps")


if __name__ == "__main__":
    main()
