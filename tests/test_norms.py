"""The norm vocabulary: one table, one validator, the optimizer -> norm pairing."""

import pytest

from hf_linear_decay.core.norms import NORM_TYPES, check_norm, norm_for_optimizer, norm_type


def test_table_pairs_each_norm_with_the_papers_power():
    assert [(n.name, n.tensor, n.order, n.default_power) for n in NORM_TYPES.values()] == [
        ("l2", "grad_norm_l2", 2.0, 2.0), ("l1", "grad_norm_l1", 1.0, 1.0)]
    assert all(name == row.name for name, row in NORM_TYPES.items())
    assert norm_type("l1") is NORM_TYPES["l1"]


@pytest.mark.parametrize("bad", ["linf", "L1", "", None, 1])
def test_check_norm_names_the_parameter_the_value_and_the_choices(bad):
    with pytest.raises(ValueError, match=r"^`--norm` must be one of \['l2', 'l1'\], got --norm=.*l2 for SGD"):
        check_norm(bad, name="--norm")


@pytest.mark.parametrize("name, norm", [("AdamW", "l1"), ("Adafactor", "l1"), ("SGD", "l2"), ("Lion", "l1"),
                                        ("LAMB", "l1"), ("Adagrad", "l1"), ("FusedSGD", "l2"), ("Muon", "l2"),
                                        ("DeepSpeedCPUAdam", "l1"), ("FusedAdam", "l1")])
def test_norm_for_optimizer(name, norm):
    assert norm_for_optimizer(name) == norm
