"""Import hygiene and the layers, on the real package: nothing heavy for the CLI and the maths, imports only downward.

Layers (folders of `hf_linear_decay/`), lowest first; a module may import its own layer and the layers below:

    core     numpy/scipy maths, records, methods, settings (no torch)
    files    file formats and readers (no torch)
    trainer  the Trainer integration (torch, transformers; `registration` and `scheduler_kwargs` stay light)
    tools    the CLI, inspect, plot, compare (no torch); never imports `trainer`

The package root (`__init__`, `__main__`, `run`) sits on top. Function-level (lazy) imports count like any other.
"""

import ast
import os
import subprocess
import sys

import pytest
import hf_linear_decay

PACKAGE_DIR = os.path.dirname(hf_linear_decay.__file__)
LAYERS = {"core": {"core"}, "files": {"core", "files"}, "trainer": {"core", "files", "trainer"},
          "tools": {"core", "files", "tools"}}
HEAVY = {"torch", "transformers", "accelerate", "deepspeed"}


def package_modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of the package."""
    modules = {}
    for folder, _, names in os.walk(PACKAGE_DIR):
        for name in names:
            if name.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, name), PACKAGE_DIR)[:-3].split(os.sep)
                if relative[-1] == "__init__":
                    relative = relative[:-1]
                modules[".".join(["hf_linear_decay", *relative])] = os.path.join(folder, name)
    return modules


MODULES = package_modules()
LIGHT_MODULES = sorted(name for name in MODULES if name.split(".")[1:2] in (["core"], ["files"], ["tools"])
                       or name in ("hf_linear_decay", "hf_linear_decay.trainer", "hf_linear_decay.trainer.registration",
                                   "hf_linear_decay.trainer.scheduler_kwargs"))


def imports_of(name: str) -> set[str]:
    """The package modules that module `name` imports, anywhere in its body (resolved relative imports)."""
    is_package = MODULES[name].endswith("__init__.py")
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(MODULES[name]).read())):
        if isinstance(node, ast.ImportFrom):
            parent = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer_or_at_the_root():
    roots = {name for name in MODULES if layer(name) is None}
    assert roots == {"hf_linear_decay", "hf_linear_decay.__main__", "hf_linear_decay._version", "hf_linear_decay.run"}


def test_layers_import_only_downward():
    upward = []
    for name in MODULES:
        if layer(name) is None:
            continue
        for target in imports_of(name):
            if target != "hf_linear_decay._version" and layer(target) not in LAYERS[layer(name)]:
                upward.append(f"{name} -> {target}")
    assert upward == []


def cycles_of(graph: dict) -> list:
    state, cycles = {}, []

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycles():
    assert cycles_of({name: imports_of(name) for name in MODULES}) == []


def benchmark_imports() -> dict[str, set[str]]:
    """`benchmarks.X` -> the `benchmarks`, `recipes` and `tests` modules it imports (anywhere in its body)."""
    folder = os.path.join(os.path.dirname(PACKAGE_DIR), "benchmarks")
    graph = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or name == "__init__.py":
            continue
        found = set()
        for node in ast.walk(ast.parse(open(os.path.join(folder, name)).read())):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                if node.module in ("benchmarks", "recipes", "tests"):
                    found.update(f"{node.module}.{alias.name}" for alias in node.names)
                elif top in ("benchmarks", "recipes", "tests"):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.split(".")[0] in ("benchmarks", "tests"))
        graph[f"benchmarks.{name[:-3]}"] = found
    return graph


def test_benchmarks_have_no_import_cycle_and_use_no_test_code():
    graph = benchmark_imports()
    assert len(graph) > 10 and "benchmarks.lm_problems" in graph["benchmarks.lm_report"]
    assert cycles_of({name: {target for target in targets if target in graph} for name, targets in graph.items()}) == []
    assert [name for name, targets in graph.items() if any(t.startswith("tests") for t in targets)] == []


def test_no_module_imports_the_package_root():
    # A name defined in the package `__init__` (its lazy exports) is reached only by users, never by the package.
    for name in MODULES:
        if name != "hf_linear_decay" and layer(name) is not None:
            assert "hf_linear_decay" not in imports_of(name), name


def heavy_modules_after(code: str) -> set:
    probe = f"import sys\n{code}\nprint(sorted({{n.split('.')[0] for n in sys.modules}} & set({sorted(HEAVY)!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(eval(result.stdout.strip().splitlines()[-1]))


def test_the_cli_and_the_maths_import_nothing_heavy():
    assert len(LIGHT_MODULES) > 15
    assert heavy_modules_after("\n".join(f"import {name}" for name in LIGHT_MODULES)) == set()


def test_cli_commands_that_do_not_train_stay_light(tmp_path):
    norms = tmp_path / "norms.txt"
    norms.write_text("\n".join(str(1 + 1 / (i + 1)) for i in range(50)))
    code = (f"import sys\nfrom hf_linear_decay.tools.cli import main\n"
            f"assert main(['refine', {str(norms)!r}, '-o', {str(tmp_path / 's.safetensors')!r}]) == 0\n"
            f"assert main(['inspect', {str(tmp_path / 's.safetensors')!r}]) == 0\n"
            f"assert main(['export', {str(tmp_path / 's.safetensors')!r}, '--csv']) == 0")
    assert heavy_modules_after(code) == set()


@pytest.mark.slow
def test_the_public_names_load_on_first_use():
    assert heavy_modules_after("import hf_linear_decay\nhf_linear_decay.load_schedule_file") == set()
    assert "torch" in heavy_modules_after("from hf_linear_decay import RefinementCallback")
    assert set(hf_linear_decay.__all__) <= set(dir(hf_linear_decay))
    assert callable(hf_linear_decay.refine) and hf_linear_decay.refine.__name__ == "refine"


def test_modules_stay_small():
    sizes = {name: sum(1 for _ in open(path)) for name, path in MODULES.items()}
    assert max(sizes.values()) <= 300, sizes
