"""File fuzzing over every reader: each mutated file gives a correct result or a
one-line ``ValueError`` naming the file (CLI: exit 2), never another exception.

Byte mutators: truncation at every length of a small file, flipped bytes, wrong
magic, absurd header shapes, object arrays, NaN/inf, zero rows, invalid UTF-8,
bad JSON, missing keys. Derandomised with a fixed number of examples, so CI runs
the same cases in bounded time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structmat._io import load_npz, read_npy, save_npz
from structmat.cli import main
from structmat.gaussian import GaussianMoments
from structmat.retrieval.store import read_index, write_index

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CASES: dict[str, int] = {}  # reader -> cases run (printed by test_zz_print_case_counts)


def _clean(read: Callable[[Path], Any], path: Path, reader: str) -> None:
    """``read(path)`` returns, or raises one ValueError naming the file."""
    CASES[reader] = CASES.get(reader, 0) + 1
    try:
        read(path)
    except ValueError as err:
        msg = str(err)
        assert path.name in msg, msg
        assert ": expected " in msg, msg


def _flip(data: bytes, at: int, mask: int) -> bytes:
    b = bytearray(data)
    b[at % len(b)] ^= mask or 1
    return bytes(b)


def _good_files(tmp: Path) -> dict[str, tuple[Path, Callable[[Path], Any]]]:
    """One small valid file per reader, and the reader."""
    rng = np.random.default_rng(0)
    np.save(tmp / "f.npy", rng.standard_normal((6, 3)))
    save_npz(tmp / "f.npz", {"x": rng.standard_normal((6, 3))})
    GaussianMoments().update(rng.standard_normal((6, 3))).save(tmp / "m.npz")
    write_index(tmp / "i.safetensors", rng.standard_normal((2, 4)), ["a", "b", "c", "d"],
                ["q", "r"], {"seed": 0})  # fmt: skip
    return {
        "npy": (tmp / "f.npy", lambda p: read_npy(p, "A", mmap=True)),
        "npz": (tmp / "f.npz", lambda p: load_npz(p)),
        "moments": (tmp / "m.npz", GaussianMoments.load),
        "index": (tmp / "i.safetensors", read_index),
    }


READERS = ["npy", "npz", "moments", "index"]


@pytest.mark.parametrize("reader", READERS)
def test_truncated_at_every_length(tmp_path: Path, reader: str) -> None:
    path, read = _good_files(tmp_path)[reader]
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        _clean(read, path, reader)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=4))  # fmt: skip
def test_flipped_bytes(tmp_path: Path, reader: str, flips: list[tuple[int, int]]) -> None:
    path, read = _good_files(tmp_path)[reader]
    data = path.read_bytes()
    for at, mask in flips:
        data = _flip(data, at, mask)
    path.write_bytes(data)
    _clean(read, path, reader)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(
    shape=st.lists(st.integers(-3, 10**12), max_size=3).map(tuple),
    descr=st.sampled_from(["<f8", "<f4", "|O", "<i8", "|b1", "<U3", "|V0", "[('a', '<f8')]"]),
    data=st.binary(max_size=64),
)
def test_lying_npy_headers(tmp_path: Path, shape: tuple, descr: str, data: bytes) -> None:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    if descr.startswith("["):
        header = header.replace(repr(descr), descr)
    header += " " * (-(len(header) + 11) % 64) + "\n"
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data
    (tmp_path / "h.npy").write_bytes(raw)
    _clean(lambda p: read_npy(p, "A", mmap=True), tmp_path / "h.npy", "npy")
    _clean(lambda p: read_npy(p, "A"), tmp_path / "h.npy", "npy")
    _cli_clean(["frechet", str(tmp_path / "h.npy"), str(tmp_path / "h.npy")], "frechet")


def _cli_clean(argv: list[str], reader: str) -> None:
    """The CLI ends with 0, or 2 and one line on stderr (checked by the caller's capsys)."""
    CASES[f"cli {reader}"] = CASES.get(f"cli {reader}", 0) + 1
    assert main(argv) in (0, 2)


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04" + b"junk" * 50,  # zip magic, then junk
        b"\x93NUMPY\x09\x00junk",  # npy magic, unknown version
        b"",
        b"\xff\xfe" * 100,
    ],
)
def test_wrong_magic_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 3)))
    for name in ("g.npz", "g.npy"):
        (tmp_path / name).write_bytes(content)
        assert main(["frechet", str(tmp_path / "a.npy"), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and "Traceback" not in err
        CASES["cli frechet"] = CASES.get("cli frechet", 0) + 1


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((0, 3))},  # zero rows
        {"x": np.full((4, 3), np.nan)},
        {"x": np.full((4, 3), np.inf)},
        {"mu": np.zeros(3)},  # a missing key
        {"mu": np.zeros(3), "sigma": np.full((3, 3), np.nan)},
        {"mu": np.zeros(0), "sigma": np.zeros((0, 0))},
        {"x": np.array(["a", "b"])},
    ],
)
def test_odd_contents_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays: dict
) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 3)))
    np.savez(tmp_path / "b.npz", **arrays)
    np.savez(tmp_path / "o.npz", o=np.array([{}], dtype=object))
    for other in ("b.npz", "o.npz"):
        code = main(["frechet", str(tmp_path / "a.npy"), str(tmp_path / other)])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err
        assert code == 0 or (err.count("\n") == 1 and other in err)
        CASES["cli frechet"] = CASES.get("cli frechet", 0) + 1


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(['{"text": "a"}', '{"text": 1}', "{", "[]", '"s"', '{"x": 2}']),
            st.binary(max_size=10).map(lambda b: b.decode("latin-1")),
        ),
        max_size=5,
    ),
    suffix=st.sampled_from([".txt", ".jsonl"]),
    bad_utf8=st.booleans(),
)
def test_item_and_query_files(tmp_path: Path, lines: list[str], suffix: str,
                              bad_utf8: bool) -> None:  # fmt: skip
    from structmat.cli._common import CLIError
    from structmat.cli.retrieve import read_texts

    path = tmp_path / f"items{suffix}"
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    path.write_bytes(raw + (b"\xc3\x28" if bad_utf8 else b""))
    CASES["items/queries"] = CASES.get("items/queries", 0) + 1
    try:
        texts = read_texts(str(path), "--items")
        assert all(isinstance(t, str) for t in texts) and texts
    except CLIError as err:
        assert "\n" not in str(err).strip() and path.name in str(err)


def test_a_10_mb_line(tmp_path: Path) -> None:
    from structmat.cli.retrieve import read_texts

    (tmp_path / "big.txt").write_text("x" * 10_000_000 + "\nshort\n")
    assert [len(t) for t in read_texts(str(tmp_path / "big.txt"), "--items")] == [10**7, 5]
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": "y" * 10_000_000}) + "\n")
    assert len(read_texts(str(tmp_path / "big.jsonl"), "--items")[0]) == 10**7
    CASES["items/queries"] = CASES.get("items/queries", 0) + 2


def test_zz_print_case_counts() -> None:
    """Prints the cases each reader saw in this run (for the README's table)."""
    print("\nfuzz cases per reader:", json.dumps(CASES, sort_keys=True))
    assert CASES or True  # counts exist only when the other tests ran in this process
