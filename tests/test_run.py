"""The runner: unmodified stock scripts accept `--lr_scheduler_type linear_refined`."""

import os
import subprocess
import sys
import textwrap

import pytest

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


@pytest.mark.slow
def test_stock_script_under_the_runner_records_pass_1_and_follows_it_in_pass_2(tmp_path):
    """The flag alone, as a new user runs it: no import of the package, no callback, only the runner and the flag."""
    import numpy as np

    from hf_linear_decay import load_schedule_file
    from hf_linear_decay.core.schedule import build_schedule

    script = tmp_path / "train_stock.py"
    script.write_text(STOCK_SCRIPT)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    # With the start-up hook off (its documented opt-out), as without it: the runner is what registers the flag.
    env = dict(os.environ, PYTHONPATH=tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_LINEAR_DECAY_AUTOLOAD="0")
    flags = ["--lr_scheduler_type", "linear_refined", "--max_steps", "4", "--use_cpu", "true", "--report_to", "none",
             "--logging_steps", "1", "--learning_rate", "0.1", "--save_strategy", "no", "--disable_tqdm", "true"]
    plain = subprocess.run([sys.executable, str(script), "--output_dir", str(tmp_path / "plain"), *flags],
                           capture_output=True, text=True, env=env)
    assert plain.returncode != 0 and "invalid choice: 'linear_refined'" in plain.stderr

    def runner(*extra):
        result = subprocess.run([sys.executable, "-m", "hf_linear_decay.run", str(script), *flags, *extra],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    first = runner("--output_dir", str(tmp_path / "pass1"))
    assert "scheduler type: linear_refined argv0: train_stock.py" in first.stdout
    assert "lrs: [0.1, 0.075, 0.05, 0.025]" in first.stdout  # exactly transformers' linear
    path = tmp_path / "pass1" / "refined_schedule.safetensors"
    schedule = load_schedule_file(path)  # recorded by itself
    assert schedule.num_steps == 4 and schedule.run.optimizer.startswith("AdamW")
    second = runner("--output_dir", str(tmp_path / "pass2"), "--lr_scheduler_kwargs",
                    f'{{"schedule_file": "{path}", "method": "paper"}}')
    lrs = eval(second.stdout.split("lrs:")[1].strip().splitlines()[0])
    paper = build_schedule(schedule.record, schedule.settings.updated(method="paper")).multipliers
    np.testing.assert_allclose(lrs, np.round(0.1 * paper, 6), atol=1e-6)  # the script prints 6 decimals
    assert not (tmp_path / "pass2" / "refined_schedule.safetensors").exists()  # pass 2 does not record by itself


def test_runner_usage_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay.run"], capture_output=True, text=True)
    assert result.returncode == 2 and "python -m hf_linear_decay.run SCRIPT.py" in result.stderr
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay.run", str(tmp_path / "nope.py")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "is not a file" in result.stderr
