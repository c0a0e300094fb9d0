"""LM schedule study at LLM-pretraining settings: which schedule wins, each at its own best peak LR, over seeds.

    python -m benchmarks.lm_study --problem python_tiny --jobs 2      # one problem's sweep (under an hour, 2 cores)
    python -m benchmarks.lm_study --all --jobs 2                      # every CPU problem, in order
    python -m benchmarks.lm_study --report                            # tables and figures from the cached runs
    python -m benchmarks.lm_study --problem gpu_d512 --jobs 16        # the GPU size (needs a GPU)
    python -m benchmarks.lm_study --smoke --out_dir /tmp/s            # seconds: the whole pipeline, tiny (CI)

Setting (what LLM pretraining uses): a Llama-style model from `LlamaConfig` (RMSNorm, SwiGLU, RoPE, tied
embeddings), a byte-level BPE tokenizer trained on the corpus, EOS-packed blocks (`recipes/lm_data.py`), AdamW with
β = (0.9, 0.95), weight decay 0.1 (the Trainer's exclusion of biases and norm weights), clipping at 1.0, 5% warm-up
for the baselines, eval loss on held-out documents. Every run goes through the real path: `Trainer` with the
scheduler type; refined schedules are `linear_refined` with a schedule file written from pass 1's record.

Design for a 2-core machine: each run is cached as one JSON file (`<out_dir>/runs/<problem>/<run>.json`, committed),
keyed by everything that determines it, so a study continues across sessions and an unchanged run is never redone;
each schedule's LR grid starts at the reference's best LR and extends by factors of 2 only at an edge. Pass 1 is
the reference schedule (linear decay with 5% warm-up) at its best LR, seed 0; its schedule file is kept beside the
runs (`<out_dir>/pass1/<problem>/`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


from benchmarks.lm_problems import (BASELINES, CPU_PROBLEMS, DATA_DIR, HERE, PROBLEMS, REFERENCE, ROOT, SEEDS,  # noqa: F401
                                    baseline_spec, build_model, grid_factor, prepared_data)  # (DATA_DIR: for Study)

DEFAULT_OUT = os.path.join(HERE, "results", "lm_study")
STUDY_VERSION = 1  # part of every run's key: bump when the training setup changes


# ----- one training run ---------------------------------------------------------------------------------------------
def train_one(job: dict) -> dict:
    """One run of `job` (problem, schedule spec, lr, seed, out_dir); returns its metrics and curves."""
    import torch
    from transformers import TrainingArguments

    problem = PROBLEMS[job["problem"]]
    spec, steps = job["spec"], job.get("max_steps") or problem["steps"]
    if problem["device"] == "cpu":
        torch.set_num_threads(1)
    tokenizer, train_set, eval_set = prepared_data(problem)
    args = TrainingArguments(
        output_dir=job["out_dir"], lr_scheduler_type=spec["type"], warmup_steps=round(spec["warmup"] * steps),
        lr_scheduler_kwargs=schedule_kwargs(spec, steps, job), per_device_train_batch_size=problem["batch"],
        per_device_eval_batch_size=32, max_steps=steps, learning_rate=job["lr"], weight_decay=0.1, adam_beta1=0.9,
        adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10, eval_strategy="steps", eval_steps=max(1, steps // 10),
        save_strategy="no", report_to="none", use_cpu=problem["device"] == "cpu", bf16=problem["device"] == "cuda",
        seed=job["seed"], data_seed=job["seed"], disable_tqdm=True, dataloader_num_workers=0,
        optim=spec.get("optim", "adamw_torch"))
    model = build_model(problem, len(tokenizer), tokenizer.eos_token_id, job["seed"])
    return {**train_and_evaluate(model, args, train_set, eval_set, job), "parameters": model.num_parameters(),
            "tokens": steps * problem["batch"] * problem["block"]}


def schedule_kwargs(spec: dict, steps: int, job: dict) -> dict:
    """A run spec's `lr_scheduler_kwargs` for a run of `steps`: `*_frac` values as steps, `decay` as
    `num_decay_steps`, a schedule file relative to the study's folder (the cache does not depend on the machine)."""
    kwargs = {key[:-5] if key.endswith("_frac") else key: round(value * steps) if key.endswith("_frac") else value
              for key, value in spec.get("kwargs", {}).items()}
    kwargs = {"num_decay_steps" if key == "decay" else key: value for key, value in kwargs.items()}
    if "schedule_file" in kwargs:
        kwargs["schedule_file"] = os.path.join(job["study_dir"], kwargs["schedule_file"])
    return kwargs


