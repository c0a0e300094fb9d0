"""The `linear_refined` schedule: exactly `linear` without a file, the file's multipliers with one, pinned on resume."""


import numpy as np
import pytest
import torch

import hf_linear_decay  # noqa: F401  (registers)
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.core.record import NormRecord
from hf_linear_decay.trainer.scheduler_kwargs import parse_scheduler_kwargs
from hf_linear_decay.core.shapes import resample_schedule
from transformers import get_scheduler

from tests import helpers


def make_file(path, norms, **settings):
    return helpers.make_file(path, RefinementSettings(**settings), grad_norm_l2=norms)


def lrs_of(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("warmup, total", [(0, 10), (3, 10), (0, 1), (5, 5)])
def test_without_file_it_is_transformers_linear(warmup, total):
    def fresh():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    opt_a, opt_b = fresh(), fresh()
    ours = get_scheduler("linear_refined", opt_a, num_warmup_steps=warmup, num_training_steps=total)
    theirs = get_scheduler("linear", opt_b, num_warmup_steps=warmup, num_training_steps=total)
    assert lrs_of(ours, opt_a, total + 2) == lrs_of(theirs, opt_b, total + 2)


def test_scheduler_kwargs_errors(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"unknown keys \['schedule'\].*allowed keys"):
        get_scheduler("linear_refined", opt, 0, 10, scheduler_specific_kwargs={"schedule": "x"})
    with pytest.raises(ValueError, match="also pass `schedule_file`"):
        get_scheduler("linear_refined", opt, 0, 10, scheduler_specific_kwargs={"tau": 0.2})
    with pytest.raises(ValueError, match="no such file"):
        get_scheduler("linear_refined", opt, 0, 10, scheduler_specific_kwargs={"schedule_file": str(tmp_path / "n")})
    with pytest.raises(ValueError, match=r"`lr_scheduler_kwargs\['tau'\]` must be a number in \(0, 1\]"):
        get_scheduler("linear_refined", opt, 0, 10, scheduler_specific_kwargs={"schedule_file": "x", "tau": 3})
    with pytest.raises(ValueError, match=r"`lr_scheduler_kwargs\['schedule_file'\]` must be a path"):
        get_scheduler("linear_refined", opt, 0, 10, scheduler_specific_kwargs={"schedule_file": 5})


def test_scheduler_state_loads_with_weights_only(tmp_path):
    path = make_file(tmp_path / "s.safetensors", np.linspace(5, 1, 30))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler("linear_refined", opt, 0, 30, scheduler_specific_kwargs={"schedule_file": path})
    for _ in range(7):
        opt.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    state = torch.load(tmp_path / "scheduler.pt", weights_only=True)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = get_scheduler("linear_refined", opt2, 0, 30, scheduler_specific_kwargs={"schedule_file": path})
    resumed.load_state_dict(state)
    opt2.load_state_dict(opt.state_dict())  # the Trainer restores optimizer.pt (which holds the current lr) too
    assert resumed.get_last_lr() == scheduler.get_last_lr()
    assert lrs_of(resumed, opt2, 23) == lrs_of(scheduler, opt, 23)



def test_the_file_is_followed_and_resampled(tmp_path):
    norms = np.concatenate([np.full(10, 5.0), np.ones(30)])
    path = make_file(tmp_path / "s.safetensors", norms)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = get_scheduler("linear_refined", opt, 0, 25, scheduler_specific_kwargs={"schedule_file": path})
    expected = 0.5 * resample_schedule(build_schedule(NormRecord.from_columns({"grad_norm_l2": norms})).multipliers, 25)
    np.testing.assert_allclose(lrs_of(scheduler, opt, 25), expected, rtol=1e-15, atol=1e-18)


def test_path_objects_and_overrides_are_accepted(tmp_path):
    norms = np.random.default_rng(0).lognormal(size=50)
    path = make_file(tmp_path / "s.safetensors", norms)
    options = parse_scheduler_kwargs({"schedule_file": path, "tau": 0.5})
    assert options.schedule_file == str(path) and options.overrides == {"tau": 0.5} and not options.records
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler("linear_refined", opt, 0, 50, scheduler_specific_kwargs={"schedule_file": path,
                                                                                      "tau": 0.5, "power": 1})
    expected = build_schedule(NormRecord.from_columns({"grad_norm_l2": norms}), RefinementSettings(tau=0.5, power=1))
    np.testing.assert_allclose(lrs_of(scheduler, opt, 50), expected.multipliers, rtol=1e-15, atol=1e-18)
