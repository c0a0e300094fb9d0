"""Readers: schedule files, trainer_state.json (the callback's exact record, or the logged grad_norm) and CSV."""

import json
import os
import shutil

import numpy as np
import pytest

from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.record import NormRecord, RunInfo
from hf_linear_decay.files.schedule_file import save_record_file, save_schedule_file
from hf_linear_decay.files.readers import MAX_STEPS_PER_VALUE, NormInputError, read_record

from tests.helpers import trainer_state, write_json

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def test_trainer_state_with_the_callbacks_record_file_uses_it_exactly(tmp_path):
    rng = np.random.default_rng(0)
    record = NormRecord.from_columns({"grad_norm_l2": rng.lognormal(size=30), "grad_norm_l1": rng.lognormal(size=30),
                                      "lr": np.linspace(1, 0, 30)}, run=RunInfo(optimizer="AdamW"))
    save_record_file(record, tmp_path / "norm_record.safetensors")
    pointer = {"args": {}, "attributes": {"record_file": "norm_record.safetensors", "num_steps": 30,
                                          "sha256": record.sha256()}}
    # logging every 10 steps: the logged grad_norm alone would need interpolation
    state = trainer_state(30, 10, [9.0] * 30, [0.1] * 30, callback=pointer)
    loaded, settings = read_record(write_json(tmp_path / "trainer_state.json", state))
    assert settings is None and loaded.sha256() == record.sha256() and loaded.notes == []
    assert build_schedule(loaded).norm == "l1"  # AdamW was recorded: Alg. 2
    (tmp_path / "norm_record.safetensors").unlink()
    save_record_file(NormRecord.from_columns({"grad_norm_l2": np.ones(30)}), tmp_path / "norm_record.safetensors")
    with pytest.raises(NormInputError, match="does not hold the record this state describes"):
        read_record(tmp_path / "trainer_state.json")


def test_trainer_state_from_a_0_1_0_checkpoint_uses_the_inline_record():
    path = os.path.join(DATA, "checkpoint_v0.1.0", "trainer_state.json")
    record, _ = read_record(path)
    saved = json.load(open(path))["stateful_callbacks"]["RefinementCallback"]["attributes"]
    np.testing.assert_array_equal(record.grad_norm_l1, saved["grad_norm_l1"])
    np.testing.assert_array_equal(record.lr, saved["lr"])
    assert len(record) == 4 and "does not name the optimizer" in record.notes[0]


def test_several_callback_entries_take_the_complete_one(tmp_path):
    full = {"attributes": NormRecord.from_columns({"grad_norm_l2": np.arange(1.0, 7.0)}).state()}
    empty = {"attributes": NormRecord(recorded=("grad_norm_l2",)).state()}
    # transformers appends each instance's state at every save: [init0, init1, saved0, saved1]
    state = trainer_state(6, 1, [1.0] * 6, [0.1] * 6, callback=[empty, empty, full, full])
    record, _ = read_record(write_json(tmp_path / "trainer_state.json", state))
    np.testing.assert_array_equal(record.grad_norm_l2, np.arange(1.0, 7.0))


def test_trainer_state_without_the_callback_every_step(tmp_path):
    norms, lrs = list(np.random.default_rng(2).lognormal(size=40)), list(np.linspace(1e-3, 0, 40))
    record, _ = read_record(write_json(tmp_path / "trainer_state.json", trainer_state(40, 1, norms, lrs)))
    np.testing.assert_array_equal(record.grad_norm_l2, norms)
    np.testing.assert_array_equal(record.lr, lrs)
    assert record.recorded == ("grad_norm_l2", "lr") and record.run.per_device_train_batch_size == 8
    assert any("l2 only" in note for note in record.notes) and not any("interpolated" in n for n in record.notes)


def test_trainer_state_interpolates_between_logging_steps(tmp_path):
    norms = list(np.linspace(10, 1, 40))
    record, _ = read_record(write_json(tmp_path / "t.json", trainer_state(40, 5, norms, list(np.linspace(1e-3, 0,
                                                                                                         40)))))
    assert any("on 32 of 40 steps" in note for note in record.notes)
    # Logged at steps 5, 10, ..., 40 (optimizer steps 4, 9, ...); steps 0-3 take the first logged value.
    np.testing.assert_allclose(record.grad_norm_l2[4:], norms[4:], rtol=1e-12)
    np.testing.assert_allclose(record.grad_norm_l2[:4], norms[4])


