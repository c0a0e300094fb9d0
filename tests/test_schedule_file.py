"""The schedule and record files: round trip, metadata, version readers, and one clear message per kind of bad file."""

import os
import pickle
from datetime import datetime

import numpy as np
import pytest
from safetensors.numpy import save_file

import hf_linear_decay
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.core.record import NormRecord, RunInfo
from hf_linear_decay.core.refine import refine_schedule
from hf_linear_decay.files.schedule_file import (
    RECORD_KEYS,
    SCHEDULE_FORMAT,
    SCHEDULE_KEYS,
    SCHEDULE_VERSION,
    ScheduleFileError,
    load_record_file,
    load_schedule_file,
    save_record_file,
    save_schedule_file,
)
from hf_linear_decay.core.shapes import linear_decay

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
RUN = RunInfo(optimizer="AdamW", base_lr=1e-3, world_size=2, gradient_accumulation_steps=4,
              per_device_train_batch_size=8, max_grad_norm=1.0, precision="bf16", source="unit test")


def make_record(num_steps=40, seed=0):
    rng = np.random.default_rng(seed)
    l2 = rng.lognormal(size=num_steps)
    l1 = l2 * 30 * rng.uniform(0.9, 1.1, size=num_steps)
    l2[5] = l1[5] = np.inf  # an fp16 overflow step
    skipped = np.zeros(num_steps, dtype=bool)
    skipped[5] = True
    return NormRecord.from_columns({"grad_norm_l2": l2, "grad_norm_l1": l1, "lr": 1e-3 * linear_decay(num_steps)},
                                   skipped, RUN)


def make_schedule(**settings):
    return build_schedule(make_record(), RefinementSettings(**{"method": "paper", **settings}))


def test_round_trip_keeps_every_field(tmp_path):
    schedule = make_schedule()
    loaded = load_schedule_file(save_schedule_file(schedule, tmp_path / "s.safetensors"))
    for name in ("grad_norm_l2", "grad_norm_l1", "lr"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(schedule, name))
        assert getattr(loaded, name).dtype == np.float64
    np.testing.assert_array_equal(loaded.multipliers, schedule.multipliers)
    np.testing.assert_array_equal(loaded.skipped, schedule.skipped)
    assert loaded.skipped.sum() == 1 and loaded.skipped[5]
    assert loaded.settings == RefinementSettings(method="paper", norm="l1", tau=0.1, power=1.0)
    assert loaded.run == RUN and loaded.recorded == ("grad_norm_l2", "grad_norm_l1", "lr")
    assert loaded.package_version == hf_linear_decay.__version__
    datetime.fromisoformat(loaded.created_at)
    # The multipliers are the refinement of the l1 norms with the overflow step filled from its neighbours.
    l1 = schedule.grad_norm_l1.copy()
    l1[5] = (l1[4] + l1[6]) / 2
    np.testing.assert_allclose(loaded.multipliers, refine_schedule(l1, power=1), atol=1e-15)


def test_metadata_is_written_in_the_documented_order(tmp_path):
    from safetensors import safe_open

    path = save_schedule_file(make_schedule(), tmp_path / "s.safetensors")
    with safe_open(path, framework="np") as reader:
        metadata = reader.metadata()
    assert sorted(metadata) == sorted(SCHEDULE_KEYS)
    assert metadata["format"] == SCHEDULE_FORMAT and metadata["format_version"] == str(SCHEDULE_VERSION) == "4"
    assert metadata["num_steps"] == "40" and metadata["optimizer"] == "AdamW" and metadata["world_size"] == "2"
    assert metadata["method"] == "paper" and metadata["norm"] == "l1"
    assert metadata["recorded"] == "grad_norm_l2,grad_norm_l1,lr"
    assert SCHEDULE_KEYS[:8] == ("format", "format_version", "package_version", "num_steps", "method", "tau", "norm",
                                 "power")


