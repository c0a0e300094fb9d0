"""How long the refinement takes on long runs (one core, numpy/scipy only).

    python -m benchmarks.bench_refine            # 1,000,000 steps, tau 0.1 (window 100,001)
    python -m benchmarks.bench_refine --steps 100000 --repeats 5

Prints the best and median of the repeats. The target is "well under 1 s" for 1M steps; per-window sorting would
take minutes. (The slow loop twin the tests compare against lives in tests/reference.py, for tests only.)
"""

import argparse
import statistics
import time

import numpy as np

from hf_linear_decay.core.refine import filter_width, refine_schedule


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    norms = np.random.default_rng(0).lognormal(size=args.steps) * np.linspace(5, 1, args.steps)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        refine_schedule(norms, tau=args.tau, power=2)
        times.append(time.perf_counter() - start)
    print(f"refine_schedule: T={args.steps:,}, window={filter_width(args.steps, args.tau):,}: "
          f"best {min(times):.3f} s, median {statistics.median(times):.3f} s over {args.repeats} runs")


if __name__ == "__main__":
    main()
