"""One-file persistence of a CUR index: safetensors arrays + JSON metadata.

Layout of ``INDEX`` (a single safetensors file, written atomically):

* ``R`` (k_q, N) float32/float64: anchor-query scores;
* ``items_utf8`` / ``items_offsets`` (uint8 (bytes,), int64 (N + 1,)): each item
  as one JSON value, UTF-8, concatenated; item j is bytes[off[j]:off[j+1]];
* ``queries_utf8`` / ``queries_offsets``: the anchor queries, likewise;
* header metadata ``structmat``: JSON with ``format``, ``version``, the shapes,
  the index configuration, a SHA-256 of every array's bytes (``sha256``) and a
  SHA-256 of the rest of this JSON (``checksum``), so the configuration is covered too.

Nothing is unpickled. A truncated file, a flipped byte, a foreign file or a
newer format version raises ``ValueError`` naming the file and what is wrong;
a file written before ``checksum`` existed loads with a warning. Plain
``safetensors`` readers read every array.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from structmat._checks import fail
from structmat._io import corrupt, first_line, write_or_fail

__all__ = ["FORMAT", "VERSION", "read_index", "write_index"]

FORMAT = "structmat.retrieval.CURIndex"
VERSION = 1


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _encode(values: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """JSON-encode each value; returns (utf8 bytes (total,), offsets (n + 1,))."""
    parts = []
    for i, v in enumerate(values):
        try:
            parts.append(json.dumps(v, ensure_ascii=False).encode())
        except (TypeError, ValueError) as err:
            raise fail(
                f"{name}[{i}]", "a JSON-serialisable value to save", type(v).__name__
            ) from err
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), offsets


def _decode(data: np.ndarray, offsets: np.ndarray, what: str, name: str) -> list[Any]:
    """Values from ``_encode``'s (bytes, offsets); a bad pair is a ValueError naming ``name``."""
    if data.dtype != np.uint8 or offsets.dtype != np.int64 or data.ndim != 1 or offsets.ndim != 1:
        got = f"{data.dtype} {data.shape}, {offsets.dtype} {offsets.shape}"
        raise fail(name, f"{what} as uint8 bytes and int64 offsets", got)
    steps = np.diff(offsets)
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(data) or (steps < 0).any():
        raise fail(name, f"{what}_offsets rising from 0 to {len(data)}", "other offsets")
    raw = data.tobytes()
    try:
        return [json.loads(raw[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)]
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise fail(name, f"{what} as UTF-8 JSON values", f"bad data ({first_line(err)})") from err


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata JSON without its ``checksum`` (keys sorted)."""
    rest = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def write_index(
    path: str | os.PathLike[str],
    r: np.ndarray,
    items: Sequence[Any],
    queries: Sequence[Any],
    config: dict[str, Any],
) -> None:
    """Write the index file atomically (temporary sibling + rename).

    Args:
        r: (k_q, N) anchor-query scores.
        items: N JSON-serialisable items; queries: k_q JSON-serialisable anchor queries.
        config: JSON-serialisable index settings (stored in the metadata).

    Raises:
        ValueError: an item or query that JSON cannot encode; a failed write
            (``path: expected room to write the index ..., got [Errno 28] ...``),
            which leaves the previous file intact.
    """
    from safetensors.numpy import save  # optional dependency (the `retrieval` extra)

    items_utf8, items_off = _encode(items, "items")
    queries_utf8, queries_off = _encode(queries, "anchor_queries")
    arrays = {
        "R": np.ascontiguousarray(r),
        "items_utf8": items_utf8,
        "items_offsets": items_off,
        "queries_utf8": queries_utf8,
        "queries_offsets": queries_off,
    }
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "num_anchor_queries": int(r.shape[0]),
        "num_items": int(r.shape[1]),
        "dtype": str(r.dtype),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "sha256": {k: _sha256(v) for k, v in arrays.items()},
        "config": config,
    }
    meta["checksum"] = _meta_digest(meta)
    data = save(arrays, metadata={"structmat": json.dumps(meta)})
    write_or_fail(Path(path), lambda f: f.write(data), "index", name="path")


def _read_file(p: Path, name: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The safetensors header metadata and every array (safetensors checks the
    header's offsets against the file size before reading anything)."""
    from safetensors import SafetensorError, safe_open

    if not p.is_file():
        raise fail(name, "an existing file", "no such file" if not p.exists() else "a directory")
    try:
        with safe_open(p, framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        why = first_line(err)
        raise fail(name, "a complete safetensors file", f"an unreadable file ({why})") from err
    return header, arrays


def _read_meta(header: dict[str, str], name: str) -> dict[str, Any]:
    """The ``structmat`` metadata, its format, version and field types checked."""
    try:
        meta = json.loads(header["structmat"])
    except (KeyError, ValueError, RecursionError) as err:
        raise fail(
            name, "a structmat CUR index (metadata 'structmat')", "no such metadata"
        ) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise fail(name, f"format {FORMAT!r}", first_line(ValueError(repr(got))))
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise fail(name, f"format version <= {VERSION}", f"version {version!r}")
    for key, kind in (("shapes", dict), ("sha256", dict), ("config", dict)):
        if not isinstance(meta.get(key, {}), kind):
            raise fail(name, f"metadata {key!r} as a JSON object", type(meta[key]).__name__)
    return meta


def _verify(arrays: dict[str, np.ndarray], meta: dict[str, Any], name: str, path: Path) -> None:
    """Shapes and SHA-256s of the arrays, then the metadata's own checksum."""
    for key, shape in meta.get("shapes", {}).items():
        if key not in arrays:
            raise fail(name, f"array {key!r}", f"arrays {sorted(arrays)}")
        if list(arrays[key].shape) != shape:
            want = tuple(shape) if isinstance(shape, list) else shape
            want = first_line(ValueError(repr(want)), 60)
            raise fail(name, f"{key} of shape {want}", f"shape {arrays[key].shape}")
    for key, digest in meta.get("sha256", {}).items():
        if key not in arrays or _sha256(arrays[key]) != digest:
            raise fail(name, f"array {key!r} with its recorded SHA-256", "a mismatch (corrupted)")
    needed = ("R", "items_utf8", "items_offsets", "queries_utf8", "queries_offsets")
    if any(k not in arrays or k not in meta.get("sha256", {}) for k in needed):
        raise fail(name, f"checksummed arrays {list(needed)}", f"arrays {sorted(arrays)}")
    if "checksum" not in meta:
        warnings.warn(
            f"{path}: an index written before metadata checksums; its configuration "
            "is loaded unverified",
            stacklevel=4,
        )
    elif meta["checksum"] != _meta_digest(meta):
        raise corrupt(name, path, "metadata checksum")


def read_index(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, list[Any], list[Any], dict[str, Any]]:
    """Read and verify an index file.

    Returns:
        (R (k_q, N), items (N,), anchor queries (k_q,), config).

    Raises:
        ValueError: missing, truncated, corrupted (checksum), foreign or newer-version file.

    Warns:
        UserWarning: a file written before metadata checksums (its arrays are verified).
    """
    name = f"index file {os.fspath(path)!r}"
    p = Path(path)
    header, arrays = _read_file(p, name)
    meta = _read_meta(header, name)
    _verify(arrays, meta, name, p)
    r = arrays["R"]
    items = _decode(arrays["items_utf8"], arrays["items_offsets"], "items", name)
    queries = _decode(arrays["queries_utf8"], arrays["queries_offsets"], "anchor queries", name)
    if r.ndim != 2 or r.shape != (len(queries), len(items)):
        raise fail(name, f"R of shape ({len(queries)}, {len(items)})", f"shape {r.shape}")
    if r.dtype not in (np.float32, np.float64) or not np.isfinite(r).all():
        raise fail(name, "R finite float32 or float64", f"dtype {r.dtype}, or NaN/inf")
    return r, items, queries, dict(meta.get("config", {}))
