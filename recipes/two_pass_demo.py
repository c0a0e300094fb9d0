"""Two-pass demo on CPU: pass 1 records gradient norms under linear decay, pass 2 follows the refined schedule.

    python recipes/two_pass_demo.py --output_dir demo_output           # about 5 minutes on 2 CPU cores
    python recipes/two_pass_demo.py --max_steps 1200 --output_dir demo_long

LLM pretraining as our users run it, small enough for a laptop, no downloads:
- data: the Python standard library's own sources (every machine with Python has them), whole files held out for
  evaluation; a byte-level BPE tokenizer of 2,048 tokens trained on the training split; EOS-packed blocks;
- model: the LLM recipe's `tiny` Llama (RMSNorm, SwiGLU, RoPE, tied embeddings), AdamW β=(0.9, 0.95), weight decay
  0.1, clipping at 1.0, a 5% warm-up, eval loss every 10% of the run;
- pass 1: `lr_scheduler_type="linear_refined"` and nothing else: linear decay, norms recorded by themselves into
  `OUTPUT_DIR/pass1_linear/refined_schedule.safetensors` (method `auto`, the default);
- pass 2: the same model, data order and peak LR with `lr_scheduler_kwargs={"schedule_file": ...}`, once with the
  file's schedule and once refined again with the paper's exact algorithm (`"method": "paper"`);
- one run that adapts its own schedule (`lr_scheduler_kwargs={"adapt": true}`): linear decay that switches back to
  the peak and a cooldown when its own norms show the LM regime;
- for comparison: cosine with warm-up, and WSD (warm-up, stable, 1-sqrt cooldown over the last 20%); `--skip_baselines`
  drops them.

It prints a table of final eval losses against pass 1, what the default did and why, `hf-linear-decay compare` of the
runs, and writes `OUTPUT_DIR/refined_schedule.png` and `OUTPUT_DIR/compare.png`. One seed and one peak LR: the swept,
seeded comparison that chose the default is the README's evidence (`python -m benchmarks.lm_study`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from lm_data import packed_dataset, read_documents, train_tokenizer
from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer,
                          TrainingArguments, default_data_collator, set_seed)

import hf_linear_decay
from hf_linear_decay.core.adaptive import describe_adaptive
from hf_linear_decay.core.describe import describe_schedule
from hf_linear_decay.tools.curves import compare_table, plot_runs, read_run
from hf_linear_decay.tools.plot import plot_schedule

#: The recipe's `tiny` preset (recipes/pretrain_llm.py): hidden, layers, heads, intermediate.
TINY = (64, 2, 4, 172)


def corpus(cache: str, vocab_size: int, block_size: int, eval_blocks: int, max_documents: int | None = None):
    documents = read_documents(None, max_documents=max_documents)
    tokenizer_dir = os.path.join(cache, f"tokenizer-bpe{vocab_size}")
    if not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
        train_tokenizer((d["text"] for d in documents["train"]), vocab_size, tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    train, _, _ = packed_dataset(documents["train"], tokenizer, block_size, os.path.join(cache, "packed"))
    held_out, _, _ = packed_dataset(documents["validation"], tokenizer, block_size, os.path.join(cache, "packed"))
    return tokenizer, train, held_out.select(range(min(len(held_out), eval_blocks)))


def tiny_llama(tokenizer, block_size: int, seed: int):
    hidden, layers, heads, intermediate = TINY
    set_seed(seed)  # both passes start from the same weights
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=intermediate,
                         max_position_embeddings=block_size, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")


def train_once(name, options, data, lr_scheduler_type, lr_scheduler_kwargs=None, warmup=0.05):
    tokenizer, train_set, eval_set = data
    args = TrainingArguments(
        output_dir=os.path.join(options.output_dir, name), lr_scheduler_type=lr_scheduler_type,
        lr_scheduler_kwargs=lr_scheduler_kwargs or {}, warmup_steps=round(warmup * options.max_steps),
        per_device_train_batch_size=options.batch_size, per_device_eval_batch_size=32, max_steps=options.max_steps,
        learning_rate=options.learning_rate, weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10,
        eval_strategy="steps", eval_steps=max(1, options.max_steps // 10), save_strategy="no", report_to="none",
        use_cpu=True, seed=options.seed, data_seed=options.seed, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(tiny_llama(tokenizer, options.block_size, options.seed), args, train_dataset=train_set,
                      eval_dataset=eval_set, data_collator=default_data_collator)
    trainer.remove_callback(PrinterCallback)  # one line per run below; the logs are in trainer_state.json
    start = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_state()  # trainer_state.json in the run folder, for `hf-linear-decay compare`
    seconds = time.perf_counter() - start
    print(f"{name}: {options.max_steps} steps, final eval loss {metrics['eval_loss']:.4f} ({seconds:.0f} s)",
          flush=True)
    return {"name": name, "eval_loss": metrics["eval_loss"], "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--max_steps", type=int, default=600)
    parser.add_argument("--learning_rate", type=float, default=4e-3, help="linear decay's best on the study's grid")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_blocks", type=int, default=256, help="held-out blocks to evaluate on")
    parser.add_argument("--skip_baselines", action="store_true", help="do not train the cosine and WSD runs")
    parser.add_argument("--max_documents", type=int, default=None, help="use only the first N source files")
    parser.add_argument("--cache_dir", default=os.path.join(os.path.expanduser("~"), ".cache", "hf_linear_decay",
                                                             "demo"), help="tokenizer and packed blocks")
    options = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    import datasets

    datasets.disable_progress_bars()  # the tokenising and packing of the first run: one line below says what it made
    data = corpus(options.cache_dir, options.vocab_size, options.block_size, options.eval_blocks, options.max_documents)
    print(f"data: {len(data[1]):,} training blocks of {options.block_size} tokens (BPE {options.vocab_size}, Python "
          f"standard library), {len(data[2]):,} held-out blocks; model: tiny Llama")

    results = [train_once("pass1_linear", options, data, "linear_refined")]  # the flag alone records pass 1
    schedule_path = os.path.join(options.output_dir, "pass1_linear", hf_linear_decay.SCHEDULE_FILE_NAME)
    results.append(train_once("adaptive", options, data, "linear_refined", {"adapt": True}))  # one run, no pass 1
    results.append(train_once("pass2_refined", options, data, "linear_refined", {"schedule_file": schedule_path},
                              warmup=0))
    results.append(train_once("pass2_paper", options, data, "linear_refined",
                              {"schedule_file": schedule_path, "method": "paper"}, warmup=0))
    if not options.skip_baselines:
        results.append(train_once("cosine", options, data, "cosine"))
        results.append(train_once("wsd", options, data, "warmup_stable_decay",
                                  {"num_decay_steps": round(0.2 * options.max_steps), "decay_type": "1-sqrt"}))

    schedule = hf_linear_decay.load_schedule_file(schedule_path)
    default = hf_linear_decay.build_schedule(schedule.record, schedule.settings)  # again, for its explanation
    plot_path = plot_schedule(schedule, os.path.join(options.output_dir, "refined_schedule.png"),
                              title=f"tiny Llama on the Python sources: {schedule.norm} norms, T={schedule.num_steps}")
    linear_loss = results[0]["eval_loss"]
    print()
    print("| run | final eval loss | vs pass 1 | time (s) |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['name']} | {row['eval_loss']:.4f} | {100 * (row['eval_loss'] / linear_loss - 1):+.2f}% | "
              f"{row['seconds']:.0f} |")
    print()
    print(f"pass 2's schedule: {describe_schedule(schedule)}")
    print(f"why: method {default.method}: {default.explanation}")
    adaptive = hf_linear_decay.load_schedule_file(os.path.join(options.output_dir, "adaptive",
                                                                hf_linear_decay.SCHEDULE_FILE_NAME))
    print(f"the adaptive run: {describe_adaptive(adaptive.adaptive)}")
    print(f"schedule file: {schedule_path}")
    runs = [read_run(os.path.join(options.output_dir, row["name"])) for row in results]
    print()
    print(compare_table(runs))
    print(f"curves:        {plot_runs(runs, os.path.join(options.output_dir, 'compare.png'))} "
          f"(hf-linear-decay compare {' '.join(os.path.join(options.output_dir, row['name']) for row in results)})")
    print(f"plot:          {plot_path}")
    with open(os.path.join(options.output_dir, "results.json"), "w") as handle:
        json.dump({"results": results, "schedule": describe_schedule(schedule), "why": default.explanation,
                   "adaptive": adaptive.adaptive}, handle, indent=2)


if __name__ == "__main__":
    main()