def test_version_1_files_from_0_1_0_still_load():
    # tests/data/schedule_v1.safetensors was written by hf_linear_decay 0.1.0 (format version 1, no `method`).
    schedule = load_schedule_file(os.path.join(DATA, "schedule_v1.safetensors"))
    assert schedule.settings == RefinementSettings(method="paper", norm="l1", tau=0.1, power=1.0)
    assert schedule.package_version == "0.1.0" and schedule.num_steps == 60 and schedule.run.world_size == 2
    assert schedule.skipped.sum() == 1 and schedule.skipped[9]
    np.testing.assert_allclose(schedule.multipliers, build_schedule(schedule.record, schedule.settings).multipliers,
                               atol=1e-15)


def test_unrecorded_fields_are_nan_and_unknown(tmp_path):
    schedule = build_schedule(NormRecord.from_columns({"grad_norm_l2": np.linspace(3, 1, 30)}))
    loaded = load_schedule_file(save_schedule_file(schedule, tmp_path / "s.safetensors"))
    assert loaded.recorded == ("grad_norm_l2",)
    assert np.isnan(loaded.grad_norm_l1).all() and np.isnan(loaded.lr).all()
    assert loaded.run == RunInfo() and (loaded.norm, loaded.power) == ("l2", 2.0)


def test_record_file_round_trip(tmp_path):
    record = make_record(25)
    loaded = load_record_file(save_record_file(record, tmp_path / "norm_record.safetensors"))
    assert loaded.sha256() == record.sha256() and loaded.run == RUN
    with pytest.raises(ScheduleFileError, match="a record file .*, not a schedule; make a schedule from it with "
                                                "`hf-linear-decay refine"):
        load_schedule_file(tmp_path / "norm_record.safetensors")
    empty = load_record_file(save_record_file(NormRecord(), tmp_path / "empty.safetensors"))
    assert len(empty) == 0


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "s.safetensors"
    save_schedule_file(make_schedule(), path)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_schedule_file(make_schedule(tau=0.5), path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_invalid_schedule_is_not_written(tmp_path):
    schedule = make_schedule()
    schedule.multipliers = schedule.multipliers * 2
    with pytest.raises(ScheduleFileError, match="peak 1"):
        save_schedule_file(schedule, tmp_path / "s.safetensors")
    assert not list(tmp_path.iterdir())


def write_raw(path, metadata_changes=(), **tensor_changes):
    schedule = make_schedule()
    tensors = {name: schedule.record.column(name) for name in ("grad_norm_l2", "grad_norm_l1", "lr")}
    tensors.update(skipped=schedule.skipped.astype(np.uint8), multipliers=schedule.multipliers)
    from hf_linear_decay.files.schedule_file import schedule_metadata

    metadata = dict(schedule_metadata(schedule))
    for key, value in dict(metadata_changes).items():
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value
    for key, value in tensor_changes.items():
        if value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "metadata, tensors, message",
    [
        ({"format": "something_else"}, {}, "not a schedule file"),
        ({"format_version": "5"}, {}, r"format version 5 is newer .* upgrade hf_linear_decay"),
        ({"format_version": "x"}, {}, "`format_version` must be a positive integer, got 'x'"),
        ({"format_version": "²"}, {}, "`format_version` must be a positive integer, got '²'"),
        ({"format_version": "0"}, {}, "`format_version` must be a positive integer"),
        ({"tau": "1.5"}, {}, r"`tau` must be a number in \(0, 1\]"),
        ({"tau": "abc"}, {}, "metadata `tau` must be a number, got .abc."),
        ({"norm": "l3"}, {}, r"`norm` must be one of \['l2', 'l1'\]"),
        ({"method": "magic"}, {}, r"`method` must be one of \['auto', 'paper'"),
        ({"power": "-1"}, {}, "`power` must be a finite number > 0"),
        ({"world_size": "two"}, {}, "run field `world_size` must be int"),
        ({"num_steps": "39"}, {}, r"tensor `grad_norm_l2` has shape \(40,\), expected \(39,\)"),
        ({"num_steps": "1e3"}, {}, "`num_steps` must be an integer >= 2"),
        ({"precision": None}, {}, r"metadata is missing \['precision'\]"),
        ({}, {"multipliers": None}, r"tensors missing \['multipliers'\]"),
        ({}, {"extra": np.zeros(40)}, r"unexpected \['extra'\]"),
        ({}, {"multipliers": np.linspace(1, 0, 40).astype(np.float32)}, "tensor `multipliers` has dtype float32"),
        ({}, {"skipped": np.zeros(40, dtype=np.float64)}, "tensor `skipped` has dtype float64"),
        ({}, {"lr": np.ones(41)}, r"tensor `lr` has shape \(41,\)"),
        ({}, {"multipliers": np.r_[np.linspace(1, 0, 39), np.nan]}, "tensor `multipliers` is not finite at step 39"),
        ({}, {"multipliers": np.linspace(0.5, 0, 40)}, "in \\[0, 1\\] with peak 1, got min 0.0, max 0.5"),
        ({}, {"grad_norm_l2": np.r_[np.nan, np.ones(39)]}, r"tensor `grad_norm_l2` holds nan at step 0, which is not"),
        ({}, {"grad_norm_l1": np.r_[-1.0, np.ones(39)]}, r"tensor `grad_norm_l1` holds -1.0 at step 0"),
        ({}, {"skipped": np.full(40, 2, dtype=np.uint8)}, "only 0 and 1"),
        ({}, {"skipped": np.ones(40, dtype=np.uint8)}, "only 0 of 40 steps are valid"),
        ({"recorded": "grad_norm_l2,lr"}, {}, "tensor `grad_norm_l1` is not listed in metadata `recorded`"),
        ({}, {"grad_norm_l1": None}, r"tensors missing \['grad_norm_l1'\]"),
        ({"recorded": "grad_norm_l2,lr"}, {"grad_norm_l1": np.full(40, np.nan)}, "refined from `grad_norm_l1`, which"),
    ],
)
def test_bad_files_get_their_own_message(tmp_path, metadata, tensors, message):
    path = write_raw(tmp_path / "bad.safetensors", metadata, **tensors)
    with pytest.raises(ScheduleFileError, match=message) as error:
        load_schedule_file(path)
    assert str(error.value).startswith(f"{path}: ")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": np.ones((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(ScheduleFileError, match=r"not a schedule file .*metadata `format` is None"):
        load_schedule_file(path)


