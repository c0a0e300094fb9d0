"""Where `RefinementCallback` keeps its record in a checkpoint, and how it is found again.

A checkpoint holds the record in its own file (`norm_record.safetensors`, see `schedule_file`); the callback's entry
in `trainer_state.json` holds only a pointer, the step count and a digest, so the JSON does not grow with the run.
Checkpoints of hf_linear_decay 0.1.x kept the record inline (four lists); they still resume and still refine.
"""

from __future__ import annotations

import os

from ..core.record import NormRecord
from .schedule_file import RECORD_FILE_NAME, load_record_file

__all__ = ["CheckpointRecordError", "pointer_attributes", "read_saved_records", "record_from_callback_state",
           "saved_callback_record"]


class CheckpointRecordError(ValueError):
    """A saved callback entry does not lead to its record; the message says which file and why."""


def pointer_attributes(record: NormRecord) -> dict:
    """The callback's `attributes` in trainer_state.json: the record file beside it, its length and digest."""
    return {"record_file": RECORD_FILE_NAME, "num_steps": len(record), "sha256": record.sha256()}


def record_from_callback_state(entry: dict, folder: str, path) -> NormRecord:
    """The record `RefinementCallback` saved in a trainer_state.json entry: a record file beside it, or inline lists."""
    attributes = entry.get("attributes") if isinstance(entry, dict) else None
    if not isinstance(attributes, dict) or not attributes:
        raise CheckpointRecordError(f"{path}: the RefinementCallback entry has no `attributes`; the file is damaged.")
    try:
        if "record_file" in attributes:
            name = os.path.basename(str(attributes["record_file"]))
            if not os.path.lexists(os.path.join(folder, name)):
                raise CheckpointRecordError(f"{path}: its {name} is missing (deleted, or not copied with the "
                                            "checkpoint).")
            record = load_record_file(os.path.join(folder, name))
            if record.sha256() != attributes.get("sha256"):
                raise CheckpointRecordError(f"{path}: {attributes['record_file']} does not hold the record this state "
                                            "describes (digest differs); it was replaced after the checkpoint was "
                                            "written.")
            return record
        record = NormRecord.from_state(attributes)
        if record.run.optimizer is None:
            record.notes.append("this record (hf_linear_decay 0.1.x) does not name the optimizer, so the norm defaults "
                                "to l2; pass --norm l1 for an Adam-type run")
        return record
    except CheckpointRecordError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CheckpointRecordError(f"{path}: cannot read the RefinementCallback record ({error}).") from None


def read_saved_records(saved, folder: str, path) -> tuple[list[NormRecord], list[str]]:
    """The records of a trainer_state.json's `RefinementCallback` entries (one, or a list when several instances
    saved: transformers appends each instance's state at every save), and a message for each entry that points at a
    record it cannot have. Entries of 0 steps (made when the Trainer was built, before any step) are skipped."""
    records, problems = [], []
    for entry in [] if saved is None else saved if isinstance(saved, list) else [saved]:
        attributes = entry.get("attributes") if isinstance(entry, dict) else None
        if isinstance(attributes, dict) and "record_file" in attributes and attributes.get("num_steps") == 0:
            continue
        try:
            records.append(record_from_callback_state(entry, folder, path))
        except CheckpointRecordError as error:
            problems.append(str(error))
    return records, problems


def saved_callback_record(saved, folder: str, global_step: int, path) -> NormRecord | None:
    """The record among the saved entries that covers `global_step` steps, else the longest; `None` if there is
    none. Raises `CheckpointRecordError` for an entry whose record is missing or unreadable."""
    records, problems = read_saved_records(saved, folder, path)
    if problems:
        raise CheckpointRecordError(problems[0])
    complete = [record for record in records if len(record) == global_step]
    return (complete or sorted(records, key=len) or [None])[-1]
