"""Where the CLI writes: output files that never clobber an input or a non-file, and stdout that is checked.

- `check_output`: an output path must not be empty and must not be one of the command's inputs (the same file, also
  through another name); a symbolic link is written through to its target (the link stays). The atomic writer
  (`files.atomic`) refuses a target that exists and is not a regular file, for every writer.
- `print_checked`: stdout written and flushed with its errors turned into one line (a full disk or a closed stdout
  must not end with exit code 0 and a cut file). Where stdout is a file descriptor, the bytes are written with
  `os.write` until all of them are out: Python's buffered writer can report success after a short write on a full
  filesystem, leaving a cut file and exit code 0.
"""

from __future__ import annotations

import errno
import os
import sys

__all__ = ["OutputError", "check_output", "one_line", "print_checked"]


class OutputError(Exception):
    """The output cannot be written as asked; printed as one line, exit code 2."""


def check_output(path, inputs=()) -> str:
    """The path to write for `-o PATH`: the target of a link, after the checks above."""
    if path is None or os.fspath(path) == "":
        raise OutputError("-o/--output is empty; give the name of the file to write.")
    path = os.fspath(path)
    target = os.path.realpath(path)
    for given in inputs:
        try:
            same = os.path.exists(target) and os.path.samefile(target, given)
        except OSError:
            same = False
        if same or os.path.realpath(os.fspath(given)) == target:
            raise OutputError(f"{path!r} is the input {os.fspath(given)!r}; writing it would replace what it was "
                              "made from. Choose another output file.")
    # That it is a regular file (or not there yet) is the atomic writer's check, made once, when it writes.
    return target if os.path.islink(path) else path


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a captured or in-memory stream
        return None


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written <= 0:
            raise OSError(errno.EIO, "nothing was written")
        view = view[written:]


def print_checked(text: str | None) -> None:
    """Print `text` (None: only flush) to stdout; a failed or short write or flush raises `OutputError`."""
    stream = sys.stdout
    if stream is None:
        raise OutputError("standard output is closed; nothing could be printed (drop `>&-`).")
    try:
        stream.flush()  # what Python holds already goes first
        descriptor = _descriptor(stream)
        if text is None:
            return
        if descriptor is None:
            stream.write(text + "\n")
            stream.flush()
        else:
            _write_all(descriptor, (text + "\n").encode(stream.encoding or "utf-8", stream.errors or "strict"))
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write to standard output ({error.strerror or error}); what was printed is "
                          "incomplete.") from None


def one_line(text: str) -> str:
    """A message on one line: line breaks (e.g. in a file name) shown as `\\n`."""
    return text.replace("\r", "\\r").replace("\n", "\\n")
