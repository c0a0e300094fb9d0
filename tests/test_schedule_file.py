"""The safetensors schedule file: round trip, metadata, atomic writes, and one clear message per kind of bad file."""

import os
from datetime import datetime

import numpy as np
import pytest
from safetensors.numpy import save_file

import hf_linear_decay
from hf_linear_decay.constants import FORMAT_NAME, FORMAT_VERSION
from hf_linear_decay.refine import linear_decay, refine_schedule
from hf_linear_decay.schedule_file import (
    METADATA_KEYS,
    RunInfo,
    ScheduleFile,
    ScheduleFileError,
    load_schedule_file,
    save_schedule_file,
)


def make_schedule(num_steps=40, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    l2 = rng.lognormal(size=num_steps)
    l1 = l2 * 30 * rng.uniform(0.9, 1.1, size=num_steps)
    skipped = np.zeros(num_steps, dtype=bool)
    skipped[5] = True
    l2[5] = l1[5] = np.inf  # an fp16 overflow step
    lr = 1e-3 * linear_decay(num_steps)
    run = RunInfo(optimizer="AdamW", base_lr=1e-3, world_size=2, gradient_accumulation_steps=4,
                  per_device_train_batch_size=8, max_grad_norm=1.0, precision="bf16", source="unit test")
    defaults = dict(grad_norm_l2=l2, grad_norm_l1=l1, lr=lr, skipped=skipped, norm="l1", tau=0.1, run=run)
    defaults.update(kwargs)
    return ScheduleFile.from_record(**defaults)


def test_round_trip_keeps_every_field(tmp_path):
    schedule = make_schedule()
    path = save_schedule_file(schedule, tmp_path / "s.safetensors")
    loaded = load_schedule_file(path)
    for name in ("grad_norm_l2", "grad_norm_l1", "lr", "multipliers"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(schedule, name))
        assert getattr(loaded, name).dtype == np.float64
    np.testing.assert_array_equal(loaded.skipped, schedule.skipped)
    assert loaded.skipped.sum() == 1 and loaded.skipped[5]
    assert (loaded.norm, loaded.power, loaded.tau) == ("l1", 1.0, 0.1)
    assert loaded.run == schedule.run
    assert loaded.recorded == ("grad_norm_l2", "grad_norm_l1", "lr")
    assert loaded.package_version == hf_linear_decay.__version__
    datetime.fromisoformat(loaded.created_at)
    # The multipliers are the refinement of the l1 norms with the overflow step filled from its neighbours.
    l1 = schedule.grad_norm_l1.copy()
    l1[5] = (l1[4] + l1[6]) / 2
    np.testing.assert_allclose(loaded.multipliers, refine_schedule(l1, power=1), atol=1e-15)


def test_metadata_has_every_documented_key(tmp_path):
    from safetensors import safe_open

    path = save_schedule_file(make_schedule(), tmp_path / "s.safetensors")
    with safe_open(path, framework="np") as reader:
        metadata = reader.metadata()
        assert sorted(reader.keys()) == sorted(["grad_norm_l2", "grad_norm_l1", "skipped", "lr", "multipliers"])
        assert reader.get_tensor("skipped").dtype == np.uint8
    assert list(metadata) == list(METADATA_KEYS) or set(metadata) == set(METADATA_KEYS)
    for key in ("format", "format_version", "package_version", "num_steps", "tau", "norm", "power", "optimizer",
                "base_lr", "world_size", "gradient_accumulation_steps", "per_device_train_batch_size",
                "max_grad_norm", "precision", "created_at"):
        assert key in metadata, key
    assert metadata["format"] == FORMAT_NAME and metadata["format_version"] == str(FORMAT_VERSION)
    assert metadata["num_steps"] == "40" and metadata["optimizer"] == "AdamW" and metadata["world_size"] == "2"


def test_unrecorded_fields_are_nan_and_unknown(tmp_path):
    schedule = ScheduleFile.from_record(grad_norm_l2=np.linspace(3, 1, 30))
    loaded = load_schedule_file(save_schedule_file(schedule, tmp_path / "s.safetensors"))
    assert loaded.recorded == ("grad_norm_l2",)
    assert np.isnan(loaded.grad_norm_l1).all() and np.isnan(loaded.lr).all()
    assert loaded.run == RunInfo()
    assert (loaded.norm, loaded.power) == ("l2", 2.0)


def test_refined_again_uses_the_raw_norms():
    schedule = make_schedule()
    again = schedule.refined_again(tau=0.5, norm="l2")
    assert (again.tau, again.norm, again.power) == (0.5, "l2", 2.0)
    np.testing.assert_array_equal(again.grad_norm_l2, schedule.grad_norm_l2)
    l2 = schedule.grad_norm_l2.copy()
    l2[5] = (l2[4] + l2[6]) / 2
    np.testing.assert_allclose(again.multipliers, refine_schedule(l2, tau=0.5, power=2), atol=1e-15)
    with pytest.raises(ValueError, match="does not record"):
        ScheduleFile.from_record(grad_norm_l2=np.ones(5)).refined_again(norm="l1")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "s.safetensors"
    save_schedule_file(make_schedule(seed=1), path)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_schedule_file(make_schedule(seed=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_invalid_schedule_is_not_written(tmp_path):
    schedule = make_schedule()
    schedule.multipliers = schedule.multipliers * 2
    with pytest.raises(ScheduleFileError, match="peak 1"):
        save_schedule_file(schedule, tmp_path / "s.safetensors")
    assert not list(tmp_path.iterdir())


def write_raw(path, tensors=None, metadata=None, **changes):
    schedule = make_schedule()
    tensors = dict(schedule.tensors() if tensors is None else tensors)
    metadata = dict(schedule.metadata() if metadata is None else metadata)
    for key, value in changes.items():
        if key.startswith("meta_"):
            metadata[key[5:]] = value
        elif value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"meta_format": "something_else"}, "not an hf_linear_decay schedule file"),
        ({"meta_format_version": "2"}, r"format version 2 is newer .* upgrade hf_linear_decay"),
        ({"meta_format_version": "x"}, "`format_version` must be an integer"),
        ({"meta_tau": "1.5"}, r"`tau` must be in \(0, 1\]"),
        ({"meta_norm": "l3"}, "`norm` must be 'l1' or 'l2'"),
        ({"meta_power": "-1"}, "`power` must be a finite number > 0"),
        ({"meta_num_steps": "39"}, r"tensor `grad_norm_l2` has shape \(40,\), expected \(39,\)"),
        ({"lr": None}, r"tensors missing \['lr'\]"),
        ({"extra": np.zeros(40)}, r"unexpected \['extra'\]"),
        ({"multipliers": np.linspace(1, 0, 40).astype(np.float32)}, "tensor `multipliers` has dtype float32"),
        ({"skipped": np.zeros(40, dtype=np.float64)}, "tensor `skipped` has dtype float64"),
        ({"lr": np.ones(41)}, r"tensor `lr` has shape \(41,\)"),
        ({"multipliers": np.r_[np.linspace(1, 0, 39), np.nan]}, "tensor `multipliers` is not finite at step 39"),
        ({"multipliers": np.linspace(0.5, 0, 40)}, "peak 1 and last value 0"),
        ({"grad_norm_l2": np.r_[np.nan, np.ones(39)]}, r"tensor `grad_norm_l2` holds nan at step 0"),
        ({"skipped": np.full(40, 2, dtype=np.uint8)}, "only 0 and 1"),
    ],
)
def test_bad_files_get_their_own_message(tmp_path, changes, message):
    path = write_raw(tmp_path / "bad.safetensors", **changes)
    with pytest.raises(ScheduleFileError, match=message) as error:
        load_schedule_file(path)
    assert str(path) in str(error.value)


