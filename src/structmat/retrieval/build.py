"""Scoring anchor queries against all items in batches: in process, on a
``concurrent.futures`` executor, or spread over a Ray cluster.

The item list is cut into the same batches whatever runs them, and every batch
is one call ``score(anchor_queries, batch)``; so a deterministic scorer gives the
same R bit for bit from every executor.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from structmat._checks import fail, shape_str
from structmat._io import load_npz, remove_stale_temps, save_npz

__all__ = [
    "Scorer",
    "as_score_block",
    "check_sequence",
    "fingerprint",
    "run_batches",
    "score_matrix",
]

Scorer = Callable[[list[Any], list[Any]], Any]


def check_sequence(x: Any, name: str) -> None:
    """Queries and items are whatever the scorer takes, but they come as a sequence."""
    if not isinstance(x, Sequence) or isinstance(x, (str, bytes)):
        raise fail(name, "a sequence (list) of queries or items", type(x).__name__)


def as_score_block(
    out: Any, n_queries: int, n_items: int, name: str = "score(queries, items)"
) -> np.ndarray:
    """Check a scorer's output and return it as a NumPy float array (n_queries, n_items).

    Args:
        name: how errors name the scorer.

    Raises:
        ValueError: not array-like, wrong shape, or NaN/inf entries.
    """
    if isinstance(out, torch.Tensor):
        arr = out.detach().cpu()
        if not arr.is_floating_point():
            arr = arr.to(torch.float64)
        elif arr.dtype in (torch.float16, torch.bfloat16):
            arr = arr.to(torch.float32)
        a = arr.numpy()
    else:
        try:
            a = np.asarray(out)
        except (TypeError, ValueError) as err:
            raise fail(name, "a tensor or array", type(out).__name__) from err
        if a.dtype.kind not in "fiu":
            raise fail(name, "real numbers", f"dtype {a.dtype}")
        if a.dtype.kind in "iu" or a.dtype.itemsize < 4:
            a = a.astype(np.float64 if a.dtype.kind in "iu" else np.float32)
    if a.shape != (n_queries, n_items):
        raise fail(
            name,
            f"shape (len(queries), len(items)) = {shape_str((n_queries, n_items))}",
            f"shape {shape_str(a.shape)}",
        )
    if not np.isfinite(a).all():
        raise fail(name, "finite scores", f"{int((~np.isfinite(a)).sum())} NaN or infinite")
    return a


def _score_block(
    score: Scorer, queries: list[Any], batch: list[Any], name: str = "score(queries, items)"
) -> np.ndarray:
    return as_score_block(score(queries, batch), len(queries), len(batch), name)


def run_batches(
    score: Scorer,
    queries: list[Any],
    batches: Iterable[tuple[int, list[Any]]],
    executor: Any,
    finish: Callable[[int, np.ndarray], None],
    name: str = "score(queries, items)",
) -> None:
    """Score every batch, ``finish(i, block)`` in this process as each one completes.

    Args:
        batches: (batch number, its items) pairs, taken as they are sent; every block
            is checked by ``as_score_block`` (its errors name the scorer ``name``).
        executor: ``None``, ``"ray"`` or a ``concurrent.futures.Executor`` (see
            :func:`score_matrix`).
    """
    if executor is None:
        for i, batch in batches:
            finish(i, _score_block(score, queries, batch, name))
    elif executor == "ray":
        _ray_blocks(score, queries, batches, finish, name)
    elif isinstance(executor, concurrent.futures.Executor):
        futures = {executor.submit(_score_block, score, queries, b, name): i for i, b in batches}
        for f in concurrent.futures.as_completed(futures):
            finish(futures[f], f.result())
    else:
        raise fail("executor", "None, 'ray' or a concurrent.futures.Executor", repr(executor))


def score_matrix(
    score: Scorer,
    queries: Sequence[Any],
    items: Sequence[Any],
    batch_size: int = 256,
    progress: bool = True,
    executor: Any = None,
    desc: str = "scoring",
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_seconds: float = 30.0,
) -> np.ndarray:
    """R[a, j] = score(queries[a], items[j]), in item batches of ``batch_size``.

    Args:
        score: the scorer, called once per batch as ``score(list(queries), batch)``.
        queries: k_q queries; items: N items.
        batch_size: items per call.
        progress: show a tqdm bar (one tick per batch).
        executor: ``None`` (in process), ``"ray"`` (Ray tasks; joins the running Ray
            session, or starts a local one with ``ray.init()``, which reads
            ``RAY_ADDRESS``, and shuts that one down afterwards), or a
            ``concurrent.futures.Executor``.
        checkpoint: an ``.npz`` file for resuming: finished batches are written there
            (atomically, at most every ``checkpoint_seconds``, and when interrupted);
            a rerun with the same queries, items and batch size scores only the rest.
            Deleted once R is complete.

    Returns:
        R: (k_q, N) float32 or float64 (float64 when any batch came back float64).

    Raises:
        ValueError: bad executor; a checkpoint written for other inputs.
    """
    q = list(queries)
    starts = list(range(0, len(items), batch_size))
    blocks: list[np.ndarray | None] = [None] * len(starts)
    saver = None
    if checkpoint is not None:
        saver = _Checkpoint(Path(checkpoint), fingerprint(q, items, batch_size), checkpoint_seconds)
        blocks = saver.load(len(q), [min(batch_size, len(items) - s) for s in starts])
    todo = [i for i, b in enumerate(blocks) if b is None]
    batches = ((i, list(items[starts[i] : starts[i] + batch_size])) for i in todo)
    bar = tqdm(
        total=len(starts), initial=len(starts) - len(todo), desc=desc, unit="batch",
        disable=not progress,
    )  # fmt: skip

    def finish(i: int, block: np.ndarray) -> None:
        blocks[i] = block
        bar.update()
        if saver is not None:
            saver.maybe_save(blocks)

    try:
        run_batches(score, q, batches, executor, finish)
    except BaseException as err:  # interrupted or failed: keep what is done for the rerun
        if saver is not None and not saver.failed:
            try:
                saver.save(blocks)
            except ValueError as save_err:  # e.g. the disk is full: say so, keep the cause
                raise save_err from err
        raise
    finally:
        bar.close()
    if saver is not None:
        saver.remove()
    done = [b for b in blocks if b is not None]
    if not done:
        return np.zeros((len(q), 0), dtype=np.float32)
    dtype = np.float64 if any(b.dtype == np.float64 for b in done) else np.float32
    return np.concatenate([b.astype(dtype, copy=False) for b in done], axis=1)  # (k_q, N)


def fingerprint(queries: Sequence[Any], items: Sequence[Any], batch_size: int) -> str:
    """SHA-256 of the inputs that decide R's batches (JSON, or repr for other values)."""
    h = hashlib.sha256(f"{len(queries)}:{len(items)}:{batch_size}".encode())
    for part in (queries, items):
        for v in part:
            h.update(json.dumps(v, sort_keys=True, default=repr).encode() + b"\0")
    return h.hexdigest()


