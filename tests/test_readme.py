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


def test_the_use_it_snippet_builds_the_model_again_for_pass_2():
    readme = read("README.md")
    snippet = readme[readme.index("## Use it"):].split("```python")[1].split("```")[0]
    trainers = [line for line in snippet.splitlines() if line.startswith("Trainer(")]
    assert len(trainers) == 2 and all("build_model()" in line for line in trainers)  # not one `model` object twice
