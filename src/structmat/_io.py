"""Atomic writes, checksums and pickle-free, bounded reads for the project's files.

A file is written to a temporary sibling and renamed into place, so a reader
never sees a half-written file and an interrupted write leaves the old one.

``.npy`` / ``.npz`` files are read here and nowhere else: the header is parsed
and checked against the bytes really present before anything is allocated (a
header claiming shape (1e11, 1e11) is refused, not mapped), object dtypes are
refused (nothing is unpickled), and every failure is one ``ValueError`` naming
the file. ``.npz`` files the project writes carry the sha256 of their arrays
(``arrays_sha256``) in the zip archive's comment, ``structmat sha256=<hex>``: the
arrays are untouched, so plain ``numpy.load`` reads the same keys as before.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from structmat._checks import fail

__all__ = [
    "arrays_sha256",
    "atomic_write",
    "corrupt",
    "first_line",
    "load_npz",
    "read_npy",
    "remove_stale_temps",
    "save_npz",
    "write_json",
    "write_or_fail",
]

_COMMENT = b"structmat sha256="  # zip comment prefix; the hex digest follows
_MAX_ELEMENTS = 2**62  # beyond this a shape cannot describe real data (and overflows intp)
# Deflate expands at most ~1032:1; a member claiming more than this is lying about its size.
_MAX_DEFLATE_RATIO = 1100


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temps(path: str | os.PathLike[str]) -> None:
    """Delete temporaries ``atomic_write`` left beside ``path`` when killed (kill -9)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_or_fail(
    path: Path, write: Callable[[IO[bytes]], object], what: str, name: str = "out"
) -> None:
    """``atomic_write`` whose OSError (a full disk, a read-only directory) becomes a
    one-line ValueError naming ``name``; the previous file at ``path`` stays intact."""
    try:
        atomic_write(path, write)
    except OSError as err:
        reason = f"[Errno {err.errno}] {err.strerror}" if err.strerror else str(err)
        raise fail(
            name,
            f"room to write the {what} {path}",
            f"{reason}; the previous {what}, if any, is intact",
        ) from err


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's text, at most ``limit`` characters."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def corrupt(name: str, path: str | os.PathLike[str], check: str = "checksum") -> ValueError:
    """The error for a file whose checksum (or CRC) does not match its contents."""
    return fail(name, f"an intact file {os.fspath(path)}", f"a corrupt file ({check} mismatch)")


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 (hex) over the arrays in sorted key order: key, dtype, shape, C-order bytes."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.asarray(arrays[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())  # C order, whatever the layout in memory
    return h.hexdigest()


def _savez(f: IO[bytes], arrays: Mapping[str, np.ndarray], comment: bytes) -> None:
    """What ``np.savez`` writes (stored ``<key>.npy`` members), plus a zip comment."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for key, a in arrays.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)
        z.comment = comment


def save_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], what: str = "file",
    name: str = "path",
) -> None:  # fmt: skip
    """Write ``arrays`` to an ``.npz`` file with their sha256, atomically.

    Raises:
        ValueError: ``name: expected room to write the <what> <path>, got [Errno 28] ...``
            when the write fails; the previous file survives. An object array.
    """
    body = {k: np.asarray(v) for k, v in arrays.items()}
    for key, a in body.items():
        if a.dtype.hasobject:
            raise fail(f"arrays[{key!r}]", "a numeric or string array", f"dtype {a.dtype}")
    comment = _COMMENT + arrays_sha256(body).encode()
    write_or_fail(Path(path), lambda f: _savez(f, body, comment), what, name)


class _Bad(Exception):
    """A reason a file is refused (turned into the ``fail`` message by the caller)."""


class _CRCError(Exception):
    """A zip member whose CRC-32 does not match: the file is corrupt."""


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse and check a .npy header at ``f``'s position; returns (shape, fortran, dtype)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise _Bad(f"unsupported .npy format version {version}")
    except _Bad:
        raise
    except zipfile.BadZipFile as err:  # raised by the member's CRC check on a short one
        raise _CRCError() from err
    except Exception as err:  # numpy's parser: ValueError, EOF, a nesting-limit error
        raise _Bad(f"not a .npy array ({first_line(err)})") from err
    if dtype.hasobject:
        raise _Bad("an object array (pickled or object data is never loaded)")
    if any(s < 0 for s in shape) or math.prod(shape) > _MAX_ELEMENTS:
        raise _Bad(f"an absurd header shape {shape}")
    if dtype.itemsize == 0:
        raise _Bad(f"a dtype of size 0 ({dtype})")
    return tuple(shape), bool(fortran), dtype


def _check_size(shape: tuple[int, ...], dtype: np.dtype[Any], have: int) -> int:
    """The data size the header claims, if the file holds exactly that many bytes."""
    want = math.prod(shape) * dtype.itemsize
    if want != have:
        why = "truncated, or a lying header" if have < want else "trailing bytes"
        raise _Bad(f"{have} data bytes where shape {shape} {dtype} needs {want} ({why})")
    return want


def _from_bytes(
    buf: bytes | bytearray, shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]
) -> np.ndarray:
    flat = np.frombuffer(buf, dtype=dtype, count=math.prod(shape))
    return flat.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike[str], name: str, mmap: bool = False) -> np.ndarray:
    """Read a ``.npy`` array after checking its header against the file's size.

    Args:
        path: the file.
        name: what errors name (``"A"``, ``"--items"`` ...).
        mmap: memory-map the data read-only instead of reading it.

    Returns:
        The array, of the header's shape and dtype (never an object dtype).

    Raises:
        ValueError: ``<name> <path>: expected a numeric .npy array, got ...`` for a
            missing file, a bad or lying header, an object array or short data.
    """
    where = f"{name} {os.fspath(path)}"
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _header(f)
            start = f.tell()
            size = os.fstat(f.fileno()).st_size
            nbytes = _check_size(shape, dtype, size - start)
            if not mmap or nbytes == 0:  # mmap cannot map zero bytes
                buf = bytearray(nbytes)  # bounded: the file really holds nbytes
                if f.readinto(buf) != nbytes:
                    raise _Bad("a file that changed while being read")
                return _from_bytes(buf, shape, fortran, dtype)
        order: Literal["F", "C"] = "F" if fortran else "C"
        return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order=order)
    except _Bad as err:
        raise fail(where, "a numeric .npy array", str(err)) from err
    except OSError as err:
        raise fail(where, "a readable file", first_line(err)) from err


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, read with memory bounded by the data really present."""
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise _Bad(f"member {info.filename!r} with inconsistent sizes")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 4096:
        raise _Bad(f"member {info.filename!r} claiming {info.file_size} bytes")
    with z.open(info) as f:
        shape, fortran, dtype = _header(f)
        nbytes = _check_size(shape, dtype, info.file_size - f.tell())
        buf = bytearray()  # grows with the bytes decompressed, not with the claim
        while len(buf) < nbytes and (chunk := f.read(min(1 << 24, nbytes - len(buf)))):
            buf += chunk
        if len(buf) != nbytes or f.read(1):  # the last read checks the CRC-32
            raise _Bad(f"member {info.filename!r} of the wrong length")
    return _from_bytes(buf, shape, fortran, dtype)


