"""Real multi-process runs on CPU (gloo): 2-process DDP through torchrun, raw FSDP2 on 2 and 4 processes.

Run alone with `python -m pytest tests -m distributed`. Each test launches fresh processes; they use
`torchrun --standalone`, which picks a free port, so they do not collide with each other.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_linear_decay import load_schedule_file

pytestmark = pytest.mark.distributed

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DDP_SCRIPT, FSDP_SCRIPT = "tests.scripts.ddp_train", "tests.scripts.fsdp2_norms"  # run as modules from ROOT
FIELDS = ("grad_norm_l2", "grad_norm_l1", "lr", "skipped", "multipliers")


def launch(script, *args, processes=1, timeout=300, torchrun=False):
    if processes == 1 and not torchrun:
        command = [sys.executable, "-m", script, *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", script, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def schedule(folder):
    return load_schedule_file(os.path.join(folder, "refined_schedule.safetensors"))


REFERENCE_CONFIGS = [(1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5)]  # (gradient accumulation, max_grad_norm)


def launch_configs(folder, configs, batch_size, processes=1):
    """Train several (grad_accum, max_grad_norm) configurations in one launch; returns their output folders."""
    folders = [str(folder / f"ga{ga}_clip{clip}") for ga, clip in configs]
    more = [{"output_dir": out, "grad_accum": ga, "max_grad_norm": clip} for out, (ga, clip) in zip(folders[1:],
                                                                                                    configs[1:])]
    launch(DDP_SCRIPT, "--output_dir", folders[0], "--batch_size", str(batch_size), "--grad_accum",
           str(configs[0][0]), "--max_grad_norm", str(configs[0][1]), "--more", json.dumps(more), processes=processes)
    return dict(zip(configs, folders))


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    """The one-process reference runs with the global batch (8), per (gradient accumulation, clipping), trained
    once in one process and shared by the DDP, resume and DeepSpeed tests that compare against them."""
    folders = launch_configs(tmp_path_factory.mktemp("single"), REFERENCE_CONFIGS, batch_size=8)

    def get(grad_accum=1, max_grad_norm=0.0):
        return schedule(folders[(grad_accum, float(max_grad_norm))])

    return get


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """The three DDP configurations, trained in one 2-process launch (batch 4 per process: global batch 8)."""
    return launch_configs(tmp_path_factory.mktemp("ddp"), REFERENCE_CONFIGS[:3], batch_size=4, processes=2)


def assert_same_record(actual, expected, rtol=1e-5):
    for name in FIELDS:
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), rtol=rtol, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("grad_accum, max_grad_norm", [(1, 0.0), (2, 0.0), (1, 0.5)],
                         ids=["plain", "grad-accum", "clipping"])
def test_ddp_two_processes_equal_one_process_with_the_global_batch(grad_accum, max_grad_norm, single_process_run,
                                                                    ddp_runs):
    folder = ddp_runs[(grad_accum, max_grad_norm)]
    ddp, single = schedule(folder), single_process_run(grad_accum, max_grad_norm)
    assert ddp.num_steps == single.num_steps == 8
    assert ddp.run.world_size == 2 and single.run.world_size == 1
    assert_same_record(ddp, single)
    ranks = [json.load(open(os.path.join(folder, f"record_rank{r}.json"))) for r in (0, 1)]
    assert ranks[0]["grad_norm_l2"] == ranks[1]["grad_norm_l2"] and ranks[0]["grad_norm_l1"] == ranks[1]["grad_norm_l1"]
    np.testing.assert_allclose(ranks[0]["grad_norm_l2"], ranks[0]["logged_grad_norm"], rtol=1e-6)
    if max_grad_norm:
        assert min(ranks[0]["logged_grad_norm"]) > max_grad_norm  # clipping was active
    # Only the main process wrote files: no stray temporary files from rank 1.
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_resume_two_processes_to_one(tmp_path, single_process_run):
    folder = str(tmp_path / "switch")
    launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "4", "--save_steps", "4", "--stop_at", "4", processes=2)
    assert schedule(folder).num_steps == 4
    launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "8", "--resume", os.path.join(folder, "checkpoint-4"))
    resumed, single = schedule(folder), single_process_run()
    assert resumed.num_steps == 8 and resumed.run.world_size == 1
    assert_same_record(resumed, single)


@pytest.mark.parametrize("processes, flags", [(2, []), (4, []), (4, ["--hsdp"]), (2, ["--fsdp1"]),
                                             (2, ["--fsdp1", "--flat"])],
                         ids=["fsdp2-2-shard", "fsdp2-4-shard", "fsdp2-hsdp-2x2", "fsdp1-orig-params", "fsdp1-flat"])
def test_fsdp_global_norms_equal_the_unsharded_norms(tmp_path, processes, flags):
    out = tmp_path / "fsdp.json"
    hsdp = "--hsdp" in flags
    launch(FSDP_SCRIPT, str(out), *flags, processes=processes)
    results = json.load(open(out))
    assert len(results) == processes
    for result in results:
        assert any("Shard" in p for p in result["placements"])
        assert result["method"] == ("fsdp1" if "--fsdp1" in flags else "tensors")
        if hsdp:
            assert any("Replicate" in p for p in result["placements"])
        np.testing.assert_allclose(result["measured"], result["expected"], rtol=1e-5)
    if hsdp:  # the naive reduction over-counts the replicated dimension; ours does not
        naive = np.array(results[0]["naive"]) / np.array(results[0]["expected"])
        np.testing.assert_allclose(naive, [np.sqrt(2), 2.0], rtol=1e-5)


def test_ranks_that_disagree_fail_loudly(tmp_path):
    launch("tests.scripts.rank_disagreement", str(tmp_path), processes=2)
    outcomes = [json.load(open(tmp_path / f"rank{rank}.json")) for rank in (0, 1)]
    assert [outcome["same-records"] for outcome in outcomes] == ["agreed", "agreed"]
    for outcome in outcomes:  # every rank fails, not only the one that differs
        assert "rank 1 recorded different gradient norms or learning rates than rank 0 since step 3" in \
            outcome["different-records"]


@pytest.mark.parametrize(
    "stage, processes, grad_accum",
    [(1, 2, 1), (2, 1, 1), (2, 2, 2), (3, 1, 1), (3, 2, 1)],
    ids=["zero1-2proc", "zero2-1proc", "zero2-2proc-grad-accum", "zero3-1proc", "zero3-2proc"],
)
def test_deepspeed_zero_on_cpu_equals_the_plain_run(tmp_path, stage, processes, grad_accum, single_process_run):
    # DeepSpeed runs on the CPU with DS_ACCELERATOR=cpu; every p.grad is None at the callbacks there, so this checks
    # the real ZeRO glue: l2 from the engine, l1 measured inside the wrapped ZeRO optimizer step.
    pytest.importorskip("deepspeed")
    os.environ["DS_ACCELERATOR"] = "cpu"
    try:
        common = ["--max_grad_norm", "0.5", "--grad_accum", str(grad_accum)]
        launch(DDP_SCRIPT, "--output_dir", str(tmp_path / "zero"), "--batch_size", str(8 // processes),
               "--zero_stage", str(stage), *common, processes=processes, torchrun=True)
    finally:
        del os.environ["DS_ACCELERATOR"]
    zero, plain = schedule(tmp_path / "zero"), single_process_run(grad_accum, 0.5)
    assert zero.num_steps == plain.num_steps == 8 and zero.run.world_size == processes
    assert_same_record(zero, plain)
    record = json.load(open(tmp_path / "zero" / "record_rank0.json"))
    np.testing.assert_allclose(record["grad_norm_l2"], record["logged_grad_norm"], rtol=1e-6)
    assert min(record["logged_grad_norm"]) > 0.5  # clipping was active: l1 must be the pre-clip value
    assert record["measurement"] == "partitions"  # exact from local partitions, no per-parameter gather


# ----- the adaptive run -------------------------------------------------------------------------------------------
ADAPT = ("--adapt", "--max_steps", "200")


def adaptive_report(folder, rank=0):
    return json.load(open(os.path.join(folder, f"record_rank{rank}.json")))


def said(stderr, start):
    return [line for line in stderr.splitlines() if line.startswith(start)]


@pytest.fixture(scope="module")
def adaptive_single(tmp_path_factory):
    """An adaptive run in one process with the global batch (8): the reference of the multi-process ones."""
    folder = str(tmp_path_factory.mktemp("adaptive_single"))
    launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "8", *ADAPT)
    report = adaptive_report(folder)
    assert report["plan"]["decision"] == "cooldown"
    return report


def test_an_adaptive_run_takes_one_decision_on_two_processes_and_says_it_once(tmp_path, adaptive_single):
    folder = str(tmp_path / "ddp")
    result = launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "4", *ADAPT, processes=2)
    ranks = [adaptive_report(folder, rank) for rank in (0, 1)]
    assert ranks[0]["plan"] == ranks[1]["plan"] == adaptive_single["plan"]  # every rank, as one process decides
    assert ranks[0]["lr"] == ranks[1]["lr"]
    np.testing.assert_allclose(ranks[0]["logged_lr"], adaptive_single["logged_lr"], rtol=1e-12)
    assert len(said(result.stderr, "linear_refined: adapting at step")) == 1, result.stderr[-3000:]
    assert len(said(result.stderr, "RefinementCallback: wrote")) == 1


def test_an_adaptive_run_resumed_after_its_switch_on_another_world_size(tmp_path, adaptive_single):
    folder = str(tmp_path / "switch")
    stopped = launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "4", *ADAPT, "--save_steps", "100",
                     "--stop_at", "100", processes=2)
    assert said(stopped.stderr, "RefinementCallback: not writing refined_schedule.safetensors: the run stopped at "
                                "step 100 of its 200") != []
    resumed = launch(DDP_SCRIPT, "--output_dir", folder, "--batch_size", "8", *ADAPT, "--resume",
                     os.path.join(folder, "checkpoint-100"))
    report = adaptive_report(folder)
    assert report["world_size"] == 1 and report["plan"] == adaptive_single["plan"]
    np.testing.assert_allclose(report["logged_lr"], adaptive_single["logged_lr"], rtol=1e-12)
    assert not said(resumed.stderr, "linear_refined: adapting")  # decided before the checkpoint: not again
    assert schedule(folder).adaptive["plan"] == adaptive_single["plan"]


def test_an_adaptive_run_under_deepspeed_zero_decides_as_the_plain_run(tmp_path, adaptive_single):
    pytest.importorskip("deepspeed")
    os.environ["DS_ACCELERATOR"] = "cpu"
    try:
        launch(DDP_SCRIPT, "--output_dir", str(tmp_path / "zero"), "--batch_size", "8", "--zero_stage", "2", *ADAPT,
               torchrun=True)
    finally:
        del os.environ["DS_ACCELERATOR"]
    report = adaptive_report(tmp_path / "zero")
    assert report["plan"] == adaptive_single["plan"] and report["measurement"] == "partitions"
    np.testing.assert_allclose(report["logged_lr"], adaptive_single["logged_lr"], rtol=1e-12)


# ----- what a multi-process run says: each line once ------------------------------------------------------------------
def test_a_two_process_pass_2_says_each_line_once_also_when_resumed_with_a_changed_file(tmp_path):
    from hf_linear_decay.tools.cli import main

    first = str(tmp_path / "p1")
    launch(DDP_SCRIPT, "--output_dir", first, "--batch_size", "8")
    path = os.path.join(first, "refined_schedule.safetensors")
    second = str(tmp_path / "p2")
    common = ["--output_dir", second, "--batch_size", "4", "--max_steps", "12", "--save_steps", "4"]
    stopped = launch(DDP_SCRIPT, *common, "--stop_at", "4", "--kwargs", json.dumps({"schedule_file": path}),
                     processes=2)
    following = said(stopped.stderr, f"linear_refined: following {path} (8 steps, ")
    assert len(following) == 1 and following[0].endswith(", resampled from its 8 steps to this run's 12 by training "
                                                          "progress"), stopped.stderr[-3000:]
    assert len(said(stopped.stderr, "linear_refined")) == 1
    other = os.path.join(first, "again.safetensors")
    assert main(["refine", path, "-o", other, "--method", "paper"]) == 0
    resumed = launch(DDP_SCRIPT, *common, "--resume", os.path.join(second, "checkpoint-4"), "--kwargs",
                     json.dumps({"schedule_file": other}), processes=2)
    lines = said(resumed.stderr, "linear_refined")
    assert len(lines) == 1, resumed.stderr[-3000:]
    assert lines[0].startswith(f"linear_refined: resuming with the schedule pinned in the checkpoint (from {path}, ")
    assert f"); {other} now holds another schedule" in lines[0]
    ranks = [adaptive_report(second, rank) for rank in (0, 1)]
    assert ranks[0]["logged_lr"] == ranks[1]["logged_lr"]