def train_and_evaluate(model, args, train_set, eval_set, job: dict) -> dict:
    """Train `model` through `Trainer` (with a recorder when the job asks), evaluate it: a run's common result
    fields (final eval loss, time, an adaptive run's decision, the curves, the schedule file it wrote)."""
    from transformers import PrinterCallback, Trainer, default_data_collator

    import hf_linear_decay
    from hf_linear_decay.trainer.callback import RefinementCallback

    callbacks = [RefinementCallback()] if job.get("record") else []
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=eval_set, data_collator=default_data_collator,
                      callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the logs are in the result; a sweep's output stays readable
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    loss = trainer.evaluate()["eval_loss"]
    history = trainer.state.log_history
    schedule_file = os.path.join(job["out_dir"], hf_linear_decay.SCHEDULE_FILE_NAME)
    adaptive = None
    if "adapt" in job["spec"].get("kwargs", {}) and os.path.isfile(schedule_file):  # what the adaptive run decided
        adaptive = hf_linear_decay.load_schedule_file(schedule_file).adaptive
    return {"eval_loss": float(loss) if math.isfinite(loss) else None, "seconds": seconds, "adaptive": adaptive,
            "eval_curve": [[e["step"], e["eval_loss"]] for e in history if "eval_loss" in e],
            "train_curve": [[e["step"], e["loss"]] for e in history if "loss" in e],
            "lr_curve": [[e["step"], e["learning_rate"]] for e in history if "learning_rate" in e],
            "schedule_file": schedule_file if os.path.isfile(schedule_file) else None}


# ----- the cache ----------------------------------------------------------------------------------------------------
#: The fields of a problem that a run's key holds (what the training depends on; `center` is kept for the keys of
#: the runs cached before the study-design fields `ideas`, `short_pass_one` and `baselines` existed).
KEY_FIELDS = ("corpus", "model", "vocab", "steps", "batch", "block", "eval_blocks", "center", "device")


def run_key(job: dict, runner=None) -> str:
    """What determines a run: its job and its problem's `KEY_FIELDS`, under the runner's `STUDY_VERSION`."""
    runner = runner or sys.modules[__name__]
    identity = {key: job[key] for key in ("problem", "spec", "lr", "seed") if key in job}
    config = runner.PROBLEMS[job["problem"]]
    identity.update(version=runner.STUDY_VERSION, problem_config={key: config[key] for key in runner.KEY_FIELDS},
                    max_steps=job.get("max_steps"), record=bool(job.get("record")))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


class Study:
    """Runs jobs through subprocesses (`--jobs` at once) and caches each result as JSON under `out_dir/runs`.

    `runner` is the study's module (this one by default; `benchmarks.finetune_study` for fine-tuning): its
    `PROBLEMS`, `KEY_FIELDS`, `STUDY_VERSION`, `DATA_DIR` and `train_one`, run as `python -m RUNNER --run_job JOB`.
    """

    def __init__(self, out_dir: str, jobs: int, grid_points: int = 3, runner=None):
        self.out_dir, self.jobs, self.grid_points = out_dir, jobs, grid_points
        self.runner = runner or sys.modules[__name__]

    def cached_path(self, job: dict) -> str:
        name = f"{job['name']}_lr{job['lr']:g}_s{job['seed']}.json"
        return os.path.join(self.out_dir, "runs", job["problem"], name)

    def cached(self, job: dict) -> dict | None:
        path = self.cached_path(job)
        if os.path.isfile(path):
            with open(path) as handle:
                result = json.load(handle)
            if result.get("key") == run_key(job, self.runner):
                return result
        return None

    def _launch(self, job: dict) -> dict:
        run_dir = os.path.join(self.runner.DATA_DIR, "runs", job["problem"],
                               f"{job['name']}_lr{job['lr']:g}_s{job['seed']}")
        job = dict(job, out_dir=run_dir, study_dir=os.path.abspath(self.out_dir))
        if self.jobs == 0:  # in this process (the smoke test: no start-up per run)
            payload = self.runner.train_one(job)
        else:
            env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
            module = self.runner.__spec__.name if self.runner.__name__ == "__main__" else self.runner.__name__
            command = [sys.executable, "-m", module, "--run_job", json.dumps(job)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"LM run {job['name']} lr {job['lr']:g} seed {job['seed']} failed:\n"
                                   f"{done.stderr[-4000:]}")
            payload = json.loads(lines[-1])
        result = dict(payload, key=run_key(job, self.runner), name=job["name"], lr=job["lr"], seed=job["seed"],
                      problem=job["problem"], spec=job["spec"])
        if result.get("schedule_file") and job.get("keep_schedule_file"):
            kept = os.path.join(self.out_dir, "pass1", job["problem"], f"{job['name']}_lr{job['lr']:g}"
                                                                       f"_s{job['seed']}.safetensors")
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            os.replace(result["schedule_file"], kept)
            result["schedule_file"] = os.path.relpath(kept, self.out_dir)
        else:
            result["schedule_file"] = None
        path = self.cached_path(job)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(path + ".tmp", path)
        print(f"  {job['problem']} {job['name']} lr {job['lr']:g} seed {job['seed']}: eval loss "
              f"{result['eval_loss']} ({result['seconds']:.0f} s)", flush=True)
        return result

    def run(self, jobs: list[dict]) -> list[dict]:
        results = [self.cached(job) for job in jobs]
        missing = [job for job, result in zip(jobs, results) if result is None]
        with ThreadPoolExecutor(max(1, self.jobs)) as pool:
            fresh = iter(list(pool.map(self._launch, missing)))
        return [result if result is not None else next(fresh) for result in results]



