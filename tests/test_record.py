"""NormRecord: the one per-step record (append, truncate, pad, state round trip, identity)."""

import json
import math

import numpy as np
import pytest

from hf_linear_decay.core.record import RECORD_COLUMNS, NormRecord, RunInfo


def sample(num_steps=10, seed=0):
    rng = np.random.default_rng(seed)
    return {"grad_norm_l2": rng.lognormal(size=num_steps), "grad_norm_l1": rng.lognormal(size=num_steps) * 20,
            "lr": np.linspace(1e-3, 0, num_steps)}


def test_append_in_batches_equals_whole_columns():
    columns = sample(300)
    whole = NormRecord.from_columns(columns)
    grown = NormRecord(capacity=1)
    for start in range(0, 300, 7):  # many small appends exercise the doubling buffer
        grown.append({name: values[start : start + 7] for name, values in columns.items()},
                     np.zeros(len(columns["lr"][start : start + 7]), bool))
    assert len(grown) == len(whole) == 300
    for name in RECORD_COLUMNS:
        np.testing.assert_array_equal(grown.column(name), whole.column(name))
        np.testing.assert_array_equal(getattr(grown, name), columns[name])
    assert not grown.skipped.any() and grown.sha256() == whole.sha256()


def test_unusable_norms_are_flagged_skipped_but_kept():
    columns = sample(6)
    columns["grad_norm_l2"][1] = np.inf
    columns["grad_norm_l1"][3] = 0.0
    columns["grad_norm_l1"][4] = -2.0
    columns["lr"][5] = 0.0  # a zero LR is a fine value, not an unusable step
    record = NormRecord.from_columns(columns, skipped=[1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(record.skipped, [1, 1, 0, 1, 1, 0])
    assert record.grad_norm_l1[4] == -2.0  # the value is kept as recorded


def test_unrecorded_columns_read_as_nan_and_cannot_be_appended():
    record = NormRecord.from_columns({"grad_norm_l1": [1.0, 2.0]})
    assert record.recorded == ("grad_norm_l1",)
    assert np.isnan(record.grad_norm_l2).all() and np.isnan(record.lr).all()
    with pytest.raises(ValueError, match=r"no l2 norms .*it holds \['l1'\]"):
        record.norms("l2")
    with pytest.raises(ValueError, match=r"columns \['lr'\] are not recorded"):
        record.append({"lr": [1.0]}, [False])


def test_truncate_and_pad():
    record = NormRecord.from_columns(sample(8))
    record.truncate(5)
    assert len(record) == 5
    assert record.pad_to(7) == 2 and record.pad_to(3) == 0
    assert np.isnan(record.grad_norm_l2[5:]).all() and record.skipped[5:].all() and not record.skipped[:5].any()
    record.append(sample(1, seed=3), [False])  # after a truncate, old values never reappear
    np.testing.assert_array_equal(record.grad_norm_l2[7], sample(1, seed=3)["grad_norm_l2"])


def test_columns_are_read_only_views():
    record = NormRecord.from_columns(sample(4))
    with pytest.raises(ValueError, match="read-only"):
        record.grad_norm_l2[0] = 5.0


def test_state_round_trips_through_json_with_nan_and_run():
    columns = sample(5)
    columns["grad_norm_l2"][2] = np.nan
    run = RunInfo(optimizer="AdamW", base_lr=1e-3, world_size=4, gradient_accumulation_steps=2,
                  per_device_train_batch_size=8, max_grad_norm=1.0, precision="bf16", source="test")
    record = NormRecord.from_columns(columns, run=run)
    restored = NormRecord.from_state(json.loads(json.dumps(record.state())))
    assert restored.sha256() == record.sha256() and restored.run == run and restored.run.global_batch_size == 64
    assert json.dumps(record.state()).count("null") == 1


def test_from_state_reads_the_0_1_0_callback_attributes():
    legacy = {"grad_norm_l2": [1.0, 2.0, math.inf], "grad_norm_l1": [3.0, 4.0, math.inf], "lr": [0.1, 0.05, 0.0],
              "skipped": [False, False, True]}
    record = NormRecord.from_state(legacy)
    assert record.recorded == RECORD_COLUMNS and len(record) == 3
    np.testing.assert_array_equal(record.skipped, [0, 0, 1])
    assert record.run == RunInfo()


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="of one length"):
        NormRecord.from_columns({"grad_norm_l2": [1.0, 2.0], "lr": [0.1]})
    with pytest.raises(ValueError, match="column `lr` has 1 values for 2 steps"):
        NormRecord().append({"grad_norm_l2": [1.0, 2.0], "grad_norm_l1": [1.0, 2.0], "lr": [0.1]}, [0, 0])


def test_fingerprint_detects_one_changed_value_and_ignores_rounding():
    base = NormRecord.from_columns(sample(50))
    changed_columns = sample(50)
    changed_columns["grad_norm_l1"][37] *= 1.001
    changed = NormRecord.from_columns(changed_columns)
    rounded = NormRecord.from_columns({name: values * (1 + 1e-9) for name, values in sample(50).items()})

    def differs(a, b):
        return bool((np.abs(a - b) > 1e-6 * np.maximum(np.abs(a), np.abs(b))).any())

    assert differs(base.fingerprint(), changed.fingerprint())
    assert not differs(base.fingerprint(), rounded.fingerprint())
    assert not differs(base.fingerprint(40), changed.fingerprint(40))  # only the steps from `start` on
    assert base.fingerprint().shape == base.fingerprint(50).shape  # fixed size whatever the range


def test_run_info_strings_round_trip_and_reject_bad_numbers():
    run = RunInfo(optimizer="SGD", world_size=2)
    assert RunInfo.from_strings(run.to_strings()) == run
    with pytest.raises(ValueError, match="run field `world_size` must be int or 'unknown', got 'two'"):
        RunInfo.from_strings({"world_size": "two"})
