"""`hf-linear-decay compare`: runs read from their trainer_state.json, a table relative to the first, a figure."""

import json

import pytest

from hf_linear_decay.tools.cli import main
from hf_linear_decay.tools.curves import compare_table, read_run


def write_state(folder, eval_losses, lr0=0.1):
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"step": s, "loss": 3.0 - 0.1 * s, "learning_rate": lr0 * (1 - s / 10), "grad_norm": 1.0}
               for s in range(1, 11)]
    history += [{"step": 5 * (i + 1), "eval_loss": value} for i, value in enumerate(eval_losses)]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 10, "log_history": history}))


def test_table_is_relative_to_the_first_run(tmp_path, capsys):
    write_state(tmp_path / "linear", [2.5, 2.0])
    write_state(tmp_path / "refined" / "checkpoint-5", [2.9])  # an older checkpoint is ignored
    write_state(tmp_path / "refined" / "checkpoint-10", [2.4, 2.1])  # the latest checkpoint is used
    write_state(tmp_path / "noeval", [])
    code = main(["compare", str(tmp_path / "linear"), str(tmp_path / "refined"),
                 str(tmp_path / "noeval" / "trainer_state.json"), "-o", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| linear | 10 | 2.0000 | 2.0000 | 2.0000 | +0.00% |" in out
    assert "| refined | 10 | 2.0000 | 2.1000 | 2.1000 | +5.00% |" in out
    assert "| noeval | 10 | 2.0000 | - | - | - |" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_and_best_values(tmp_path):
    write_state(tmp_path / "run", [2.5, 1.9])
    run = read_run(str(tmp_path / "run"))
    assert run.name == "run" and len(run.curves["learning_rate"]) == 10 and run.curves["eval_loss"][-1] == (10, 1.9)
    assert run.best("eval_loss") == 1.9 and run.last("loss") == pytest.approx(2.0)


def test_bad_runs_are_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "no trainer_state.json in it or in a checkpoint-N/ folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["compare", str(tmp_path / "bad.json")]) == 2
    assert "no `log_history` list" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no such file"):
        read_run(str(tmp_path / "missing.json"))
    write_state(tmp_path / "ok", [1.0])
    assert "| ok |" in compare_table([read_run(str(tmp_path / "ok"))])


def test_the_figure_says_what_is_missing_and_shows_identical_runs(tmp_path):
    from hf_linear_decay.tools.curves import compare_figure

    write_state(tmp_path / "a", [])
    write_state(tmp_path / "b", [])  # the same curves as `a`
    figure = compare_figure([read_run(str(tmp_path / "a")), read_run(str(tmp_path / "b"))])
    lr_axis, _, eval_axis = figure.axes
    assert [text.get_text() for text in eval_axis.texts] == ["no eval loss logged"] and not eval_axis.lines
    labels = [line.get_label() for line in lr_axis.lines]
    assert labels == ["a", "b (= a)"]
    assert lr_axis.lines[1].get_linestyle() != lr_axis.lines[0].get_linestyle()  # drawn over it, still visible
    assert [t.get_text() for t in lr_axis.get_legend().get_texts()] == ["a", "b (= a)"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + bytes(20)), "`compare` takes Trainer output"),
    (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "not a trainer_state.json"),
])
def test_inputs_that_are_not_runs(tmp_path, capsys, make, message):
    path = tmp_path / "input.safetensors"
    make(path)
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_reference_eval_loss_of_zero_is_no_crash(tmp_path, capsys):
    write_state(tmp_path / "zero", [0.0])
    write_state(tmp_path / "other", [1.0])
    assert main(["compare", str(tmp_path / "zero"), str(tmp_path / "other")]) == 0
    assert "| other | 10 | 2.0000 | 1.0000 | 1.0000 | - |" in capsys.readouterr().out


def test_curves_a_plot_cannot_tell_apart_are_marked_too(tmp_path):
    from hf_linear_decay.tools.curves import compare_figure

    write_state(tmp_path / "a", [2.0])
    write_state(tmp_path / "b", [2.0], lr0=0.1001)  # LRs 0.1% apart: the same line on a plot
    write_state(tmp_path / "c", [2.0], lr0=0.2)
    labels = [line.get_label() for line in compare_figure([read_run(str(tmp_path / n)) for n in "abc"]).axes[0].lines]
    assert labels == ["a", "b (≈ a)", "c"]
