"""Atomic file writes: write a temporary file in the target folder, fsync it, then rename it over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is fsynced and renamed to `path`, on error removed.

    Readers never see a half-written file, and an interrupted write leaves the previous file in place.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(handle)
    try:
        yield temp_path
        with open(temp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp_path, path)
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)


def write_bytes_atomically(path, payload: bytes) -> str:
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb") as out:
            out.write(payload)
    return os.fspath(path)
