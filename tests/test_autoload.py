"""The start-up hook: `linear_refined` in every interpreter however launched (no import, no runner), its opt-out,
and an interpreter that a broken or missing package never breaks."""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.test_run import STOCK_SCRIPT

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REGISTERED = ("import transformers.trainer_utils as t; "
              "print('linear_refined' in t.SchedulerType._value2member_map_)")


def python(code, cwd=None, **env):
    environment = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120,
                          cwd=cwd)


def test_the_hook_is_installed_with_the_package_and_safe_on_its_own():
    path = os.path.join(sysconfig.get_paths()["purelib"], "hf_linear_decay_autoload.pth")
    line = open(path).read()
    assert line.startswith("import ") and line.count("\n") == 1  # what site.py runs, one line
    # The same line with a module that is not there: no output at all (a half-removed install stays silent).
    missing = python(line.replace("hf_linear_decay_autoload", "no_such_module_xyz"))
    assert missing.returncode == 0 and missing.stdout == missing.stderr == ""


@pytest.mark.slow
def test_a_fresh_interpreter_registers_when_transformers_loads_and_not_before():
    result = python("import sys; print('hf_linear_decay' in sys.modules); " + REGISTERED)
    assert result.returncode == 0 and result.stdout.split() == ["False", "True"], result.stderr[-2000:]


@pytest.mark.slow
def test_the_opt_out_turns_it_off():
    result = python(REGISTERED, HF_LINEAR_DECAY_AUTOLOAD="0")
    assert result.returncode == 0 and result.stdout.split() == ["False"], result.stderr[-2000:]


@pytest.mark.slow
def test_a_broken_package_costs_one_line_not_the_program(tmp_path):
    broken = tmp_path / "hf_linear_decay"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('half-installed')\n")
    result = python("import transformers; print('still running')", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert result.returncode == 0 and "still running" in result.stdout
    lines = [line for line in result.stderr.splitlines() if "hf_linear_decay" in line]
    assert lines == ["hf_linear_decay: linear_refined not registered (RuntimeError: half-installed); set "
                     "HF_LINEAR_DECAY_AUTOLOAD=0 to skip this hook"]


def launch_stock_script(tmp_path, *flags):
    """`accelerate launch` of a stock script (HfArgumentParser, no import of the package) with `linear_refined`."""
    script = tmp_path / "train_stock.py"
    script.write_text(STOCK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=TESTS_DIR, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", str(script),
               "--output_dir", str(tmp_path / "run"), "--lr_scheduler_type", "linear_refined", "--use_cpu", "true",
               "--report_to", "none", "--logging_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true",
               *flags]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_accelerate_launch_of_a_stock_script_takes_the_flag(tmp_path):
    result = launch_stock_script(tmp_path, "--max_steps", "4", "--learning_rate", "0.1")
    assert "lrs: [0.1, 0.075, 0.05, 0.025]" in result.stdout
    assert (tmp_path / "run" / "refined_schedule.safetensors").is_file()
    assert "RefinementCallback: wrote " in result.stderr  # pass 1 says what it wrote, by default


@pytest.mark.slow
def test_a_stock_script_adapts_by_the_flag_alone(tmp_path):
    """`--lr_scheduler_kwargs '{"adapt": true}'` through HfArgumentParser, accelerate launch, nothing else."""
    from hf_linear_decay import load_schedule_file

    result = launch_stock_script(tmp_path, "--max_steps", "40", "--learning_rate", "0.01", "--lr_scheduler_kwargs",
                                 '{"adapt": true}')
    schedule = load_schedule_file(tmp_path / "run" / "refined_schedule.safetensors")
    assert schedule.method == "followed" and schedule.adaptive["plan"]["decision"] in ("linear", "cooldown")
    assert "adaptive run (linear start), decided at step" in result.stderr


def tiny_chat_model(folder):
    """A 1-layer Llama and its BPE tokenizer saved like a Hub model, and a JSON-lines text data set."""
    import json

    from recipes.lm_data import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [f"the refined learning rate schedule number {i} decays linearly to zero" for i in range(64)]
    tokenizer = train_tokenizer(texts, 300, str(folder / "model"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    (folder / "data").mkdir()
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return folder / "model", folder / "data"


TRL_FLAGS = ["--max_steps", "4", "--per_device_train_batch_size", "4", "--lr_scheduler_type", "linear_refined",
             "--report_to", "none", "--use_cpu", "true", "--logging_steps", "1", "--save_strategy", "no",
             "--max_length", "32", "--dataset_text_field", "text", "--disable_tqdm", "true"]


def trl_sft(folder, *extra):
    model, data = tiny_chat_model(folder)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [shutil.which("trl") or "trl", "sft", "--model_name_or_path", str(model), "--dataset_name", str(data),
               "--output_dir", str(folder / "out"), *TRL_FLAGS, *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=folder)


@pytest.mark.slow
def test_trl_sft_relaunches_and_takes_the_flag(tmp_path):
    pytest.importorskip("trl")
    result = trl_sft(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "refined_schedule.safetensors").is_file()
    assert "RefinementCallback: wrote " in result.stderr


@pytest.mark.slow
def test_trl_sft_with_peft_records_the_adapter_gradients(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from hf_linear_decay import load_schedule_file

    result = trl_sft(tmp_path, "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj")
    assert result.returncode == 0, result.stderr[-3000:]
    schedule = load_schedule_file(tmp_path / "out" / "refined_schedule.safetensors")
    assert schedule.num_steps == 4 and (schedule.grad_norm_l1 > 0).all()
