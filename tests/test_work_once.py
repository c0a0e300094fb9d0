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
    given = [call for call in checks + refine_checks if call[0] == 0.3]  # the user's value, not the default constant
    assert len(given) == 1 and len(widths) == 1


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


def test_a_file_named_by_digits_is_read_once(make_args, tmp_path, monkeypatch):
    """transformers turns `"2024"` into the int 2024 and the package stores it back as the string: the scheduler
    must still find what Trainer construction read (the cache is keyed on the path, not on the raw value)."""
    from transformers import Trainer

    monkeypatch.chdir(tmp_path)
    record = NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 12), "lr": np.linspace(1, 0, 12)})
    schedule_file.save_schedule_file(build_schedule(record), tmp_path / "2024")
    loads = counting(monkeypatch, schedule_file, "load_schedule_file")
    args = make_args(output_dir=str(tmp_path / "run"), lr_scheduler_kwargs='{"schedule_file": "2024"}')
    assert args.lr_scheduler_kwargs == {"schedule_file": 2024}
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionData())
    trainer.train()
    assert len(loads) == 1


def test_settings_are_made_one_way_and_validate_every_field_once(monkeypatch):
    from hf_linear_decay.core.settings import RefinementSettings

    taus = counting(monkeypatch, settings, "check_tau")
    base = RefinementSettings(tau=0.2)
    assert len(taus) == 1
    changed = base.updated(method="paper", names={"tau": "--tau"})
    assert len(taus) == 1 and changed.tau == 0.2 and changed.method == "paper"  # a copied value is not checked again
    assert changed.updated(tau=0.5).tau == 0.5 and len(taus) == 2  # a new value is, where it enters
    with pytest.raises(ValueError, match=r"`--tau` must be a number in \(0, 1\]"):
        base.updated(tau=3, names={"tau": "--tau"})
    assert not hasattr(RefinementSettings, "with_checked") and not hasattr(RefinementSettings, "_trusted")


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_the_l2_norm_is_not_measured_again_when_the_trainer_gives_it(make_args, monkeypatch, max_grad_norm):
    import torch
    from transformers import Trainer

    from hf_linear_decay.trainer import grad_norms

    orders = []
    original = grad_norms._per_tensor_norms
    monkeypatch.setattr(grad_norms, "_per_tensor_norms", lambda grads, order: orders.append(order) or original(grads,
                                                                                                          order))
    trainer = Trainer(TinyRegressor(), make_args(max_steps=3, max_grad_norm=max_grad_norm),
                      train_dataset=RegressionData())
    trainer.train()
    assert all("grad_norm" in entry for entry in trainer.state.log_history if "loss" in entry)  # the Trainer's l2
    assert orders == [1.0] * 3  # so only l1 is measured, once per optimizer step
    orders.clear()
    model = TinyRegressor()
    model(torch.ones(2, 8), labels=torch.ones(2))["loss"].backward()
    norms, _ = grad_norms.gradient_norms(model)  # without the Trainer's value: every norm of the table
    assert sorted(norms) == ["l1", "l2"] and orders == [2.0, 1.0]


def test_refining_a_schedule_file_reads_its_record_and_settings_not_its_schedule(tmp_path, monkeypatch):
    record = NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 40)})
    path = schedule_file.save_schedule_file(build_schedule(record), tmp_path / "s.safetensors")
    checks = counting(monkeypatch, schedule_file, "_check_schedule")
    reads = counting(monkeypatch, schedule_file, "read_tensor")
    assert main(["refine", str(path), "-o", str(tmp_path / "again.safetensors"), "--method", "paper"]) == 0
    assert len(checks) == 1  # the output's, when it is written
    assert len(reads) == 4  # grad_norm_l2, grad_norm_l1 (all NaN: not recorded, still stored), lr, skipped


def test_auto_smooths_the_norms_once(monkeypatch):
    from hf_linear_decay.core.settings import RefinementSettings

    t = np.arange(200)
    lm = NormRecord.from_columns({"grad_norm_l1": np.where(t < 20, 2.0 - t / 20, 1 + t / 100),
                                  "lr": np.maximum(0, (200 - t) / 200)})
    filters = counting(monkeypatch, refine, "_median_filter")
    for norms in (lm, NormRecord.from_columns({"grad_norm_l1": np.geomspace(9, 1, 200)})):
        filters.clear()
        build_schedule(norms, RefinementSettings(method="auto"))
        assert len(filters) == 1
