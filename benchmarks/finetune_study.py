"""Fine-tuning study: which schedule wins when a pretrained model is fine-tuned (full, and LoRA through PEFT).

    python -m benchmarks.finetune_study --all --jobs 2        # the base model once, then every problem (cached runs)
    python -m benchmarks.finetune_study --report              # results.md, runs.csv and the figure from the runs
    python -m benchmarks.finetune_study --smoke --out_dir /tmp/f   # seconds: the whole pipeline, tiny (CI)

The base model is pretrained once, deterministically, by the LM study's own setting (`python_tiny`'s Llama on the
Python standard library at its reference's best LR, seed 0) and committed (`base/`, 1 MB). Each problem fine-tunes
it through `Trainer`, with the usual fine-tuning settings (AdamW with the default betas and no weight decay, a 3%
warm-up, clipping at 1.0, two epochs of a fixed subset, each schedule at its own best LR from a grid that brackets
it, 3 seeds shared by all schedules):

- `docs_full`: domain adaptation, every weight trained: English reST (the pinned `docs` corpus, a subset of its
  documents, packed in 128-token blocks), eval loss on held-out documents;
- `qa_lora`: instruction-style answers, LoRA (rank 8 on the attention's q and v projections, PEFT) with the base
  frozen: question/answer pairs built offline from the standard library's docstrings ("Question: What does
  json.dumps do?" -> the docstring's first sentence), the loss on the answer only, eval loss on held-out modules;
- `qa_full`: the same pairs, every weight trained.

Schedules: linear decay with warm-up (the reference, and pass 1), cosine, constant with warm-up, WSD (1-sqrt over
the last 20%), the adaptive run (`adapt`), and pass 2 from pass 1's record with the default (`auto`) and the paper's
refinement (`paper`). Runs are cached as JSON under `results/finetune_study/runs/` like the LM study's.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import json
import os
import sys
import sysconfig

import numpy as np

from benchmarks.lm_problems import HERE, PROBLEMS as LM_PROBLEMS, REFERENCE, build_model, prepared_data
from benchmarks.lm_study import (Study, Sweep, _load_record, _save_schedule, entry_point, refined_spec,
                                 schedule_kwargs, train_and_evaluate)

DATA_DIR = os.path.join(HERE, "data", "finetune_study")
DEFAULT_OUT = os.path.join(HERE, "results", "finetune_study")
STUDY_VERSION = 1
WARMUP = 0.03
SEEDS = (0, 1, 2)
#: The base: the LM study's python_tiny model at its reference's best LR, seed 0 (linear decay, 5% warm-up).
BASE = dict(problem="python_tiny", lr=4e-3, seed=0)

#: name -> data, how (full or LoRA), examples (blocks or pairs) in the training subset, steps (two epochs at the
#: batch), batch, sequence length, eval examples, the LR grid's first centre.
PROBLEMS = {
    "docs_full": dict(data="docs", how="full", examples=2400, steps=300, batch=16, length=128, eval_examples=256,
                      center=1e-3),
    "qa_lora": dict(data="qa", how="lora", examples=2400, steps=300, batch=16, length=64, eval_examples=256,
                    center=4e-3),
    "qa_full": dict(data="qa", how="full", examples=2400, steps=300, batch=16, length=64, eval_examples=256,
                    center=1e-3),
    "smoke": dict(data="qa", how="lora", examples=64, steps=8, batch=8, length=128, eval_examples=16, center=4e-3),
}
#: What `--all` runs: one full fine-tuning and one LoRA problem (`qa_full` runs by name: the study's 2-core budget).
CPU_PROBLEMS = ("docs_full", "qa_lora")
KEY_FIELDS = ("data", "how", "examples", "steps", "batch", "length", "eval_examples")
#: name -> (lr_scheduler_type, lr_scheduler_kwargs with fractions of T as `*_frac`).
SCHEDULES = {
    "linear_warmup": ("linear_refined", {}),
    "cosine_warmup": ("cosine", {}),
    "constant_warmup": ("constant_with_warmup", {}),
    "wsd_sqrt_20": ("warmup_stable_decay", {"decay_frac": 0.2, "decay_type": "1-sqrt"}),
    "adapt": ("linear_refined", {"adapt": True, "adapt_options": {"start": "linear", "switch": "peak", "rise": 1.3,
                                                                  "decide_by": 0.3, "fraction": 0.2,
                                                                  "shape": "1-sqrt"}}),
}
METHODS = ("auto", "paper")


# ----- the base model and the data ------------------------------------------------------------------------------------
def base_dir(out_dir: str) -> str:
    return os.path.join(out_dir, "base")


def pretrain_base(out_dir: str, lm_problem: str = BASE["problem"]) -> str:
    """The base model (weights, config, tokenizer) in `out_dir/base`, trained once by the LM study's setting of
    `lm_problem` (the smoke test's is the LM study's smoke problem)."""
    import torch
    from transformers import Trainer, TrainingArguments, default_data_collator

    folder = base_dir(out_dir)
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    problem = LM_PROBLEMS[lm_problem]
    torch.set_num_threads(1)
    tokenizer, train_set, _ = prepared_data(problem)
    model = build_model(problem, len(tokenizer), tokenizer.eos_token_id, BASE["seed"])
    args = TrainingArguments(
        output_dir=os.path.join(DATA_DIR, "base_run"), lr_scheduler_type="linear", warmup_steps=round(0.05 *
                                                                                                     problem["steps"]),
        per_device_train_batch_size=problem["batch"], max_steps=problem["steps"], learning_rate=BASE["lr"],
        weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0, save_strategy="no", report_to="none",
        use_cpu=True, seed=BASE["seed"], data_seed=BASE["seed"], disable_tqdm=True, logging_steps=100,
        optim="adamw_torch")
    Trainer(model, args, train_dataset=train_set, data_collator=default_data_collator).train()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


#: sha256 of the question/answer pairs as built here (from Python 3.11.7's standard library, like the base's corpus).
QA_DIGEST = "c9d463418ffc9bb14f9404e7e3d426c0a5f99ccb1e1c89b76a2643722620d714"


def qa_pairs(check: bool = True) -> dict:
    """`{"train": [...], "validation": [...]}` of (question, answer) from the standard library's docstrings: every
    public function, class and method with a docstring; the answer is the docstring's first sentence. Split by module
    (a hash of its path), so the held-out questions are about modules the fine-tuning never saw. Built once (cached
    under DATA_DIR) and checked against `QA_DIGEST` (not with `check=False`: the smoke test, on any Python)."""
    cache = os.path.join(DATA_DIR, "qa_pairs.json")
    if os.path.isfile(cache):
        with open(cache) as handle:
            splits = {split: [tuple(pair) for pair in pairs] for split, pairs in json.load(handle).items()}
    else:
        splits = _build_qa_pairs()
        os.makedirs(DATA_DIR, exist_ok=True)
        with open(cache + ".tmp", "w") as handle:
            json.dump(splits, handle)
        os.replace(cache + ".tmp", cache)
    digest = hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()
    if check and digest != QA_DIGEST:
        import platform

        raise SystemExit(f"finetune_study: the question/answer pairs have sha256 {digest[:16]}..., not the pinned "
                         f"{QA_DIGEST[:16]}...: this machine's Python {platform.python_version()} standard library "
                         "differs from Python 3.11.7's. Runs on them would not reproduce the committed results.")
    return splits


def _build_qa_pairs() -> dict:
    root = sysconfig.get_paths()["stdlib"]
    splits = {"train": [], "validation": []}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        relative = os.path.relpath(path, root)
        if "site-packages" in relative or relative.startswith(("test", "idlelib", "lib2to3")) or "/test" in relative:
            continue
        module = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
        try:
            tree = ast.parse(open(path, encoding="utf-8", errors="replace").read())
        except (SyntaxError, ValueError):
            continue
        split = "validation" if int(hashlib.md5(relative.encode()).hexdigest(), 16) % 10 == 0 else "train"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            sentence = " ".join((doc or "").split("\n\n")[0].split()).split(". ")[0].strip().rstrip(".")
            if 3 <= len(sentence.split()) <= 30:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                splits[split].append((f"What does the {kind} {module}.{node.name} do?", sentence + "."))
    return splits


def qa_tokens(pairs, tokenizer, length: int) -> list:
    """`(prompt ids, reply ids)` of the pairs that fit in `length` tokens whole (none is cut: a cut answer would
    teach a cut answer, a cut prompt no answer at all)."""
    eos, out = tokenizer.eos_token_id, []
    for question, answer in pairs:
        prompt = tokenizer(f"Question: {question}\nAnswer:", add_special_tokens=False)["input_ids"]
        reply = tokenizer(f" {answer}", add_special_tokens=False)["input_ids"] + [eos]
        if len(prompt) + len(reply) <= length:
            out.append((prompt, reply))
    return out


def qa_dataset(tokens, tokenizer, length: int):
    """Each pair as one example: the question and the answer, the loss on the answer's tokens (and EOS) only."""
    from datasets import Dataset

    eos = tokenizer.eos_token_id
    rows = []
    for prompt, reply in tokens:
        ids, labels = prompt + reply, [-100] * len(prompt) + reply
        padding = length - len(ids)
        rows.append({"input_ids": ids + [eos] * padding, "labels": labels + [-100] * padding,
                     "attention_mask": [1] * len(ids) + [0] * padding})
    return Dataset.from_list(rows)


