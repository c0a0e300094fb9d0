"""Pass 1 killed (SIGKILL) right after the Trainer wrote checkpoint-N/trainer_state.json, before any `on_save`: the
window in which a checkpoint counts as complete for transformers. Used by tests/test_callback.py.

    python -m tests.scripts.killed_at_checkpoint OUTPUT_DIR KILL_AT_STEP [adapt]

With `adapt`: an adaptive run (`tests.tiny.adaptive_args`), killed at that step's checkpoint.
"""

import os
import signal
import sys

from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import TrainerState

import hf_linear_decay  # noqa: F401
from tests.tiny import NormalisedRegressor, RegressionData, TinyRegressor, adaptive_args


def main():
    output_dir, kill_at = sys.argv[1], int(sys.argv[2])
    original = TrainerState.save_to_json

    def save_then_die(self, json_path):
        original(self, json_path)
        if os.path.basename(os.path.dirname(json_path)) == f"checkpoint-{kill_at}":
            os.kill(os.getpid(), signal.SIGKILL)

    TrainerState.save_to_json = save_then_die
    if sys.argv[3:] == ["adapt"]:
        args = TrainingArguments(**adaptive_args(output_dir, save_strategy="steps", save_steps=kill_at))
        Trainer(NormalisedRegressor(), args, train_dataset=RegressionData(256)).train()
        return
    args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=8, max_steps=8, learning_rate=0.05,
                             lr_scheduler_type="linear_refined", logging_steps=1, report_to="none", use_cpu=True,
                             max_grad_norm=1.0, save_strategy="steps", save_steps=4, disable_tqdm=True, seed=0,
                             data_seed=0, optim="adamw_torch", dataloader_num_workers=0)
    Trainer(TinyRegressor(), args, train_dataset=RegressionData()).train()


if __name__ == "__main__":
    main()