class _Checkpoint:
    """Finished batches of a build in an ``.npz``: ``block_<i>`` arrays (k_q, batch_i)
    and ``fingerprint`` (uint8 bytes of the inputs' SHA-256), with the file's sha256
    (see ``structmat._io``) verified on load."""

    def __init__(self, path: Path, fingerprint: str, every: float) -> None:
        self.path, self.fingerprint, self.every = path, fingerprint, every
        self.last = time.monotonic()
        self.failed = False  # the last save raised: do not try again on the way out
        self.name = f"checkpoint {path}"

    def load(self, n_queries: int, sizes: list[int]) -> list[np.ndarray | None]:
        """The saved blocks, ``None`` for those still to score; ``sizes[i]`` items in batch i.

        Raises:
            ValueError: unreadable or corrupt file, another build's, or a block of
                the wrong shape, dtype or with NaN.
        """
        blocks: list[np.ndarray | None] = [None] * len(sizes)
        remove_stale_temps(self.path)  # a build killed while saving leaves its temporary
        if not self.path.exists():
            return blocks
        arrays = load_npz(
            self.path, self.name, checksum="expected", wanted="a readable .npz checkpoint"
        )
        got = arrays.pop("fingerprint", np.zeros(0, np.uint8))
        if got.dtype != np.uint8 or got.tobytes() != self.fingerprint.encode():
            raise fail(
                self.name,
                "a checkpoint of these queries, items and batch size",
                "one of another build (delete it to start afresh)",
            )
        for key, arr in arrays.items():
            i = _block_number(key, len(sizes))
            if i is None or arr.dtype not in (np.float32, np.float64):
                raise fail(self.name, "block_<i> float arrays", f"{key!r} of dtype {arr.dtype}")
            if arr.shape != (n_queries, sizes[i]) or not np.isfinite(arr).all():
                raise fail(
                    self.name,
                    f"{key} finite, of shape {shape_str((n_queries, sizes[i]))}",
                    f"shape {shape_str(arr.shape)}",
                )
            blocks[i] = arr
        return blocks

    def maybe_save(self, blocks: list[np.ndarray | None]) -> None:
        if time.monotonic() - self.last >= self.every:
            self.save(blocks)

    def save(self, blocks: list[np.ndarray | None]) -> None:
        """Write the finished blocks atomically (a failed write keeps the old file)."""
        arrays = {f"block_{i}": b for i, b in enumerate(blocks) if b is not None}
        arrays["fingerprint"] = np.frombuffer(self.fingerprint.encode(), dtype=np.uint8)
        self.failed = True
        save_npz(self.path, arrays, what="build checkpoint", name="checkpoint")
        self.failed = False
        self.last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _block_number(key: str, n_blocks: int) -> int | None:
    """i for a key ``block_<i>`` with 0 <= i < n_blocks, else None."""
    digits = key.removeprefix("block_")
    if digits == key or not digits.isdigit() or not digits.isascii():
        return None
    i = int(digits)
    return i if i < n_blocks else None


def _ray_blocks(
    score: Scorer,
    q: list[Any],
    batches: Iterable[tuple[int, list[Any]]],
    finish: Callable[[int, np.ndarray], None],
    name: str,
) -> None:
    try:
        import ray  # optional dependency (the `distributed` extra)
    except ImportError as err:
        raise fail("executor", "'ray' installed (pip install ray)", "no ray module") from err
    started = not ray.is_initialized()
    if started:
        ray.init()
    try:
        remote = ray.remote(_score_block)
        # The scorer (a model, maybe) and the queries go to the object store once.
        score_ref, q_ref = ray.put(score), ray.put(q)
        # At most two tasks per CPU in flight: finished blocks wait in the object
        # store only until this process takes them, so memory stays bounded.
        limit = 2 * max(1, int(ray.available_resources().get("CPU", 1)))
        waiting = iter(batches)
        refs: dict[Any, int] = {}
        for i, b in itertools.islice(waiting, limit):
            refs[remote.remote(score_ref, q_ref, b, name)] = i
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                finish(refs.pop(ref), ray.get(ref))
                for i, b in itertools.islice(waiting, 1):
                    refs[remote.remote(score_ref, q_ref, b, name)] = i
    finally:
        if started:
            ray.shutdown()
