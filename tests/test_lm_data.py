"""The LLM recipe's data: documents split by path, BPE tokenizer round trip, packing with no token lost, cache keys."""

import numpy as np
import pytest

pytest.importorskip("datasets")

from recipes.lm_data import EOS_TOKEN, packed_dataset, read_documents, streamed_blocks, train_tokenizer  # noqa


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = ["learning", "rate", "schedule", "linear", "decay", "gradient", "norm", "refined", "warm-up", "the"]
    for index in range(60):
        (folder / f"doc{index:02d}.txt").write_text(" ".join(rng.choice(words, size=rng.integers(5, 80))) + "\n")
    return folder


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory):
    documents = read_documents(str(corpus))["train"]
    return train_tokenizer((d["text"] for d in documents), 300, str(tmp_path_factory.mktemp("tok")))


def test_documents_split_by_path_and_deterministically(corpus):
    first, again = read_documents(str(corpus), validation_every=5), read_documents(str(corpus), validation_every=5)
    assert first == again and first["validation"] and first["train"]
    train_paths = {d["path"] for d in first["train"]}
    assert not train_paths & {d["path"] for d in first["validation"]}
    assert len(train_paths) + len(first["validation"]) == 60
    assert read_documents(None, max_documents=5)["train"]  # the standard library fallback


def test_tokenizer_round_trip_through_from_pretrained(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "the refined learning rate schedule\nwith linear decay"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    assert reloaded.eos_token == EOS_TOKEN and len(reloaded) == 300


def test_blocks_concatenate_to_the_documents_with_separators(corpus, tokenizer, tmp_path):
    documents = read_documents(str(corpus))["train"]
    blocks, path, reused = packed_dataset(documents, tokenizer, 32, str(tmp_path), num_proc=2)
    assert not reused and all(len(ids) == 32 for ids in blocks["input_ids"])
    expected = []
    for document in documents:  # in order, each followed by EOS
        expected += tokenizer(document["text"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    labels = [token for row in blocks["labels"] for token in row]
    assert [token for token in labels if token != -100] == expected  # no token lost, none repeated
    assert labels[-1] == -100 or len(expected) % 32 == 0  # only the last block is padded, and masked
    masks = np.array(blocks["attention_mask"])
    assert masks[:-1].all() and masks[-1].sum() == len(expected) - 32 * (len(blocks) - 1)


def test_the_cache_is_reused_and_keyed_by_tokenizer_and_block_size(corpus, tokenizer, tmp_path):
    documents = read_documents(str(corpus))["train"]
    _, path, reused = packed_dataset(documents, tokenizer, 32, str(tmp_path))
    again, path_again, reused_again = packed_dataset(documents, tokenizer, 32, str(tmp_path))
    assert not reused and reused_again and path == path_again and len(again) > 0
    _, other_block, reused_block = packed_dataset(documents, tokenizer, 48, str(tmp_path))
    assert other_block != path and not reused_block
    other_tokenizer = train_tokenizer((d["text"] for d in documents), 280, str(tmp_path / "tok280"))
    _, other_tok, reused_tok = packed_dataset(documents, other_tokenizer, 32, str(tmp_path))
    assert other_tok not in (path, other_block) and not reused_tok
    _, fewer, _ = packed_dataset(documents[:-1], tokenizer, 32, str(tmp_path))
    assert fewer not in (path, other_block, other_tok)  # the documents are part of the key too


def test_streaming_gives_the_same_blocks(corpus, tokenizer, tmp_path):
    from datasets import Dataset

    documents = read_documents(str(corpus))["train"]
    packed, _, _ = packed_dataset(documents, tokenizer, 32, str(tmp_path))
    stream = Dataset.from_list([{"text": d["text"]} for d in documents]).to_iterable_dataset()
    streamed = list(streamed_blocks(stream, tokenizer, 32))
    assert [row["input_ids"] for row in streamed] == packed["input_ids"]
    assert [row["labels"] for row in streamed] == packed["labels"]
