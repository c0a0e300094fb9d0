"""The runner: unmodified stock scripts accept `--lr_scheduler_type linear_refined`."""

import os
import subprocess
import sys
import textwrap

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


def test_runner_usage_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay.run"], capture_output=True, text=True)
    assert result.returncode == 2 and "python -m hf_linear_decay.run SCRIPT.py" in result.stderr
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay.run", str(tmp_path / "nope.py")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "is not a file" in result.stderr
