"""Data for the LLM pretraining recipe: documents, a byte-level BPE tokenizer, and packed, cached blocks.

- `read_documents`: a folder or file of text (or the Python standard library's sources, which every machine has)
  as a document-level train/validation split decided by a hash of each document's path;
- `train_tokenizer`: a byte-level BPE trained with `tokenizers`, saved as a `PreTrainedTokenizerFast` directory that
  `AutoTokenizer.from_pretrained` reloads;
- `packed_dataset`: tokenise with `Dataset.map(batched=True, num_proc=...)`, append EOS to every document, cut the
  concatenation into `block_size` blocks (the last one padded, its padding masked out of the loss, so no token is
  lost or repeated), and cache the result with `save_to_disk` under a fingerprint of (documents, tokenizer, block
  size). The main process prepares it (`main_process_first`); every rank and pass 2 load the same blocks.

`datasets` and `tokenizers` are imported by the functions that use them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig

__all__ = ["EOS_TOKEN", "fingerprint", "packed_dataset", "read_documents", "streamed_blocks", "train_tokenizer"]

EOS_TOKEN = "<|endoftext|>"
PACKING_VERSION = 1  # part of the cache key: bump when the packing changes
TEXT_SUFFIXES = (".txt", ".rst", ".md", ".py")


def _held_out(relative_path: str, every: int) -> bool:
    return int(hashlib.md5(relative_path.encode()).hexdigest(), 16) % every == 0


def read_documents(source: str | None = None, validation_every: int = 20, max_documents: int | None = None):
    """`{"train": [...], "validation": [...]}` lists of `{"text", "path"}` documents, split by path hash.

    `source` is a folder (its text files, recursively), a file (a `.jsonl` file gives one document per line from its
    "text" field; any other file is one document), or `None` for the standard library's `.py` files.
    """
    if source is None:
        root = sysconfig.get_paths()["stdlib"]
        paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
                       if "site-packages" not in p and "/test" not in p.replace(root, ""))
    elif os.path.isdir(source):
        root = source
        paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                       if p.endswith((*TEXT_SUFFIXES, ".jsonl")) and os.path.isfile(p))
    elif os.path.isfile(source):
        root, paths = os.path.dirname(os.path.abspath(source)), [os.path.abspath(source)]
    else:
        raise FileNotFoundError(f"corpus source {source!r} is neither a folder nor a file")
    if not paths:
        raise ValueError(f"corpus source {source!r}: no text files ({', '.join(TEXT_SUFFIXES)}) found")
    splits = {"train": [], "validation": []}
    for path in paths[: max_documents or None]:
        relative = os.path.relpath(path, root)
        with open(path, encoding="utf-8", errors="replace") as handle:
            if path.endswith(".jsonl"):
                documents = [(f"{relative}:{number}", json.loads(line)["text"]) for number, line in enumerate(handle)
                             if line.strip()]
            else:
                documents = [(relative, handle.read())]
        for name, text in documents:
            if text.strip():
                splits["validation" if _held_out(name, validation_every) else "train"].append({"text": text,
                                                                                               "path": name})
    return splits


def train_tokenizer(texts, vocab_size: int, output_dir: str):
    """Train a byte-level BPE on `texts`, save it as a `PreTrainedTokenizerFast` in `output_dir`, return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN,
                                      bos_token=EOS_TOKEN, unk_token=EOS_TOKEN)
    wrapped.save_pretrained(output_dir)
    return wrapped


def fingerprint(*parts) -> str:
    """A short stable digest of JSON-serialisable parts (file identities, tokenizer vocabulary, block size)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    return fingerprint(tokenizer.backend_tokenizer.to_str(), tokenizer.eos_token)


def _blocks(token_rows, block_size: int, pad_id: int):
    """Concatenate token lists and cut them into `block_size` blocks; the last one padded and masked."""
    buffer = []
    for row in token_rows:
        buffer.extend(row)
        while len(buffer) >= block_size:
            block, buffer = buffer[:block_size], buffer[block_size:]
            yield {"input_ids": block, "labels": list(block), "attention_mask": [1] * block_size}
    if buffer:
        padding = block_size - len(buffer)
        yield {"input_ids": buffer + [pad_id] * padding, "labels": buffer + [-100] * padding,
               "attention_mask": [1] * len(buffer) + [0] * padding}


def _generate_blocks(shards, block_size, pad_id):
    from datasets import load_from_disk

    tokenized = load_from_disk(shards)
    yield from _blocks((row["input_ids"] for row in tokenized), block_size, pad_id)


def packed_dataset(documents, tokenizer, block_size: int, cache_dir: str, num_proc: int | None = None):
    """Token blocks of `documents` (a list of `{"text": ...}`), cached under `cache_dir/<fingerprint>`.

    Returns `(dataset, path, reused)`: the `datasets.Dataset` of `input_ids` / `labels` / `attention_mask`, where it
    is cached, and whether an existing cache was loaded instead of building it.
    """
    from datasets import Dataset, load_from_disk

    key = fingerprint(PACKING_VERSION, [hashlib.sha256(d["text"].encode()).hexdigest() for d in documents],
                      tokenizer_fingerprint(tokenizer), block_size)
    path = os.path.join(cache_dir, key)
    if os.path.isfile(os.path.join(path, "dataset_info.json")):
        return load_from_disk(path), path, True
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token: documents are separated by EOS when packed; set one.")

    def tokenize(batch):
        return {"input_ids": [ids + [eos] for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]]}

    raw = Dataset.from_list([{"text": d["text"]} for d in documents])
    tokenized = raw.map(tokenize, batched=True, num_proc=num_proc, remove_columns=["text"], desc="tokenizing")
    staging = path + ".tokenized"
    tokenized.save_to_disk(staging)
    blocks = Dataset.from_generator(_generate_blocks, gen_kwargs={"shards": staging, "block_size": block_size,
                                                                  "pad_id": eos}, cache_dir=os.path.join(cache_dir,
                                                                                                         ".hf"))
    blocks.save_to_disk(path)
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    return load_from_disk(path), path, False


def streamed_blocks(stream, tokenizer, block_size: int, text_column: str = "text"):
    """The same blocks as `packed_dataset`, produced on the fly from a streaming dataset (nothing cached)."""
    from datasets import IterableDataset

    def generate(stream):
        eos = tokenizer.eos_token_id
        rows = (tokenizer(row[text_column], add_special_tokens=False)["input_ids"] + [eos] for row in stream)
        yield from _blocks(rows, block_size, eos)

    return IterableDataset.from_generator(generate, gen_kwargs={"stream": stream})