def test_csv_w_and_b_export_picks_the_metric_column(tmp_path):
    norms = (np.random.default_rng(1).lognormal(size=50) * 1000).tolist()
    lines = ['"Step","run7 - sched/gnorm_l1","run7 - sched/gnorm_l1__MIN","run7 - sched/gnorm_l1__MAX"']
    lines += [f"{i},{x!r},{x!r},{x!r}" for i, x in enumerate(norms) if i != 10]  # step 10 missing, interpolated
    (tmp_path / "export.csv").write_text("\n".join(lines) + "\n")
    record, _ = read_record(tmp_path / "export.csv")
    assert record.recorded == ("grad_norm_l1",)
    assert record.grad_norm_l1[10] == pytest.approx((norms[9] + norms[11]) / 2)
    assert "interpolated the norm linearly on 1 of 50 steps" in record.notes[0]


def test_schedule_file_input_returns_its_record_and_settings(tmp_path):
    schedule = build_schedule(NormRecord.from_columns({"grad_norm_l2": np.linspace(5, 1, 20)}))
    renamed = tmp_path / "record.bin"  # told apart by content, not by name
    shutil.copy(save_schedule_file(schedule, tmp_path / "s.safetensors"), renamed)
    record, settings = read_record(renamed)
    assert record.sha256() == schedule.record.sha256() and settings == schedule.settings


@pytest.mark.parametrize("content, message", [
    ("step,norm\n", "a header row but no values"),
    ("norm\n1.0\nabc\n", "column 'norm' holds 'abc' on data row 2"),
    ("step,norm\n0,1.0\n1e20,2.0\n", r"has step 1\.?0*e\+?20|steps must lie in"),
    ("step,norm\n0,1.0\n1.5,2.0\n", "steps must be whole numbers"),
    ("step,norm\n0,1.0\n30000000,2.0\n", f"at most {MAX_STEPS_PER_VALUE:,} steps per value"),
    ("step,norm\n0,1.0\n1000000000000,2.0\n", "steps must lie in 0..100,000,000"),
    ("norm\n" + "1" * 200_000 + "\n", "not a readable CSV"),
    ("step,a,b\n0,1,2\n1,2,3\n", "cannot tell which column"),
    ("1.0\nnan\n", None),
    ("", "holds no values"),
])
def test_csv_problems_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "norms.csv"
    path.write_text(content)
    if message is None:  # reads, and the refinement then says why it cannot use it
        record, _ = read_record(path)
        with pytest.raises(ValueError, match="need at least 2 valid gradient norms"):
            build_schedule(record)
        return
    with pytest.raises(NormInputError, match=message) as error:
        read_record(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("entry, message", [
    ({"step": None, "grad_norm": 1.0}, r"log_history\[0\] has step None"),
    ({"step": 1e300, "grad_norm": 1.0}, "steps must lie in"),
    ({"step": float("inf"), "grad_norm": 1.0}, "steps must be whole numbers"),
    ({"step": 1, "grad_norm": {}}, r"log_history\[0\] has grad_norm \{\}; expected a number"),
    ({"step": 1, "grad_norm": "big"}, "has grad_norm 'big'"),
    ({"step": 0, "grad_norm": 1.0}, "logged steps start at 1"),
])
def test_trainer_state_problems_are_one_clear_error(tmp_path, entry, message):
    state = {"global_step": 2, "log_history": [entry, {"step": 2, "grad_norm": 1.0}]}
    with pytest.raises(NormInputError, match=message):
        read_record(write_json(tmp_path / "trainer_state.json", state))


def test_huge_global_step_is_bounded(tmp_path):
    state = trainer_state(4, 1, [1.0] * 4, [0.1] * 4)
    state["global_step"] = 10**12
    with pytest.raises(NormInputError, match="`global_step` has step 1,000,000,000,000"):
        read_record(write_json(tmp_path / "trainer_state.json", state))
    state["global_step"] = 3_000_000
    with pytest.raises(NormInputError, match="covers steps 0..2,999,999 with only 4 values"):
        read_record(write_json(tmp_path / "trainer_state.json", state))


def test_paths_that_are_not_readable_files(tmp_path):
    with pytest.raises(NormInputError, match="no such file"):
        read_record(tmp_path / "missing.csv")
    with pytest.raises(NormInputError, match="is a directory"):
        read_record(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NormInputError, match="invalid JSON"):
        read_record(tmp_path / "bad.json")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NormInputError, match="not UTF-8 text"):
        read_record(tmp_path / "binary.csv")
