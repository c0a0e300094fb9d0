"""The README's main job and the recipes run end to end (shortened)."""

import os
import re
import subprocess
import sys

import pytest

from hf_linear_decay import load_schedule_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_readme_main_job_is_the_demo():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "python recipes/two_pass_demo.py --output_dir demo_output" in readme


def test_two_pass_demo_short(tmp_path):
    out = tmp_path / "demo"
    # A small slice: 12 steps of 4 blocks, 8 held-out blocks. Enough to run every part of the workflow end to end.
    result = run([sys.executable, "recipes/two_pass_demo.py", "--output_dir", str(out), "--max_steps", "12",
                  "--train_bytes", "60000", "--batch_size", "4", "--block_size", "64", "--eval_blocks", "8"])
    assert re.search(r"\| pass1_linear \| \d+\.\d+ \| \+0\.00% \|", result.stdout)
    assert re.search(r"\| pass2_refined \| \d+\.\d+ \| [+-]\d+\.\d+% \|", result.stdout)
    assert re.search(r"\| cosine \|", result.stdout)
    assert "refined schedule (l1 norms, power 1, tau 0.1): peak at step" in result.stdout
    schedule = load_schedule_file(out / "pass1_linear" / "refined_schedule.safetensors")
    assert schedule.num_steps == 12 and schedule.run.optimizer == "AdamW"
    assert (out / "refined_schedule.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.distributed
def test_pretrain_recipe_with_the_cpu_two_process_config(tmp_path):
    out = tmp_path / "cpu2"
    run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/configs/cpu_2proc.yaml",
         "-m", "hf_linear_decay.run", "recipes/pretrain_gpt.py", "--output_dir", str(out), "--use_cpu", "true",
         "--lr_scheduler_type", "linear_refined", "--max_steps", "6", "--n_layer", "1", "--n_embd", "32",
         "--n_head", "2", "--block_size", "64", "--train_bytes", "200000", "--report_to", "none",
         "--per_device_train_batch_size", "4", "--disable_tqdm", "true", "--save_strategy", "no"])
    schedule = load_schedule_file(out / "refined_schedule.safetensors")
    assert schedule.num_steps == 6 and schedule.run.world_size == 2
