"""The comparison harness's smoke mode (what CI runs of it): the whole pipeline on a synthetic problem in seconds."""

import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_convex_study_smoke(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "benchmarks.convex_study", "--smoke", "--out_dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.load(open(tmp_path / "summary.json"))
    for optimizer in ("sgd", "adam"):
        schedules = summary[optimizer]["synthetic"]
        for name in ("linear", "linear_warmup", "cosine_warmup", "wsd", "paper", "guarded", "guarded_short_pilot"):
            assert len(schedules[name]["per_seed"]) == 3 and schedules[name]["best_lr"] > 0, name
        assert schedules["paper"]["refined"] and schedules["guarded"]["area"] > 0
    rows = []
    for optimizer in ("sgd", "adam"):
        with open(tmp_path / f"runs_{optimizer}.csv") as handle:
            rows += [row for row in csv.DictReader(handle) if row["optimizer"] == optimizer]
    assert {row["schedule"] for row in rows} >= {"linear", "paper", "guarded"}
    assert all(float(row["suboptimality"]) >= 0 for row in rows)
    text = (tmp_path / "results.md").read_text()
    assert "| synthetic |" in text and "| **geo-mean** |" in text and "| **W/T/L** |" in text
    for optimizer in ("sgd", "adam"):
        assert (tmp_path / f"compare_{optimizer}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_lm_study_smoke_runs_the_whole_pipeline_and_reuses_its_cache(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "benchmarks.lm_study", "--smoke", "--out_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.load(open(tmp_path / "summary_smoke.json"))
    for name in ("linear_warmup", "cosine_warmup", "cosine10_warmup", "wsd_linear_10", "wsd_sqrt_20", "auto", "paper",
                 "guarded", "paper_lr_corrected", "paper_stable_phase", "paper_half_linear", "wsd_fit_to_paper",
                 "auto_from_10pct", "auto_from_25pct"):
        assert len(summary[name]["per_seed"]) == 2 and summary[name]["best_lr"] > 0, name
    assert summary["auto"]["refined"] and "rises_under_decay" in summary["linear_warmup"]["norm_profile"]
    runs = sorted((tmp_path / "runs" / "smoke").iterdir())
    assert all(json.load(open(run))["eval_loss"] > 0 for run in runs)
    text = (tmp_path / "results.md").read_text()
    assert "| auto |" in text and "Default (`auto`):" in text and (tmp_path / "lm_study.png").is_file()
    assert "## smoke (held out from the default)" in text
    with open(tmp_path / "runs.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(runs) and {row["name"] for row in table} >= {"linear_warmup", "paper"}
    # A refined schedule that is pass 1's own LRs (here `guarded`) is not run again: its runs are the reference's
    kept = [name for name, result in summary.items() if result.get("same_as") == "linear_warmup"]
    assert "guarded" in kept and not {row["name"] for row in table} & set(kept)
    assert all(summary[name]["per_seed"] == summary["linear_warmup"]["per_seed"] for name in kept)
    assert all(float(row["eval_loss"]) > 0 and row["problem"] == "smoke" for row in table)
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert again.returncode == 0 and ": eval loss " not in again.stdout  # every run came from the cache


@pytest.mark.slow
def test_finetune_study_smoke_pretrains_a_base_and_fine_tunes_it_with_lora(tmp_path):
    pytest.importorskip("peft")
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "benchmarks.finetune_study", "--smoke", "--out_dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "base" / "model.safetensors").is_file()
    summary = json.load(open(tmp_path / "summary_smoke.json"))
    assert list(summary) == ["linear_warmup", "cosine_warmup", "constant_warmup", "wsd_sqrt_20", "adapt", "auto",
                             "paper"]
    assert all(len(result["per_seed"]) == 2 for result in summary.values())
    runs = [json.load(open(path)) for path in sorted((tmp_path / "runs" / "smoke").glob("adapt_lr*.json"))]
    assert runs and all(run["adaptive"]["plan"]["decision"] in ("linear", "cooldown") for run in runs)
    lora = json.load(open(next((tmp_path / "runs" / "smoke").glob("linear_warmup_*.json"))))
    assert 0 < lora["parameters"] < 10_000  # only the adapters train
    text = (tmp_path / "results.md").read_text()
    assert "## smoke" in text and "What `auto` read from pass 1" in text


def test_a_corpus_prepared_differently_stops_with_the_reason_and_the_fix():
    """The LM study's corpora are pinned by sha256: a corpus or token blocks that differ from the committed runs'
    stop the study before any run, naming the corpus, both digests and how to rebuild; the pinned digest passes."""
    from benchmarks.lm_problems import CORPUS_DIGESTS, check_digest

    pinned = CORPUS_DIGESTS["docs"]["documents"]
    check_digest("docs", "documents", pinned)  # the digest the committed runs were made from
    with pytest.raises(SystemExit) as stopped:
        check_digest("docs", "documents", "0" * 64)
    said = str(stopped.value)
    assert "docs corpus's documents" in said and pinned[:16] in said and "0" * 16 in said
    assert "prepare_corpus.py --source docs" in said and "would not reproduce" in said
    with pytest.raises(SystemExit, match="token blocks .* delete benchmarks/data/lm_study/"):
        check_digest("python", ("blocks", 2048, 128), "f" * 64)


class _CannedStudy:
    """A Study whose runs are a table of losses: what the sweep asks for is recorded, nothing trains."""

    grid_points = 3

    def __init__(self, losses):
        self.losses, self.asked = losses, []

    def run(self, jobs):
        self.asked += [(job["lr"], job["seed"]) for job in jobs]
        return [{"eval_loss": self.losses[(job["lr"], job["seed"])], "seconds": 1.0} for job in jobs]


def test_sweep_with_finalists_chooses_the_lr_by_every_seeds_mean_not_the_grid_seeds():
    from benchmarks.lm_study import Sweep

    # Seed 0 likes 1.6e-2 best, but seeds 1-2 do badly there (near the stability edge): 8e-3 wins on the mean
    losses = {(0.004, 0): 3.76, (0.008, 0): 3.73, (0.016, 0): 3.71, (0.032, 0): 3.93,
              (0.008, 1): 3.74, (0.008, 2): 3.73, (0.016, 1): 3.81, (0.016, 2): 3.74}
    study = _CannedStudy(losses)
    result = Sweep(study, "p", "linear_warmup", {}, seeds=(0, 1, 2), center=0.008, grid_seeds=1, finalists=2).run()
    assert result["best_lr"] == 0.008 and result["per_seed"] == [3.73, 3.74, 3.73]
    assert result["grid"] == [0.004, 0.008, 0.016, 0.032] and result["means"] == [3.76, 3.73, 3.71, 3.93]
    assert result["finalists"] == pytest.approx({"0.008": 3.7333333, "0.016": 3.7533333})
    # The grid ran on seed 0 alone; the other seeds ran at the two finalists only
    assert {lr for lr, seed in study.asked if seed > 0} == {0.008, 0.016}
    # One finalist (the default) is the seed-0 choice, whatever the other seeds do there
    study = _CannedStudy(losses)
    assert Sweep(study, "p", "linear_warmup", {}, seeds=(0, 1, 2), center=0.008, grid_seeds=1).run()["best_lr"] == 0.016
    assert {lr for lr, seed in study.asked if seed > 0} == {0.016}


def test_sweep_brackets_the_lr_every_seed_chose_when_it_sits_at_the_grids_edge():
    from benchmarks.lm_study import Sweep

    # Seed 0 likes 1.6e-2 (inside the grid); the other seeds make 4e-3, the grid's low edge, the choice: 2e-3 runs
    # on seed 0 to bracket it, and loses, so 4e-3 stays
    losses = {(0.002, 0): 3.77, (0.004, 0): 3.714, (0.008, 0): 3.729, (0.016, 0): 3.711, (0.032, 0): 3.93,
              (0.004, 1): 3.718, (0.004, 2): 3.724, (0.016, 1): 3.81, (0.016, 2): 3.74}
    study = _CannedStudy(losses)
    result = Sweep(study, "p", "adapt", {}, seeds=(0, 1, 2), center=0.008, grid_seeds=1, finalists=2).run()
    assert result["best_lr"] == 0.004 and not result["edge"]
    assert result["grid"] == [0.002, 0.004, 0.008, 0.016, 0.032]
    assert (0.002, 0) in study.asked and (0.002, 1) not in study.asked
