"""Atomic file writes: a temporary file in the target folder, fsynced, then renamed over the target.

The temporary file is created like `open(path, "w")` would create the target (mode 0o666 minus the umask), so a
finished file has the permissions teammates expect. Its name records the host and process that write it, so that a
later write to the same folder can remove what a killed writer left behind without touching a live writer's file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import time

#: A temporary file older than this is stale whoever wrote it (a writer on another host of a shared file system).
STALE_AFTER_SECONDS = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path) -> list[str]:
    """Delete leftovers of interrupted writes of `path` (ours by name); returns the names removed."""
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(re.escape(f".{base}.") + r"(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        full = os.path.join(directory, name)
        try:
            age = time.time() - os.stat(full).st_mtime
            same_host = match["host"] == _host()
            if (same_host and not _process_alive(int(match["pid"]))) or age > STALE_AFTER_SECONDS:
                os.unlink(full)
                removed.append(name)
        except OSError:  # another writer removed or renamed it meanwhile
            continue
    return removed


def check_regular_target(path, error: type[Exception] = OSError) -> None:
    """Raise `error` if `path` exists and is not a regular file (following links): a device, a FIFO, a socket or a
    folder is never replaced by a file."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # a dangling link: its target is created
    if stat.S_ISDIR(mode):
        raise error(f"{os.fspath(path)!r} is a directory; give a file name to write.")
    if not stat.S_ISREG(mode):
        raise error(f"{os.fspath(path)!r} is not a regular file (a device, pipe or socket); it is never replaced. "
                    "Give the name of a file to write.")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is fsynced and renamed to `path`, on error removed.

    Readers never see a half-written file, and an interrupted write leaves the previous file in place. A `path` that
    is a symbolic link is written through to its target (the link stays); one that exists but is not a regular file
    is refused.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    check_regular_target(path, IsADirectoryError if os.path.isdir(path) else OSError)
    directory, base = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path)
    while True:
        temp_path = os.path.join(directory, f".{base}.{_host()}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        try:  # O_EXCL: never reuse a name; mode 0o666 is reduced by the umask, exactly as open() does
            os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
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
