"""Atomic writes and pickle-free reads for files the project writes.

A file is written to a temporary sibling and renamed into place, so a reader
never sees a half-written file and an interrupted write leaves the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "load_npz", "save_npz", "write_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write arrays to an ``.npz`` file, atomically."""
    savez: Callable[..., None] = np.savez  # numpy's stub would let **arrays hit allow_pickle
    atomic_write(path, lambda f: savez(f, **arrays))


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, never unpickling (object arrays fail)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
