"""Work done once: a setting validated where it enters, a file opened once by its reader, pass 2's schedule file read
once (at Trainer construction) and handed to the scheduler."""

import builtins
import os

import numpy as np
import pytest

from hf_linear_decay.core import refine, settings
from hf_linear_decay.core.record import NormRecord
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.files import schedule_file
from hf_linear_decay.files.readers import read_record
from hf_linear_decay.tools.cli import main
from tests.tiny import RegressionData, TinyRegressor


def counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_one_cli_refine_checks_tau_once_and_computes_the_window_once(tmp_path, monkeypatch):
    (tmp_path / "norms.txt").write_text("\n".join(str(1 + 1 / i) for i in range(1, 60)))
    checks = counting(monkeypatch, settings, "check_tau")  # where the CLI's --tau enters
    refine_checks = counting(monkeypatch, refine, "check_tau")  # the maths' own entry points
    widths = counting(monkeypatch, refine, "_width")
    assert main(["refine", str(tmp_path / "norms.txt"), "-o", str(tmp_path / "s.st"), "--tau", "0.3",
                 "--method", "paper"]) == 0
    assert len(checks) + len(refine_checks) == 1 and len(widths) == 1


@pytest.mark.parametrize("kind", ["schedule file", "csv", "trainer_state.json"])
def test_a_reader_opens_its_file_once(tmp_path, monkeypatch, kind):
    import json

    if kind == "schedule file":
        record = NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 40)})
        path = schedule_file.save_schedule_file(build_schedule(record), tmp_path / "s.safetensors")
    elif kind == "csv":
        path = tmp_path / "n.csv"
        path.write_text("step,norm\n" + "\n".join(f"{i},{1 + 1 / (i + 1)}" for i in range(40)))
    else:
        path = tmp_path / "trainer_state.json"
        history = [{"step": s, "grad_norm": 1 + 1 / s} for s in range(1, 41)]
        path.write_text(json.dumps({"global_step": 40, "log_history": history}))
    opened = []
    real_open = builtins.open

    def watching(file, *args, **kwargs):
        if os.path.abspath(os.fspath(file)) == os.path.abspath(os.fspath(path)):
            opened.append(args)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching)
    record, _ = read_record(path)
    assert len(record) == 40 and len(opened) == 1


def test_pass_2_reads_its_schedule_file_once(make_args, tmp_path, monkeypatch):
    from transformers import Trainer

    first = make_args(output_dir=str(tmp_path / "p1"))
    Trainer(TinyRegressor(), first, train_dataset=RegressionData()).train()
    path = str(tmp_path / "p1" / "refined_schedule.safetensors")
    loads = counting(monkeypatch, schedule_file, "load_schedule_file")
    second = make_args(output_dir=str(tmp_path / "p2"), lr_scheduler_kwargs={"schedule_file": path, "tau": 0.5})
    trainer = Trainer(TinyRegressor(), second, train_dataset=RegressionData())
    assert len(loads) == 1  # at construction: a mistake fails before any data or model work
    trainer.train()
    assert len(loads) == 1  # the scheduler got what construction read
