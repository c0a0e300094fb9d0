"""`hf-linear-decay` end to end, in-process through `main(argv)` and once through `python -m`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hf_linear_decay.cli import main
from hf_linear_decay.refine import refine_schedule
from hf_linear_decay.schedule_file import ScheduleFile, load_schedule_file, save_schedule_file


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def trainer_state(num_steps, logging_steps, norms, lrs):
    history = []
    for step in range(logging_steps, num_steps + 1, logging_steps):
        history.append({"epoch": step / num_steps, "grad_norm": norms[step - 1], "learning_rate": lrs[step - 1],
                        "loss": 2.0, "step": step})
    history.append({"epoch": 1.0, "step": num_steps, "total_flos": 1.0, "train_loss": 2.0, "train_runtime": 1.0})
    return {"best_metric": None, "epoch": 1.0, "global_step": num_steps, "log_history": history,
            "logging_steps": logging_steps, "max_steps": num_steps, "train_batch_size": 8, "stateful_callbacks": {}}


def test_refine_from_a_text_file_of_norms(tmp_path, capsys):
    norms = np.random.default_rng(0).lognormal(size=120).tolist()
    source = tmp_path / "norms.txt"
    source.write_text("".join(f"{x!r}\n" for x in norms))
    out = tmp_path / "out.safetensors"
    code, stdout, stderr = run_cli(capsys, "refine", source, "-o", out, "--tau", "0.2")
    assert code == 0, stderr
    schedule = load_schedule_file(out)
    assert schedule.norm == "l2" and schedule.power == 2.0 and schedule.tau == 0.2
    np.testing.assert_array_equal(schedule.grad_norm_l2, norms)
    np.testing.assert_array_equal(schedule.multipliers, refine_schedule(norms, tau=0.2, power=2))
    assert "T=120" in stdout


def test_refine_from_a_wandb_export_picks_the_metric_column(tmp_path, capsys):
    norms = (np.random.default_rng(1).lognormal(size=50) * 1000).tolist()
    lines = ['"Step","run7 - sched/gnorm_l1","run7 - sched/gnorm_l1__MIN","run7 - sched/gnorm_l1__MAX"']
    lines += [f"{i},{x!r},{x!r},{x!r}" for i, x in enumerate(norms) if i != 10]  # step 10 missing, interpolated
    source = tmp_path / "wandb_export.csv"
    source.write_text("\n".join(lines) + "\n")
    code, stdout, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors")
    assert code == 0, stderr
    schedule = load_schedule_file(tmp_path / "o.safetensors")
    assert schedule.norm == "l1" and schedule.power == 1.0 and schedule.recorded == ("grad_norm_l1",)
    assert schedule.grad_norm_l1[10] == pytest.approx((norms[9] + norms[11]) / 2)
    assert "interpolated the norm linearly on 1 of 50 steps" in stderr


def test_refine_csv_column_and_norm_override(tmp_path, capsys):
    source = tmp_path / "t.csv"
    source.write_text("step,a,b\n" + "".join(f"{i},{1 + i},{100 - i}\n" for i in range(30)))
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "cannot tell which column" in stderr and "--column" in stderr
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors", "--column", "b",
                              "--norm", "l1", "--power", "1.5")
    assert code == 0, stderr
    schedule = load_schedule_file(tmp_path / "o.safetensors")
    assert (schedule.norm, schedule.power) == ("l1", 1.5)
    np.testing.assert_array_equal(schedule.grad_norm_l1, 100 - np.arange(30.0))


def test_refine_from_trainer_state_every_step(tmp_path, capsys):
    norms = list(np.random.default_rng(2).lognormal(size=40))
    lrs = list(np.linspace(1e-3, 0, 40))
    source = tmp_path / "trainer_state.json"
    source.write_text(json.dumps(trainer_state(40, 1, norms, lrs)))
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors")
    assert code == 0, stderr
    assert "interpolated" not in stderr
    schedule = load_schedule_file(tmp_path / "o.safetensors")
    np.testing.assert_array_equal(schedule.grad_norm_l2, norms)
    np.testing.assert_array_equal(schedule.lr, lrs)
    assert schedule.run.per_device_train_batch_size == 8


def test_refine_from_trainer_state_interpolates_between_logging_steps(tmp_path, capsys):
    norms = list(np.linspace(10, 1, 40))
    source = tmp_path / "trainer_state.json"
    source.write_text(json.dumps(trainer_state(40, 5, norms, list(np.linspace(1e-3, 0, 40)))))
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors")
    assert code == 0, stderr
    assert "interpolated the gradient norm" in stderr and "on 32 of 40 steps" in stderr
    schedule = load_schedule_file(tmp_path / "o.safetensors")
    # Logged at steps 5, 10, ..., 40 (optimizer steps 4, 9, ...); steps 0-3 take the first logged value.
    np.testing.assert_allclose(schedule.grad_norm_l2[4:], norms[4:], rtol=1e-12)
    np.testing.assert_allclose(schedule.grad_norm_l2[:4], norms[4])


def test_trainer_state_has_no_l1(tmp_path, capsys):
    source = tmp_path / "trainer_state.json"
    source.write_text(json.dumps(trainer_state(10, 1, [1.0] * 10, [1e-3] * 10)))
    code, _, stderr = run_cli(capsys, "refine", source, "--norm", "l1", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "logs only the l2 `grad_norm`" in stderr


def test_rerefine_a_schedule_file(tmp_path, capsys):
    norms = np.random.default_rng(3).lognormal(size=200)
    first = tmp_path / "first.safetensors"
    save_schedule_file(ScheduleFile.from_record(grad_norm_l2=norms, grad_norm_l1=norms * 9, norm="l1"), first)
    code, _, stderr = run_cli(capsys, "refine", first, "-o", tmp_path / "again.safetensors", "--tau", "0.3")
    assert code == 0, stderr
    again = load_schedule_file(tmp_path / "again.safetensors")
    assert (again.norm, again.power, again.tau) == ("l1", 1.0, 0.3)  # keeps the file's norm
    np.testing.assert_array_equal(again.grad_norm_l2, norms)
    np.testing.assert_allclose(again.multipliers, refine_schedule(norms * 9, tau=0.3, power=1), atol=1e-15)
    code, _, _ = run_cli(capsys, "refine", first, "-o", tmp_path / "l2.safetensors", "--norm", "l2")
    assert code == 0 and load_schedule_file(tmp_path / "l2.safetensors").power == 2.0


@pytest.fixture
def schedule_path(tmp_path):
    norms = np.concatenate([np.full(30, 5.0), np.linspace(5, 1, 20), np.ones(150)])
    norms[7] = np.nan
    path = tmp_path / "refined_schedule.safetensors"
    save_schedule_file(ScheduleFile.from_record(grad_norm_l2=norms, lr=np.full(200, 1e-3)), path)
    return path


@pytest.mark.parametrize("column", ["multipliers", "grad_norm_l2", "lr", "skipped"])
def test_export_csv_round_trips_full_precision(schedule_path, capsys, column):
    code, stdout, stderr = run_cli(capsys, "export", schedule_path, "--csv", "--column", column)
    assert code == 0, stderr
    values = [float(line) for line in stdout.splitlines()]
    expected = getattr(load_schedule_file(schedule_path), column).astype(np.float64)
    np.testing.assert_array_equal(values, expected)  # bit-exact, NaN included


def test_export_unrecorded_column_and_missing_format(schedule_path, capsys):
    code, _, stderr = run_cli(capsys, "export", schedule_path, "--csv", "--column", "grad_norm_l1")
    assert code == 2 and "was not recorded" in stderr
    code, _, stderr = run_cli(capsys, "export", schedule_path)
    assert code == 2 and "--csv" in stderr and len(stderr.strip().splitlines()) == 1


def test_inspect_text_and_json(schedule_path, capsys):
    code, stdout, _ = run_cli(capsys, "inspect", schedule_path)
    assert code == 0
    assert "steps (T):            200" in stdout and "skipped steps:        1" in stdout and "peak:" in stdout
    code, stdout, _ = run_cli(capsys, "inspect", schedule_path, "--json")
    summary = json.loads(stdout)
    multipliers = load_schedule_file(schedule_path).multipliers
    assert summary["peak_step"] == int(np.argmax(multipliers)) and summary["peak_step"] > 30
    assert summary["warmup_steps"] <= summary["peak_step"]
    assert summary["skipped_steps"] == 1 and summary["num_steps"] == 200
    assert summary["metadata"]["format"] == "hf_linear_decay.refined_schedule"
    assert summary["max_below_linear"] < 0 < summary["max_above_linear"]


def test_plot_writes_a_png(schedule_path, tmp_path, capsys):
    out = tmp_path / "plots" / "schedule.png"
    code, _, stderr = run_cli(capsys, "plot", schedule_path, "-o", out)
    assert code == 0, stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["schedule.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["refine", "{tmp}/missing.csv"], "no such file"),
        (["refine", "{tmp}/words.csv", "--tau", "0"], r"--tau must be in \(0, 1\]"),
        (["refine", "{tmp}/words.csv", "--tau", "abc"], "--tau must be a number"),
        (["refine", "{tmp}/words.csv", "--power", "-2"], "--power must be a finite number > 0"),
        (["refine", "{tmp}/words.csv"], "holds 'abc' on data row 2"),
        (["refine", "{tmp}/one.csv"], "need at least 2 valid gradient norms"),
        (["refine", "{tmp}/bad.json"], "invalid JSON"),
        (["inspect", "{tmp}/words.csv"], "not a safetensors file"),
        (["frobnicate"], "invalid choice"),
        (["refine"], "the following arguments are required: INPUT"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "words.csv").write_text("norm\n1.0\nabc\n")
    (tmp_path / "one.csv").write_text("1.0\nnan\n")
    (tmp_path / "bad.json").write_text("{not json")
    code, stdout, stderr = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert message in stderr or __import__("re").search(message, stderr), stderr


def test_python_dash_m_and_help():
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "refine" in result.stdout and "inspect" in result.stdout
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay", "refine", "/nonexistent"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_refine_recognises_a_schedule_file_by_content_not_name(schedule_path, tmp_path, capsys):
    renamed = tmp_path / "record.bin"
    renamed.write_bytes(schedule_path.read_bytes())
    code, _, stderr = run_cli(capsys, "refine", renamed, "-o", tmp_path / "again.safetensors")
    assert code == 0, stderr
    np.testing.assert_array_equal(load_schedule_file(tmp_path / "again.safetensors").grad_norm_l2,
                                  load_schedule_file(schedule_path).grad_norm_l2)