def problem_data(problem: dict, tokenizer):
    """(train subset, eval set) of a problem, deterministic: the first `examples` of a fixed shuffle."""
    rng = np.random.default_rng(0)
    if problem["data"] == "docs":
        from recipes.lm_data import packed_dataset

        from benchmarks.lm_problems import corpus_documents

        documents = corpus_documents("docs")
        cache = os.path.join(DATA_DIR, "docs_packed")
        train, _, _ = packed_dataset(documents["train"], tokenizer, problem["length"], cache)
        held_out, _, _ = packed_dataset(documents["validation"], tokenizer, problem["length"], cache)
        order = rng.permutation(len(train))[: problem["examples"]]
        return train.select(sorted(order.tolist())), held_out.select(range(problem["eval_examples"]))
    pairs = {split: qa_tokens(found, tokenizer, problem["length"])
             for split, found in qa_pairs(check=problem is not PROBLEMS["smoke"]).items()}
    order = rng.permutation(len(pairs["train"]))[: problem["examples"]]
    train = qa_dataset([pairs["train"][i] for i in sorted(order.tolist())], tokenizer, problem["length"])
    held = rng.permutation(len(pairs["validation"]))[: problem["eval_examples"]]
    return train, qa_dataset([pairs["validation"][i] for i in sorted(held.tolist())], tokenizer, problem["length"])


