import os
import sys

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def make_args(tmp_path):
    """TrainingArguments for tiny CPU runs; keyword arguments override the defaults."""
    import hf_linear_decay  # noqa: F401  (registers linear_refined)
    from transformers import TrainingArguments

    def build(**overrides):
        settings = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=12,
                        learning_rate=0.05, lr_scheduler_type="linear_refined", logging_steps=1, report_to="none",
                        use_cpu=True, max_grad_norm=1.0, save_strategy="no", disable_tqdm=True, seed=0,
                        data_seed=0, optim="adamw_torch", dataloader_num_workers=0)
        settings.update(overrides)
        return TrainingArguments(**settings)

    return build


@pytest.fixture
def fake_deepspeed(monkeypatch):
    """A stand-in `deepspeed.utils.safe_get_full_grad` that returns a parameter's `full_grad` attribute."""
    import types

    utils = types.ModuleType("deepspeed.utils")
    utils.safe_get_full_grad = lambda parameter: getattr(parameter, "full_grad", None)
    package = types.ModuleType("deepspeed")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "deepspeed", package)
    monkeypatch.setitem(sys.modules, "deepspeed.utils", utils)