# ----- the sweep ----------------------------------------------------------------------------------------------------
def refined_spec(path: str, multipliers: np.ndarray) -> dict:
    """A refined schedule run through `linear_refined` with its file; the key holds the multipliers' digest."""
    digest = hashlib.sha256(np.ascontiguousarray(multipliers, dtype=np.float64).tobytes()).hexdigest()[:16]
    return {"type": "linear_refined", "warmup": 0.0, "kwargs": {"schedule_file": path}, "multipliers": digest}


class Sweep:
    """One schedule's LR sweep on one problem: a grid of factors of 2 around `center`, extended at an edge."""

    MAX_EXTENSIONS = 3

    def __init__(self, study: Study, problem: str, name: str, spec: dict, seeds, center: float,
                 grid_seeds: int | None = None, finalists: int = 1, **extra):
        self.study, self.problem, self.name, self.spec, self.seeds = study, problem, name, spec, list(seeds)
        self.grid = [center / 2, center, center * 2] if study.grid_points == 3 else [center]
        # A long problem may choose the LR on its first seed(s) only and run the other seeds at the `finalists` best
        # LRs of that grid, choosing among them by every seed's mean: one seed near the stability edge picks an LR
        # that another seed does badly at (docs_20tpp, seed 1 at 1.6e-2)
        self.grid_seeds = self.seeds[: grid_seeds or len(self.seeds)]
        self.finalists = finalists
        self.extra, self.runs = extra, {}

    def _run(self, lrs, seeds=None):
        jobs = [dict(problem=self.problem, name=self.name, spec=self.spec, lr=float(lr), seed=seed, **self.extra)
                for lr in lrs for seed in (seeds or self.grid_seeds)]
        for job, result in zip(jobs, self.study.run(jobs)):
            self.runs[(job["lr"], job["seed"])] = result

    def mean(self, lr, seeds=None) -> float:
        """The mean eval loss at `lr` over `seeds` (default: the seeds that run the grid)."""
        losses = [self.runs[(lr, seed)]["eval_loss"] for seed in (seeds or self.grid_seeds)]
        return float(np.mean([math.inf if loss is None else loss for loss in losses]))

    def _interior_or_done(self, best: int, extensions: int) -> bool:
        return len(self.grid) == 1 or 0 < best < len(self.grid) - 1 or extensions == self.MAX_EXTENSIONS

    def _extend(self, best: int) -> None:
        """One more LR beyond the grid's edge at index `best`, on the grid's seeds."""
        lr = self.grid[0] / 2 if best == 0 else self.grid[-1] * 2
        self._run([lr])
        self.grid = sorted(self.grid + [lr])

    def _finalist_lrs(self) -> list[float]:
        """The grid's `finalists` best LRs on the grid's seeds, best first."""
        order = np.argsort([self.mean(lr) for lr in self.grid], kind="stable")
        return [self.grid[i] for i in order[: self.finalists]]

    def _chosen(self) -> float:
        """The best of the finalists by the mean over every seed (run here)."""
        finalists = self._finalist_lrs()
        self._run(finalists, seeds=self.seeds)  # every seed at the finalists (cached where the grid ran them)
        return min(finalists, key=lambda x: self.mean(x, self.seeds))

    def run(self) -> dict:
        self._run(self.grid)
        extensions = 0
        # Bracket the grid seeds' best first, then the LR every seed chose (a finalist may sit at the grid's edge)
        while not self._interior_or_done(best := int(np.argmin([self.mean(lr) for lr in self.grid])), extensions):
            self._extend(best)
            extensions += 1
        while not self._interior_or_done(best := self.grid.index(self._chosen()), extensions):
            self._extend(best)
            extensions += 1
        lr = self.grid[best]
        finalists = self._finalist_lrs()
        return {"best_lr": lr, "grid": self.grid, "means": [self.mean(x) for x in self.grid],
                "grid_seeds": len(self.grid_seeds),
                "finalists": {f"{x:g}": self.mean(x, self.seeds) for x in sorted(finalists)},
                "per_seed": [self.runs[(lr, seed)]["eval_loss"] for seed in self.seeds],
                "edge": len(self.grid) > 1 and best in (0, len(self.grid) - 1),
                "seconds": sum(run["seconds"] for run in self.runs.values()), "runs": len(self.runs)}