# ----- one run --------------------------------------------------------------------------------------------------------
def train_one(job: dict) -> dict:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM, TrainingArguments, set_seed

    problem = PROBLEMS[job["problem"]]
    spec, steps = job["spec"], problem["steps"]
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(job["base"])
    train_set, eval_set = problem_data(problem, tokenizer)
    set_seed(job["seed"])
    model = LlamaForCausalLM.from_pretrained(job["base"], attn_implementation="sdpa")
    if problem["how"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=job["out_dir"], lr_scheduler_type=spec["type"], warmup_steps=round(spec["warmup"] * steps),
        lr_scheduler_kwargs=schedule_kwargs(spec, steps, job), per_device_train_batch_size=problem["batch"],
        per_device_eval_batch_size=32, max_steps=steps, learning_rate=job["lr"], weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=10, eval_strategy="steps", eval_steps=max(1, steps // 10), save_strategy="no",
        report_to="none", use_cpu=True, seed=job["seed"], data_seed=job["seed"], disable_tqdm=True,
        dataloader_num_workers=0, optim="adamw_torch")
    result = train_and_evaluate(model, args, train_set, eval_set, job)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**result, "parameters": trainable, "tokens": steps * problem["batch"] * problem["length"]}


# ----- the sweep ------------------------------------------------------------------------------------------------------
def schedule_spec(name: str) -> dict:
    kind, kwargs = SCHEDULES[name]
    return {"type": kind, "warmup": WARMUP, "kwargs": dict(kwargs)}


def study_problem(study: Study, problem: str, seeds, base: str) -> dict:
    """Every schedule at its own best LR: the reference first (its best LR, seed 0, recorded, is pass 1), then the
    others from grids centred at the reference's best LR, then pass 2 from pass 1's record."""
    from benchmarks import lm_candidates
    from hf_linear_decay.core.refinements import norm_profile
    from hf_linear_decay.core.settings import RefinementSettings

    print(f"== {problem} (seeds {list(seeds)})", flush=True)
    extra = {"base": base}
    summary = {REFERENCE: Sweep(study, problem, REFERENCE, schedule_spec(REFERENCE), seeds,
                                PROBLEMS[problem]["center"], keep_schedule_file=True, **extra).run()}
    lr = summary[REFERENCE]["best_lr"]
    for name in SCHEDULES:
        if name != REFERENCE:
            summary[name] = Sweep(study, problem, name, schedule_spec(name), seeds, lr, **extra).run()
    pass_one = _load_record(study, study.cached(dict(problem=problem, name=REFERENCE, spec=schedule_spec(REFERENCE),
                                                     lr=lr, seed=seeds[0], keep_schedule_file=True, **extra)))
    for name, multipliers in lm_candidates.package_methods(pass_one, METHODS).items():
        path = _save_schedule(study, problem, name, pass_one, multipliers, name)
        summary[name] = Sweep(study, problem, name, refined_spec(path, multipliers), seeds, lr, **extra).run()
        summary[name]["refined"] = True
    profile = norm_profile(pass_one, RefinementSettings(method="auto").resolved(pass_one))
    summary[REFERENCE]["norm_profile"] = {**profile.__dict__, "rises_under_decay": profile.rises_under_decay,
                                          "why_not": profile.why_not()}
    with open(os.path.join(study.out_dir, f"summary_{problem}.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--problem", action="append", choices=sorted(PROBLEMS))
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out_dir", default=DEFAULT_OUT)
    options = parser.parse_args(argv)
    problems = ["smoke"] if options.smoke else CPU_PROBLEMS if options.all else (options.problem or [])
    if not problems and not options.report:
        parser.error("choose --problem NAME, --all, --smoke or --report")
    if problems:
        base = os.path.abspath(pretrain_base(options.out_dir, "smoke" if options.smoke else BASE["problem"]))
        study = Study(options.out_dir, 0 if options.smoke else options.jobs, grid_points=1 if options.smoke else 3,
                      runner=sys.modules[__name__])
        for problem in problems:
            study_problem(study, problem, SEEDS[: 2 if options.smoke else 3], base)
    from benchmarks import finetune_report

    print(finetune_report.write_report(options.out_dir))


if __name__ == "__main__":
    entry_point(train_one, main)
