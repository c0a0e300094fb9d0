"""`hf-linear-decay` end to end, in-process through `main(argv)` and through `python -m` (exit codes, one-line
errors)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.core.refine import refine_schedule
from hf_linear_decay.files.schedule_file import load_schedule_file, save_schedule_file

from tests.helpers import make_file, run_cli

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def test_refine_from_a_text_file_of_norms(tmp_path, capsys):
    norms = np.random.default_rng(0).lognormal(size=120).tolist()
    source = tmp_path / "norms.txt"
    source.write_text("".join(f"{x!r}\n" for x in norms))
    out = tmp_path / "out.safetensors"
    code, stdout, stderr = run_cli(capsys, "refine", source, "-o", out, "--tau", "0.2", "--method", "paper")
    assert code == 0, stderr
    schedule = load_schedule_file(out)
    assert (schedule.norm, schedule.power, schedule.tau, schedule.method) == ("l2", 2.0, 0.2, "paper")
    np.testing.assert_array_equal(schedule.grad_norm_l2, norms)
    np.testing.assert_array_equal(schedule.multipliers, refine_schedule(norms, tau=0.2, power=2))
    assert "T=120" in stdout and "method paper" in stdout
    code, _, stderr = run_cli(capsys, "refine", source, "-o", out)  # the default says why it kept pass 1's schedule
    assert code == 0 and "note: method 'auto': not the LM regime (" in stderr
    assert ("kept pass 1's schedule (assumed: transformers' linear decay; no LRs recorded): the l2 norm started"
            in stderr)


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


def test_refine_a_0_1_0_checkpoints_trainer_state_uses_the_callbacks_exact_record(tmp_path, capsys):
    # Both norms come from the callback's record (0.1.0 kept it inline); it did not name the optimizer, so l2 is the
    # default and a note says how to choose l1, which the record holds.
    source = os.path.join(DATA, "checkpoint_v0.1.0", "trainer_state.json")
    saved = json.load(open(source))["stateful_callbacks"]["RefinementCallback"]["attributes"]
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "l1.safetensors", "--tau", "0.5", "--norm",
                              "l1")
    assert code == 0, stderr
    schedule = load_schedule_file(tmp_path / "l1.safetensors")
    np.testing.assert_array_equal(schedule.grad_norm_l1, saved["grad_norm_l1"])
    np.testing.assert_array_equal(schedule.grad_norm_l2, saved["grad_norm_l2"])
    assert (schedule.norm, schedule.power) == ("l1", 1.0) and "interpolated" not in stderr
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "l2.safetensors", "--tau", "0.5")
    assert code == 0 and "pass --norm l1 for an Adam-type run" in stderr
    assert load_schedule_file(tmp_path / "l2.safetensors").norm == "l2"


def test_refine_trainer_state_without_the_callback_says_it_has_l2_only(tmp_path, capsys):
    history = [{"step": s, "grad_norm": 1.0 / s, "learning_rate": 0.1} for s in range(1, 21)]
    source = tmp_path / "trainer_state.json"
    source.write_text(json.dumps({"global_step": 20, "log_history": history}))
    code, _, stderr = run_cli(capsys, "refine", source, "-o", tmp_path / "o.safetensors")
    assert code == 0 and "l2 only" in stderr and load_schedule_file(tmp_path / "o.safetensors").norm == "l2"
    code, _, stderr = run_cli(capsys, "refine", source, "--norm", "l1", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "no l1 norms" in stderr


def test_rerefine_a_schedule_file(tmp_path, capsys):
    norms = np.random.default_rng(3).lognormal(size=200)
    first = make_file(tmp_path / "first.safetensors", RefinementSettings(method="paper", norm="l1"), grad_norm_l2=norms,
                      grad_norm_l1=norms * 9)
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
    return make_file(tmp_path / "refined_schedule.safetensors", RefinementSettings(method="paper"), grad_norm_l2=norms,
                     lr=np.full(200, 1e-3))


@pytest.mark.parametrize("column", ["multipliers", "grad_norm_l2", "lr", "skipped"])
def test_export_csv_round_trips_full_precision(schedule_path, capsys, column):
    code, stdout, stderr = run_cli(capsys, "export", schedule_path, "--csv", "--column", column)
    assert code == 0, stderr
    header, *rows = stdout.splitlines()
    assert header == f"step,{column}"
    assert [int(row.split(",")[0]) for row in rows] == list(range(200))
    values = [float(row.split(",")[1]) for row in rows]
    schedule = load_schedule_file(schedule_path)
    expected = (schedule.multipliers if column == "multipliers" else getattr(schedule, column)).astype(np.float64)
    np.testing.assert_array_equal(values, expected)  # bit-exact, NaN included
    code, again, _ = run_cli(capsys, "export", schedule_path, "--column", column)  # CSV is the default
    assert code == 0 and again == stdout


def test_an_exported_l1_column_refines_back_as_l1_norms(tmp_path, capsys):
    norms = np.geomspace(3.0, 9.0, 120)
    source = make_file(tmp_path / "s.safetensors", RefinementSettings(method="paper"), grad_norm_l1=norms,
                       lr=np.full(120, 1e-3))
    code, stdout, _ = run_cli(capsys, "export", source, "--column", "grad_norm_l1")
    exported = tmp_path / "l1.csv"
    exported.write_text(stdout)
    code, _, stderr = run_cli(capsys, "refine", exported, "-o", tmp_path / "back.safetensors", "--method", "paper")
    assert code == 0, stderr
    back = load_schedule_file(tmp_path / "back.safetensors")
    assert (back.norm, back.power) == ("l1", 1.0) and back.recorded == ("grad_norm_l1",)
    np.testing.assert_array_equal(back.grad_norm_l1, norms)
    np.testing.assert_allclose(back.multipliers, refine_schedule(norms, power=1), atol=1e-15)


def test_export_unrecorded_column(schedule_path, capsys):
    code, _, stderr = run_cli(capsys, "export", schedule_path, "--csv", "--column", "grad_norm_l1")
    assert code == 2 and "was not recorded" in stderr and len(stderr.strip().splitlines()) == 1


def test_inspect_text_and_json(schedule_path, capsys):
    code, stdout, _ = run_cli(capsys, "inspect", schedule_path)
    assert code == 0
    assert "steps (T):            200" in stdout and "skipped steps:        1 " in stdout and "peak:" in stdout
    assert "method paper, l2 norms, power 2, tau 0.1 (median window 21 steps)" in stdout
    code, stdout, _ = run_cli(capsys, "inspect", schedule_path, "--json")
    summary = json.loads(stdout)
    multipliers = load_schedule_file(schedule_path).multipliers
    assert summary["peak_step"] == int(np.argmax(multipliers)) and summary["peak_step"] > 30
    assert summary["warmup_steps"] <= summary["peak_step"]
    assert summary["skipped_steps"] == 1 and summary["num_steps"] == 200 and summary["filter_width"] == 21
    assert summary["metadata"]["format"] == "hf_linear_decay.refined_schedule"
    # Pass 1 ran at a constant LR (its recorded `lr`): the refined schedule never rises above it.
    assert summary["reference"] == "pass 1's schedule" and not summary["equals_reference"]
    assert summary["max_below_reference"] < 0 == summary["max_above_reference"]
    assert summary["area_ratio_to_reference"] == pytest.approx(multipliers.mean())


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
        (["refine", "{tmp}"], "is a directory"),
        (["refine", "{tmp}/words.csv", "--tau", "0"], r"--tau must be a number in \(0, 1\]"),
        (["refine", "{tmp}/words.csv", "--tau", "abc"], "--tau must be a number, got .abc."),
        (["refine", "{tmp}/words.csv", "--power", "-2"], "--power must be a finite number > 0"),
        (["refine", "{tmp}/words.csv", "--method", "magic"], "invalid choice: 'magic'"),
        (["refine", "{tmp}/words.csv"], "holds 'abc' on data row 2"),
        (["refine", "{tmp}/one.csv"], "need at least 2 valid gradient norms"),
        (["refine", "{tmp}/bad.json"], "invalid JSON"),
        (["refine", "{tmp}/huge_step.csv"], "steps must lie in"),
        (["inspect", "{tmp}/words.csv"], "not a safetensors file"),
        (["inspect", "{tmp}/allskipped.safetensors"], "only 0 of 40 steps are valid"),
        (["frobnicate"], "invalid choice"),
        (["refine"], "the following arguments are required: INPUT"),
        ([], "a COMMAND is required"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "words.csv").write_text("norm\n1.0\nabc\n")
    (tmp_path / "one.csv").write_text("1.0\nnan\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "huge_step.csv").write_text("step,norm\n0,1\n1e20,2\n")
    good = make_file(tmp_path / "good.safetensors", grad_norm_l2=np.ones(40))
    tensors = load_file(good)
    tensors["skipped"] = np.ones(40, dtype=np.uint8)  # every step skipped: a record no run produces
    with safe_open(good, framework="np") as reader:
        save_file(tensors, str(tmp_path / "allskipped.safetensors"), metadata=reader.metadata())
    code, stdout, stderr = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr and stderr.startswith("hf-linear-decay")
    assert re.search(message, stderr), stderr


@pytest.mark.slow
def test_python_dash_m_help_and_errors():
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "refine" in result.stdout and "inspect" in result.stdout
    result = subprocess.run([sys.executable, "-m", "hf_linear_decay", "refine", "/nonexistent"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(schedule_path):
    # `hf-linear-decay export ... | head -c 100`: the reader leaves early; no "Broken pipe" error, no traceback.
    command = f"{sys.executable} -m hf_linear_decay export {schedule_path} --csv --column lr | head -c 20 >/dev/null"
    for _ in range(3):
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
        assert result.stderr == "" and result.returncode in (0, 141), (result.returncode, result.stderr)


def test_zero_and_negative_norms_are_filled_and_reported(tmp_path, capsys):
    (tmp_path / "norms.csv").write_text("norm\n" + "\n".join(["3.0", "0.0", "2.0", "-1.0"] + ["1.0"] * 36) + "\n")
    code, stdout, stderr = run_cli(capsys, "refine", tmp_path / "norms.csv", "-o", tmp_path / "o.safetensors")
    assert code == 0, stderr
    assert "2 skipped or invalid step(s) filled from neighbours" in stdout  # as the README says: values <= 0 are filled
    schedule = load_schedule_file(tmp_path / "o.safetensors")
    assert schedule.skipped.tolist()[:4] == [False, True, False, True]
    assert schedule.grad_norm_l2[3] == -1.0  # kept as given, flagged


def test_unreadable_inputs_get_the_packages_message(tmp_path, capsys, monkeypatch):
    path = make_file(tmp_path / "s.safetensors", grad_norm_l2=np.linspace(3, 1, 20))
    real_access, real_stat = os.access, os.stat
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    code, _, stderr = run_cli(capsys, "inspect", path)
    assert code == 2 and "permission denied; make the file readable" in stderr and "Traceback" not in stderr

    def stat(p, *args, **kwargs):
        if str(p).startswith(str(tmp_path / "locked")):
            raise PermissionError(13, "Permission denied")
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    code, _, stderr = run_cli(capsys, "refine", tmp_path / "locked" / "norms.csv")
    assert code == 2 and "permission denied on a folder above it" in stderr


@pytest.mark.parametrize("norms, flags", [
    (np.ones(100), []),  # linear decay: nothing to flag
    (np.concatenate([np.full(40, 20.0), np.ones(60)]), ["late peak", "long warm-up", "slow anneal"]),
    (np.geomspace(1.3, 1, 200), ["slow anneal"]),
    (np.geomspace(1, 3, 200), ["fast anneal"]),
    (np.concatenate([np.ones(40), np.full(20, 3.0), np.ones(40)]), ["non-monotone"]),
])
def test_inspect_flags_the_shapes_that_fared_badly(tmp_path, capsys, norms, flags):
    path = make_file(tmp_path / "s.safetensors", RefinementSettings(method="paper", tau=0.05), grad_norm_l2=norms)
    code, stdout, _ = run_cli(capsys, "inspect", path, "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert [flag["flag"] for flag in summary["flags"]] == flags, summary
    code, stdout, _ = run_cli(capsys, "inspect", path)
    assert [line.split(":")[1].strip() for line in stdout.splitlines() if line.startswith("warning:")] == flags


def test_inspect_says_when_a_refined_schedule_repeats_pass_one(tmp_path, capsys):
    """A WSD pass 1 refined by `auto` gives WSD back to within its discretisation: inspect says so."""
    from tests.test_methods import lm_record

    path = str(tmp_path / "wsd.safetensors")
    save_schedule_file(build_schedule(lm_record(lr_shape="wsd")), path)
    code, stdout, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "vs pass 1's schedule: repeats it (a second run would be the first again); mean" in stdout
    code, stdout, _ = run_cli(capsys, "inspect", path, "--json")
    assert json.loads(stdout)["repeats_reference"] is True and json.loads(stdout)["equals_reference"] is False
