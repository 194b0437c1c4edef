"""The streamed index build (``build_index_file``): the file it writes equals the
in-memory index, R is memory-mapped on load, kills resume, bad input is refused
before an index file appears."""

from __future__ import annotations

import concurrent.futures
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structmat.retrieval import CURIndex, MatrixScorer
from structmat.retrieval.stream import build_index_file
from tests.retrieval.kills import kill_twenty_times

pytest.importorskip("safetensors")
faiss = pytest.importorskip("faiss")


def _scores(k_q: int, n: int, seed: int = 0, rank: int = 6) -> np.ndarray:
    """(k_q + 40, n) near-low-rank scores: anchor rows first, then 40 test queries."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((k_q + 40, rank))
    return base @ rng.standard_normal((rank, n)) + 0.05 * rng.standard_normal((k_q + 40, n))


def _build(scores: np.ndarray, k_q: int, out: Path, **kw: object) -> Path:
    n = scores.shape[1]
    kw.setdefault("progress", False)
    return build_index_file(
        MatrixScorer(scores),
        list(range(k_q)),
        list(range(n)),
        out,
        **kw,  # type: ignore[arg-type]
    )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    k_q=st.integers(1, 7),
    n=st.integers(1, 60),
    batch=st.integers(1, 70),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_the_file_holds_exactly_r(
    tmp_path_factory: pytest.TempPathFactory, k_q: int, n: int, batch: int, dtype: str
) -> None:
    """Any sizes and batch sizes: the loaded R is the scorer's matrix, bit for bit."""
    scores = _scores(k_q, n, seed=k_q * 100 + n)
    out = tmp_path_factory.mktemp("exact") / "i.cur"
    index = CURIndex.load(_build(scores, k_q, out, batch_size=batch, dtype=dtype))
    want = scores[:k_q].astype(dtype)
    np.testing.assert_array_equal(index.r, want)
    assert index.r.dtype == np.dtype(dtype) and index.items == list(range(n))
    assert index.anchor_queries == list(range(k_q))
    assert sorted(p.name for p in out.parent.iterdir()) == ["i.cur"]  # nothing else left


@pytest.mark.parametrize(("k_q", "n"), [(8, 50), (20, 700), (30, 3000)])
def test_search_equals_the_in_memory_index(tmp_path: Path, k_q: int, n: int) -> None:
    scores = _scores(k_q, n, seed=n)
    score = MatrixScorer(scores)
    loaded = CURIndex.load(_build(scores, k_q, tmp_path / "i.cur", batch_size=64), score)
    memory = CURIndex(scores[:k_q].astype(np.float32), list(range(n)), list(range(k_q)), score)
    queries = list(range(k_q, k_q + 40))
    for rounds in (0, 3):
        a = loaded.search_batch(queries, k=5, anchor_items=6, budget=30, adaptive_rounds=rounds)
        b = memory.search_batch(queries, k=5, anchor_items=6, budget=30, adaptive_rounds=rounds)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


def test_float16_r_is_memory_mapped_and_rounds_only(tmp_path: Path) -> None:
    k_q, n = 12, 2000
    scores = _scores(k_q, n)
    path = _build(scores, k_q, tmp_path / "i.cur", dtype="float16", batch_size=300)
    index = CURIndex.load(path, MatrixScorer(scores))
    assert index.r.dtype == np.float16
    base = index.r
    while not isinstance(base, np.memmap):  # a view of the file's mapping, not a copy
        assert base.base is not None, "R was read into memory"
        base = base.base
    np.testing.assert_allclose(index.r, scores[:k_q], rtol=2**-10, atol=1e-3)
    assert path.stat().st_size < 2 * k_q * n + 100_000  # 2 bytes per score (+ items, header)
    from safetensors.numpy import load_file

    plain = load_file(path)  # plain safetensors reads every array
    assert sorted(plain) == ["RT", "items_offsets", "items_utf8", "queries_offsets",
                             "queries_utf8"]  # fmt: skip
    np.testing.assert_array_equal(plain["RT"], index.r.T)


