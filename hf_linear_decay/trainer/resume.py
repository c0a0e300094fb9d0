"""What a resumed run does when its checkpoint's record cannot be used: stop with the ways on, or go on as asked.

The reading of a checkpoint's record is `files.checkpoint_record`; the policy (refuse by default,
`resume_without_record` to go on with those steps unknown) and its words are the Trainer integration's, here.
"""

from __future__ import annotations

import os

from ..core.record import NormRecord
from ..files.atomic import remove_stale_temporaries
from ..files.checkpoint_record import read_saved_records
from ..files.formats import RECORD_FILE_NAME

__all__ = ["MissingRecordError", "missing_record_message", "remove_stale_temporaries_of_run", "resumed_record"]


class MissingRecordError(RuntimeError):
    """A resume would lose the record its checkpoint points to; the message names the checkpoint and the ways on."""


def missing_record_message(checkpoint: str, problems: list[str], global_step: int) -> str:
    """Why a resume from `checkpoint` stops, and the two ways on: an earlier checkpoint, or the explicit flag."""
    run_dir = os.path.dirname(os.path.abspath(checkpoint))
    earlier = sorted((int(name.rsplit("-", 1)[1]), name) for name in os.listdir(run_dir)
                     if name.startswith("checkpoint-") and name.rsplit("-", 1)[1].isdigit()
                     and int(name.rsplit("-", 1)[1]) < global_step
                     and os.path.isfile(os.path.join(run_dir, name, RECORD_FILE_NAME)))
    where = (f"resume from {os.path.join(run_dir, earlier[-1][1])}, which has its record" if earlier else
             "resume from an earlier checkpoint that has its record")
    return (f"RefinementCallback: {checkpoint} points to a record of its {global_step} steps that cannot be used: "
            f"{problems[0]} Without it the norms of those steps are lost. Either {where}, or go on with those steps "
            "marked unknown (they count against the 25% refusal when refining): lr_scheduler_kwargs="
            "{\"resume_without_record\": true} or RefinementCallback(resume_without_record=True).")


def resumed_record(saved, folder: str, global_step: int, allow_missing: bool) -> tuple[NormRecord, str | None]:
    """The record a resume from `folder` continues, and why it falls short (`None`: it covers every step, or the
    checkpoint was saved without the callback). A pointer to a record that cannot be used raises
    `MissingRecordError` unless `allow_missing`; the steps it covered are then unknown (the caller pads them)."""
    records, problems = read_saved_records(saved, folder, os.path.join(folder, "trainer_state.json"))
    complete = [record for record in records if len(record) == global_step]
    if complete:
        return complete[-1], None
    if problems and not allow_missing:
        raise MissingRecordError(missing_record_message(folder, problems, global_step))
    return max(records, key=len, default=NormRecord()), (problems[0] if problems else None)


def remove_stale_temporaries_of_run(output_dir, names) -> list[str]:
    """What killed writers left of `names` in a Trainer `output_dir` and its `checkpoint-N` folders (a checkpoint is
    written once, so its leftovers are removed at the next start, `files.atomic.remove_stale_temporaries`)."""
    try:
        folders = [output_dir] + [os.path.join(output_dir, entry) for entry in os.listdir(output_dir)
                                  if entry.startswith("checkpoint-")]
    except OSError:
        return []
    return [removed for folder in folders for name in names
            for removed in remove_stale_temporaries(os.path.join(folder, name))]
