"""What each version of our two file formats holds: a new tensor or metadata key is a new version.

`SCHEDULE_LAYOUTS` / `RECORD_LAYOUTS` list, per format version, its tensors and metadata keys, written out literally
(never derived from the norm table, which can grow). tests/test_schedule_file.py fails when the writer's tensors or
keys differ from the newest row, so adding a norm or a key means adding a version here; every older version keeps
its reader (`schedule_file`), and a file newer than this package says "upgrade" instead of "unexpected tensors".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.record import RECORD_COLUMNS

SCHEDULE_FILE_NAME = "refined_schedule.safetensors"
RECORD_FILE_NAME = "norm_record.safetensors"
SCHEDULE_FORMAT, RECORD_FORMAT = "hf_linear_decay.refined_schedule", "hf_linear_decay.norm_record"


@dataclass(frozen=True)
class Layout:
    """The tensors and metadata keys of one format version (written literally: they must never change)."""

    tensors: tuple[str, ...]
    keys: tuple[str, ...]


_RUN_V1 = ("optimizer", "base_lr", "world_size", "gradient_accumulation_steps", "per_device_train_batch_size",
           "max_grad_norm", "precision", "source")
_RECORD_TENSORS_V1 = ("grad_norm_l2", "grad_norm_l1", "lr", "skipped")
_HEAD = ("format", "format_version", "package_version", "num_steps")
RECORD_LAYOUTS = {
    1: Layout(_RECORD_TENSORS_V1, _HEAD + ("recorded", *_RUN_V1, "created_at")),
    2: Layout(_RECORD_TENSORS_V1, _HEAD + ("recorded", *_RUN_V1, "weight_decay", "created_at")),  # + weight decay
}
SCHEDULE_LAYOUTS = {
    1: Layout(_RECORD_TENSORS_V1 + ("multipliers",), _HEAD + ("tau", "norm", "power", "recorded", *_RUN_V1,
                                                               "created_at")),
    2: Layout(_RECORD_TENSORS_V1 + ("multipliers",), _HEAD + ("method", "tau", "norm", "power", "recorded", *_RUN_V1,
                                                               "created_at")),  # + the method
    3: Layout(_RECORD_TENSORS_V1 + ("multipliers",), _HEAD + ("method", "tau", "norm", "power", "method_options",
                                                               "recorded", *_RUN_V1, "weight_decay", "created_at")),
    # + what an adaptive run planned and decided (JSON; "" otherwise); multipliers may end above 0 (a kept schedule)
    4: Layout(_RECORD_TENSORS_V1 + ("multipliers",), _HEAD + ("method", "tau", "norm", "power", "method_options",
                                                               "adaptive", "recorded", *_RUN_V1, "weight_decay",
                                                               "created_at")),
}
SCHEDULE_VERSION, RECORD_VERSION = max(SCHEDULE_LAYOUTS), max(RECORD_LAYOUTS)
SCHEDULE_KEYS, RECORD_KEYS = SCHEDULE_LAYOUTS[SCHEDULE_VERSION].keys, RECORD_LAYOUTS[RECORD_VERSION].keys
FLOAT_TENSORS = set(RECORD_COLUMNS) | {"multipliers"}
