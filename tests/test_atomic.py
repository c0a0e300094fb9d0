"""Atomic writes: permissions as `open()` gives them, and cleanup of what killed writers left behind."""

import os
import subprocess
import sys
import time

import pytest

from hf_linear_decay.files.atomic import STALE_AFTER_SECONDS, _host, atomic_path, write_bytes_atomically


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_bytes_atomically(tmp_path / "ours.bin", b"x")
        with open(tmp_path / "plain.bin", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "ours.bin").st_mode & 0o777 == os.stat(tmp_path / "plain.bin").st_mode & 0o777
    assert os.stat(tmp_path / "ours.bin").st_mode & 0o777 == 0o666 & ~umask


def leftover(folder, base, host, pid, age=0.0):
    path = folder / f".{base}.{host}.{pid}.{os.urandom(8).hex()}.tmp"
    path.write_bytes(b"partial")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_stale_temporaries_of_the_same_target_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    killed = leftover(tmp_path, "s.safetensors", _host(), dead_pid)
    live = leftover(tmp_path, "s.safetensors", _host(), os.getpid())  # a concurrent writer in a live process
    remote_old = leftover(tmp_path, "s.safetensors", "otherhost", 123, age=STALE_AFTER_SECONDS + 60)
    remote_new = leftover(tmp_path, "s.safetensors", "otherhost", 123)
    other_target = leftover(tmp_path, "other.safetensors", _host(), dead_pid)
    foreign = tmp_path / ".s.safetensors.notours.tmp"
    foreign.write_bytes(b"keep")
    write_bytes_atomically(tmp_path / "s.safetensors", b"data")
    assert not killed.exists() and not remote_old.exists()
    assert live.exists() and remote_new.exists() and other_target.exists() and foreign.exists()
    assert (tmp_path / "s.safetensors").read_bytes() == b"data"


def test_a_failed_write_removes_its_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "s.bin") as temp:
            open(temp, "wb").write(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
