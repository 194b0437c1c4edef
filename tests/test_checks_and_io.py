"""The shared validation helpers and atomic, pickle-free file I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from structmat import _checks as C
from structmat._io import atomic_write, load_npz, save_npz, write_json


def test_check_finite_fast_path_does_not_misfire_on_overflowing_sums() -> None:
    C.check_finite(
        torch.tensor([3e38, 3e38], dtype=torch.float32), "x"
    )  # sum overflows, entries finite
    C.check_finite(torch.empty(0), "x")
    with pytest.raises(
        ValueError, match=r"x: expected finite values, got 2 NaN or infinite entries"
    ):
        C.check_finite(torch.tensor([float("inf"), float("-inf"), 1.0]), "x")


def test_message_form_and_helpers() -> None:
    with pytest.raises(ValueError, match=r"^q: expected shape \(B, H, L, D\), got shape \(2, 3\)$"):
        C.check_ndim(torch.zeros(2, 3), "q", 4, "(B, H, L, D)")
    with pytest.raises(
        ValueError, match=r"^k: expected shape \(B, L\) = \(2, \*\), got shape \(3, 4\)$"
    ):
        C.check_shape(torch.zeros(3, 4), "k", (2, None), "(B, L)")
    C.check_shape(torch.zeros(2, 9), "k", (2, None), "(B, L)")
    with pytest.raises(ValueError, match=r"^mode: expected one of 'a' \| 'b', got 'c'$"):
        C.check_choice("c", "mode", ["a", "b"])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"^n: expected an integer >= 1"):
            C.check_positive_int(bad, "n")
    C.check_positive_int(np.int64(3), "n")
    with pytest.raises(
        ValueError, match=r"^x: expected a numeric array, got a NumPy array of dtype object$"
    ):
        C.as_tensor(np.array([{}], dtype=object), "x")
    with pytest.raises(ValueError, match=r"^x: expected a tensor or array, got str$"):
        C.as_tensor("abc", "x")
    with pytest.raises(
        ValueError, match=r"^x: expected a real tensor \(torch.float64\), got complex"
    ):
        C.as_tensor(torch.ones(2, dtype=torch.complex64), "x", torch.float64)
    read_only = np.ones(3)
    read_only.setflags(write=False)
    assert C.as_tensor(read_only, "x").sum() == 3
    assert C.shape_str((3,)) == "(3,)"


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing(f: object) -> None:
        f.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # temp file removed


def test_npz_and_json_round_trip_without_pickle(tmp_path: Path) -> None:
    save_npz(tmp_path / "a.npz", x=np.arange(3), y=np.eye(2))
    back = load_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(back["y"], np.eye(2))
    write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "a": 1\n}'
    np.savez(tmp_path / "obj.npz", o=np.array([{}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npz(tmp_path / "obj.npz")


def test_atomic_write_gives_ordinary_file_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    write_json(tmp_path / "m.json", {})
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask
