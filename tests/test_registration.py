"""`linear_refined` as a Trainer scheduler type: enum, parser, --help, pickle/JSON, the lazy hooks, import order."""

import copy
import json
import pickle
import subprocess
import sys
from types import SimpleNamespace

import pytest

import hf_linear_decay  # noqa: F401  (registers)
from hf_linear_decay.trainer.registration import (check_deepspeed_scheduler_conflict, is_registered, register,
                                                  when_imported)
from hf_linear_decay.trainer.scheduler import get_linear_refined_schedule
from transformers import HfArgumentParser, SchedulerType, TrainingArguments
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
        assert member.value == name
        assert optimization.TYPE_TO_SCHEDULER_FUNCTION[member] is not get_linear_refined_schedule
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




IMPORT_ORDER = """
import sys
import hf_linear_decay
assert "transformers" not in sys.modules and "torch" not in sys.modules, "registration must be lazy"
{body}
print("ok")
"""


@pytest.mark.slow
def test_registration_takes_effect_when_transformers_loads():
    # The README's order: the package first, then transformers; each registry is filled as its module loads.
    body = ("from transformers import HfArgumentParser, TrainingArguments\n"
            "assert 'linear_refined' in HfArgumentParser(TrainingArguments).format_help()\n"
            "a = TrainingArguments(output_dir='o', lr_scheduler_type='linear_refined', use_cpu=True, "
            "report_to='none')\n"
            "assert a.lr_scheduler_type.value == 'linear_refined'\n"
            "import torch\nfrom transformers import get_scheduler\n"
            "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)\n"
            "s = get_scheduler('linear_refined', opt, num_warmup_steps=0, num_training_steps=4)\n"
            "assert type(s).__name__ == 'LambdaLR'\n"
            "import transformers.trainer\n"
            "assert any(c.__name__ == 'AutoRecorder' for c in transformers.trainer.DEFAULT_CALLBACKS)")
    result = subprocess.run([sys.executable, "-c", IMPORT_ORDER.format(body=body)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.slow
def test_importing_the_package_after_transformers_registers_at_once():
    code = ("import transformers.optimization\nimport hf_linear_decay\n"
            "from hf_linear_decay.trainer.registration import is_registered\nassert is_registered()\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_when_imported_runs_hooks_once_after_the_module_loads(tmp_path, monkeypatch):
    (tmp_path / "hookedsample.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    when_imported("hookedsample", lambda module: seen.append(module.VALUE + 1))
    assert seen == []
    import hookedsample  # noqa: F401

    assert seen == [42]
    assert type(hookedsample.__loader__).__name__ == "SourceFileLoader"  # the original loader is back
    when_imported("hookedsample", lambda module: seen.append("now"))  # already loaded: runs at once
    assert seen == [42, "now"]
    sys.modules.pop("hookedsample")
