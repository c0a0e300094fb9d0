"""Checks on input paths that give one clear message for each way a path can fail to be a readable file."""

from __future__ import annotations

import os
import stat


def check_readable_file(path, error: type[Exception], hint: str) -> str:
    """Return `path` as a string if it is a regular file this process can read; else raise `error(message)`.

    Args:
        error: the exception class to raise (the caller's `ValueError` subclass).
        hint: what the caller expects, appended to "no such file" style messages (e.g. "pass a schedule file").
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: no such file; {hint}.") from None
    except PermissionError:
        raise error(f"{path}: cannot be reached (permission denied on a folder above it); check the "
                    "permissions.") from None
    except OSError as failure:
        raise error(f"{path}: cannot be read ({failure.strerror or failure}); {hint}.") from None
    if stat.S_ISDIR(mode):
        inside = os.path.join(path, "refined_schedule.safetensors")
        suggestion = f"; did you mean {inside}?" if os.path.isfile(inside) else f"; {hint}."
        raise error(f"{path}: is a directory, not a file{suggestion}")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file (a pipe, socket or device); {hint}.")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: permission denied; make the file readable (chmod u+r) or copy it.")
    return path
