"""One run per output directory: a lock file holding the owner's PID and host.

The lock is an exclusive ``flock`` on ``<out>/.lock``. The kernel drops it when
its process dies, so a lock left by a killed run (``kill -9``) is stale and the
next run takes it over. Where ``fcntl`` is missing (Windows) a lock whose PID is
not alive on this host counts as stale instead.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from structmat._checks import fail

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK", "RunLock", "acquire_lock"]

LOCK = ".lock"


class RunLock:
    """A held lock; ``release()`` removes the file."""

    def __init__(self, path: Path, fd: int, stale: bool) -> None:
        self.path, self.fd = path, fd
        self.stale = stale  # the file was there already: a run died holding it

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            # Unlink while holding the lock: a run waiting on this file then finds it
            # replaced (see the inode check in acquire_lock) and opens a new one.
            if _same_file(self.fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _try_lock(fd: int, path: Path) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    holder = _holder(path)
    mine = holder.get("pid") == os.getpid()
    return mine or holder.get("host") != socket.gethostname() or not _alive(holder.get("pid"))


def acquire_lock(out_dir: Path, name: str = LOCK) -> RunLock:
    """Take ``out_dir/name`` (``.lock``: one run per directory) for this process.

    Raises:
        ValueError: ``out: expected a directory no other run is using, got ...``
            (naming the holder's PID and host), or an unwritable directory.
    """
    path = out_dir / name
    for _ in range(100):  # retries only when the file is replaced under us
        stale = path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise fail("out", "a writable directory", f"{out_dir} ({err.strerror})") from err
        try:
            if not _try_lock(fd, path):
                holder = _holder(path)
                raise fail(
                    "out",
                    "a directory no other run is using",
                    f"{out_dir}, in use by PID {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')} (lock file {path})",
                )
            if not _same_file(fd, path):
                os.close(fd)  # the holder released and removed it meanwhile: retry
                continue
            data = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return RunLock(path, fd, stale)
    raise fail("out", "a lock file that stays in place", f"{path} replaced 100 times")
