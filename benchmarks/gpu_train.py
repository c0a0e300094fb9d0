"""One Trainer run on a GPU with RefinementCallback under a chosen backend and precision; writes a JSON record.

    torchrun --standalone --nproc_per_node 1 -m benchmarks.gpu_train --backend zero3 --precision fp16 --out r.json

Used by benchmarks/gpu_check.py. Backends: plain (no distribution), fsdp2, zero2, zero3 (DeepSpeed).
"""

import argparse
import json
import os

import torch

import hf_linear_decay
from transformers import Trainer, TrainingArguments
from recipes.byte_lm import ByteChunks, stdlib_bytes, tiny_gpt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("plain", "fsdp2", "zero2", "zero3"), required=True)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), required=True)
    parser.add_argument("--optim", default="adamw_torch_fused")
    parser.add_argument("--max_steps", type=int, default=30)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    extra = {}
    if options.backend == "fsdp2":
        extra = dict(fsdp=True, fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["GPT2Block"]})
    elif options.backend.startswith("zero"):
        extra = dict(deepspeed={
            "zero_optimization": {"stage": int(options.backend[-1])},
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto", "initial_scale_power": 16},
            "gradient_clipping": "auto", "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
        })
    args = TrainingArguments(
        output_dir=os.path.splitext(options.out)[0], per_device_train_batch_size=16, max_steps=options.max_steps,
        learning_rate=options.learning_rate, lr_scheduler_type="linear_refined", logging_steps=1, report_to="none",
        max_grad_norm=options.max_grad_norm, save_strategy="no", disable_tqdm=True, seed=0, data_seed=0,
        optim=options.optim, bf16=options.precision == "bf16", fp16=options.precision == "fp16", **extra,
    )
    train, _ = stdlib_bytes(2_000_000)
    callback = hf_linear_decay.RefinementCallback()
    trainer = Trainer(tiny_gpt(128, 0), args, train_dataset=ByteChunks(train, 128), callbacks=[callback])
    trainer.train()
    if args.process_index == 0:
        with open(options.out, "w") as handle:
            json.dump({"backend": options.backend, "precision": options.precision, "optim": options.optim,
                       **{name: callback.record.column(name).tolist() for name in ("grad_norm_l2", "grad_norm_l1",
                                                                                   "lr")},
                       "skipped": callback.record.skipped.tolist(),
                       "logged_grad_norm": [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h],
                       "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}, handle)


if __name__ == "__main__":
    main()
