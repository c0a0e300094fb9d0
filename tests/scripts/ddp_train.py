"""Trainer + RefinementCallback under `torchrun` (gloo, CPU) or a single process; used by tests/test_distributed.py.

    torchrun --standalone --nproc_per_node 2 -m tests.scripts.ddp_train --output_dir OUT --batch_size 4
    python -m tests.scripts.ddp_train --output_dir OUT --batch_size 8
    python -m tests.scripts.ddp_train --output_dir OUT --batch_size 8 --more '[{"output_dir": "OUT2", "grad_accum": 2}]'

`--more` trains further configurations in the same processes, one after the other (each a JSON object overriding
options): several runs pay for one process start-up and one process group.
"""

import argparse
import json
import os


import hf_linear_decay
from recipes.gloo_exit import leave_process_group
from tests.tiny import NormalisedRegressor, RegressionData, StopAt, TinyRegressor
from transformers import Trainer, TrainingArguments


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--grad_accum", type=int, default=1)
    parser.add_argument("--max_grad_norm", type=float, default=0.0)
    parser.add_argument("--max_steps", type=int, default=8)
    parser.add_argument("--save_steps", type=int, default=0)
    parser.add_argument("--stop_at", type=int, default=0)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--zero_stage", type=int, default=None, help="run under DeepSpeed ZeRO (DS_ACCELERATOR=cpu)")
    parser.add_argument("--adapt", action="store_true", help="an adaptive run: a model whose norm rises under AdamW's "
                        "weight decay (tests.tiny.NormalisedRegressor), lr_scheduler_kwargs adapt")
    parser.add_argument("--kwargs", default=None, help="lr_scheduler_kwargs as JSON (e.g. a schedule file)")
    parser.add_argument("--more", default="[]", help="JSON list of option overrides: more runs in these processes")
    options = parser.parse_args()
    for overrides in [{}, *json.loads(options.more)]:
        train(argparse.Namespace(**{**vars(options), **overrides}))
    leave_process_group()


def train(options):
    deepspeed = None
    if options.zero_stage is not None:
        deepspeed = {"zero_optimization": {"stage": options.zero_stage}, "gradient_clipping": "auto",
                     "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                     "train_batch_size": "auto"}
    args = TrainingArguments(
        output_dir=options.output_dir, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum, max_steps=options.max_steps, learning_rate=0.05,
        lr_scheduler_type="linear_refined", logging_steps=1, report_to="none", use_cpu=True,
        max_grad_norm=options.max_grad_norm, save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500, disable_tqdm=True, seed=0, data_seed=0, optim="adamw_torch",
        dataloader_num_workers=0, deepspeed=deepspeed,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and deepspeed is None else None,
        **(dict(weight_decay=2.0, warmup_steps=10, lr_scheduler_kwargs={"adapt": True}) if options.adapt else {}),
        **({"lr_scheduler_kwargs": json.loads(options.kwargs)} if options.kwargs else {}),
    )
    callback = hf_linear_decay.RefinementCallback()
    callbacks = [callback] + ([StopAt(options.stop_at)] if options.stop_at else [])
    model = NormalisedRegressor() if options.adapt else TinyRegressor()
    trainer = Trainer(model, args, train_dataset=RegressionData(size=256 if options.adapt else 128),
                      callbacks=callbacks)
    trainer.train(resume_from_checkpoint=options.resume)
    # Every rank reports what it recorded, so the test can check that the ranks agree.
    with open(os.path.join(options.output_dir, f"record_rank{args.process_index}.json"), "w") as handle:
        json.dump({"world_size": args.world_size, "grad_norm_l2": callback.record.grad_norm_l2.tolist(),
                   "grad_norm_l1": callback.record.grad_norm_l1.tolist(), "lr": callback.record.lr.tolist(),
                   "measurement": callback.measurement,
                   "logged_lr": [h["learning_rate"] for h in trainer.state.log_history if "loss" in h],
                   "plan": callback.adaptive_run.plan.state() if callback.adaptive_run else None,
                   "logged_grad_norm": [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]},
                  handle)

if __name__ == "__main__":
    main()
