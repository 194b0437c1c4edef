"""One-file persistence of a CUR index: safetensors arrays + JSON metadata.

Layout of ``INDEX`` (a single safetensors file, written atomically):

* ``R`` (k_q, N) float32/float64: anchor-query scores (version 1, what
  ``CURIndex.save`` writes), or ``RT`` (N, k_q) float16/32/64, R transposed
  (version 2, what the streamed build ``structmat.retrieval.stream`` writes):
  each item's scores are contiguous, so R is memory-mapped, not read, on load;
* ``mips`` (bytes,) uint8, optional (version 2): the serialised FAISS index;
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
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from structmat._checks import fail
from structmat._io import corrupt, first_line, write_or_fail

__all__ = [
    "FORMAT",
    "VERSION",
    "StoredIndex",
    "encode_values",
    "mapped_sha256",
    "meta_digest",
    "read_index",
    "write_index",
]

FORMAT = "structmat.retrieval.CURIndex"
VERSION = 2
# safetensors dtype names of the arrays an index holds
ST_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "U8": np.uint8,
             "I64": np.int64}  # fmt: skip
_MAPPED = ("RT", "mips")  # large arrays: memory-mapped on load, hashed by reading
_HASH_CHUNK = 1 << 24  # bytes of a memory-mapped array hashed at a time


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def encode_values(values: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
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


def meta_digest(meta: dict[str, Any]) -> str:
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

    items_utf8, items_off = encode_values(items, "items")
    queries_utf8, queries_off = encode_values(queries, "anchor_queries")
    arrays = {
        "R": np.ascontiguousarray(r, dtype=np.float32 if r.dtype == np.float16 else r.dtype),
        "items_utf8": items_utf8,
        "items_offsets": items_off,
        "queries_utf8": queries_utf8,
        "queries_offsets": queries_off,
    }
    meta = {
        "format": FORMAT,
        "version": 1,
        "num_anchor_queries": int(r.shape[0]),
        "num_items": int(r.shape[1]),
        "dtype": str(r.dtype),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "sha256": {k: _sha256(v) for k, v in arrays.items()},
        "config": config,
    }
    meta["checksum"] = meta_digest(meta)
    data = save(arrays, metadata={"structmat": json.dumps(meta)})
    write_or_fail(Path(path), lambda f: f.write(data), "index", name="path")


def _read_file(p: Path, name: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The safetensors header metadata and every array (safetensors checks the
    header's offsets against the file size before reading anything); ``RT`` is
    and ``mips`` are memory-mapped read-only, not read."""
    from safetensors import SafetensorError, safe_open

    if not p.is_file():
        raise fail(name, "an existing file", "no such file" if not p.exists() else "a directory")
    try:
        with safe_open(p, framework="numpy") as f:
            header = f.metadata() or {}
            keys = list(f.keys())
            arrays = {k: f.get_tensor(k) for k in keys if k not in _MAPPED}
        for key in _MAPPED:
            if key in keys:
                arrays[key] = _map(p, key)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as err:
        why = first_line(err)
        raise fail(name, "a complete safetensors file", f"an unreadable file ({why})") from err
    return header, arrays


def _map(p: Path, key: str) -> np.memmap:
    """Array ``key`` of a safetensors file, memory-mapped read-only (offsets already
    checked by ``safe_open``)."""
    with p.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(n))[key]
    lo, _ = info["data_offsets"]
    dtype = ST_DTYPES[info["dtype"]]
    return np.memmap(p, dtype=dtype, mode="r", offset=8 + n + lo, shape=tuple(info["shape"]))


def mapped_sha256(a: np.memmap) -> tuple[str, bool]:
    """(SHA-256 of a memory-mapped array's bytes, all finite), read from its file in
    chunks: its pages are not kept mapped (a 1 GB R adds nothing to the RSS)."""
    h = hashlib.sha256()
    finite = True
    left = a.nbytes
    with open(a.filename, "rb") as f:  # type: ignore[arg-type]
        f.seek(a.offset)
        while left:
            chunk = f.read(min(_HASH_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            h.update(chunk)
            if finite and a.dtype.kind == "f":
                finite = bool(np.isfinite(np.frombuffer(chunk, dtype=a.dtype)).all())
    return h.hexdigest(), finite and not left


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
        a = arrays.get(key)
        if a is None:
            raise fail(name, f"array {key!r} with its recorded SHA-256", "no such array")
        got, finite = mapped_sha256(a) if isinstance(a, np.memmap) else (_sha256(a), True)
        if got != digest:
            raise fail(name, f"array {key!r} with its recorded SHA-256", "a mismatch (corrupted)")
        if not finite:
            raise fail(name, f"{key} finite", "NaN or infinite entries")
    scores = "RT" if meta.get("version", 1) >= 2 else "R"
    needed = (scores, "items_utf8", "items_offsets", "queries_utf8", "queries_offsets")
    if any(k not in arrays or k not in meta.get("sha256", {}) for k in needed):
        raise fail(name, f"checksummed arrays {list(needed)}", f"arrays {sorted(arrays)}")
    if "checksum" not in meta:
        warnings.warn(
            f"{path}: an index written before metadata checksums; its configuration "
            "is loaded unverified",
            stacklevel=4,
        )
    elif meta["checksum"] != meta_digest(meta):
        raise corrupt(name, path, "metadata checksum")


class StoredIndex(NamedTuple):
    """What an index file holds."""

    r: np.ndarray  # (k_q, N); for version 2 a transposed view of the memory-mapped RT
    items: list[Any]  # (N,)
    queries: list[Any]  # (k_q,) anchor queries
    config: dict[str, Any]
    mips: np.ndarray | None  # (bytes,) uint8 serialised FAISS index, or None


def read_index(path: str | os.PathLike[str]) -> StoredIndex:
    """Read and verify an index file (version 2: R memory-mapped, verified by reading).

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
    items = _decode(arrays["items_utf8"], arrays["items_offsets"], "items", name)
    queries = _decode(arrays["queries_utf8"], arrays["queries_offsets"], "anchor queries", name)
    if "RT" in meta.get("sha256", {}) and meta.get("version", 1) >= 2:
        r = arrays["RT"].T  # (k_q, N) view: no copy, nothing read
        dtypes: tuple[type, ...] = (np.float16, np.float32, np.float64)
        finite = True  # checked while hashing
    else:
        r = arrays["R"]
        dtypes = (np.float32, np.float64)
        finite = bool(np.isfinite(r).all()) if r.dtype.kind == "f" else False
    if r.ndim != 2 or r.shape != (len(queries), len(items)):
        raise fail(name, f"R of shape ({len(queries)}, {len(items)})", f"shape {r.shape}")
    if r.dtype not in dtypes or not finite:
        raise fail(name, "R finite float32 or float64", f"dtype {r.dtype}, or NaN/inf")
    mips = arrays.get("mips") if "mips" in meta.get("sha256", {}) else None
    if mips is not None and (mips.dtype != np.uint8 or mips.ndim != 1):
        raise fail(name, "mips as uint8 bytes", f"dtype {mips.dtype}, shape {mips.shape}")
    return StoredIndex(r, items, queries, dict(meta.get("config", {})), mips)
