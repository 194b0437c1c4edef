"""Training checkpoints: written atomically, carrying a sha256 of their contents,
read back without pickle and verified.

A checkpoint is a plain ``torch.save`` dict (tensors, dicts, lists, numbers,
strings), so ``torch.load(path, weights_only=True)`` reads it. Its ``"checksum"``
entry is the sha256 of every other entry (``state_digest``); format-1 files,
written before checksums, load with a warning.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from structmat._checks import fail
from structmat._io import first_line, write_or_fail

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint", "state_digest", "write_or_fail"]

FORMAT_VERSION = 2
_UNVERIFIED = 1  # format 1: no checksum


def state_digest(state: Any) -> str:
    """sha256 (hex) of a checkpoint's contents, ``"checksum"`` entry excluded.

    The walk is fixed: dict entries in sorted key order, list items in order, each
    tensor as dtype, shape and raw bytes, every other leaf as its JSON with its type
    name (so 1 and 1.0 and "1" differ, and floats are exact: JSON writes repr).
    """
    h = hashlib.sha256()
    top = state.items() if isinstance(state, dict) else None
    if top is not None:
        state = {k: v for k, v in top if k != "checksum"}
    _feed(h, state)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, no copy
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update((json.dumps([type(obj).__name__, obj]) + ";").encode())
    else:  # not written by this module; hashed by its text so a digest still exists
        h.update(f"R{type(obj).__name__}:{obj!r};".encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` plus ``format_version`` and ``checksum`` to ``path``, atomically.

    Raises:
        ValueError: the write failed (e.g. no space left); the old checkpoint survives.
    """
    body = {"format_version": FORMAT_VERSION, **state}
    body["checksum"] = state_digest(body)
    write_or_fail(path, lambda f: torch.save(body, f), "checkpoint")


def load_checkpoint(path: Path, name: str = "resume") -> dict[str, Any]:
    """Read and verify a checkpoint written by ``save_checkpoint``.

    Args:
        path: the checkpoint file.
        name: the argument named in errors (``resume`` for ``train``).

    Returns:
        The saved dict, ``"checksum"`` removed.

    Raises:
        ValueError: no file; not a readable checkpoint (truncated, not a zip archive,
            not a checkpoint's structure); a corrupt one (a zip member's CRC or the
            sha256 does not match); an unknown format version.

    Warns:
        UserWarning: a format-1 checkpoint (no checksum) is loaded unverified.
    """
    if not path.is_file():
        raise fail(name, f"a checkpoint at {path}", "no such file (run without --resume first)")

    def unreadable(why: str) -> ValueError:
        return fail(name, f"a readable checkpoint at {path}", f"an unreadable file ({why})")

    def corrupt() -> ValueError:
        return fail(name, f"an intact checkpoint at {path}", "a corrupt file (checksum mismatch)")

    # The zip layer first: it finds truncation and flipped bytes (CRC-32 per member)
    # before torch parses anything, so a damaged file cannot reach the unpickler.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as err:
        raise unreadable(first_line(err)) from err
    if damaged is not None:
        raise corrupt()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise unreadable(first_line(err)) from err
    if not isinstance(state, dict):
        raise unreadable(f"it holds a {type(state).__name__}, not a checkpoint")
    version = state.get("format_version")
    if version == _UNVERIFIED:
        warnings.warn(
            f"{path}: a checkpoint of format 1 has no checksum; it is loaded unverified",
            stacklevel=2,
        )
        return state
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise fail(name, f"checkpoint format {FORMAT_VERSION}", repr(version))
    checksum = state.pop("checksum", None)
    if not isinstance(checksum, str) or checksum != state_digest(state):
        raise corrupt()
    return state
