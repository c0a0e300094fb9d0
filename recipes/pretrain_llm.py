"""Pretrain a Llama-style LM with the Trainer and `lr_scheduler_type linear_refined`: pass 1 records, pass 2 refines.

Commands for every setup (one GPU, N GPUs, FSDP2, DeepSpeed, two nodes, CPU) are in recipes/README.md. The CPU
smoke run, 2 processes, tiny model, no downloads (the corpus falls back to the Python standard library's sources):

    accelerate launch --config_file recipes/configs/cpu_2proc.yaml -m hf_linear_decay.run recipes/pretrain_llm.py \\
        --output_dir runs/pass1 --model_size tiny --max_steps 40 --use_cpu true --lr_scheduler_type linear_refined

Data: `--data_dir` (train.jsonl/validation.jsonl from recipes/prepare_corpus.py), `--train_file` /
`--validation_file` (text, json/jsonl or parquet, by extension), or `--dataset_name` (a Hub name or local path for
`datasets.load_dataset`); `--streaming` for corpora larger than RAM or disk. Tokenizer: `--tokenizer_name_or_path`
(any tokenizer directory), else a byte-level BPE of `--vocab_size` trained on the training split and saved next to
the data. Documents are tokenised with `Dataset.map(num_proc=--preprocessing_num_workers)`, separated by EOS,
packed into `--block_size` blocks and cached (`save_to_disk`, keyed by documents, tokenizer and block size); the
main process prepares them once, every rank and pass 2 load the same blocks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import hf_linear_decay  # noqa: F401  (registers linear_refined; the runner does it too)
from gloo_exit import leave_process_group
from lm_data import packed_dataset, read_documents, train_tokenizer
from transformers import (AutoTokenizer, HfArgumentParser, LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments,
                          default_data_collator, set_seed)

# name -> (hidden, layers, heads, intermediate): SwiGLU MLP, RMSNorm, RoPE, as Llama; tied embeddings. Parameters
# at the default 8k vocabulary: tiny 0.6M, small 120M, medium 335M.
MODEL_SIZES = {"tiny": (64, 2, 4, 172), "small": (768, 12, 12, 3072), "medium": (1024, 24, 16, 3072)}


@dataclass
class DataArguments:
    data_dir: str | None = field(default=None, metadata={"help": "folder with train.jsonl and validation.jsonl"})
    train_file: str | None = field(default=None, metadata={"help": "a .txt, .json/.jsonl or .parquet file"})
    validation_file: str | None = field(default=None, metadata={"help": "as --train_file"})
    dataset_name: str | None = field(default=None, metadata={"help": "datasets.load_dataset name or path (Hub)"})
    text_column: str = field(default="text", metadata={"help": "column holding the documents"})
    streaming: bool = field(default=False, metadata={"help": "stream the data (no packing cache)"})
    block_size: int = field(default=256, metadata={"help": "tokens per training sequence"})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "processes for tokenisation"})
    max_eval_blocks: int = field(default=256, metadata={"help": "evaluate on at most this many blocks"})


@dataclass
class ModelArguments:
    model_size: str = field(default="tiny", metadata={"help": "tiny (CPU smoke), small (~125M), medium (~350M)",
                                                       "choices": list(MODEL_SIZES)})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "a tokenizer directory"})
    vocab_size: int = field(default=8192, metadata={"help": "BPE vocabulary when training a tokenizer"})


def _data_home(data: DataArguments) -> str:
    for path in (data.data_dir, data.train_file):
        if path:
            return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    return os.path.join(os.path.expanduser("~"), ".cache", "hf_linear_decay", "stdlib_corpus")


def load_splits(data: DataArguments):
    """`(train, validation)` as in-memory document lists, or streaming `IterableDataset`s with `--streaming`."""
    from datasets import load_dataset

    if data.data_dir or data.train_file:
        files = ({"train": os.path.join(data.data_dir, "train.jsonl"),
                  "validation": os.path.join(data.data_dir, "validation.jsonl")} if data.data_dir else
                 {"train": data.train_file, **({"validation": data.validation_file} if data.validation_file else {})})
        extension = os.path.splitext(files["train"])[1].lstrip(".")
        builder = {"txt": "text", "jsonl": "json"}.get(extension, extension)
        splits = load_dataset(builder, data_files=files, streaming=data.streaming)
    elif data.dataset_name:
        splits = load_dataset(data.dataset_name, streaming=data.streaming)
    else:
        documents = read_documents(None)
        return documents["train"], documents["validation"]
    if data.streaming:
        return splits["train"], splits["validation"]
    return ([{"text": text} for text in splits[name][data.text_column]] for name in ("train", "validation"))


def main():
    parser = HfArgumentParser((TrainingArguments, DataArguments, ModelArguments))
    args, data, model_args = parser.parse_args_into_dataclasses()
    set_seed(args.seed)  # before the model is built: both passes start from the same weights
    if args.ddp_find_unused_parameters is None:
        args.ddp_find_unused_parameters = False  # every parameter gets a gradient: skip DDP's extra graph traversal
    train_docs, eval_docs = load_splits(data)
    home = _data_home(data)
    with args.main_process_first(desc="tokenizer"):
        tokenizer_dir = model_args.tokenizer_name_or_path or os.path.join(home, f"tokenizer-bpe{model_args.vocab_size}")
        if not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
            if data.streaming:
                raise SystemExit("--streaming needs --tokenizer_name_or_path (a tokenizer is trained on a finite "
                                 "split)")
            train_tokenizer((d["text"] for d in train_docs), model_args.vocab_size, tokenizer_dir)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if data.streaming:
        from lm_data import streamed_blocks

        train_set = streamed_blocks(train_docs, tokenizer, data.block_size, data.text_column)
        eval_set = streamed_blocks(eval_docs, tokenizer, data.block_size, data.text_column).take(data.max_eval_blocks)
    else:
        with args.main_process_first(desc="packing"):
            cache = os.path.join(home, "packed")
            train_set, train_path, reused = packed_dataset(train_docs, tokenizer, data.block_size, cache,
                                                           data.preprocessing_num_workers)
            eval_set, _, _ = packed_dataset(eval_docs, tokenizer, data.block_size, cache,
                                            data.preprocessing_num_workers)
        eval_set = eval_set.select(range(min(len(eval_set), data.max_eval_blocks)))
        print(f"[rank {args.process_index}] training blocks: {len(train_set):,} from {train_path} "
              f"({'reused' if reused else 'built'})", flush=True)
    hidden, layers, heads, intermediate = MODEL_SIZES[model_args.model_size]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=intermediate,
                         max_position_embeddings=data.block_size, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    tokens_per_step = (args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
                       * data.block_size)
    if args.process_index == 0:
        print(f"model: Llama-style {model_args.model_size}, {model.num_parameters():,} parameters; "
              f"{tokens_per_step:,} tokens per optimizer step", flush=True)
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
                      data_collator=default_data_collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    trainer.save_state()  # trainer_state.json in output_dir, for `hf-linear-decay compare`
    if trainer.is_world_process_zero():
        loss = metrics["eval_loss"]
        print(f"eval loss {loss:.4f}, perplexity {math.exp(min(loss, 50)):.2f}, "
              f"{tokens_per_step * trainer.state.global_step / seconds:,.0f} tokens/s", flush=True)
    leave_process_group()


if __name__ == "__main__":
    main()