def test_truncated_file(tmp_path):
    path = save_schedule_file(make_schedule(), tmp_path / "s.safetensors")
    data = open(path, "rb").read()
    for cut in (len(data) - 17, len(data) // 2, 20):
        with open(path, "wb") as out:
            out.write(data[:cut])
        with pytest.raises(ScheduleFileError, match="truncated or corrupt"):
            load_schedule_file(path)


def test_not_a_file(tmp_path):
    path = tmp_path / "norms.safetensors"
    path.write_text("0.5\n0.4\n0.3\n")
    with pytest.raises(ScheduleFileError, match="not a safetensors file"):
        load_schedule_file(path)
    with pytest.raises(ScheduleFileError, match="no such file"):
        load_schedule_file(tmp_path / "missing.safetensors")
    with pytest.raises(ScheduleFileError, match="is a directory, not a file"):
        load_schedule_file(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ScheduleFileError, match="not a regular file"):
        load_schedule_file(fifo)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ScheduleFileError, match="not a safetensors file"):
        load_schedule_file(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_file_without_an_unrecorded_norm_column_loads(tmp_path):
    # What a file written before a norm joined the table looks like: no tensor for it, not in `recorded`.
    schedule = build_schedule(NormRecord.from_columns({"grad_norm_l2": np.linspace(4, 1, 30)}))
    from hf_linear_decay.files.schedule_file import schedule_metadata

    tensors = {"grad_norm_l2": schedule.grad_norm_l2, "lr": schedule.lr, "skipped": schedule.skipped.astype(np.uint8),
               "multipliers": schedule.multipliers}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=schedule_metadata(schedule))
    loaded = load_schedule_file(tmp_path / "old.safetensors")
    assert loaded.recorded == ("grad_norm_l2",) and np.isnan(loaded.grad_norm_l1).all()


def test_key_lists_are_consistent():
    assert set(RECORD_KEYS) < set(SCHEDULE_KEYS)
    assert len(set(SCHEDULE_KEYS)) == len(SCHEDULE_KEYS)