def _check_comment_length(path: str | os.PathLike[str], have: int) -> None:
    """Refuse a zip whose end record declares a longer comment than is there: zipfile
    reads such a file, so a truncation inside the comment (the sha256) would pass."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 22 - 65535))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at >= 0 and at + 22 <= len(tail):
        (declared,) = struct.unpack("<H", tail[at + 20 : at + 22])
        if declared != have:
            raise _Bad(f"a truncated zip archive (comment of {have} of {declared} bytes)")


def _read_zip(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], bytes]:
    """Every member of an ``.npz`` and the archive comment."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise _Bad(f"member {info.filename!r}, which is not a .npy array")
                arrays[info.filename[:-4]] = _member(z, info)
            comment = z.comment
        _check_comment_length(path, len(comment))
    except (_Bad, _CRCError):
        raise
    except zipfile.BadZipFile as err:
        if "CRC" in str(err):
            raise _CRCError() from err
        raise _Bad(f"an unreadable zip archive ({first_line(err)})") from err
    except (zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        # zlib.error: damaged deflate data; RuntimeError: an encrypted member.
        raise _Bad(f"an unreadable zip archive ({first_line(err)})") from err
    return arrays, comment


def load_npz(
    path: str | os.PathLike[str],
    name: str | None = None,
    checksum: Literal["optional", "expected"] = "optional",
    wanted: str = "a readable .npz of numeric arrays",
) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, never unpickling, and verify its sha256.

    Args:
        path: the file.
        name: what errors name (default ``file <path>``).
        checksum: ``"optional"``: a file without a sha256 (numpy's own, pytorch-fid's)
            is read silently; ``"expected"``: one without it (written before checksums)
            is read with a warning. Either way a sha256 present is verified.
        wanted: what errors say was expected of an unreadable file.

    Returns:
        ``{key: array}``.

    Raises:
        ValueError: naming the file: missing, not a zip archive, truncated, a member
            that is not a numeric ``.npy`` array, a lying header, or a checksum mismatch
            (``expected an intact file <path>, got a corrupt file (checksum mismatch)``).

    Warns:
        UserWarning: ``checksum="expected"`` and the file has no sha256.
    """
    name = name or f"file {os.fspath(path)}"
    if not Path(path).is_file():
        raise fail(name, f"an .npz file at {os.fspath(path)}", "no such file")
    try:
        arrays, comment = _read_zip(path)
    except _CRCError as err:
        raise corrupt(name, path, "CRC-32") from err
    except _Bad as err:
        raise fail(name, wanted, str(err)) from err
    except OSError as err:
        raise fail(name, "a readable file", first_line(err)) from err
    if comment.startswith(_COMMENT):
        if comment[len(_COMMENT) :] != arrays_sha256(arrays).encode():
            raise corrupt(name, path)
    elif checksum == "expected":
        warnings.warn(
            f"{os.fspath(path)}: no sha256 (written before checksums); loaded unverified",
            stacklevel=3,
        )
    return arrays
