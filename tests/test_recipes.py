"""The README's main job and the recipes run end to end (shortened)."""

import json
import os
import re
import subprocess
import sys

import pytest

from hf_linear_decay import load_schedule_file
from tests.tiny import assert_follows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_readme_main_job_is_the_demo():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "python recipes/two_pass_demo.py --output_dir demo_output" in readme


@pytest.mark.slow
def test_two_pass_demo_short(tmp_path):
    out = tmp_path / "demo"
    # A small slice: 20 steps of 4 blocks from 60 source files, 8 held-out blocks: every part of the workflow.
    result = run([sys.executable, "recipes/two_pass_demo.py", "--output_dir", str(out), "--max_steps", "20",
                  "--batch_size", "4", "--block_size", "64", "--eval_blocks", "8", "--vocab_size", "300",
                  "--max_documents", "60", "--cache_dir", str(tmp_path / "cache")])
    for name in ("pass1_linear", "adaptive", "pass2_refined", "pass2_paper", "cosine", "wsd"):
        assert re.search(rf"\| {name} \| \d+\.\d+ \| [+-]\d+\.\d+% \|", result.stdout), name
    assert re.search(r"the adaptive run: adaptive run \(linear start\), decided at step \d+ \(\d+%\): ", result.stdout)
    assert load_schedule_file(out / "adaptive" / "refined_schedule.safetensors").adaptive["plan"]["num_steps"] == 20
    assert re.search(r"\| pass1_linear \| \d+\.\d+ \| \+0\.00% \|", result.stdout)
    assert "pass 2's schedule: 20 steps, method auto, l1 norms" in result.stdout
    assert "why: method auto: " in result.stdout
    schedule = load_schedule_file(out / "pass1_linear" / "refined_schedule.safetensors")
    assert schedule.num_steps == 20 and schedule.run.optimizer == "AdamW" and schedule.run.weight_decay == 0.1
    assert (out / "refined_schedule.png").read_bytes()[:4] == b"\x89PNG"
    state = json.load(open(out / "pass1_linear" / "trainer_state.json"))
    assert len([entry for entry in state["log_history"] if "eval_loss" in entry]) >= 10  # curves, not one dot
    # `inspect` on the real run's file: its flags follow the measured thresholds, and the text output shows each one
    from hf_linear_decay.tools.summary import SHAPE_FLAGS

    path = str(out / "pass1_linear" / "refined_schedule.safetensors")
    summary = json.loads(run([sys.executable, "-m", "hf_linear_decay", "inspect", path, "--json"]).stdout)
    assert [flag["flag"] for flag in summary["flags"]] == [name for name, test, _ in SHAPE_FLAGS if test(summary)]
    text = run([sys.executable, "-m", "hf_linear_decay", "inspect", path]).stdout
    assert [line.split(":")[1].strip() for line in text.splitlines() if line.startswith("warning:")] == [
        flag["flag"] for flag in summary["flags"]]
    # the run folders compared from their trainer_state.json (the `compare` command on real runs)
    assert re.search(r"\| cosine \| 20 \| \d+\.\d+ \| \d+\.\d+ \| \d+\.\d+ \| [+-]\d+\.\d+% \|", result.stdout)
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.distributed
def test_llm_recipe_two_passes_on_two_cpu_processes(tmp_path):
    data = tmp_path / "data"
    prepared = run([sys.executable, "recipes/prepare_corpus.py", "--out", str(data), "--max_documents", "60"])
    assert "sha256" in prepared.stdout and (data / "train.jsonl").exists() and (data / "validation.jsonl").exists()
    common = ["--data_dir", str(data), "--model_size", "tiny", "--max_steps", "8", "--use_cpu", "true",
              "--lr_scheduler_type", "linear_refined", "--per_device_train_batch_size", "2", "--block_size", "32",
              "--vocab_size", "400", "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no",
              "--disable_tqdm", "true", "--learning_rate", "3e-3", "--max_eval_blocks", "8"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/configs/cpu_2proc.yaml",
              "-m", "hf_linear_decay.run", "recipes/pretrain_llm.py"]
    first = run([*launch, "--output_dir", str(tmp_path / "pass1"), *common])
    schedule = load_schedule_file(tmp_path / "pass1" / "refined_schedule.safetensors")
    assert schedule.num_steps == 8 and schedule.run.world_size == 2 and schedule.norm == "l1"  # AdamW: Alg. 2
    # Each rank read the same packed dataset: the main process built it, the other loaded it.
    paths = re.findall(r"\[rank (\d)\] training blocks: ([\d,]+) from (\S+) \((built|reused)\)", first.stdout)
    assert sorted(p[0] for p in paths) == ["0", "1"] and len({p[1:3] for p in paths}) == 1
    assert {p[0]: p[3] for p in paths} == {"0": "built", "1": "reused"}
    assert re.search(r"eval loss \d+\.\d+, perplexity \d+\.\d+, [\d,]+ tokens/s", first.stdout)
    second = run([*launch, "--output_dir", str(tmp_path / "pass2"), *common, "--lr_scheduler_kwargs",
                  f'{{"schedule_file": "{tmp_path / "pass1" / "refined_schedule.safetensors"}"}}'])
    assert "(reused)" in second.stdout and "(built)" not in second.stdout  # pass 2 sees the same blocks
    state = json.load(open(tmp_path / "pass2" / "trainer_state.json"))
    first_state = json.load(open(tmp_path / "pass1" / "trainer_state.json"))
    # Same seed before the model is built and the same blocks: both passes start from the same weights and batch,
    # so the loss of step 1 (computed before any update) is identical.
    assert state["log_history"][0]["loss"] == first_state["log_history"][0]["loss"]
    assert_follows(state["log_history"], 3e-3, schedule.multipliers, rtol=1e-9, atol=1e-15)
    table = run([sys.executable, "-m", "hf_linear_decay", "compare", str(tmp_path / "pass1"), str(tmp_path / "pass2"),
                 "-o", str(tmp_path / "compare.png")])
    assert re.search(r"\| pass2 \| 8 \| \d+\.\d+ \| \d+\.\d+ \| \d+\.\d+ \| [+-]\d+\.\d+% \|", table.stdout)
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
