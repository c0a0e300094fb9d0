"""Hostile inputs and faults that once went wrong: outputs that clobbered, silent truncation, tracebacks, Trainer-side
mistakes found late, misleading messages and unbounded work. Grouped by kind; each case names what it guards."""

import json
import os
import pickle  # noqa: F401  (not used to read our files: only to show that no path ever unpickles)
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from hf_linear_decay.core.record import NormRecord
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.files.schedule_file import save_schedule_file, schedule_metadata
from tests.helpers import run_cli, write_json
from tests.helpers import trainer_state as trainer_state_content
from tests.tiny import RegressionData, TinyRegressor


def one_error_line(code, err):
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def schedule_file(tmp_path):
    norms = np.concatenate([np.linspace(5, 1, 20), np.ones(40)])
    schedule = build_schedule(NormRecord.from_columns({"grad_norm_l2": norms, "lr": np.linspace(1, 0, 60)}),
                              RefinementSettings(method="paper"))
    return save_schedule_file(schedule, tmp_path / "refined_schedule.safetensors")


def trainer_state(path, steps=20):
    return write_json(path, trainer_state_content(steps))


# ----- outputs never clobber an input or a non-file --------------------------------------------------------------
def test_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, capsys):
    state = trainer_state(tmp_path / "trainer_state.json")
    before = state.read_bytes()
    err = one_error_line(*run_cli(capsys, "refine", state, "-o", state)[::2])
    assert "is the input" in err and state.read_bytes() == before
    csv = tmp_path / "norms.csv"
    csv.write_text("norm\n" + "\n".join(str(1 + 1 / i) for i in range(1, 30)))
    os.link(csv, tmp_path / "hardlink.csv")  # another name of the same file
    assert "is the input" in one_error_line(*run_cli(capsys, "refine", csv, "-o", tmp_path / "hardlink.csv")[::2])
    assert csv.read_text().startswith("norm\n")


def test_output_through_a_link_writes_its_target_and_keeps_the_link(tmp_path, capsys, schedule_file):
    target, link = tmp_path / "real.safetensors", tmp_path / "link.safetensors"
    target.write_bytes(b"old")
    link.symlink_to(target)
    code, out, err = run_cli(capsys, "refine", schedule_file, "-o", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target) and target.read_bytes()[:8] != b"old"


@pytest.mark.parametrize("make", ["fifo", "device", "directory"])
def test_output_onto_a_pipe_device_or_folder_is_refused_and_left_alone(tmp_path, capsys, schedule_file, make):
    if make == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif make == "device":
        target = "/dev/null"
    else:
        target = tmp_path / "folder"
        target.mkdir()
    err = one_error_line(*run_cli(capsys, "refine", schedule_file, "-o", target)[::2])
    assert ("not a regular file" in err) if make != "directory" else ("is a directory" in err)
    assert os.path.exists(target) and not os.path.isfile(target)


def test_an_empty_output_name_has_its_own_message(capsys, schedule_file):
    assert "-o/--output is empty" in one_error_line(*run_cli(capsys, "refine", schedule_file, "-o", "")[::2])


