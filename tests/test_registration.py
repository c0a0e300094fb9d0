"""`linear_refined` as a Trainer scheduler type: enum, parser, --help, pickle/JSON, get_scheduler, the runner."""

import copy
import json
import pickle
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

import hf_linear_decay
from hf_linear_decay.registration import check_deepspeed_scheduler_conflict, is_registered, register
from hf_linear_decay.scheduler import get_linear_refined_schedule
from transformers import HfArgumentParser, SchedulerType, TrainingArguments, get_scheduler
from transformers import optimization


def test_registered_once_and_builtins_untouched():
    register()
    register()
    assert is_registered()
    values = [member.value for member in SchedulerType]
    assert values.count("linear_refined") == 1 and values[-1] == "linear_refined"
    assert SchedulerType("linear_refined") is SchedulerType.LINEAR_REFINED is SchedulerType["LINEAR_REFINED"]
    assert optimization.TYPE_TO_SCHEDULER_FUNCTION[SchedulerType.LINEAR_REFINED] is get_linear_refined_schedule
    for name in ("linear", "cosine", "constant", "warmup_stable_decay", "cosine_with_min_lr"):
        member = SchedulerType(name)
        assert member.value == name and optimization.TYPE_TO_SCHEDULER_FUNCTION[member] is not get_linear_refined_schedule
    with pytest.raises(ValueError, match="is not a valid SchedulerType.*linear_refined"):
        SchedulerType("linear_refinedd")


def test_training_arguments_json_pickle_deepcopy(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="linear_refined",
                             lr_scheduler_kwargs={"schedule_file": "x.safetensors"}, use_cpu=True, report_to="none")
    assert args.lr_scheduler_type is SchedulerType.LINEAR_REFINED
    assert args.to_dict()["lr_scheduler_type"] == "linear_refined"
    assert json.loads(args.to_json_string())["lr_scheduler_type"] == "linear_refined"
    for clone in (pickle.loads(pickle.dumps(args)), copy.deepcopy(args)):
        assert clone.lr_scheduler_type is SchedulerType.LINEAR_REFINED
        assert clone.lr_scheduler_kwargs == {"schedule_file": "x.safetensors"}


def test_hf_argument_parser_and_help(tmp_path):
    parser = HfArgumentParser(TrainingArguments)
    assert "linear_refined" in parser.format_help()
    (args,) = parser.parse_args_into_dataclasses([
        "--output_dir", str(tmp_path), "--lr_scheduler_type", "linear_refined", "--use_cpu", "true",
        "--lr_scheduler_kwargs", '{"schedule_file": "run1/refined_schedule.safetensors", "tau": "0.2"}',
        "--warmup_steps", "0.1", "--report_to", "none",
    ])
    assert args.lr_scheduler_type is SchedulerType.LINEAR_REFINED
    assert args.lr_scheduler_kwargs == {"schedule_file": "run1/refined_schedule.safetensors", "tau": 0.2}
    assert args.warmup_steps == 0.1


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


def test_scheduler_state_loads_with_weights_only(tmp_path):
    norms = torch.linspace(5, 1, 30).tolist()
    path = hf_linear_decay.save_schedule_file(hf_linear_decay.ScheduleFile.from_record(grad_norm_l2=norms),
                                              tmp_path / "s.safetensors")
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


def test_deepspeed_scheduler_block_conflict():
    config = {"scheduler": {"type": "WarmupDecayLR", "params": {}}, "zero_optimization": {"stage": 2}}
    with pytest.raises(ValueError, match=r"DeepSpeed config has its own `scheduler` block \(type 'WarmupDecayLR'\)"):
        check_deepspeed_scheduler_conflict(SchedulerType.LINEAR_REFINED, config)
    check_deepspeed_scheduler_conflict(SchedulerType.LINEAR, config)  # other types: DeepSpeed's choice, untouched
    check_deepspeed_scheduler_conflict("linear_refined", {"zero_optimization": {"stage": 3}})
    # The guard sits in the function transformers' deepspeed_init calls, so the error comes before any DeepSpeed work.
    from transformers.integrations import deepspeed as hf_deepspeed

    with pytest.raises(ValueError, match="Remove the `scheduler` block"):
        hf_deepspeed.deepspeed_optim_sched(None, SimpleNamespace(config=config),
                                           SimpleNamespace(lr_scheduler_type=SchedulerType.LINEAR_REFINED), 10, [])


STOCK_SCRIPT = textwrap.dedent('''
    """A stock-style training script: knows nothing of hf_linear_decay."""
    import sys
    from transformers import HfArgumentParser, Trainer, TrainingArguments
    from tiny import TinyRegressor, RegressionData

    if __name__ == "__main__":
        (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses()
        trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData())
        trainer.train()
        print("scheduler type:", args.lr_scheduler_type.value, "argv0:", sys.argv[0].split("/")[-1])
        print("lrs:", [round(h["learning_rate"], 6) for h in trainer.state.log_history if "learning_rate" in h])
''')


def test_runner_makes_stock_scripts_accept_the_flag(tmp_path):
    import os

    script = tmp_path / "train_stock.py"
    script.write_text(STOCK_SCRIPT)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
    flags = ["--output_dir", str(tmp_path / "out"), "--lr_scheduler_type", "linear_refined", "--max_steps", "4",
             "--use_cpu", "true", "--report_to", "none", "--logging_steps", "1", "--learning_rate", "0.1",
             "--save_strategy", "no", "--disable_tqdm", "true"]
    plain = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, env=env)
    assert plain.returncode != 0 and "invalid choice: 'linear_refined'" in plain.stderr
    wrapped = subprocess.run([sys.executable, "-m", "hf_linear_decay.run", str(script), *flags],
                             capture_output=True, text=True, env=env)
    assert wrapped.returncode == 0, wrapped.stderr[-3000:]
    assert "scheduler type: linear_refined argv0: train_stock.py" in wrapped.stdout
    assert "lrs: [0.1, 0.075, 0.05, 0.025]" in wrapped.stdout