def _load_record(study: Study, result: dict):
    from hf_linear_decay.files.schedule_file import load_schedule_file

    return load_schedule_file(os.path.join(study.out_dir, result["schedule_file"])).record


def _save_schedule(study: Study, problem: str, name: str, record, multipliers: np.ndarray, method: str) -> str:
    """Write `multipliers` with pass 1's record as a schedule file under out_dir/schedules; returns its path there."""
    from hf_linear_decay.core.schedule import RefinedSchedule
    from hf_linear_decay.core.settings import RefinementSettings
    from hf_linear_decay.files.schedule_file import save_schedule_file

    settings = RefinementSettings(method=method).resolved(record)
    relative = os.path.join("schedules", problem, f"{name}.safetensors")
    save_schedule_file(RefinedSchedule(record=record, multipliers=np.asarray(multipliers, dtype=np.float64),
                                       settings=settings), os.path.join(study.out_dir, relative))
    return relative


def study_problem(study: Study, problem: str, seeds, center: float, only=None) -> dict:
    """Every schedule at its own best LR on `problem`: the reference first (its best LR, seed 0, is pass 1), then the
    baselines and the refined schedules from grids centred at the reference's best LR (times the baseline's
    `grid_factor`). With `only` (schedule names), just those (and the reference), merged into the saved summary."""
    from benchmarks import lm_candidates
    from hf_linear_decay.core.refinements import pass_one_shape
    from hf_linear_decay.core.shapes import resample_schedule

    print(f"== {problem} (seeds {list(seeds)}, grid centre {center:g})", flush=True)
    prepared_data(PROBLEMS[problem])  # tokenizer and packed blocks once, here, before parallel runs read them
    summary_path = os.path.join(study.out_dir, f"summary_{problem}.json")
    summary = {}
    if only and os.path.isfile(summary_path):
        with open(summary_path) as handle:
            summary = json.load(handle)

    def wanted(name):
        return not only or name in only

    config = PROBLEMS[problem]
    grid_seeds, finalists = config.get("grid_seeds"), config.get("finalists", 1)
    summary[REFERENCE] = Sweep(study, problem, REFERENCE, baseline_spec(REFERENCE), seeds, center, grid_seeds,
                               finalists, keep_schedule_file=True).run()
    lr = summary[REFERENCE]["best_lr"]
    for name in config.get("baselines", BASELINES):
        if name != REFERENCE and wanted(name):
            record = {"record": True, "keep_schedule_file": True} if name == "wsd_sqrt_20" else {}
            summary[name] = Sweep(study, problem, name, baseline_spec(name), seeds, lr * grid_factor(name),
                                  grid_seeds, finalists, **record).run()
    pass_one = _load_record(study, study.cached(dict(problem=problem, name=REFERENCE, spec=baseline_spec(REFERENCE),
                                                     lr=lr, seed=seeds[0], keep_schedule_file=True)))
    refined = lm_candidates.package_methods(pass_one, config.get("methods", lm_candidates.STUDY_METHODS))
    if config.get("ideas") and wanted("ideas"):
        wsd_lr = summary["wsd_sqrt_20"]["best_lr"]
        stable_run = _load_record(study, study.cached(dict(problem=problem, name="wsd_sqrt_20",
                                                           spec=baseline_spec("wsd_sqrt_20"), lr=wsd_lr,
                                                           seed=seeds[0], record=True, keep_schedule_file=True)))
        refined.update(lm_candidates.candidates(pass_one, stable_run))
    if config.get("short_pass_one") and wanted("short_pass_one"):
        refined.update(short_pass_one_schedules(study, problem, lr, seeds[0], len(pass_one)))
    for name, shape in refined.items():
        if not (wanted(name) or wanted("ideas") and name not in lm_candidates.STUDY_METHODS
                or wanted("short_pass_one") and "_from_" in name):
            continue
        record, multipliers = shape if isinstance(shape, tuple) else (pass_one, shape)
        method = name.split("_from_")[0] if name.split("_from_")[0] in lm_candidates.STUDY_METHODS else "paper"
        path = _save_schedule(study, problem, name, record, multipliers, method)
        followed = resample_schedule(multipliers, len(pass_one))  # what linear_refined gives over the run
        if record is pass_one and np.array_equal(followed, pass_one_shape(pass_one)):
            # Pass 1's own LRs, exactly: its runs are the reference's (python_tiny's `guarded` ran all nine and
            # matched the reference's losses bit for bit), so they are not run again
            summary[name] = {key: value for key, value in summary[REFERENCE].items() if key != "norm_profile"}
            summary[name].update(refined=True, area=1.0, same_as=REFERENCE)
            continue
        summary[name] = Sweep(study, problem, name, refined_spec(path, multipliers), seeds, lr, grid_seeds,
                              finalists).run()
        summary[name].update(refined=True, area=float(followed.mean() / pass_one_area(pass_one)))
    summary[REFERENCE]["norm_profile"] = lm_candidates.profile_of(pass_one)
    with open(summary_path + ".tmp", "w") as handle:
        json.dump(summary, handle, indent=1)
    os.replace(summary_path + ".tmp", summary_path)
    return summary


