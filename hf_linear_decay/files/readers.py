"""Read a per-step `NormRecord` from the files users already have: the input formats in one table.

Told apart by content, never by name, in the order of `INPUT_FORMATS` (the first whose `sniff` accepts the file's
first bytes reads it):

1. safetensors: one of our schedule files (its record, and the settings it was refined with) or a record file (a
   checkpoint's `norm_record.safetensors`); any other safetensors file is refused from its header;
2. JSON lines (`jsonl_reader`): one object of metrics per line, at least two lines;
3. a JSON document (`trainer_state_reader`): a Trainer `trainer_state.json`;
4. a CSV or text table of norms (`table_reader`): the fallback for any other UTF-8 text.

The file is opened once: the sniffers see its head, and the reader goes on from the same handle. Adding a format is a
reader module and a row here. Every problem raises `NormInputError` naming the file, the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .jsonl_reader import looks_like_json_lines, record_from_json_lines
from .paths import check_readable_file
from .safetensors_io import looks_like_safetensors
from .schedule_file import read_safetensors_input
from .steps import MAX_STEPS, MAX_STEPS_PER_VALUE, NormInputError
from .table_reader import record_from_table
from .trainer_state_reader import parse_json, record_from_trainer_state

__all__ = ["INPUT_FORMATS", "MAX_STEPS", "MAX_STEPS_PER_VALUE", "InputFormat", "NormInputError", "input_kinds",
           "read_record"]

#: Bytes the sniffers see (a line of a JSON-lines file can be long; a safetensors header needs only its first 9).
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class InputFormat:
    """One input format: `sniff(head_bytes, head_text)`, `read(path, handle, head, column, norm) -> (record,
    settings or None)`, whether `--column` applies to it, and what `refine --help` says it gives."""

    name: str
    sniff: Callable
    read: Callable
    takes_column: bool
    what: str


def input_kinds(formats=None) -> str:
    """The formats' names as a phrase ("a, b or c"), for messages: the table is the one list."""
    names = [kind.name for kind in (INPUT_FORMATS if formats is None else formats)]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _text(path, handle, head: bytes) -> str:
    try:
        return (head + handle.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NormInputError(f"{path}: not a {input_kinds()} (not UTF-8 text).") from None
    except OSError as error:
        raise NormInputError(f"{path}: cannot be read ({error.strerror or error}).") from None


def _read_safetensors(path, handle, head, column, norm):
    return read_safetensors_input(path, handle)


def _read_json_lines(path, handle, head, column, norm):
    return record_from_json_lines(_text(path, handle, head), path, column, norm), None


def _read_json(path, handle, head, column, norm):
    return record_from_trainer_state(parse_json(_text(path, handle, head), path), path), None


def _read_table(path, handle, head, column, norm):
    return record_from_table(_text(path, handle, head), path, column, norm), None


INPUT_FORMATS = (
    InputFormat("schedule or record file", lambda data, text: looks_like_safetensors(data), _read_safetensors, False,
                "safetensors, as this package writes them: re-refined from its record"),
    InputFormat("JSON lines file", lambda data, text: looks_like_json_lines(text), _read_json_lines, True,
                "one object of metrics per line: grad_norm_l1, grad_norm_l2 or grad_norm, or --column KEY"),
    InputFormat("trainer_state.json", lambda data, text: text.lstrip().startswith(("{", "[")), _read_json, False,
                "RefinementCallback's exact record if the run had one, else the logged pre-clip l2 `grad_norm`, "
                "interpolated between logging steps"),
    InputFormat("CSV or text file of norms", lambda data, text: True, _read_table, True,
                "one per line, or a named column such as a W&B export"),
)


def read_record(path, *, column: str | None = None, norm: str | None = None):
    """Read a per-step record from any input of `INPUT_FORMATS`.

    Args:
        column (`str`, *optional*): the CSV column or JSON-lines key holding the norms (default: the only non-step
            column; for JSON lines the first of `grad_norm_l1`, `grad_norm_l2`, `grad_norm`).
        norm (`str`, *optional*, a name in `core.norms.NORM_TYPES`, validated by the caller): for CSV and JSON-lines
            input, what the values are (the norm the column's name contains, else `core.norms.DEFAULT_NORM`); other
            inputs hold their own norms and ignore it here.

    Returns:
        `(record, settings)`: the record, and for a schedule file the settings it was refined with (else `None`).
    """
    path = check_readable_file(path, NormInputError, f"pass a {input_kinds()}")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise NormInputError(f"{path}: cannot be read ({error.strerror or error}).") from None
    with handle:
        try:
            head = handle.read(HEAD_BYTES)
        except OSError as error:
            raise NormInputError(f"{path}: cannot be read ({error.strerror or error}).") from None
        try:
            text = head.decode("utf-8-sig") if len(head) < HEAD_BYTES else head.decode("utf-8-sig", errors="ignore")
        except UnicodeDecodeError:
            text = None  # not text: only the binary format can take it
        for kind in INPUT_FORMATS:
            if (text is None and kind.read is not _read_safetensors) or not kind.sniff(head, text or ""):
                continue
            if column is not None and not kind.takes_column:
                takes = input_kinds([other for other in INPUT_FORMATS if other.takes_column])
                raise NormInputError(f"{path}: --column applies to a {takes}, not to a {kind.name}.")
            return kind.read(path, handle, head, column, norm)
    raise NormInputError(f"{path}: not a {input_kinds()} (not UTF-8 text).")
