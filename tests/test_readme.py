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
