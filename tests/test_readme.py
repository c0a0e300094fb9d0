"""README.md and .ci/run must agree on the test command; the README's commands must exist."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def test_ci_runs_the_readme_test_command():
    readme = read("README.md")
    commands = re.findall(r"^python -m pytest[^\n]*$", readme, flags=re.M)
    assert len(commands) == 1, commands
    ci_lines = [line.strip() for line in read(".ci/run").splitlines()]
    assert commands[0] in ci_lines


def python_snippet(containing: str) -> str:
    """The README's "Use it" Python block that contains `containing`."""
    readme = read("README.md")
    blocks = [block.split("```")[0] for block in readme[readme.index("## Use it"):].split("```python")[1:]]
    [snippet] = [block for block in blocks if containing in block]
    assert "max_steps=10_000" in snippet
    return snippet


def test_the_adaptive_snippet_runs_as_written(tmp_path, monkeypatch):
    from hf_linear_decay import load_schedule_file
    from tests.tiny import RegressionData, TinyRegressor

    monkeypatch.chdir(tmp_path)
    exec(compile(python_snippet('"adapt": True').replace("max_steps=10_000", "max_steps=40"), "README.md", "exec"),
         {"build_model": TinyRegressor, "data": RegressionData()})
    schedule = load_schedule_file(tmp_path / "run" / "refined_schedule.safetensors")
    assert schedule.method == "followed" and schedule.adaptive["plan"]["warmup"] == 2  # warmup_steps=0.05 of 40


def test_the_use_it_snippet_runs_both_passes_from_fresh_models(tmp_path, monkeypatch):
    """The README's Python snippet, run as written (with `build_model` and `data` supplied and a short run): pass 1
    writes its file, pass 2 follows it, and each pass trains a model of its own."""
    import numpy as np
    import transformers

    from hf_linear_decay import load_schedule_file
    from tests.tiny import RegressionData, TinyRegressor

    snippet = python_snippet("# Pass 2")
    built, trained = [], []

    def build_model():
        built.append(TinyRegressor())
        return built[-1]

    original = transformers.Trainer.train

    def train(self, *args, **kwargs):
        trained.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", train)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace("max_steps=10_000", "max_steps=12"), "README.md", "exec"),
         {"build_model": build_model, "data": RegressionData()})
    assert len(built) == 2 and [trainer.model for trainer in trained] == built  # a fresh model for each pass
    schedule = load_schedule_file(tmp_path / "run1" / "refined_schedule.safetensors")
    followed = trained[1].lr_scheduler.lr_lambdas[0]
    assert schedule.num_steps == 12 and followed.source == "run1/refined_schedule.safetensors"
    np.testing.assert_array_equal(followed.multipliers.numpy(), schedule.multipliers)


def test_the_switch_line_shown_is_what_the_code_says_for_that_decision():
    """The README's adaptive switch line (copied from the main job's output) is the line the code writes today for
    the decision it shows: a change of wording must change the README too."""
    from hf_linear_decay.core.adaptive import AdaptivePlan, Reading
    from hf_linear_decay.trainer.adaptive_run import switch_line

    [shown] = re.findall(r"^linear_refined: adapting at step .*$", read("README.md"), flags=re.M)
    step, steps, rise, lowest_at = re.match(r"linear_refined: adapting at step (\d+) of (\d+) \(\d+%\): the l1 norm "
                                            r"rose ([\d.]+)x over its lowest level \(at step (\d+)\)", shown).groups()
    warmup = int(re.search(r"now a (\d+)-step warm-up", shown).group(1))
    plan = AdaptivePlan(int(steps), warmup, decision="cooldown", decided_at=int(step))
    reading = Reading(step=int(step), start=1.0, rise=float(rise), lowest_at=int(lowest_at))
    assert switch_line(plan, reading, "l1", int(step)) == shown


def test_the_pass_lines_shown_are_what_the_code_says_for_the_main_jobs_pass_one():
    """The main job's pass 1 is the LM study's python_tiny linear decay at 4e-3, seed 0 (its file is committed): the
    README's two lines are what pass 1 and pass 2 say today for that record."""
    from hf_linear_decay import load_schedule_file
    from hf_linear_decay.core.schedule import build_schedule
    from hf_linear_decay.core.settings import RefinementSettings
    from hf_linear_decay.trainer.auto_recorder import describe_pass_two
    from hf_linear_decay.trainer.messages import wrote_line

    committed = os.path.join(ROOT, "benchmarks", "results", "lm_study", "pass1", "python_tiny",
                             "linear_warmup_lr0.004_s0.safetensors")
    schedule = build_schedule(load_schedule_file(committed).record, RefinementSettings())
    path = "demo_output/pass1_linear/refined_schedule.safetensors"
    shown = read("README.md").splitlines()
    assert wrote_line(schedule, path) in shown
    assert f"linear_refined: following {path} ({describe_pass_two(schedule)})" in shown
