"""Does refinement beat linear and cosine, where, by how much? Problems x schedules x LR grid x seeds.

    python -m benchmarks.convex_study --smoke                         # seconds: synthetic problem, CI runs it
    python -m benchmarks.prepare_convex_data                          # once: the 9 real data sets
    python -m benchmarks.convex_study --convex --jobs 2               # the full convex suite (~10 min, 2 cores)
    python -m benchmarks.lm_study --all --jobs 2                      # the LM study (LLM pretraining settings)

Every schedule runs at its own best peak LR, chosen by the mean over seeds on a log grid that is extended at an
edge until the best LR is inside it. Figures: the last iterate's suboptimality f(x_T) - f*, as a ratio to linear
decay's at its best LR; the per-seed ratios' min-max (seed spread); a paired
Wilcoxon signed-rank test over seeds (win/loss when p < 0.05, else tie); the geometric mean and the worst case over
problems; and each refined schedule's area (mean multiplier / linear decay's). Outputs in `--out_dir`: runs_sgd.csv
and runs_adam.csv (every run), summary.json, results.md (tables), and one PNG per optimizer.

Schedules: transformers' linear and cosine to 0, each with and without a 5% warm-up, WSD (5% warm-up, 20% cooldown,
transformers' default cosine cooldown) and constant; each refinement method the package ships (`auto`, `paper`,
`guarded`, `cooldown`) from a linear pass 1, through the schedule file and `linear_refined`, and from a pass 1 4x
shorter (`*_short_pilot`, resampled by progress); the paper's refinement from a constant-LR pilot; and the other
robust-default candidates of `schedule_shapes.candidates`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks import convex_suite, schedule_shapes
from benchmarks.study_report import report

HERE = os.path.dirname(os.path.abspath(__file__))

GRID_CENTER = {"sgd": 1.0, "adam": 0.01}
OPTIMIZER_NORM = {"sgd": "l2", "adam": "l1"}
#: The LM study's one-run adaptive schedules (`lr_scheduler_kwargs={"adapt": true, "adapt_options": ...}`), here
#: without a warm-up, as linear decay (the reference) runs: no switch gives exactly linear decay.
ADAPTIVE = {"adapt": {"start": "linear", "switch": "peak", "rise": 1.3, "decide_by": 0.3, "fraction": 0.2,
                      "shape": "1-sqrt"}}
ADAPTIVE.update(adapt_hold=dict(ADAPTIVE["adapt"], switch="hold"), adapt_stable=dict(ADAPTIVE["adapt"], start="stable"),
                adapt_r125=dict(ADAPTIVE["adapt"], rise=1.25), adapt_hold_r125=dict(ADAPTIVE["adapt"], switch="hold",
                                                                                     rise=1.25))
OPTIMIZER_NAME = {"sgd": "SGD", "adam": "Adam"}


def _grid(center: float, points: int, decades: float) -> np.ndarray:
    return center * np.logspace(-decades / 2, decades / 2, points)


class ConvexStudy:
    """One (problem, optimizer): every schedule at its own best LR over the same seeds."""

    def __init__(self, problem, data, optimizer, steps, seeds, grid_points, decades):
        self.problem, self.optimizer, self.steps = problem, optimizer, steps
        self.X, self.y, self.classes = data
        self.fstar = convex_suite.optimum(self.X, self.y, self.classes)
        batch = 16 if len(self.X) < 1000 else 32
        self.indices = convex_suite.batch_indices(len(self.X), steps, seeds, batch)
        self.pilot_indices = convex_suite.batch_indices(len(self.X), steps, [10_000 + seeds[-1]], batch)
        self.seeds, self.grid_points, self.decades = list(seeds), grid_points, decades
        self.rows, self.results, self.decisions = [], {}, {}

    def evaluate(self, name, multipliers, lrs, adaptive=None):
        schedules = None
        if adaptive is not None:
            schedules = convex_suite.AdaptiveSchedules(adaptive, self.steps, (len(lrs), len(self.seeds)),
                                                       ["l2", "l1"].index(OPTIMIZER_NORM[self.optimizer]))
        W, _ = convex_suite.train(self.X, self.y, self.classes, multipliers, lrs, self.indices, self.optimizer,
                                  adaptive=schedules)
        if schedules is not None:
            self.decisions.setdefault(name, {}).update(
                {float(lr): row for lr, row in zip(lrs, schedules.decisions())})
        subs = np.maximum(convex_suite.full_objective(W, self.X, self.y) - self.fstar, 0.0)
        for lr, row in zip(lrs, subs):
            for seed, value in zip(self.seeds, row):
                self.rows.append((self.problem, self.optimizer, name, float(lr), seed, float(value)))
        return subs

    def best(self, name, multipliers, center, adaptive=None):
        """Search the LR grid around `center`, extending it at an edge (4 points at a time) until the best is inside.
        With `adaptive` (adapt's options), each (LR, seed) is an adaptive run instead of following `multipliers`."""
        step = self.decades / (self.grid_points - 1)
        lrs = _grid(center, self.grid_points, self.decades)
        subs = self.evaluate(name, multipliers, lrs, adaptive)
        for _ in range(6):
            index = int(np.argmin(subs.mean(axis=1)))
            if 0 < index < len(lrs) - 1:
                break
            side = -1 if index == 0 else 1
            edge = lrs[0] if side < 0 else lrs[-1]
            more = edge * 10 ** (side * step * np.arange(1, 5))
            more_subs = self.evaluate(name, multipliers, more, adaptive)
            lrs = np.concatenate([more[::-1], lrs]) if side < 0 else np.concatenate([lrs, more])
            subs = np.concatenate([more_subs[::-1], subs]) if side < 0 else np.concatenate([subs, more_subs])
        index = int(np.argmin(subs.mean(axis=1)))
        self.results[name] = {"best_lr": float(lrs[index]), "per_seed": subs[index].tolist(),
                              "edge": index in (0, len(lrs) - 1)}
        if adaptive is None:
            self.results[name]["area"] = schedule_shapes.area(multipliers)
        else:  # what each seed's run decided at the best LR
            self.results[name]["decisions"] = self.decisions[name][float(lrs[index])]
        return lrs[index]

    def pass_one(self, multipliers, lr):
        """A pass 1 at `lr` on the pilot seed, recorded as the callback would: a NormRecord of both norms and the LR.
        A shorter `multipliers` gives a shorter pass 1 (its first steps' minibatches)."""
        from hf_linear_decay.core.record import NormRecord, RunInfo

        _, norms = convex_suite.train(self.X, self.y, self.classes, multipliers, [lr],
                                      self.pilot_indices[:, : len(multipliers)], self.optimizer, record_norms=True)
        return NormRecord.from_columns({"grad_norm_l2": norms[0, 0, :, 0], "grad_norm_l1": norms[0, 0, :, 1],
                                        "lr": lr * multipliers}, run=RunInfo(optimizer=OPTIMIZER_NAME[self.optimizer]))

    def run(self):
        from hf_linear_decay.core.methods import METHODS

        shapes = schedule_shapes.baselines(self.steps)
        coarse = ConvexStudy.__new__(ConvexStudy)  # a quick 6-decade scan of linear decay picks the grid centre
        coarse.__dict__.update(self.__dict__, rows=[], results={}, decisions={}, indices=self.indices[:3],
                               seeds=self.seeds[:3], grid_points=13, decades=6.0)
        center = coarse.best("linear", shapes["linear"], GRID_CENTER[self.optimizer])
        for name, multipliers in shapes.items():
            self.best(name, multipliers, center)
        linear_lr = self.results["linear"]["best_lr"]
        record = self.pass_one(shapes["linear"], linear_lr)
        pilot = self.pass_one(shapes["constant"], linear_lr)
        # A pass 1 4x shorter (linear decay over T/4 steps); linear_refined resamples its schedule to T by progress.
        short = self.pass_one(schedule_shapes.scheduler_multipliers("linear", self.steps // 4), linear_lr)
        refined = {}
        for method in (name for name in METHODS if name != "followed"):  # followed: pass 1 itself, linear decay
            refined[method] = schedule_shapes.refined_through_the_package(record, method, self.steps)
            refined[f"{method}_short_pilot"] = schedule_shapes.refined_through_the_package(short, method, self.steps)
        refined["paper_constant_pilot"] = schedule_shapes.refined_through_the_package(pilot, "paper", self.steps)
        refined.update(schedule_shapes.candidates(record, refined["paper"], OPTIMIZER_NORM[self.optimizer]))
        for name, multipliers in refined.items():
            self.best(name, multipliers, center)
            self.results[name]["refined"] = True
        for name, options in ADAPTIVE.items():
            self.best(name, None, center, adaptive=options)
            self.results[name]["adaptive"] = True
        return self.problem, self.optimizer, self.results, self.rows


def _run_study(arguments):
    problem, optimizer, data_dir, steps, seeds, grid_points, decades = arguments
    data = convex_suite.synthetic_problem() if problem == "synthetic" else convex_suite.load_problem(problem, data_dir)
    start = time.perf_counter()
    result = ConvexStudy(problem, data, optimizer, steps, seeds, grid_points, decades).run()
    print(f"  {problem}/{optimizer}: {time.perf_counter() - start:.0f} s", flush=True)
    return result


def run_convex(problems, optimizers, options):
    tasks = [(p, o, options.data_dir, options.steps, list(range(options.seeds)), options.grid_points, options.decades)
             for p in problems for o in optimizers]
    summary, rows = {o: {} for o in optimizers}, []
    with ProcessPoolExecutor(max_workers=options.jobs) as pool:
        for problem, optimizer, results, study_rows in pool.map(_run_study, tasks):
            summary[optimizer][problem] = results
            rows += study_rows
    return summary, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true", help="synthetic problem, few steps and seeds (seconds)")
    parser.add_argument("--convex", action="store_true", help="the 9-problem logistic-regression suite")
    parser.add_argument("--report", action="store_true", help="rebuild results.md and the plots from summary.json")
    parser.add_argument("--problems", default=None, help="comma-separated subset of the convex problems")
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--grid_points", type=int, default=25)
    parser.add_argument("--decades", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (set OMP_NUM_THREADS=1 with several)")
    parser.add_argument("--data_dir", default=os.path.join(HERE, "data", "convex"))
    parser.add_argument("--out_dir", default=os.path.join(HERE, "results", "convex"))
    options = parser.parse_args(argv)
    if options.report:
        if os.path.exists(os.path.join(options.out_dir, "summary.json")):
            with open(os.path.join(options.out_dir, "summary.json")) as handle:
                print(report(json.load(handle), options.out_dir))
        return
    if not (options.smoke or options.convex):
        parser.error("choose --smoke, --convex or --report")
    os.makedirs(options.out_dir, exist_ok=True)
    optimizers = options.optimizers.split(",")
    start = time.perf_counter()
    if options.smoke:
        options.steps, options.seeds, options.grid_points, options.decades = 120, 3, 7, 3.0
        problems = ["synthetic"]
    elif options.convex:
        problems = options.problems.split(",") if options.problems else convex_suite.list_problems(options.data_dir)
    if options.smoke or options.convex:
        summary, rows = run_convex(problems, optimizers, options)
        for optimizer in optimizers:  # one file per optimizer: each stays well under the repository's 5 MB a file
            with open(os.path.join(options.out_dir, f"runs_{optimizer}.csv"), "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["problem", "optimizer", "schedule", "lr", "seed", "suboptimality"])
                writer.writerows(csv_row(row) for row in rows if row[1] == optimizer)
        with open(os.path.join(options.out_dir, "summary.json"), "w") as handle:
            json.dump(summary, handle, indent=1)
        print(report(summary, options.out_dir))
    print(f"\n{time.perf_counter() - start:.0f} s; results in {options.out_dir}")


def csv_row(row) -> list:
    """A run's row with its floats at 7 significant digits (the file stays under 5 MB; the summary uses full ones)."""
    return [f"{value:.7g}" if isinstance(value, float) else value for value in row]


if __name__ == "__main__":
    main()
