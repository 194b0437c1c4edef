"""A CUR index built straight into its file: millions of items, resumable, bounded memory.

:func:`build_index_file` scores the anchor queries against all items batch by batch
(in process, on a ``concurrent.futures`` executor or on Ray) and writes each block
of R into the index file being built, ``INDEX.partial``, at its final place; the
finished block numbers are appended to ``INDEX.partial.journal``. Memory stays at
a few blocks whatever N is: R is never held in RAM, let alone twice. The file is
a version-2 index (see ``retrieval.store``): R transposed, ``RT`` (N, k_q), so that
every block is one contiguous write and :meth:`CURIndex.load` memory-maps it.

Killed (kill -9 included) and run again with the same inputs, the build scores
only the blocks the journal does not list. A block's bytes are written (and,
every ``journal_seconds``, fsynced) before its number is journaled, so a listed
block is on disk. Once every block is in, the file gets its MIPS index (FAISS
IVF for large N, from chunked reads of R), its header with the SHA-256 of
every array, and is renamed to ``INDEX``: a reader never sees a partial index.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from structmat._checks import check_choice, check_positive_int, fail
from structmat.retrieval.anchors import ANCHOR_METHODS, check_rcond, check_seed
from structmat.retrieval.build import Scorer, check_sequence, fingerprint, run_batches
from structmat.retrieval.mips import BACKENDS, MIPSIndex, faiss_available, ivf_index
from structmat.retrieval.store import (
    FORMAT,
    ST_DTYPES,
    encode_values,
    mapped_sha256,
    meta_digest,
)
from structmat.run_lock import acquire_lock

__all__ = ["STREAM_DTYPES", "STREAM_MIPS", "build_index_file"]

STREAM_DTYPES = ("float16", "float32", "float64")
STREAM_MIPS = ("auto", "flat", "hnsw", "ivf")
_AUTO_IVF = 100_000  # "auto" serves this many items or more from IVF, fewer exactly
_ST_NAMES = {np.dtype(v).name: k for k, v in ST_DTYPES.items()}
_BIG = 10**15  # placeholder for sizes unknown until the end (the header's room is kept)


def build_index_file(
    score: Scorer,
    anchor_queries: Sequence[Any],
    items: Sequence[Any],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 1024,
    dtype: str = "float32",
    mips: str = "auto",
    executor: Any = None,
    progress: bool = True,
    anchor_method: str = "random",
    seed: int = 0,
    rcond: float = 1e-6,
    backend: str = "auto",
    nprobe: int = 8,
    scorer_spec: str | None = None,
    journal_seconds: float = 1.0,
) -> Path:
    """Score ``anchor_queries`` against all ``items`` into the index file ``out``.

    Load the result with ``CURIndex.load(out, score)``: R is memory-mapped.

    Args:
        score: the scorer, called once per batch as ``score(anchor_queries, batch)``.
        anchor_queries: k_q queries; items: N items (JSON values, stored in the file).
        out: the index file to write; ``out.partial`` and ``out.partial.journal``
            hold an unfinished build (a rerun resumes from them).
        batch_size: items per scorer call.
        dtype: how R is stored: ``"float16"`` (half the size; scores to ~3
            significant digits, enough to rank candidates), ``"float32"``, ``"float64"``.
        mips: ``"flat"``, ``"hnsw"``, ``"ivf"`` (saved in the file; >= 10,000 items)
            or ``"auto"`` (``ivf`` from 100,000 items with FAISS, else ``flat``).
        executor: ``None``, ``"ray"`` or a ``concurrent.futures.Executor`` (as in
            ``score_matrix``); every executor writes the same file.
        progress: a tqdm bar, one tick per batch.
        anchor_method, seed, rcond, backend, scorer_spec: the index settings
            (``CURIndex``'s); nprobe: inverted lists an ``ivf`` search visits.
        journal_seconds: at most this long between fsyncs of the journal.

    Returns:
        the path of the index file.

    Raises:
        ValueError: bad arguments, scorer output of the wrong shape or with NaN (no
            index file is written), leftovers of another build at ``out.partial``,
            or another build of ``out`` running.
    """
    if not callable(score):
        raise fail("score", "a callable score(queries, items)", type(score).__name__)
    for name, seq in (("anchor_queries", anchor_queries), ("items", items)):
        check_sequence(seq, name)
        if len(seq) == 0:
            raise fail(name, "at least one", "none")
    check_positive_int(batch_size, "batch_size")
    check_choice(dtype, "dtype", STREAM_DTYPES)
    check_choice(mips, "mips", STREAM_MIPS)
    check_choice(anchor_method, "anchor_method", ANCHOR_METHODS)
    check_seed(seed)
    check_rcond(rcond)
    check_choice(backend, "backend", BACKENDS)
    check_positive_int(nprobe, "nprobe")
    if mips == "auto":
        mips = "ivf" if len(items) >= _AUTO_IVF and faiss_available() else "flat"
    config = {
        "anchor_method": anchor_method, "seed": int(seed), "rcond": float(rcond),
        "backend": backend, "mips": mips, "scorer_spec": scorer_spec, "nprobe": nprobe,
    }  # fmt: skip
    out = Path(out)
    if not out.parent.is_dir():
        raise fail("out", "a path in an existing folder", f"{out} (no folder {out.parent})")
    lock = acquire_lock(out.parent, f".{out.name}.lock")  # one build per index file
    try:
        layout = _Layout(list(anchor_queries), items, np.dtype(dtype), config)
        digest = hashlib.sha256(
            f"{fingerprint(layout.queries, items, batch_size)}:{dtype}:{mips}".encode()
        ).hexdigest()
        build = _PartialFile(out, layout, batch_size, digest, journal_seconds)
        build.score(score, executor, progress)
        build.finish()
    finally:
        lock.release()
    return out


class _Layout:
    """Where each array of the version-2 file lies, and its header.

    The file: 8-byte header length, the JSON header padded with spaces to a room
    reserved up front (its final numbers are only known at the end), then RT,
    the items, the anchor queries and the serialised MIPS index.
    """

    def __init__(
        self, queries: list[Any], items: Sequence[Any], dtype: np.dtype[Any], config: dict
    ) -> None:
        self.queries, self.items, self.dtype = queries, items, dtype
        self.n, self.k_q = len(items), len(queries)
        self.config = config
        iu, io = encode_values(items, "items")
        qu, qo = encode_values(queries, "anchor_queries")
        self.fixed = {"items_utf8": iu, "items_offsets": io, "queries_utf8": qu,
                      "queries_offsets": qo}  # fmt: skip
        self.rt_bytes = self.n * self.k_q * dtype.itemsize
        self.offsets: dict[str, tuple[int, int]] = {"RT": (0, self.rt_bytes)}
        end = self.rt_bytes
        for key, a in self.fixed.items():
            self.offsets[key] = (end, end + a.nbytes)
            end += a.nbytes
        self.fixed_end = end  # the MIPS bytes follow
        placeholder = self.header(
            {k: "0" * 64 for k in [*self.offsets, "mips"]}, _BIG, -1.2345678e-300
        )
        self.room = -(-(len(placeholder) + 256) // 8) * 8  # multiple of 8: aligned data
        self.data_start = 8 + self.room

    def header(self, sha: dict[str, str], mips_bytes: int, max_sq: float) -> bytes:
        """The safetensors header (JSON) for these arrays and checksums."""
        shapes: dict[str, list[int]] = {"RT": [self.n, self.k_q]}
        shapes.update({k: list(a.shape) for k, a in self.fixed.items()})
        dtypes = {"RT": _ST_NAMES[self.dtype.name]}
        dtypes.update({k: _ST_NAMES[a.dtype.name] for k, a in self.fixed.items()})
        offsets = dict(self.offsets)
        if self.config["mips"] != "flat":
            shapes["mips"], dtypes["mips"] = [mips_bytes], "U8"
            offsets["mips"] = (self.fixed_end, self.fixed_end + mips_bytes)
        meta = {
            "format": FORMAT, "version": 2, "num_anchor_queries": self.k_q,
            "num_items": self.n, "dtype": self.dtype.name, "shapes": shapes,
            "sha256": {k: sha[k] for k in shapes},
            "config": {**self.config, "mips_max_sq": max_sq},
        }  # fmt: skip
        meta["checksum"] = meta_digest(meta)
        head: dict[str, Any] = {"__metadata__": {"structmat": json.dumps(meta)}}
        for key in shapes:
            head[key] = {"dtype": dtypes[key], "shape": shapes[key],
                         "data_offsets": list(offsets[key])}  # fmt: skip
        return json.dumps(head).encode()


class _PartialFile:
    """``out.partial`` (the file being built) and its journal ``out.partial.journal``:
    a JSON line naming the build, then one little-endian uint32 per finished block."""

    def __init__(
        self, out: Path, layout: _Layout, batch_size: int, digest: str, every: float
    ) -> None:
        self.out, self.layout, self.every = out, layout, every
        self.path = out.with_name(out.name + ".partial")
        self.journal = out.with_name(out.name + ".partial.journal")
        self.starts = list(range(0, layout.n, batch_size))
        self.batch_size = batch_size
        self.head = (json.dumps({"build": digest, "blocks": len(self.starts)}) + "\n").encode()
        spec = layout.config["scorer_spec"]
        self.scorer_name = f"scorer {spec}" if spec else "score(queries, items)"
        self.pending: list[int] = []
        self.last = time.monotonic()
        self.done = self._resume()

    def _resume(self) -> set[int]:
        """The finished blocks of an earlier run, or a fresh file (and journal)."""
        name = f"partial build {self.path}"
        if self.path.exists() and self.journal.exists():
            data = self.journal.read_bytes()
            if not data.startswith(self.head):
                raise fail(name, "a partial build of these inputs and settings",
                           "another build's (delete it to start afresh)")  # fmt: skip
            body = data[len(self.head) :]
            body = body[: len(body) - len(body) % 4]  # a record cut by a kill is dropped
            done = {int(i) for i in np.frombuffer(body, dtype="<u4")}
            if any(i >= len(self.starts) for i in done):
                raise fail(name, f"block numbers below {len(self.starts)}", "others")
            return done
        self.journal.unlink(missing_ok=True)
        lay = self.layout
        with self.path.open("wb") as f:  # the fixed arrays now, R's room left sparse
            f.truncate(lay.data_start + lay.fixed_end)
            for key, a in lay.fixed.items():
                f.seek(lay.data_start + lay.offsets[key][0])
                f.write(a.tobytes())
            f.flush()
            os.fsync(f.fileno())
        with self.journal.open("wb") as j:
            j.write(self.head)
            j.flush()
            os.fsync(j.fileno())
        return set()

    def score(self, score: Scorer, executor: Any, progress: bool) -> None:
        """Score every block the journal lacks, writing each into its place."""
        lay = self.layout
        todo = [i for i in range(len(self.starts)) if i not in self.done]
        size = self.batch_size
        # Each batch's items are copied only when it is sent (1M items are not copied up front).
        batches = ((i, list(lay.items[self.starts[i] : self.starts[i] + size])) for i in todo)
        bar = tqdm(total=len(self.starts), initial=len(self.starts) - len(todo),
                   desc="CUR index", unit="batch", disable=not progress)  # fmt: skip
        fd = os.open(self.path, os.O_RDWR)

        def finish(i: int, block: np.ndarray) -> None:
            with np.errstate(over="ignore"):
                rows = np.ascontiguousarray(block.T, dtype=lay.dtype)  # (batch, k_q)
            if not np.isfinite(rows).all():  # the scores were finite: float16 overflowed
                raise _overflow(lay.dtype)
            offset = lay.data_start + self.starts[i] * lay.k_q * lay.dtype.itemsize
            _pwrite_all(fd, rows.tobytes(), offset)
            self.pending.append(i)
            bar.update()
            if time.monotonic() - self.last >= self.every:
                self._sync(fd)

        try:
            run_batches(score, lay.queries, batches, executor, finish, self.scorer_name)
        finally:
            try:
                self._sync(fd)  # what is written is kept for the rerun
            finally:
                os.close(fd)
                bar.close()

    def _sync(self, fd: int) -> None:
        """fsync the data, then journal the blocks written since the last sync."""
        if self.pending:
            os.fsync(fd)
            with self.journal.open("ab") as j:
                j.write(np.asarray(self.pending, dtype="<u4").tobytes())
                j.flush()
                os.fsync(j.fileno())
            self.done.update(self.pending)
            self.pending = []
        self.last = time.monotonic()

    def finish(self) -> None:
        """Checksums, the MIPS index and the header; then rename into place."""
        lay = self.layout
        sha = {key: hashlib.sha256(a.tobytes()).hexdigest() for key, a in lay.fixed.items()}
        sha["RT"] = self._hash_rt()
        index, max_sq = self._mips()
        with self.path.open("r+b") as f:
            f.truncate(lay.data_start + lay.fixed_end)
            f.seek(lay.data_start + lay.fixed_end)
            mips_bytes = 0
            if index is not None:  # streamed into the file, hashed on the way: no copy in RAM
                sha["mips"], mips_bytes = _write_faiss(index, f)
                del index
            header = lay.header(sha, mips_bytes, max_sq)
            if len(header) > lay.room:  # cannot happen: the room fits the largest values
                raise AssertionError(f"index header of {len(header)} bytes > room {lay.room}")
            f.seek(0)
            f.write(struct.pack("<Q", lay.room) + header.ljust(lay.room, b" "))
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.path, self.out)
        self.journal.unlink(missing_ok=True)

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 of RT, read from the file (not mapped): (hi - lo, k_q)."""
        lay = self.layout
        row = lay.k_q * lay.dtype.itemsize
        with self.path.open("rb") as f:
            f.seek(lay.data_start + lo * row)
            data = f.read((hi - lo) * row)
        return np.frombuffer(data, dtype=lay.dtype).reshape(hi - lo, lay.k_q)

    def _hash_rt(self) -> str:
        """SHA-256 of RT, read from the file in chunks; a non-finite entry is an error."""
        lay = self.layout
        rt = np.memmap(self.path, dtype=lay.dtype, mode="r", offset=lay.data_start,
                       shape=(lay.n, lay.k_q))  # fmt: skip
        digest, finite = mapped_sha256(rt)
        if not finite:  # written by a build older than its checks
            raise _overflow(lay.dtype)
        return digest

    def _mips(self) -> tuple[Any, float]:
        """(the FAISS index to save, or None for flat; M² of its Euclidean reduction)."""
        kind = self.layout.config["mips"]
        if kind == "ivf":
            return ivf_index(self._rows, self.layout.n)
        if kind == "hnsw":  # built in memory from all of R (HNSW has no chunked build)
            built = MIPSIndex(self._rows(0, self.layout.n).T, "faiss", "hnsw")  # (k_q, N)
            return built._faiss, built.max_sq
        return None, math.nan


def _write_faiss(index: Any, f: Any) -> tuple[str, int]:
    """Write a FAISS index at ``f``'s position: (its SHA-256, its size in bytes)."""
    import faiss

    h = hashlib.sha256()
    size = 0

    def write(data: bytes) -> int:
        nonlocal size
        f.write(data)
        h.update(data)
        size += len(data)
        return len(data)

    faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]
    return h.hexdigest(), size


def _overflow(dtype: np.dtype[Any]) -> ValueError:
    return fail("dtype", f"a dtype that holds every score ({dtype.name} overflowed)",
                "infinite entries in R")  # fmt: skip


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """os.pwrite until every byte is written (it may write fewer)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