def test_ivf_index_is_saved_and_finds_what_flat_finds(tmp_path: Path) -> None:
    k_q, n = 16, 5000
    scores = _scores(k_q, n, seed=3)
    score = MatrixScorer(scores)
    path = _build(scores, k_q, tmp_path / "i.cur", mips="ivf", nprobe=40, dtype="float16")
    ivf = CURIndex.load(path, score)
    assert ivf.mips == "ivf" and ivf.mips_index.kind == "ivf" and ivf.nprobe == 40
    flat = CURIndex.load(path, score, mips="flat")
    queries = list(range(k_q, k_q + 40))
    _, a = ivf.search_batch(queries, k=10, anchor_items=16, budget=60, adaptive_rounds=2)
    _, b = flat.search_batch(queries, k=10, anchor_items=16, budget=60, adaptive_rounds=2)
    overlap = np.mean(
        [len(set(x) & set(y)) / 10 for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    )
    assert overlap >= 0.9
    # the IVF candidates are re-scored exactly: scores are inner products with R
    w = np.random.default_rng(0).standard_normal((3, k_q))
    s, ids = ivf.mips_index.search(w, 20)
    np.testing.assert_allclose(
        s, np.einsum("nq,qnm->nm", w, ivf.r[:, ids].astype(np.float64)), rtol=1e-5, atol=1e-5
    )
    assert (np.diff(s, axis=1) <= 0).all()


def test_executors_write_the_same_file(tmp_path: Path) -> None:
    scores = _scores(5, 500)
    one = _build(scores, 5, tmp_path / "a.cur", batch_size=37)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        other = _build(scores, 5, tmp_path / "b.cur", batch_size=37, executor=pool)
    assert one.read_bytes() == other.read_bytes()


def _nan_scorer(queries: list, items: list) -> np.ndarray:
    out = np.ones((len(queries), len(items)))
    if 7 in items:
        out[0, 0] = np.nan
    return out


def test_bad_scorer_output_names_the_scorer_and_writes_no_index(tmp_path: Path) -> None:
    out = tmp_path / "i.cur"

    def short(queries: list, items: list) -> np.ndarray:
        return np.ones((len(queries), len(items) - 1))

    for score, message in (
        (_nan_scorer, r"scorer mine: expected finite scores, got 1 NaN"),
        (short, r"scorer mine: expected shape .* = \(2, 5\), got shape \(2, 4\)"),
    ):
        with pytest.raises(ValueError, match=message):
            build_index_file(score, [0, 1], list(range(20)), out, batch_size=5,
                             progress=False, scorer_spec="mine")  # fmt: skip
        assert not out.exists()
    big = np.full((2, 20), 1e6)  # beyond float16
    with pytest.raises(ValueError, match=r"dtype: expected a dtype that holds every score"):
        build_index_file(MatrixScorer(big), [0, 1], list(range(20)), tmp_path / "h.cur",
                         dtype="float16", progress=False)  # fmt: skip
    assert not (tmp_path / "h.cur").exists()


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    score = MatrixScorer(np.ones((3, 3)))
    cases = [
        ({"items": []}, r"items: expected at least one, got none"),
        ({"items": "abc"}, r"items: expected a sequence"),
        ({"anchor_queries": []}, r"anchor_queries: expected at least one"),
        ({"dtype": "int8"}, r"dtype: expected one of"),
        ({"mips": "lsh"}, r"mips: expected one of"),
        ({"batch_size": 0}, r"batch_size: expected"),
        ({"out": tmp_path / "nowhere" / "i.cur"}, r"out: expected a path in an existing folder"),
        ({"items": [0, 1, object()]}, r"items\[2\]: expected a JSON-serialisable value"),
    ]
    for change, message in cases:
        kw = {"anchor_queries": [0, 1], "items": [0, 1, 2], "out": tmp_path / "i.cur", **change}
        with pytest.raises(ValueError, match=message):
            build_index_file(score, kw.pop("anchor_queries"), kw.pop("items"), kw.pop("out"),
                             progress=False, **kw)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ValueError, match=r"mips: expected 'ivf' for at least 1000 items"):
        _build(_scores(3, 200), 3, tmp_path / "i.cur", mips="ivf")


