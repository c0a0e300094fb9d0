"""Start-up time of the CLI commands that do not train, against `python -c pass`, interleaved in one run.

    python -m benchmarks.bench_cli_startup              # 7 rounds
    python -m benchmarks.bench_cli_startup --rounds 15

Each round runs every command once, in a rotating order, so that load on this shared machine hits all of them alike.
Prints the median wall time of each and its ratio to `python -c pass`, and whether `hf-linear-decay inspect FILE` met
its target (< 1.5 s on the 2-core development machine). None of these commands may import torch or transformers
(tests/test_imports.py checks that); this measures what that buys.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

TARGET_SECONDS = 1.5


def hook_cost(rounds: int, python: str = sys.executable, env: dict | None = None) -> float:
    """Median microseconds that importing the start-up hook adds to every interpreter start (Python's own timer)."""
    costs = []
    for _ in range(rounds):
        result = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, env=env)
        lines = [line for line in result.stderr.splitlines() if line.rstrip().endswith("hf_linear_decay_autoload")]
        if not lines:
            raise SystemExit("the start-up hook is not installed (pip install -e . installs it)")
        costs.append(int(lines[0].split("|")[1]))  # cumulative microseconds of that import
    return statistics.median(costs)


def installed_wheel(folder: str) -> list[tuple[str, str]]:
    """A fresh venv with the package installed as users get it (a wheel, no dependencies): `[(label, python)]`."""
    venv = os.path.join(folder, "venv")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    wheels = os.path.join(folder, "wheels")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                            wheels, root], capture_output=True, text=True)
    if built.returncode != 0:
        print(f"(no wheel measurement: building the wheel failed: {built.stderr.strip().splitlines()[-1:]})")
        return []
    wheel = os.path.join(wheels, next(name for name in os.listdir(wheels) if name.endswith(".whl")))
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
                   check=True, capture_output=True)
    return [("a regular install (wheel, fresh venv)", python)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    from hf_linear_decay.core.schedule import build_schedule
    from hf_linear_decay.core.record import NormRecord
    from hf_linear_decay.files.schedule_file import save_schedule_file

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "refined_schedule.safetensors")
    norms = np.random.default_rng(0).lognormal(size=10_000) * np.linspace(3, 1, 10_000)
    save_schedule_file(build_schedule(NormRecord.from_columns({"grad_norm_l1": norms})), path)
    console = shutil.which("hf-linear-decay") or f"{sys.executable} -m hf_linear_decay"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m hf_linear_decay --help": [sys.executable, "-m", "hf_linear_decay", "--help"],
        "hf-linear-decay inspect FILE": [*console.split(), "inspect", path],
        "hf-linear-decay export FILE --csv": [*console.split(), "export", path, "--csv"],
    }
    times = {name: [] for name in commands}
    names = list(commands)
    for round_index in range(options.rounds):
        for name in names[round_index % len(names):] + names[: round_index % len(names)]:
            start = time.perf_counter()
            subprocess.run(commands[name], check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["python -c pass"])
    print("| command | median (s) | min-max (s) | ratio to python -c pass |\n|---|---|---|---|")
    for name in names:
        median = statistics.median(times[name])
        print(f"| {name} | {median:.3f} | {min(times[name]):.3f}-{max(times[name]):.3f} | {median / baseline:.1f} |")
    print("\nstart-up hook (hf_linear_decay_autoload, Python's own `-X importtime`), target < 1000 us:")
    # An editable install imports the hook from the source tree: its bytecode is cached there unless bytecode writing
    # is off (PYTHONDONTWRITEBYTECODE, as on the development machine), and then it is compiled at every start. Both
    # are measured with a cache folder of their own, so that the tree's __pycache__ is neither used nor touched;
    # and as this shell starts Python, whatever its environment and the tree's __pycache__ hold.
    cached = dict(os.environ, PYTHONPYCACHEPREFIX=os.path.join(folder, "pycache"))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "pass"], env=cached, check=True)  # writes the hook's bytecode once
    uncached = dict(os.environ, PYTHONPYCACHEPREFIX=os.path.join(folder, "empty"), PYTHONDONTWRITEBYTECODE="1")
    editable = [("an editable install, as this shell starts it (environment unchanged)", sys.executable, None),
                ("an editable install, bytecode cached", sys.executable, cached),
                ("an editable install, compiled at every start, bytecode looked up under /tmp", sys.executable,
                 uncached)]
    for where, python, *env in (*editable, *((label, python) for label, python in installed_wheel(folder))):
        hook = hook_cost(options.rounds, python, *env)
        print(f"- {where}: median {hook:.0f} us over {options.rounds} rounds, {100 * hook / 1e6 / baseline:.2f}% of "
              f"`python -c pass` ({baseline * 1e3:.1f} ms): {'met' if hook < 1000 else 'NOT met'}")
    inspect = statistics.median(times["hf-linear-decay inspect FILE"])
    print(f"\ninspect: {inspect:.2f} s median over {options.rounds} rounds, target < {TARGET_SECONDS} s: "
          f"{'met' if inspect < TARGET_SECONDS else 'NOT met'}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
