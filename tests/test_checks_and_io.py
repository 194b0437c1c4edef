"""The shared validation helpers and atomic, pickle-free file I/O."""

from __future__ import annotations

import errno
import os
import re
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from structmat import _checks as C
from structmat._io import atomic_write, load_npz, read_npy, save_npz, write_json


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
    save_npz(tmp_path / "a.npz", {"x": np.arange(3), "y": np.eye(2)})
    back = load_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(back["y"], np.eye(2))
    assert back["y"].flags.writeable
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:  # plain numpy reads it
        assert sorted(z.files) == ["x", "y"]
        np.testing.assert_array_equal(z["x"], np.arange(3))
    write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "a": 1\n}'
    np.savez(tmp_path / "obj.npz", o=np.array([{}], dtype=object))
    with pytest.raises(ValueError, match="pickled or object data is never loaded"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(ValueError, match=r"arrays\['o'\]: expected a numeric or string array"):
        save_npz(tmp_path / "obj2.npz", {"o": np.array([{}], dtype=object)})


def test_a_flipped_byte_in_an_npz_is_named_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    save_npz(path, {"x": np.arange(1000.0)})
    data = path.read_bytes()
    corrupt = rf"^file {re.escape(str(path))}: expected an intact file .*, got a corrupt file"
    for at in (200, len(data) // 2, 7000):  # in x's data, and in the header
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=corrupt):
            load_npz(path)
    # A flip the zip CRC cannot see (the digest in the comment) is caught by the sha256.
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    with pytest.raises(ValueError, match=corrupt + r" \(checksum mismatch\)"):
        load_npz(path)


def test_files_without_a_checksum_warn_only_when_one_is_expected(tmp_path: Path) -> None:
    np.savez(tmp_path / "old.npz", x=np.arange(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(load_npz(tmp_path / "old.npz")) == ["x"]  # a foreign file: silent
    with pytest.warns(UserWarning, match=r"old.npz: no sha256 \(written before checksums\)"):
        load_npz(tmp_path / "old.npz", checksum="expected")


def _npy_with_header(path: Path, shape: tuple[int, ...], data: bytes, descr: str = "<f8") -> None:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (118 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((10**11, 10**11), r"an absurd header shape \(100000000000, 100000000000\)"),
        ((10**6, 3), r"64 data bytes where shape \(1000000, 3\) float64 needs 24000000"),
        ((2, 3), r"64 data bytes where shape \(2, 3\) float64 needs 48 \(trailing bytes\)"),
        ((-1, 8), r"an absurd header shape \(-1, 8\)"),
    ],
)
def test_lying_npy_headers_are_refused_before_allocating(
    tmp_path: Path, shape: tuple[int, ...], pattern: str
) -> None:
    path = tmp_path / "x.npy"
    _npy_with_header(path, shape, b"\0" * 64)
    for mmap in (False, True):
        with pytest.raises(
            ValueError, match=r"^A .*x.npy: expected a numeric .npy array, got " + pattern
        ):
            read_npy(path, "A", mmap=mmap)
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as z:  # the same member inside an .npz
        z.write(path, "x.npy")
    with pytest.raises(
        ValueError, match=r"expected a readable .npz of numeric arrays, got " + pattern
    ):
        load_npz(tmp_path / "x.npz")


def test_read_npy_layouts_and_empty_arrays(tmp_path: Path) -> None:
    a = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    np.save(tmp_path / "f.npy", a)
    np.save(tmp_path / "e.npy", np.zeros((0, 3), np.float32))
    for mmap in (False, True):
        np.testing.assert_array_equal(read_npy(tmp_path / "f.npy", "A", mmap=mmap), a)
        assert read_npy(tmp_path / "e.npy", "A", mmap=mmap).shape == (0, 3)


def test_write_or_fail_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.npz"
    save_npz(path, {"x": np.arange(3)})
    before = path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("structmat._io.np.lib.format.write_array", full)
    with pytest.raises(
        ValueError,
        match=r"^path: expected room to write the moments file .*a.npz, got \[Errno 28\] "
        r"No space left on device; the previous moments file, if any, is intact$",
    ):
        save_npz(path, {"x": np.arange(4)}, what="moments file")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_atomic_write_gives_ordinary_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    write_json(tmp_path / "m.json", {})
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask
