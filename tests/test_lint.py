"""The code style the project keeps: ruff with the configuration in pyproject.toml (120 characters, pyflakes)."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=os.path.dirname(sys.executable))
    assert ruff, "ruff is not installed: pip install -e '.[test]' (the test extra has it)"
    result = subprocess.run([ruff, "check", "."], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