def test_missing_metadata_key(tmp_path):
    metadata = make_schedule().metadata()
    del metadata["precision"]
    path = write_raw(tmp_path / "bad.safetensors", metadata=metadata)
    with pytest.raises(ScheduleFileError, match=r"metadata is missing \['precision'\]"):
        load_schedule_file(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": np.ones((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(ScheduleFileError, match=r"not an hf_linear_decay schedule file \(metadata `format` is None"):
        load_schedule_file(path)


def test_truncated_file(tmp_path):
    path = save_schedule_file(make_schedule(), tmp_path / "s.safetensors")
    data = open(path, "rb").read()
    for cut in (len(data) - 17, len(data) // 2, 20):
        with open(path, "wb") as out:
            out.write(data[:cut])
        with pytest.raises(ScheduleFileError, match="truncated or corrupt"):
            load_schedule_file(path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "norms.safetensors"
    path.write_text("0.5\n0.4\n0.3\n")
    with pytest.raises(ScheduleFileError, match="not a safetensors file"):
        load_schedule_file(path)
    with pytest.raises(ScheduleFileError, match="no such file"):
        load_schedule_file(tmp_path / "missing.safetensors")


def test_file_holds_no_pickle(tmp_path):
    path = save_schedule_file(make_schedule(), tmp_path / "s.safetensors")
    data = open(path, "rb").read()
    header_size = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and data[8 + header_size - 1 : 8 + header_size].strip() in (b"}", b"")
    assert b"\x80\x04" not in data[:2] and b"pickle" not in data