#: A cheaper second run: pass 1 over this share of the steps (its own linear decay with warm-up), refined by the
#: default and resampled to the full run by progress, as `linear_refined` does with a file of another length.
SHORT_PASS_ONE = (0.1, 0.25)


def short_pass_one_schedules(study: Study, problem: str, lr: float, seed: int, num_steps: int) -> dict:
    from benchmarks import lm_candidates

    out = {}
    for share in SHORT_PASS_ONE:
        job = dict(problem=problem, name=f"{REFERENCE}_short{round(100 * share)}", spec=baseline_spec(REFERENCE),
                   lr=lr, seed=seed, max_steps=round(share * num_steps), keep_schedule_file=True)
        record = _load_record(study, study.run([job])[0])
        # The short pass 1's own schedule file: `linear_refined` resamples it to the run, as it does for a user.
        out[f"auto_from_{round(100 * share)}pct"] = (record, lm_candidates.package_methods(record)["auto"])
    return out


def pass_one_area(record) -> float:
    """Mean multiplier of pass 1's schedule (its recorded LRs over their peak)."""
    return float((record.lr / record.lr.max()).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--problem", action="append", choices=sorted(PROBLEMS), help="problem(s) to study")
    parser.add_argument("--all", action="store_true", help="every CPU problem, in order")
    parser.add_argument("--smoke", action="store_true", help="the whole pipeline on a tiny problem (seconds)")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from the cached runs")
    parser.add_argument("--only", action="append", help="only these schedules (and the reference); 'ideas' and "
                        "'short_pass_one' name those groups; merged into the problem's saved summary")
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each a process with one thread on CPU)")
    parser.add_argument("--out_dir", default=DEFAULT_OUT)
    options = parser.parse_args(argv)
    problems = ["smoke"] if options.smoke else CPU_PROBLEMS if options.all else (options.problem or [])
    if not problems and not options.report:
        parser.error("choose --problem NAME, --all, --smoke or --report")
    study = Study(options.out_dir, 0 if options.smoke else options.jobs, grid_points=1 if options.smoke else 3)
    seeds = SEEDS[: 2 if options.smoke else options.seeds]
    center = None
    for problem in problems:
        center = PROBLEMS[problem]["center"] or center or 4e-3
        summary = study_problem(study, problem, seeds, center, options.only)
        center = summary[REFERENCE]["best_lr"]  # the next problem's grid starts at this problem's best LR
    from benchmarks import lm_report

    print(lm_report.write_report(options.out_dir))


def entry_point(run_one, study_main) -> None:
    """`python -m STUDY --run_job JOB`: one run, its result as a JSON line on stdout (what `Study` launches); any
    other command line: the study's `main`."""
    if len(sys.argv) == 3 and sys.argv[1] == "--run_job":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
    else:
        study_main()


if __name__ == "__main__":
    entry_point(train_one, main)
