"""The callback's record in a checkpoint: a pointer with a digest in trainer_state.json, the record in its own file."""

import json

import numpy as np
import pytest

from hf_linear_decay.files.checkpoint_record import (
    CheckpointRecordError,
    pointer_attributes,
    read_saved_records,
    record_from_callback_state,
    saved_callback_record,
)
from hf_linear_decay.core.record import NormRecord
from hf_linear_decay.files.schedule_file import save_record_file


def record(num_steps):
    return NormRecord.from_columns({"grad_norm_l2": np.arange(1.0, num_steps + 1), "lr": np.zeros(num_steps)})


def test_the_pointer_is_small_whatever_the_record_length(tmp_path):
    short, long = pointer_attributes(record(3)), pointer_attributes(record(100_000))
    assert len(json.dumps(short)) == len(json.dumps(long)) - 5  # only the step count's digits grow (3 -> 100000)
    save_record_file(record(100_000), tmp_path / "norm_record.safetensors")
    loaded = record_from_callback_state({"attributes": long}, str(tmp_path), "trainer_state.json")
    assert len(loaded) == 100_000 and loaded.sha256() == long["sha256"]


def test_missing_or_replaced_record_files_are_named(tmp_path):
    entry = {"attributes": pointer_attributes(record(5))}
    with pytest.raises(CheckpointRecordError, match="its norm_record.safetensors is missing"):
        record_from_callback_state(entry, str(tmp_path), "ts.json")
    save_record_file(record(6), tmp_path / "norm_record.safetensors")
    with pytest.raises(CheckpointRecordError, match="digest differs"):
        record_from_callback_state(entry, str(tmp_path), "ts.json")
    with pytest.raises(CheckpointRecordError, match="has no `attributes`"):
        record_from_callback_state({"args": {}}, str(tmp_path), "ts.json")


def test_several_entries_take_the_one_that_covers_every_step(tmp_path):
    entries = [{"attributes": record(0).state()}, {"attributes": record(4).state()}, {"attributes": record(6).state()},
               {"attributes": record(6).state()}]
    assert len(saved_callback_record(entries, str(tmp_path), 6, "ts.json")) == 6
    assert len(saved_callback_record(entries[:2], str(tmp_path), 6, "ts.json")) == 4  # the longest if none is complete
    assert saved_callback_record(None, str(tmp_path), 6, "ts.json") is None
    broken = [{"attributes": pointer_attributes(record(6))}, {"attributes": record(6).state()}]
    records, problems = read_saved_records(broken, str(tmp_path), "ts.json")
    assert [len(r) for r in records] == [6] and len(problems) == 1
    assert "norm_record.safetensors is missing" in problems[0]
    with pytest.raises(CheckpointRecordError, match="norm_record.safetensors is missing"):
        saved_callback_record(broken, str(tmp_path), 6, "ts.json")
    stale = [{"attributes": pointer_attributes(record(0))}, {"attributes": record(6).state()}]  # made at Trainer init
    assert read_saved_records(stale, str(tmp_path), "ts.json")[1] == []
