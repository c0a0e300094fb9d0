"""The convex problems of the comparison harness: multinomial logistic regression, vectorised over LRs and seeds.

Objective (the paper's convex setting): f(W) = mean cross-entropy(X W, y) + λ/2 ‖W‖², λ = 1e-4, W₀ = 0, float64,
X standardised with a bias column. SGD or Adam with minibatches (16 when n < 1000, else 32), sampled per seed: every
schedule and LR sees the same minibatch sequence for a given seed, so comparisons are paired. The figure of merit
is the last iterate's suboptimality f(W_T) − f*, with f* from L-BFGS on the full batch.

Schedules are LR multipliers of length T (peak 1), made by the caller from transformers' and this package's own
scheduler code; this module only trains.
"""

from __future__ import annotations

import json
import os

import numpy as np

LAMBDA = 1e-4


def load_problem(name: str, data_dir: str) -> tuple[np.ndarray, np.ndarray, int]:
    """`(X with a bias column, y, classes)` of a problem prepared by benchmarks/prepare_convex_data.py."""
    from safetensors.numpy import load_file

    path = os.path.join(data_dir, f"{name}.safetensors")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: run `python -m benchmarks.prepare_convex_data` first")
    tensors = load_file(path)
    X = np.hstack([tensors["X"], np.ones((tensors["X"].shape[0], 1))])
    return X, tensors["y"], int(tensors["y"].max() + 1)


def synthetic_problem(n: int = 300, d: int = 6, classes: int = 3, seed: int = 0):
    """A small separable-ish problem for the smoke mode (no data files)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.argmax(X @ rng.normal(size=(d, classes)) + 0.5 * rng.normal(size=(n, classes)), axis=1)
    return np.hstack([X, np.ones((n, 1))]), y.astype(np.int64), classes


def list_problems(data_dir: str) -> list[str]:
    with open(os.path.join(data_dir, "manifest.json")) as handle:
        return list(json.load(handle))


def _loss_and_grad(W, X, onehot):
    logits = X @ W
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -(onehot * log_p).sum() / len(X) + LAMBDA / 2 * (W * W).sum()
    return loss, X.T @ (np.exp(log_p) - onehot) / len(X) + LAMBDA * W


def optimum(X, y, classes) -> float:
    """f* by L-BFGS on the full batch (strongly convex, so unique), to a gradient norm of ~1e-10."""
    from scipy.optimize import minimize

    onehot = np.eye(classes)[y]
    shape = (X.shape[1], classes)

    def fun(flat):
        loss, grad = _loss_and_grad(flat.reshape(shape), X, onehot)
        return loss, grad.ravel()

    result = minimize(fun, np.zeros(np.prod(shape)), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20000, "gtol": 1e-11, "ftol": 1e-16, "maxcor": 50})
    return float(result.fun)


def full_objective(W, X, y) -> np.ndarray:
    """f at every W of a (L, S, d, k) batch, evaluated one LR at a time to bound memory."""
    out = np.empty(W.shape[:2])
    with np.errstate(all="ignore"):
        for index in range(W.shape[0]):
            seeds, d, k = W[index].shape  # one BLAS product for all seeds: (n, d) @ (d, S*k)
            logits = (X @ W[index].transpose(1, 0, 2).reshape(d, seeds * k)).reshape(len(X), seeds, k).transpose(1, 0,
                                                                                                                 2)
            logits -= logits.max(axis=2, keepdims=True)
            log_z = np.log(np.exp(logits).sum(axis=2))
            picked = np.take_along_axis(logits, y[None, :, None], axis=2)[..., 0]
            out[index] = (log_z - picked).mean(axis=1) + LAMBDA / 2 * (W[index] ** 2).sum(axis=(1, 2))
    out[~np.isfinite(out)] = np.inf
    return out


def batch_indices(n: int, steps: int, seeds, batch: int) -> np.ndarray:
    """`(S, T, batch)` minibatch indices, one independent stream per seed (sampled with replacement)."""
    return np.stack([np.random.default_rng(seed).integers(0, n, size=(steps, batch)) for seed in seeds])


class AdaptiveSchedules:
    """One adaptive run per (LR, seed), as `lr_scheduler_kwargs={"adapt": true, "adapt_options": options}` makes it:
    each watches its own norms (the norm the package picks for the optimizer) and decides on its own."""

    def __init__(self, options: dict, num_steps: int, shape: tuple, norm_index: int):
        from hf_linear_decay.core.adaptive import AdaptivePlan, AdaptiveWatch

        plan = AdaptivePlan.from_options(num_steps, 0, options)
        self.watches = np.array([[AdaptiveWatch(plan) for _ in range(shape[1])] for _ in range(shape[0])])
        self.norm_index = norm_index

    def multipliers(self, step: int, norms: np.ndarray) -> np.ndarray:
        """The LR multipliers of `step` for every (LR, seed), after the checks due at `step` (norms: steps < step)."""
        out = np.empty(self.watches.shape)
        for index, watch in np.ndenumerate(self.watches):
            if watch.plan.decision is None and watch.is_check(step):
                values = norms[index][:step, self.norm_index]
                plan, _ = watch.decide(values, np.zeros(step, bool), step)
                if plan is not None:
                    watch.plan = plan
            out[index] = watch.plan.multiplier(step)
        return out

    def decisions(self) -> list:
        return [[(watch.plan.decision, watch.plan.decided_at) for watch in row] for row in self.watches]


def train(X, y, classes, multipliers, lrs, indices, optimizer: str, record_norms: bool = False, adaptive=None):
    """Run every (LR, seed) pair at once; returns final W (L, S, d, k) and, if asked, per-step stochastic gradient
    norms (L, S, T, 2) as [l2, l1] measured before each update. With `adaptive` (an `AdaptiveSchedules`), each pair
    follows its own adaptive run instead of `multipliers`."""
    lrs = np.asarray(lrs, dtype=np.float64)
    num_seeds, steps, _ = indices.shape
    W = np.zeros((len(lrs), num_seeds, X.shape[1], classes))
    onehot = np.eye(classes)[y]
    if optimizer == "adam":
        first, second = np.zeros_like(W), np.zeros_like(W)
    norms = np.empty((len(lrs), num_seeds, steps, 2)) if record_norms or adaptive is not None else None
    with np.errstate(all="ignore"):
        for t in range(steps):
            Xb, Yb = X[indices[:, t]], onehot[indices[:, t]]  # (S, b, d), (S, b, k)
            logits = Xb[None] @ W  # batched matmul: (L, S, b, k); much faster than einsum at these sizes
            logits -= logits.max(axis=3, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=3, keepdims=True)
            grad = np.swapaxes(Xb, 1, 2)[None] @ (probabilities - Yb) / Xb.shape[1] + LAMBDA * W
            if norms is not None:
                norms[:, :, t, 0] = np.sqrt((grad * grad).sum(axis=(2, 3)))
                norms[:, :, t, 1] = np.abs(grad).sum(axis=(2, 3))
            factor = multipliers[t] if adaptive is None else adaptive.multipliers(t, norms)
            step = (lrs[:, None] * factor)[:, :, None, None] if adaptive is not None else \
                (lrs * factor)[:, None, None, None]
            if optimizer == "sgd":
                W -= step * grad
            else:  # Adam, betas (0.9, 0.999), eps 1e-8, bias-corrected (torch.optim.Adam's update)
                first = 0.9 * first + 0.1 * grad
                second = 0.999 * second + 0.001 * grad * grad
                W -= step * (first / (1 - 0.9 ** (t + 1))) / (np.sqrt(second / (1 - 0.999 ** (t + 1))) + 1e-8)
    return W, norms
