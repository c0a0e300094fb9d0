"""Shared recipe helpers: the offline stdlib corpus, byte chunks, the tiny GPT."""

import numpy as np
import pytest
import torch

from recipes.byte_lm import ByteChunks, stdlib_bytes, text_bytes, tiny_gpt


def test_stdlib_corpus_is_deterministic_and_capped():
    train, held_out = stdlib_bytes(200_000)
    again, _ = stdlib_bytes(200_000)
    assert train.dtype == np.uint8 and train.size == 200_000 and held_out.size > 0
    np.testing.assert_array_equal(train, again)


def test_text_folder_holds_out_whole_files(tmp_path):
    for index in range(200):
        (tmp_path / f"doc{index}.txt").write_text(f"document {index} " * 10)
    train, held_out = text_bytes(str(tmp_path), 10**9, held_out_every=10)
    train_text, held_text = train.tobytes().decode(), held_out.tobytes().decode()
    held_docs = {word for word in held_text.split() if word.isdigit()}
    assert held_docs and not any(f"document {doc} " in train_text for doc in held_docs)


def test_byte_chunks_and_tiny_gpt():
    chunks = ByteChunks(np.arange(100, dtype=np.uint8), block_size=16, limit=4)
    assert len(chunks) == 4 and chunks[1]["input_ids"].tolist() == list(range(16, 32))
    model = tiny_gpt(16, seed=0, n_embd=32, n_layer=1, n_head=2)
    loss = model(input_ids=chunks[0]["input_ids"][None], labels=chunks[0]["labels"][None]).loss
    assert torch.isfinite(loss)
    same = tiny_gpt(16, seed=0, n_embd=32, n_layer=1, n_head=2)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))
    with pytest.raises(ValueError, match="`n_embd` \\(30\\) must be a multiple of `n_head` \\(4\\)"):
        tiny_gpt(16, seed=0, n_embd=30, n_head=4)