def test_another_builds_leftovers_are_refused_and_stale_ones_replaced(tmp_path: Path) -> None:
    scores = _scores(4, 90)
    out = tmp_path / "i.cur"
    partial, journal = tmp_path / "i.cur.partial", tmp_path / "i.cur.partial.journal"
    partial.write_bytes(b"x")
    journal.write_bytes(b'{"build": "someone else"}\n')
    with pytest.raises(ValueError, match=r"partial build .*: expected a partial build of these"):
        _build(scores, 4, out)
    journal.unlink()  # a partial file without its journal: started afresh
    np.testing.assert_array_equal(
        CURIndex.load(_build(scores, 4, out)).r, scores[:4].astype(np.float32)
    )


def test_corrupted_or_truncated_files_are_refused(tmp_path: Path) -> None:
    path = _build(_scores(6, 400), 6, tmp_path / "i.cur", dtype="float16", mips="flat")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    for key in ("RT", "items_utf8", "queries_offsets"):
        lo, _ = header[key]["data_offsets"]
        damaged = bytearray(data)
        damaged[8 + n + lo] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=rf"array '{key}' with its recorded SHA-256"):
            CURIndex.load(path)
    nan = bytearray(data)
    lo, _ = header["RT"]["data_offsets"]
    nan[8 + n + lo : 8 + n + lo + 2] = np.array([np.nan], np.float16).tobytes()
    path.write_bytes(bytes(nan))
    with pytest.raises(ValueError, match=r"SHA-256|finite"):
        CURIndex.load(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"expected a complete safetensors file"):
        CURIndex.load(path)


# --- kill -9 ----------------------------------------------------------------------

KILL_N, KILL_Q, KILL_BATCH = 3000, 6, 100  # 30 blocks


def _slow_scores(queries: list, items: list) -> np.ndarray:
    """Deterministic and slow enough (5 ms a block) for kills to land mid-build."""
    time.sleep(0.005)
    q = np.asarray(queries, dtype=np.float64)[:, None]
    i = np.asarray(items, dtype=np.float64)[None, :]
    return np.sin(0.37 * q * i + q) + np.cos(0.011 * i)


def _child(out: str) -> None:
    faiss.omp_set_num_threads(1)  # FAISS's k-means is deterministic on one thread
    build_index_file(_slow_scores, list(range(KILL_Q)), list(range(KILL_N)), out,
                     batch_size=KILL_BATCH, mips="ivf", progress=False,
                     journal_seconds=0.0)  # fmt: skip


def _resumable(out: Path) -> bool:
    journal = out.with_name(out.name + ".partial.journal")
    return journal.exists() and journal.stat().st_size > journal.read_bytes().index(b"\n") + 1


def test_kill_9_twenty_times_during_a_streamed_build(tmp_path: Path) -> None:
    straight, out = kill_twenty_times(_child, tmp_path, _resumable, seed=7)
    assert out.read_bytes() == straight.read_bytes()  # ivf index included
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "killed.safetensors", "straight.safetensors",
    ]  # fmt: skip


def test_a_loaded_float16_index_saves_as_a_loadable_file(tmp_path: Path) -> None:
    scores = _scores(5, 300)
    loaded = CURIndex.load(_build(scores, 5, tmp_path / "i.cur", dtype="float16"))
    loaded.save(tmp_path / "again.safetensors")  # version 1 holds float32: R is widened
    again = CURIndex.load(tmp_path / "again.safetensors")
    np.testing.assert_array_equal(again.r, loaded.r.astype(np.float32))
