"""Offline data and small models shared by the recipes, the benchmarks and the tests (no downloads).

- `stdlib_bytes`: the Python standard library's own source files as bytes (text every machine with Python has),
  split into train and held-out text by whole files;
- `text_bytes`: the same from a file or a folder of text files;
- `ByteChunks`: non-overlapping fixed-length byte windows as a `torch` dataset for causal LM training;
- `tiny_gpt`: a small byte-level GPT-2 built from a config, seeded.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sysconfig

import numpy as np
import torch

__all__ = ["ByteChunks", "stdlib_bytes", "text_bytes", "tiny_gpt"]


def _held_out(relative_path: str, every: int) -> bool:
    # A hash of the path, not its position, picks the held-out files: the split does not move when files are added.
    return int(hashlib.md5(relative_path.encode()).hexdigest(), 16) % every == 0


def stdlib_bytes(max_bytes: int, held_out_every: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Train/held-out byte arrays from the standard library's `.py` files (tests excluded), split by file."""
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(path for path in glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))
                   if "site-packages" not in path and "/test" not in path.replace(root, ""))
    if not files:
        raise SystemExit(f"no Python source files found under {root}; is the standard library installed?")
    train, held_out = [], []
    train_size = held_out_size = 0
    for path in files:
        with open(path, "rb") as handle:
            data = handle.read()
        if _held_out(os.path.relpath(path, root), held_out_every):
            if held_out_size < max_bytes // 10:
                held_out.append(data)
                held_out_size += len(data)
        elif train_size < max_bytes:
            train.append(data)
            train_size += len(data)
    return (np.frombuffer(b"\n".join(train), dtype=np.uint8)[:max_bytes].copy(),
            np.frombuffer(b"\n".join(held_out), dtype=np.uint8).copy())


def text_bytes(path: str, max_bytes: int, held_out_every: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Train/held-out bytes from a file (last 2% held out) or a folder (whole files held out by name hash)."""
    if os.path.isfile(path):
        data = np.fromfile(path, dtype=np.uint8)[: max_bytes + max_bytes // 50]
        cut = len(data) - len(data) // 50
        return data[:cut].copy(), data[cut:].copy()
    files = sorted(name for ext in ("txt", "rst", "md", "py")
                   for name in glob.glob(os.path.join(path, "**", f"*.{ext}"), recursive=True))
    if not files:
        raise SystemExit(f"--text_path {path!r}: no .txt/.rst/.md/.py files found")
    train, held_out = [], []
    for name in files:
        with open(name, "rb") as handle:
            (held_out if _held_out(os.path.relpath(name, path), held_out_every) else train).append(handle.read())
    return (np.frombuffer(b"\n".join(train), dtype=np.uint8)[:max_bytes].copy(),
            np.frombuffer(b"\n".join(held_out), dtype=np.uint8).copy())


class ByteChunks(torch.utils.data.Dataset):
    """Non-overlapping `block_size` byte windows; labels are the inputs (the model shifts them itself)."""

    def __init__(self, data: np.ndarray, block_size: int, limit: int | None = None):
        count = len(data) // block_size
        self.blocks = torch.from_numpy(data[: count * block_size].astype(np.int64)).view(count, block_size)
        if limit is not None:
            self.blocks = self.blocks[:limit]

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, index):
        return {"input_ids": self.blocks[index], "labels": self.blocks[index]}


def tiny_gpt(block_size: int, seed: int, n_embd: int = 96, n_layer: int = 3, n_head: int = 4):
    """A byte-level GPT-2 (vocabulary 256) without dropout, initialised from `seed`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if n_embd % n_head:
        raise ValueError(f"`n_embd` ({n_embd}) must be a multiple of `n_head` ({n_head}).")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=256, n_positions=block_size, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)