# ----- stdout is checked: no silent truncation -------------------------------------------------------------------
@pytest.mark.slow
def test_export_to_a_full_disk_or_a_closed_stdout_fails_with_one_line(schedule_file):
    command = [sys.executable, "-m", "hf_linear_decay", "export", str(schedule_file), "--csv"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2 and "No space left on device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    closed = subprocess.run(" ".join(command) + " >&-", shell=True, capture_output=True, text=True)
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr
    assert "Traceback" not in closed.stderr


@pytest.mark.parametrize("subcommand", ["export", "inspect"])
@pytest.mark.slow
def test_output_to_a_filesystem_that_fills_up_fails_with_one_line(tmp_path, subcommand):
    """A real full filesystem (a 16 KiB tmpfs) takes the first 16 KiB and refuses the rest: Python's buffered writer
    reports that short write as success, so the command must write and count every byte itself."""
    from hf_linear_decay.core.record import NormRecord, RunInfo
    from hf_linear_decay.core.schedule import build_schedule
    from hf_linear_decay.files.schedule_file import save_schedule_file

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine does not let the tests mount a small tmpfs")
    try:
        record = NormRecord.from_columns({"grad_norm_l1": np.linspace(1, 2, 5000), "lr": np.linspace(1, 1e-3, 5000)},
                                         run=RunInfo(optimizer="AdamW"))
        path = save_schedule_file(build_schedule(record), tmp_path / "big.safetensors")
        argv = {"export": ["export", path], "inspect": ["inspect", path, "--json"]}[subcommand]
        if subcommand == "inspect":
            (small / "filler").write_bytes(b"x" * 13000)  # the summary is under 4 KiB: leave it less than a page
        with open(small / "out", "w") as target:
            result = subprocess.run([sys.executable, "-m", "hf_linear_decay", *map(str, argv)], stdout=target,
                                    stderr=subprocess.PIPE, text=True)
        assert result.returncode == 2, (result.returncode, os.path.getsize(small / "out"))
        assert "No space left on device" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


# ----- no tracebacks: exit 2 and one line ------------------------------------------------------------------------
def rewrite(path, **tensors):
    """The schedule file at `path` again, with some tensors replaced (any dtype safetensors stores)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as reader:
        metadata, stored = reader.metadata(), {name: reader.get_tensor(name) for name in reader.keys()}
    stored.update(tensors)
    save_file(stored, str(path), metadata=metadata)
    return path


def bf16_bytes(values):
    """float32 values as bfloat16 raw bytes (the upper halves), in a safetensors file written by hand."""
    return (np.asarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


@pytest.mark.parametrize("dtype", ["BF16", "F8_E4M3"])
@pytest.mark.parametrize("command", ["inspect", "refine", "export"])
def test_multipliers_in_a_dtype_numpy_cannot_hold(tmp_path, capsys, schedule_file, dtype, command):
    data = open(schedule_file, "rb").read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    entry = header["multipliers"]
    begin, end = entry["data_offsets"]
    width = 2 if dtype == "BF16" else 1
    raw = bytes((end - begin) // 8 * width)
    shift = (end - begin) - len(raw)
    entry.update(dtype=dtype, data_offsets=[begin, begin + len(raw)])
    for other in header.values():
        if isinstance(other, dict) and "data_offsets" in other and other["data_offsets"][0] >= end:
            other["data_offsets"] = [other["data_offsets"][0] - shift, other["data_offsets"][1] - shift]
    new_header = json.dumps(header).encode()
    body = data[8 + length:]
    body = body[:begin] + raw + body[end:]
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(new_header).to_bytes(8, "little") + new_header + body)
    argv = {"inspect": ["inspect", path], "refine": ["refine", path, "-o", tmp_path / "o.safetensors"],
            "export": ["export", path, "--csv"]}[command]
    err = one_error_line(*run_cli(capsys, *argv)[::2])
    assert f"tensor `multipliers` has dtype {dtype}, expected float64" in err


@pytest.mark.parametrize("digits", [400, 5000])
def test_an_absurdly_long_integer_norm_is_a_skipped_step_not_a_crash(tmp_path, capsys, digits):
    history = [{"step": s, "grad_norm": 1.0 + 1 / s} for s in range(1, 21)]
    text = json.dumps({"global_step": 20, "log_history": history})
    text = text.replace('"grad_norm": 1.5', '"grad_norm": ' + "9" * digits)
    (tmp_path / "trainer_state.json").write_text(text)
    code, out, err = run_cli(capsys, "refine", tmp_path / "trainer_state.json", "-o", tmp_path / "o.safetensors")
    assert code == 0 and "int_max_str_digits" not in err and "1 skipped or invalid step(s)" in out


@pytest.mark.parametrize("callbacks, message", [
    ([{"attributes": {}}], "has no `attributes`"),
    ("a string", "`stateful_callbacks` must be an object, got str"),
    ([1, 2], "`stateful_callbacks` must be an object, got list"),
])
def test_stateful_callbacks_of_the_wrong_shape(tmp_path, capsys, callbacks, message):
    state = json.loads(trainer_state(tmp_path / "trainer_state.json").read_text())
    state["stateful_callbacks"] = callbacks if not isinstance(callbacks, list) or callbacks[0] == 1 else {
        "RefinementCallback": callbacks}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    err = one_error_line(*run_cli(capsys, "refine", tmp_path / "trainer_state.json", "-o", tmp_path / "o.st")[::2])
    assert message in err


@pytest.mark.parametrize("attributes, message", [
    ({"recorded": ["grad_norm_l2"], "grad_norm_l2": [1.0, 2.0], "run": "AdamW"}, "`run` must be an object"),
    ({"recorded": ["grad_norm_l2"], "grad_norm_l2": [1.0, 2.0], "run": None}, "`run` must be an object"),
    ({"recorded": "grad_norm_l2", "grad_norm_l2": [1.0, 2.0]}, "`recorded` must be a list of column names"),
    ({"grad_norm_l2": "1,2"}, "column `grad_norm_l2` must be a list of numbers"),
])
def test_inline_0_1_records_of_the_wrong_shape(tmp_path, capsys, attributes, message):
    state = json.loads(trainer_state(tmp_path / "trainer_state.json", steps=2).read_text())
    state["stateful_callbacks"] = {"RefinementCallback": {"args": {}, "attributes": attributes}}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    err = one_error_line(*run_cli(capsys, "refine", tmp_path / "trainer_state.json", "-o", tmp_path / "o.st")[::2])
    assert message in err and "KeyError" not in err


# ----- Trainer-side mistakes fail when the Trainer is built ------------------------------------------------------
def test_trainer_side_mistakes_fail_at_construction(make_args, tmp_path):
    from transformers import Trainer

    record = NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 12), "lr": np.linspace(1, 0, 12)})
    l2_only = save_schedule_file(build_schedule(record), tmp_path / "l2.safetensors")
    for kwargs, message in [({"schedule_file": l2_only, "norm": "l1"}, "this record has no l1 norms"),
                            ("not json", "must be a JSON object \\(a dict\\), got str"),
                            (["schedule_file"], "must be a JSON object \\(a dict\\), got list"),
                            ({"schedule_file": 2024}, "got the number 2024: transformers converts a file name")]:
        args = make_args(output_dir=str(tmp_path / "run"))
        args.lr_scheduler_kwargs = kwargs  # as the CLI and transformers leave them
        with pytest.raises(ValueError, match=message):
            Trainer(TinyRegressor(), args, train_dataset=RegressionData())


def test_a_file_named_by_digits_is_found_after_transformers_made_it_an_int(make_args, tmp_path, monkeypatch):
    from transformers import Trainer

    monkeypatch.chdir(tmp_path)
    record = NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 12), "lr": np.linspace(1, 0, 12)})
    save_schedule_file(build_schedule(record), tmp_path / "2024")
    args = make_args(output_dir=str(tmp_path / "run"), lr_scheduler_kwargs='{"schedule_file": "2024"}')
    assert args.lr_scheduler_kwargs == {"schedule_file": 2024}  # what transformers makes of it
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData())
    assert args.lr_scheduler_kwargs["schedule_file"] == "2024"
    trainer.train()


def test_resuming_two_recorders_from_an_untouched_checkpoint_warns_nothing(make_args, caplog):
    from hf_linear_decay import RefinementCallback
    from tests.test_callback import train
    from tests.tiny import StopAt

    args = make_args(output_dir=make_args().output_dir + "two", max_steps=8, save_strategy="steps", save_steps=4)
    train(args, [RefinementCallback(), RefinementCallback(tau=0.5, file_name="b.safetensors"), StopAt(4)])
    with caplog.at_level("WARNING", logger="hf_linear_decay"):
        train(args, [RefinementCallback(), RefinementCallback(tau=0.5, file_name="b.safetensors")],
              resume=os.path.join(args.output_dir, "checkpoint-4"))
    assert "replaced" not in caplog.text and "cannot be used" not in caplog.text


# ----- messages that say what is wrong ---------------------------------------------------------------------------
def test_messages_that_once_misled(tmp_path, capsys, schedule_file):
    (tmp_path / "array.json").write_text("[1.0, 2.0, 3.0]")
    err = one_error_line(*run_cli(capsys, "refine", tmp_path / "array.json")[::2])
    assert "a JSON array, not a trainer_state.json" in err and "header row" not in err
    err = one_error_line(*run_cli(capsys, "refine", schedule_file, "--tau", "-inf")[::2])
    assert "--tau must be a number in (0, 1]" in err
    named = tmp_path / "line\nbreak.csv"
    named.write_text("norm\nabc\n")
    assert "line\\nbreak.csv" in one_error_line(*run_cli(capsys, "refine", named)[::2])
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "refined_schedule.safetensors").write_bytes(open(schedule_file, "rb").read())
    err = one_error_line(*run_cli(capsys, "inspect", tmp_path / "dir")[::2])
    assert err.strip().endswith("refined_schedule.safetensors?")  # not "?."


def test_damage_is_told_apart_from_truncation(tmp_path, capsys, schedule_file):
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(open(schedule_file, "rb").read() + b"extra bytes")
    err = one_error_line(*run_cli(capsys, "inspect", longer)[::2])
    assert "longer than its header declares" in err and "interrupted" not in err
    metadata = dict(schedule_metadata(build_schedule(NormRecord.from_columns({"grad_norm_l2": [2.0, 1.0, 1.0]}))))
    data = open(schedule_file, "rb").read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["__metadata__"]["num_steps"] = 60  # an int, not a string: hand-edited
    raw = json.dumps(header).encode()
    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])
    err = one_error_line(*run_cli(capsys, "inspect", edited)[::2])
    assert "metadata `num_steps` is int" in err and "interrupted" not in err and metadata


def test_a_peak_just_above_one_is_printed_with_enough_digits(tmp_path, capsys, schedule_file):
    multipliers = np.linspace(1, 0, 60)
    multipliers[3] = 1 + 1e-6
    path = rewrite(schedule_file, multipliers=multipliers)
    assert "max 1.000001" in one_error_line(*run_cli(capsys, "inspect", path)[::2])


def test_an_io_error_names_the_file(capsys, schedule_file, monkeypatch):
    import builtins

    real_open = builtins.open

    def failing(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(schedule_file):
            raise OSError(5, "Input/output error")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing)
    err = one_error_line(*run_cli(capsys, "inspect", schedule_file)[::2])
    assert str(schedule_file) in err and "Input/output error" in err


# ----- bounded work for small inputs -----------------------------------------------------------------------------
def test_a_small_csv_cannot_make_a_huge_record(tmp_path, capsys):
    from hf_linear_decay.files.steps import MAX_STEPS_PER_VALUE

    rows = "\n".join(f"{i * 10_000},{1 + 1 / (i + 1)}" for i in range(2000))  # 2,000 values over 20M steps
    (tmp_path / "sparse.csv").write_text("step,norm\n" + rows)
    err = one_error_line(*run_cli(capsys, "refine", tmp_path / "sparse.csv", "-o", tmp_path / "o.st")[::2])
    assert f"at most {MAX_STEPS_PER_VALUE:,} steps per value" in err and MAX_STEPS_PER_VALUE <= 1000


def test_a_large_foreign_file_is_refused_from_its_header(tmp_path, capsys):
    import tracemalloc

    path = tmp_path / "model.safetensors"
    save_file({"weight": np.zeros((64, 1024, 1024), dtype=np.uint8)}, str(path))  # 64 MiB, not ours
    tracemalloc.start()
    err = one_error_line(*run_cli(capsys, "inspect", path)[::2])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "not a schedule file" in err and peak < 4 * 2**20  # the header only, never the 64 MiB


def test_killed_writers_temporaries_in_checkpoints_are_removed_at_the_next_start(make_args):
    from hf_linear_decay import RefinementCallback
    from tests.test_callback import train

    args = make_args(output_dir=make_args().output_dir + "tmp", max_steps=4, save_strategy="steps", save_steps=2)
    train(args, [RefinementCallback()])
    stale = os.path.join(args.output_dir, "checkpoint-2", ".norm_record.safetensors.otherhost.1.0123456789abcdef.tmp")
    open(stale, "w").close()
    os.utime(stale, (0, 0))  # older than an hour: stale whoever wrote it
    train(args, [RefinementCallback()])
    assert not os.path.exists(stale)


def test_wording_that_once_read_oddly(tmp_path, capsys):
    from hf_linear_decay.tools.summary import format_summary, summarize_schedule

    short = build_schedule(NormRecord.from_columns({"grad_norm_l2": [3.0, 2.0, 1.0, 1.0, 1.0]}),
                           RefinementSettings(method="paper"))
    assert "(median window 1 step)" in format_summary(summarize_schedule(short))


def test_the_norm_panel_labels_enough_ticks(tmp_path, schedule_file):
    from hf_linear_decay.files.schedule_file import load_schedule_file
    from hf_linear_decay.tools import plot

    figures = []
    real_save = plot.save_figure
    plot.save_figure = lambda figure, path: figures.append(figure) or real_save(figure, path)
    try:
        plot.plot_schedule(load_schedule_file(schedule_file), tmp_path / "s.png")
    finally:
        plot.save_figure = real_save
    norms_axis = figures[0].axes[0]
    low, high = norms_axis.get_ylim()
    labelled = [tick for tick in norms_axis.get_yticks() if low <= tick <= high]
    assert len(labelled) >= 3  # norms from 1 to 5: labels at 1, 2, 5, not only at 1
    schedule_axis = figures[0].axes[1]
    assert [line.get_label() for line in schedule_axis.lines][:2] == ["pass 1's schedule", "refined (paper)"]
