"""Import hygiene, on the real package: nothing heavy for the CLI and the maths, and no import back up to `__init__`."""

import ast
import os
import subprocess
import sys

import hf_linear_decay

PACKAGE_DIR = os.path.dirname(hf_linear_decay.__file__)
LIGHT_MODULES = ["hf_linear_decay", "hf_linear_decay.cli", "hf_linear_decay.refine", "hf_linear_decay.methods",
                 "hf_linear_decay.schedule_file", "hf_linear_decay.sources", "hf_linear_decay.summary",
                 "hf_linear_decay.record", "hf_linear_decay.norms", "hf_linear_decay.shapes", "hf_linear_decay._reference"]
HEAVY = {"torch", "transformers", "accelerate", "deepspeed"}


def heavy_modules_after(code: str) -> set:
    probe = f"import sys\n{code}\nprint(sorted({{n.split('.')[0] for n in sys.modules}} & set({sorted(HEAVY)!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(eval(result.stdout.strip().splitlines()[-1]))


def test_the_cli_and_the_maths_import_nothing_heavy():
    assert heavy_modules_after("\n".join(f"import {name}" for name in LIGHT_MODULES)) == set()


def test_cli_commands_that_do_not_train_stay_light(tmp_path):
    norms = tmp_path / "norms.txt"
    norms.write_text("\n".join(str(1 + 1 / (i + 1)) for i in range(50)))
    code = (f"import sys\nfrom hf_linear_decay.cli import main\n"
            f"assert main(['refine', {str(norms)!r}, '-o', {str(tmp_path / 's.safetensors')!r}]) == 0\n"
            f"assert main(['inspect', {str(tmp_path / 's.safetensors')!r}]) == 0\n"
            f"assert main(['export', {str(tmp_path / 's.safetensors')!r}, '--csv']) == 0")
    assert heavy_modules_after(code) == set()


def test_the_public_names_load_on_first_use():
    assert heavy_modules_after("import hf_linear_decay\nhf_linear_decay.load_schedule_file") == set()
    assert "torch" in heavy_modules_after("from hf_linear_decay import RefinementCallback")
    assert set(hf_linear_decay.__all__) <= set(dir(hf_linear_decay))


def test_no_module_imports_the_package_init():
    # `from . import x` of a submodule is fine; `from . import __version__` (or any name defined in __init__) is not.
    submodules = {name[:-3] for name in os.listdir(PACKAGE_DIR) if name.endswith(".py")}
    for name in sorted(submodules - {"__init__", "__main__"}):
        tree = ast.parse(open(os.path.join(PACKAGE_DIR, f"{name}.py")).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                assert {alias.name for alias in node.names} <= submodules, (name, [a.name for a in node.names])
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "hf_linear_decay":
                raise AssertionError(f"{name}.py imports the package itself")


def test_modules_stay_small():
    sizes = {name: sum(1 for _ in open(os.path.join(PACKAGE_DIR, name))) for name in os.listdir(PACKAGE_DIR)
             if name.endswith(".py")}
    assert max(sizes.values()) <= 260, sizes
