"""The quick test loop's time on this tree against another commit's, interleaved on one machine.

    python -m benchmarks.bench_quick_loop --base 06bf841 --repeats 2     # -> benchmarks/results/quick_loop.md

Each repeat runs the README's quick loop (`-m "not slow and not distributed"`) in a worktree of `--base`, then in
this tree, one after the other, so both see the same machine load; the ratio of the two wall times is the claim (an
absolute time on a shared machine is not).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.lm_problems import HERE, ROOT

QUICK = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-m", "not slow and not distributed"]


def timed_loop(tree: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(QUICK, cwd=tree, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the quick loop failed in {tree}:\n{done.stdout[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "quick_loop.md"))
    options = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base = os.path.join(folder, "base")
        subprocess.run(["git", "worktree", "add", "--detach", base, options.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for repeat in range(options.repeats):
                (before, said_before), (after, said_after) = timed_loop(base), timed_loop(ROOT)
                rows.append(f"| {repeat + 1} | {before:.0f} s ({said_before}) | {after:.0f} s ({said_after}) | "
                            f"{after / before:.2f} |")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=ROOT, capture_output=True)
    lines = ["# The quick test loop, this tree against another commit", "",
             f"Command: `python -m benchmarks.bench_quick_loop --base {options.base} --repeats {options.repeats}` "
             "(interleaved: base, then this tree, per repeat).", "",
             f"| repeat | `{options.base}` | this tree | ratio |", "|---|---|---|---|", *rows]
    with open(options.out + ".tmp", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(options.out + ".tmp", options.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
