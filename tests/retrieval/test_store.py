"""CURIndex.save / load: round trip, atomic writes, and every kind of damaged file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from structmat.retrieval import CURIndex, MatrixScorer

pytest.importorskip("safetensors")


def _index(dtype: type = np.float64, **config: object) -> tuple[CURIndex, np.ndarray]:
    rng = np.random.default_rng()
    scores = (rng.standard_normal((25, 3)) @ rng.standard_normal((3, 140))).astype(dtype)
    scores += 0.1 * rng.standard_normal(scores.shape).astype(dtype)
    index = CURIndex.build(
        MatrixScorer(scores), list(range(20)), list(range(140)), progress=False, **config
    )
    return index, scores


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["random", "kmeans"])
def test_round_trip_gives_the_same_index_and_results(
    tmp_path: Path, dtype: type, method: str
) -> None:
    index, scores = _index(dtype, anchor_method=method, seed=7, rcond=1e-5, backend="numpy")
    path = tmp_path / "index.safetensors"
    index.save(path)
    loaded = CURIndex.load(path, MatrixScorer(scores))
    assert loaded.r.dtype == dtype
    np.testing.assert_array_equal(loaded.r, index.r)
    assert loaded.items == index.items and loaded.anchor_queries == index.anchor_queries
    assert (loaded.anchor_method, loaded.seed, loaded.rcond) == (method, 7, 1e-5)
    np.testing.assert_array_equal(loaded.anchor_ids(12), index.anchor_ids(12))
    a = index.search_batch([20, 21, 22], k=5, anchor_items=12, budget=40, adaptive_rounds=2)
    b = loaded.search_batch([20, 21, 22], k=5, anchor_items=12, budget=40, adaptive_rounds=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_text_items_round_trip_and_overrides(tmp_path: Path) -> None:
    items = ["naïve café", 'quote " and \\ backslash', "line\nbreak", "", "日本語"]
    index = CURIndex(np.ones((2, 5)), items, ["q1", {"q": 2}], backend="numpy")
    index.save(tmp_path / "i")
    loaded = CURIndex.load(tmp_path / "i", None, backend="auto")
    assert loaded.items == items and loaded.anchor_queries == ["q1", {"q": 2}]
    assert loaded.backend == "auto" and loaded.score is None


def test_unserialisable_items_are_refused_and_the_old_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "index.safetensors"
    index, _ = _index()
    index.save(path)
    before = path.read_bytes()
    bad = CURIndex(np.ones((1, 2)), [object(), 1], [0])
    with pytest.raises(ValueError, match=r"items\[0\]: expected a JSON-serialisable value"):
        bad.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.safetensors"]  # no temp file left
    with pytest.raises(ValueError, match=r"anchor_queries: expected the anchor queries"):
        CURIndex(np.ones((1, 2)), [0, 1]).save(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.safetensors"
    _index()[0].save(path)
    data = path.read_bytes()
    for cut in (4, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"index file .*: expected a complete safetensors"):
            CURIndex.load(path)


def _header_and_body(data: bytes) -> tuple[dict, int]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), 8 + n


def test_flipped_byte_in_any_array_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "index.safetensors"
    _index()[0].save(path)
    data = path.read_bytes()
    header, start = _header_and_body(data)
    for name in ("R", "items_utf8", "items_offsets", "queries_utf8", "queries_offsets"):
        lo, _ = header[name]["data_offsets"]
        damaged = bytearray(data)
        damaged[start + lo] ^= 0x40
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=rf"array '{name}' with its recorded SHA-256"):
            CURIndex.load(path)


def _rewrite_meta(path: Path, change: dict, drop: str | None = None) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(path, framework="numpy") as f:
        meta = json.loads(f.metadata()["structmat"])
    meta.update(change)
    meta.pop(drop or "", None)
    save_file(load_file(path), path, metadata={"structmat": json.dumps(meta)})


def test_foreign_newer_and_mismatched_files_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "index.safetensors"
    save_file({"x": np.ones(3)}, path)
    with pytest.raises(ValueError, match=r"expected a structmat CUR index"):
        CURIndex.load(path)
    _index()[0].save(path)
    _rewrite_meta(path, {"version": 99})
    with pytest.raises(ValueError, match=r"expected format version <= 2, got version 99"):
        CURIndex.load(path)
    _index()[0].save(path)
    _rewrite_meta(path, {"format": "something.else"})
    with pytest.raises(ValueError, match=r"expected format 'structmat.retrieval.CURIndex'"):
        CURIndex.load(path)
    _index()[0].save(path)
    _rewrite_meta(path, {"shapes": {"R": [3, 3]}})
    with pytest.raises(ValueError, match=r"expected R of shape \(3, 3\), got shape \(20, 140\)"):
        CURIndex.load(path)
    _index()[0].save(path)
    _rewrite_meta(path, {"sha256": {}})
    with pytest.raises(ValueError, match=r"expected checksummed arrays"):
        CURIndex.load(path)
    with pytest.raises(ValueError, match=r"index file .*: expected an existing file, got no such"):
        CURIndex.load(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"expected an existing file, got a directory"):
        CURIndex.load(tmp_path)


def test_a_changed_configuration_is_detected_and_old_files_warn(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    path = tmp_path / "index.safetensors"
    _index(seed=3)[0].save(path)
    assert sorted(load_file(path)) == [  # plain safetensors reads every array
        "R", "items_offsets", "items_utf8", "queries_offsets", "queries_utf8",
    ]  # fmt: skip
    _rewrite_meta(path, {"config": {**_config(path), "seed": 4}})
    with pytest.raises(
        ValueError, match=r"index file .*: expected an intact file .*, got a corrupt file "
        r"\(metadata checksum mismatch\)",
    ):  # fmt: skip
        CURIndex.load(path)
    _index(seed=3)[0].save(path)
    _rewrite_meta(path, {"checksum": None}, drop="checksum")  # as written before checksums
    with pytest.warns(UserWarning, match=r"written before metadata checksums"):
        assert CURIndex.load(path).seed == 3


def _config(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return json.loads(f.metadata()["structmat"])["config"]


def test_a_full_disk_keeps_the_previous_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os
    import re

    path = tmp_path / "index.safetensors"
    index = _index()[0]
    index.save(path)
    before = path.read_bytes()
    real_fsync = os.fsync

    def full(fd: int) -> None:  # the data did not fit: the kernel reports it on fsync
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("structmat._io.os.fsync", full)
    pattern = (
        rf"^path: expected room to write the index {re.escape(str(path))}, got \[Errno 28\] "
        r"No space left on device; the previous index, if any, is intact$"
    )
    with pytest.raises(ValueError, match=pattern):
        index.save(path)
    monkeypatch.setattr("structmat._io.os.fsync", real_fsync)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.safetensors"]  # no temp file
    np.testing.assert_array_equal(CURIndex.load(path)._r, index._r)
