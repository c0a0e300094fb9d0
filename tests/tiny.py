"""A tiny local model and data set for real Trainer runs on CPU (no Hub), and small helpers for the test scripts."""

import torch
from torch import nn
from transformers import TrainerCallback


class TinyRegressor(nn.Module):
    """Two-layer MLP with an MSE loss; returns `{"loss", "logits"}` like a transformers model."""

    def __init__(self, in_features=8, hidden=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, labels=None):
        out = self.net(x).squeeze(-1)
        loss = nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


class NormalisedRegressor(nn.Module):
    """An MLP whose first layer feeds a LayerNorm: the loss ignores that layer's scale, so AdamW's weight decay
    shrinks it and the gradient norm rises (as 1/scale), the mechanism that makes an LLM's norm rise in pretraining.
    With AdamW at lr 0.05 and weight decay 2 its l1 norm rises 1.3x over its lowest level within 25% of 200 steps."""

    def __init__(self, in_features=8, hidden=32, scale=8.0):
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(in_features, hidden, bias=False)
        with torch.no_grad():
            self.inp.weight.mul_(scale)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x, labels=None):
        out = self.out(torch.tanh(self.norm(self.inp(x)))).squeeze(-1)
        loss = nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


def adaptive_args(output_dir, **overrides) -> dict:
    """TrainingArguments (as a dict) of an adaptive run of `NormalisedRegressor` on `RegressionData(256)`: 200 steps,
    AdamW with weight decay 2, a 10-step warm-up; its l1 norm rises and the run switches at step 44."""
    settings = dict(output_dir=output_dir, per_device_train_batch_size=8, max_steps=200, learning_rate=0.05,
                    weight_decay=2.0, warmup_steps=10, lr_scheduler_type="linear_refined",
                    lr_scheduler_kwargs={"adapt": True}, logging_steps=1, report_to="none", use_cpu=True,
                    max_grad_norm=1.0, save_strategy="no", disable_tqdm=True, seed=0, data_seed=0,
                    optim="adamw_torch", dataloader_num_workers=0)
    settings.update(overrides)
    return settings


class RegressionData(torch.utils.data.Dataset):
    """`size` fixed samples of y = sin(w.x) + noise, generated from `seed`."""

    def __init__(self, size=64, in_features=8, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, in_features, generator=generator) * 2
        w = torch.randn(in_features, generator=generator)
        self.y = torch.sin(self.x @ w) * 3 + 0.1 * torch.randn(size, generator=generator)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"x": self.x[index], "labels": self.y[index]}


class StopAt(TrainerCallback):
    """Stops training right after optimizer step `step` (simulates a run killed after that step's checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class BreaksAt(TinyRegressor):
    """A TinyRegressor whose training loss is multiplied by `factor` (inf, nan) on the training calls in `calls`
    (1-based), like an fp16 overflow or a diverging run."""

    def __init__(self, calls, factor=float("inf")):
        super().__init__()
        self.broken_calls, self.factor, self.calls = set(calls), factor, 0

    def forward(self, x, labels=None):
        out = super().forward(x, labels)
        if self.training:
            self.calls += 1
            if self.calls in self.broken_calls:
                out["loss"] = out["loss"] * self.factor
        return out


class SkipsNonFiniteSGD(torch.optim.SGD):
    """Skips the update on a non-finite gradient, as GradScaler does on an fp16 overflow."""

    def step(self, closure=None):
        if any(not torch.isfinite(p.grad).all() for group in self.param_groups for p in group["params"]):
            return None
        return super().step(closure)


def logged_learning_rates(log_history) -> list:
    """The learning rate of every logged training step (the entries with a `loss`)."""
    return [entry["learning_rate"] for entry in log_history if "loss" in entry]


def assert_follows(log_history, learning_rate, multipliers, rtol=1e-12, atol=1e-18):
    """The run logged `learning_rate × multipliers` at its logged steps (logging every step from the first)."""
    import numpy as np

    lrs = logged_learning_rates(log_history)
    np.testing.assert_allclose(lrs, learning_rate * np.asarray(multipliers)[: len(lrs)], rtol=rtol, atol=atol)
