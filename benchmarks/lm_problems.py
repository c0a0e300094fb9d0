"""The LM study's problems: corpora (pinned), models, budgets, the baselines and the reference.

`lm_study` runs them, `lm_report` and `rule_signals` read their results; all three import this module and none of
them imports another's runner (no import circle).

Corpora are pinned so that a fresh machine reproduces the committed runs: `python` is the standard library of the
interpreter the study ran on (Python 3.11.7), `docs` the documentation of four PyPI source distributions at exact
versions (`recipes/prepare_corpus.py`). Each prepared corpus (its documents, then its BPE token blocks) is checked
against a pinned sha256 before any run; a mismatch stops the study with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA_DIR = os.path.join(HERE, "data", "lm_study")
DOCS_DIR = os.path.join(HERE, "data", "docs")

#: name -> corpus, model (hidden, layers, heads, intermediate), BPE vocabulary, steps, batch x block, eval blocks,
#: the first LR grid's centre (None: the previous problem's best), the device; then what the study runs there:
#: `baselines` (default: all of BASELINES), `methods` (two-pass refinements; default: all of lm_candidates'),
#: `ideas` (the other refinements), `short_pass_one` (auto from a shorter pass 1), `grid_seeds` (the seeds that run
#: the LR grid; default all) and `finalists` (the grid's best LRs that every seed runs; default 1).
PROBLEMS = {
    "python_tiny": dict(corpus="python", model=(64, 2, 4, 172), vocab=2048, steps=600, batch=16, block=128,
                        eval_blocks=256, center=4e-3, device="cpu", ideas=True, short_pass_one=True),
    # Held out from choosing the default: another domain (English reST), the same budget, then 2x and ~4x it
    "docs_tiny": dict(corpus="docs", model=(64, 2, 4, 172), vocab=2048, steps=600, batch=16, block=128,
                      eval_blocks=256, center=4e-3, device="cpu"),
    "docs_tiny_long": dict(corpus="docs", model=(64, 2, 4, 172), vocab=2048, steps=1200, batch=16, block=128,
                           eval_blocks=256, center=4e-3, device="cpu"),
    # >= 20 tokens per parameter, every parameter counted (embeddings included): 2250 x 16 x 128 / 230,208 = 20.0.
    # Its centre stays None (the previous problem's best, 4e-3 when run alone or after docs_tiny_long): `center` is
    # part of each run's key, and 4e-3 written here would orphan its committed runs
    "docs_20tpp": dict(corpus="docs", model=(64, 2, 4, 172), vocab=2048, steps=2250, batch=16, block=128,
                       eval_blocks=256, center=None, device="cpu"),
    "gpu_d512": dict(corpus="docs", model=(512, 8, 8, 1376), vocab=8192, steps=4000, batch=32, block=512,
                     eval_blocks=512, center=1e-3, device="cuda"),
    "smoke": dict(corpus="python_small", model=(32, 1, 2, 64), vocab=300, steps=40, batch=4, block=32, eval_blocks=8,
                  center=3e-3, device="cpu", ideas=True, short_pass_one=True),
}
CPU_PROBLEMS = ("python_tiny", "docs_tiny", "docs_tiny_long", "docs_20tpp")
#: The LM problem whose pass 1 set the default's thresholds; every other problem is a held-out check of the rule.
CALIBRATION_PROBLEMS = ("python_tiny",)
WARMUP = 0.05
SEEDS = (0, 1, 2)

#: The adaptive run's options besides `start` and `switch` (the package's defaults, written out).
ADAPT = {"start": "linear", "rise": 1.3, "decide_by": 0.3, "fraction": 0.2, "shape": "1-sqrt"}
#: Baselines: name -> (lr_scheduler_type, warm-up fraction, lr_scheduler_kwargs with fractions of T as `*_frac`,
#: and, for another optimizer than AdamW, its Trainer `optim` and where its LR grid starts, as a factor of the
#: reference's best LR).
BASELINES = {
    "linear_warmup": ("linear_refined", WARMUP, {}),
    "cosine_warmup": ("cosine", WARMUP, {}),
    "cosine10_warmup": ("cosine_with_min_lr", WARMUP, {"min_lr_rate": 0.1}),
    "wsd_linear_10": ("warmup_stable_decay", WARMUP, {"decay_frac": 0.1, "decay_type": "linear"}),
    "wsd_linear_20": ("warmup_stable_decay", WARMUP, {"decay_frac": 0.2, "decay_type": "linear"}),
    "wsd_sqrt_10": ("warmup_stable_decay", WARMUP, {"decay_frac": 0.1, "decay_type": "1-sqrt"}),
    "wsd_sqrt_20": ("warmup_stable_decay", WARMUP, {"decay_frac": 0.2, "decay_type": "1-sqrt"}),
    # A longer cooldown, on the two longer problems: whether the cooldown should lengthen with the budget (Bergsma et
    # al. 2025 find decay to zero gaining as tokens per parameter grow; the adaptive run's 20% was set at 5.3)
    "wsd_sqrt_40": ("warmup_stable_decay", WARMUP, {"decay_frac": 0.4, "decay_type": "1-sqrt"}),
    # Schedule-free AdamW (Defazio et al. 2024): a constant scheduler, the warm-up inside the optimizer (transformers
    # passes `warmup_steps` to it), the same betas and weight decay; it usually wants a higher LR than AdamW.
    "schedule_free": ("constant", WARMUP, {}, "schedule_free_adamw", 2.0),
    # One run that adapts its own schedule (`lr_scheduler_kwargs={"adapt": true}`, hf_linear_decay.core.adaptive),
    # every option written out (a run's key is its spec: a later change of a default must not reuse these runs): linear
    # decay that switches back to the peak and a 1-sqrt cooldown over the last 20% where the norm rises 1.3x, or a
    # stable phase that cools down there or turns to linear decay at the deadline (30%).
    "adapt": ("linear_refined", WARMUP, {"adapt": True, "adapt_options": dict(ADAPT, start="linear", switch="peak")}),
    "adapt_stable": ("linear_refined", WARMUP, {"adapt": True, "adapt_options": dict(ADAPT, start="stable")}),
    # The first rule (rise 1.25) with both switches, on docs_tiny only: what chose "peak" and 1.3.
    "adapt_hold_r125": ("linear_refined", WARMUP, {"adapt": True, "adapt_options": dict(ADAPT, switch="hold",
                                                                                         rise=1.25)}),
    "adapt_peak_r125": ("linear_refined", WARMUP, {"adapt": True, "adapt_options": dict(ADAPT, switch="peak",
                                                                                         rise=1.25)}),
}
REFERENCE = "linear_warmup"
#: The WSD runs of a problem: its best is "the best of WSD" in the targets. Every problem runs the first four; the
#: 40% cooldown runs only on the longer problems.
LONGER_PROBLEMS_ONLY = ("wsd_sqrt_40",)
WSD_NAMES = ("wsd_linear_10", "wsd_linear_20", "wsd_sqrt_10", "wsd_sqrt_20", *LONGER_PROBLEMS_ONLY)
#: The one-run adaptive schedules (this package's `adapt`): both starts.
ADAPTIVE_NAMES = ("adapt", "adapt_stable")
#: The baselines the new problems run (cosine to 10% and `guarded`, which equals pass 1, only on python_tiny).
CORE_BASELINES = ("linear_warmup", "cosine_warmup", *(name for name in WSD_NAMES if name not in LONGER_PROBLEMS_ONLY),
                  "schedule_free", *ADAPTIVE_NAMES)
PROBLEMS["docs_tiny"]["baselines"] = (*CORE_BASELINES, "adapt_hold_r125", "adapt_peak_r125")
# The >= 20 tokens-per-parameter problem on the 2-core budget (each run ~4 minutes): the grid runs on seed 0
# (extended at an edge), all three seeds run at its two best LRs and the better 3-seed mean is the schedule's LR;
# the schedules that decide the targets first (linear decay, the best WSD of docs_tiny and the usual 1-sqrt one,
# schedule-free AdamW, both adaptive starts), then cosine and the 10% and 40% WSDs; and `auto`.
PROBLEMS["docs_20tpp"]["baselines"] = ("linear_warmup", "adapt", "wsd_sqrt_20", "wsd_linear_20", "schedule_free",
                                       "adapt_stable", "cosine_warmup", "wsd_linear_10", "wsd_sqrt_10", "wsd_sqrt_40")
PROBLEMS["docs_20tpp"]["grid_seeds"] = 1
PROBLEMS["docs_20tpp"]["finalists"] = 2
# The middle of the budget axis (10.7 tokens per parameter), on the 2-core budget and as docs_20tpp chooses LRs:
# the schedules that decide the targets first (the best WSD of docs_tiny and docs_20tpp), then the others.
PROBLEMS["docs_tiny_long"]["baselines"] = ("linear_warmup", "adapt", "wsd_linear_20", "schedule_free", "adapt_stable",
                                           "wsd_sqrt_20", "cosine_warmup", "wsd_linear_10", "wsd_sqrt_10",
                                           "wsd_sqrt_40")
PROBLEMS["docs_tiny_long"]["grid_seeds"] = 1
PROBLEMS["docs_tiny_long"]["finalists"] = 2
PROBLEMS["python_tiny"]["baselines"] = tuple(name for name in BASELINES
                                             if not name.endswith("_r125") and name not in LONGER_PROBLEMS_ONLY)
PROBLEMS["docs_tiny"]["methods"] = ("auto", "paper")
for _name in ("docs_tiny_long", "docs_20tpp"):
    PROBLEMS[_name]["methods"] = ("auto",)

#: sha256 of each study corpus as prepared here: its documents (path and text, in order), then its token blocks for
#: a (vocabulary, block) pair. `python` is Python 3.11.7's standard library: another interpreter has other sources.
CORPUS_DIGESTS = {
    "python": {"documents": "5cf8d65665f841d64457993324e29775de4a51d938fe3ab78f6a01bb00f49083",
               ("blocks", 2048, 128): "5f07e6e07729c667724e1a8e6888ad641324868db61a334aea213b80005df4e2"},
    "docs": {"documents": "82ca8ae51ba50db7453a6a7bb4d7d0011fe3808aa0496dba47ac0696ead642c7",
             ("blocks", 2048, 128): "61641039fe83e33a15497e31c33a3aea8921626254e2750fe0e112dec47d7ced"},
}


def corpus_documents(corpus: str) -> dict:
    """`{"train": [...], "validation": [...]}` documents of a corpus (see the module docstring)."""
    from recipes.lm_data import read_documents

    if corpus in ("python", "python_small"):  # the standard library's sources (the small one: its first 80 files)
        return read_documents(None, max_documents=80 if corpus == "python_small" else None)
    if not os.path.isfile(os.path.join(DOCS_DIR, "train.jsonl")):
        raise SystemExit(f"the docs corpus is missing: python recipes/prepare_corpus.py --source docs "
                         f"--out {os.path.relpath(DOCS_DIR, ROOT)}")
    splits = {}
    for split in ("train", "validation"):
        with open(os.path.join(DOCS_DIR, f"{split}.jsonl"), encoding="utf-8") as handle:
            splits[split] = [json.loads(line) for line in handle]
    return splits


def documents_digest(documents: dict) -> str:
    digest = hashlib.sha256()
    for split in ("train", "validation"):
        for document in documents[split]:
            digest.update(json.dumps([split, document["path"], document["text"]], ensure_ascii=False).encode())
    return digest.hexdigest()


def blocks_digest(*datasets) -> str:
    import numpy as np

    digest = hashlib.sha256()
    for dataset in datasets:
        for column in ("input_ids", "labels"):
            digest.update(np.asarray(dataset.with_format("numpy")[column], dtype=np.int32).tobytes())
    return digest.hexdigest()


def check_digest(corpus: str, what, found: str) -> None:
    """Stop with the reason when a pinned corpus was prepared differently here than for the committed runs."""
    pinned = CORPUS_DIGESTS.get(corpus, {}).get(what)
    if pinned is None or found == pinned:
        return
    if what == "documents":
        cause = (f"this machine's Python {platform.python_version()} standard library differs from Python 3.11.7's"
                 if corpus == "python" else "rebuild it: python recipes/prepare_corpus.py --source docs --out "
                 f"{os.path.relpath(DOCS_DIR, ROOT)} (it checks the pinned archives)")
    else:
        import tokenizers

        cause = (f"the BPE tokenizer or the packing came out differently (tokenizers {tokenizers.__version__} here; "
                 "the committed runs used 0.23.3); delete benchmarks/data/lm_study/ and run again")
    raise SystemExit(f"lm_study: the {corpus} corpus's {what if isinstance(what, str) else 'token blocks'} have sha256 "
                     f"{found[:16]}..., not the pinned {pinned[:16]}...: {cause}. Runs on it would not reproduce the "
                     "committed results.")


def prepared_data(problem: dict):
    """(tokenizer, train blocks, eval blocks), built once per corpus and vocabulary and cached under DATA_DIR, each
    checked against the corpus's pinned digests."""
    from recipes.lm_data import packed_dataset, train_tokenizer
    from transformers import AutoTokenizer

    corpus = problem["corpus"]
    home = os.path.join(DATA_DIR, f"{corpus}_bpe{problem['vocab']}")
    documents = corpus_documents(corpus)
    check_digest(corpus, "documents", documents_digest(documents))
    if not os.path.isfile(os.path.join(home, "tokenizer", "tokenizer.json")):
        train_tokenizer((d["text"] for d in documents["train"]), problem["vocab"], os.path.join(home, "tokenizer"))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(home, "tokenizer"))
    train, _, _ = packed_dataset(documents["train"], tokenizer, problem["block"], os.path.join(home, "packed"))
    held_out, _, _ = packed_dataset(documents["validation"], tokenizer, problem["block"], os.path.join(home, "packed"))
    key = ("blocks", problem["vocab"], problem["block"])
    if CORPUS_DIGESTS.get(corpus, {}).get(key) is not None:
        check_digest(corpus, key, blocks_digest(train, held_out))
    return tokenizer, train, held_out.select(range(min(len(held_out), problem["eval_blocks"])))


def build_model(problem: dict, vocab_size: int, eos: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM, set_seed

    hidden, layers, heads, intermediate = problem["model"]
    set_seed(seed)  # the weights: the same for every schedule at one seed (paired comparisons)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=intermediate,
                         max_position_embeddings=problem["block"], bos_token_id=eos, eos_token_id=eos,
                         pad_token_id=eos, tie_word_embeddings=True)
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")


def baseline_spec(name: str) -> dict:
    """A baseline's run spec (what the run key holds): the AdamW baselines' specs are those of the first study."""
    kind, warmup, kwargs, *optimizer = BASELINES[name]
    spec = {"type": kind, "warmup": warmup, "kwargs": dict(kwargs)}
    if optimizer:
        spec["optim"] = optimizer[0]
    return spec


def grid_factor(name: str) -> float:
    """Where a baseline's LR grid starts, as a factor of the reference's best LR."""
    entry = BASELINES.get(name, ())
    return entry[4] if len(entry) > 4 else 1.0
