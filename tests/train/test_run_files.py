"""The files of a run: verified checkpoints (and fuzzed ones), a full disk, the
directory lock, metrics.jsonl and TensorBoard scalars."""

from __future__ import annotations

import errno
import io
import itertools
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat.checkpoint import load_checkpoint, state_digest
from structmat.cli import main
from structmat.run_lock import acquire_lock
from structmat.train import train
from tests.train.helpers import FUZZ, numbers, read_rows, tiny, tiny_argv


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real checkpoint (d_model 8) to damage."""
    out = tmp_path_factory.mktemp("ckpt")
    train(tiny(out, steps=3, d_model=8), progress=False)
    return (out / "checkpoint.pt").read_bytes()


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    _, err = capsys.readouterr()
    assert err.count("\n") <= 1 and "Traceback" not in err, err
    return code, err


# --- checksums ------------------------------------------------------------------------


def test_checkpoint_carries_a_checksum_and_stays_plain_torch(tmp_path: Path) -> None:
    train(tiny(tmp_path, steps=3), progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["format_version"] == 2
    assert state["checksum"] == state_digest(state)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


def test_checksum_mismatch_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    train(tiny(tmp_path, stop_after=3), progress=False)
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key] = state["model"][key] + 1.0  # a valid file, other contents
    torch.save(state, path)
    where = re.escape(str(path))
    pattern = rf"resume: expected an intact checkpoint at {where}, got a corrupt file "
    pattern += r"\(checksum mismatch\)"
    with pytest.raises(ValueError, match=pattern):
        train(tiny(tmp_path, resume=True), progress=False)
    code, err = _cli(capsys, tiny_argv(tmp_path, resume=True))
    assert code == 2 and re.search(pattern, err)


def test_a_flipped_byte_in_a_tensor_is_caught(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(checkpoint_bytes)) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size > 8)
    name_len, extra_len = struct.unpack("<HH", checkpoint_bytes[info.header_offset + 26 :][:4])
    start = info.header_offset + 30 + name_len + extra_len
    damaged = bytearray(checkpoint_bytes)
    damaged[start + 3] ^= 0x10
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"expected an intact checkpoint .* \(checksum mismatch\)"):
        load_checkpoint(path)


def test_a_checkpoint_without_checksum_loads_with_a_warning(tmp_path: Path) -> None:
    """A format-1 checkpoint, as written before checksums (and before the settings
    and log rows added with them), resumes to the straight run's numbers."""
    straight = train(tiny(tmp_path / "a"), progress=False)
    train(tiny(tmp_path / "b", stop_after=6), progress=False)
    path = tmp_path / "b" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    new = ("d_state", "dt_min", "dt_max", "prenorm", "schedule", "minutes", "ssm_lr")
    state["config"] = {k: v for k, v in state["config"].items() if k not in (*new, "tensorboard")}
    clock = ("seconds", "tokens")
    state["history"] = [{k: v for k, v in r.items() if k not in clock} for r in state.pop("rows")]
    state["interval"]["steps"] = 0.0  # format 1 carried an unused step count
    for key in ("checksum", "plan"):
        del state[key]
    state["format_version"] = 1
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"checkpoint of format 1 has no checksum"):
        resumed = train(tiny(tmp_path / "b", resume=True), progress=False)
    assert numbers(resumed.metrics) == numbers(straight.metrics)
    rows = read_rows(tmp_path / "b")
    assert [r["step"] for r in rows] == [3, 6, 9, 12] and rows[0]["seconds"] is None


# --- fuzzing the checkpoint reader ---------------------------------------------------------


def _expect_clean(path: Path, original: bytes | None = None) -> None:
    """A clean one-line ValueError, or (after harmless damage) the original contents."""
    try:
        state = load_checkpoint(path)
    except ValueError as err:
        assert re.match(
            r"resume: expected (a readable checkpoint|an intact checkpoint|checkpoint format)",
            str(err),
        ), err
        return
    assert original is not None, "damaged bytes loaded"
    reference = torch.load(io.BytesIO(original), weights_only=True)
    assert state_digest(state) == reference["checksum"]


def _zip_boundaries(data: bytes) -> list[int]:
    """Every record boundary of the archive: each member's header, data start and end,
    the central directory and its end record."""
    cuts = {0, 1, 4, len(data) - 22, len(data) - 1}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 :][:4])
            start = info.header_offset + 30 + name_len + extra_len
            cuts |= {info.header_offset, start, start + info.compress_size}
            cuts.add(info.header_offset + 30)
        cuts.add(z.start_dir)  # type: ignore[attr-defined]
    return sorted(c for c in cuts if 0 <= c < len(data))


def test_truncated_at_every_zip_boundary(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    path = tmp_path / "checkpoint.pt"
    cuts = _zip_boundaries(checkpoint_bytes)
    assert len(cuts) > 20
    for cut in cuts:
        path.write_bytes(checkpoint_bytes[:cut])
        with pytest.raises(ValueError, match=r"resume: expected a readable checkpoint"):
            load_checkpoint(path)


@FUZZ
@given(data=st.data())
def test_fuzz_truncated(tmp_path: Path, checkpoint_bytes: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(checkpoint_bytes) - 1))
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(checkpoint_bytes[:cut])
    _expect_clean(path)


@FUZZ
@given(data=st.data())
def test_fuzz_flipped_bytes(tmp_path: Path, checkpoint_bytes: bytes, data: st.DataObject) -> None:
    damaged = bytearray(checkpoint_bytes)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(bytes(damaged))
    _expect_clean(path, checkpoint_bytes)


@pytest.mark.parametrize(
    "make",
    [
        lambda good: b"XXXX" + good[4:],  # wrong magic
        lambda good: b"",
        lambda good: b"garbage",
        lambda good: json.dumps({"step": 3}).encode(),
        lambda good: good + b"trailing",
        lambda good: _torch_bytes([1, 2, 3]),
        lambda good: _torch_bytes({"format_version": 2, "step": 3}),  # no checksum
        lambda good: _torch_bytes({"format_version": 7}),
        lambda good: _zip_bytes({"data.pkl": b"not a pickle"}),
    ],
)
def test_damaged_files_give_clean_errors(
    tmp_path: Path, checkpoint_bytes: bytes, make: Any
) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(make(checkpoint_bytes))
    _expect_clean(path, checkpoint_bytes)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(f"archive/{name}", data)
    return buf.getvalue()


# --- a full disk ------------------------------------------------------------------------


def test_full_disk_keeps_the_previous_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def save_then_fill_the_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] < 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("structmat.checkpoint.torch.save", save_then_fill_the_disk)
    out = tmp_path / "run"
    pattern = (
        rf"out: expected room to write the checkpoint {re.escape(str(out / 'checkpoint.pt'))}, "
        r"got \[Errno 28\] No space left on device; the previous checkpoint, if any, is intact"
    )
    with pytest.raises(ValueError, match=pattern):
        train(tiny(out), progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3  # the first one, intact
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp, no lock
    calls["n"] = 1  # and again through the CLI
    code, err = _cli(capsys, tiny_argv(out, resume=True))
    assert code == 2 and re.search(pattern, err), err
    monkeypatch.setattr("structmat.checkpoint.torch.save", real_save)
    resumed = train(tiny(out, resume=True), progress=False)
    assert numbers(resumed.metrics) == numbers(train(tiny(tmp_path / "b"), progress=False).metrics)


# --- the lock ---------------------------------------------------------------------------


def test_a_busy_directory_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    lock = acquire_lock(tmp_path)
    try:
        where = re.escape(str(tmp_path))
        pattern = r"out: expected a directory no other run is using, "
        pattern += rf"got {where}, in use by PID {os.getpid()} on "
        with pytest.raises(ValueError, match=pattern):
            train(tiny(tmp_path), progress=False)
        code, err = _cli(capsys, tiny_argv(tmp_path))
        assert code == 2 and re.search(pattern, err)
    finally:
        lock.release()
    assert train(tiny(tmp_path, steps=3), progress=False).status == "finished"


def test_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "here"}))
    # --resume with only a dead run's lock: it was killed before writing anything.
    result = train(tiny(tmp_path, steps=3, resume=True), progress=False)
    assert result.status == "finished" and result.metrics["resumed_from"] is None
    assert not (tmp_path / ".lock").exists()


def test_resume_without_a_checkpoint_beside_finished_metrics_is_refused(tmp_path: Path) -> None:
    train(tiny(tmp_path, steps=3), progress=False)
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.raises(
        ValueError,
        match=r"resume: expected a checkpoint at .*, got none, beside the metrics.json of a run",
    ):
        train(tiny(tmp_path, steps=3, resume=True), progress=False)


def test_resume_before_the_first_checkpoint_checks_config_json(tmp_path: Path) -> None:
    train(tiny(tmp_path, steps=3), progress=False)
    for name in ("checkpoint.pt", "metrics.json"):
        (tmp_path / name).unlink()
    with pytest.raises(
        ValueError,
        match=rf"resume: expected the settings of the run started in {re.escape(str(tmp_path))} "
        r"\(--lr 0.005\), got --lr 0.001",
    ):
        train(tiny(tmp_path, steps=3, lr=1e-3, resume=True), progress=False)
    (tmp_path / "config.json").write_text('{"task": ')
    with pytest.raises(
        ValueError,
        match=r"resume: expected a valid run configuration in .*config.json, got unreadable JSON",
    ):
        train(tiny(tmp_path, steps=3, resume=True), progress=False)


# --- metrics.jsonl and TensorBoard -----------------------------------------------------------


def test_metrics_jsonl_rows_survive_resume_exactly(tmp_path: Path) -> None:
    straight = train(tiny(tmp_path / "a"), progress=False)
    rows = read_rows(tmp_path / "a")
    keys = [
        "step",
        "seconds",
        "tokens",
        "lr",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert [list(r) for r in rows] == [keys] * 4
    clockless = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "tokens"} for r in clockless] == straight.metrics[
        "history"
    ]
    assert all(
        b["seconds"] >= a["seconds"] and b["tokens"] > a["tokens"]
        for a, b in itertools.pairwise(rows)
    )
    train(tiny(tmp_path / "b", stop_after=7), progress=False)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # a killed run's leftovers
        f.write(json.dumps(rows[2]) + "\n" + '{"step": 12, "half a li')
    train(tiny(tmp_path / "b", resume=True), progress=False)
    resumed = read_rows(tmp_path / "b")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed] == clockless


def test_tensorboard_missing_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    code, err = _cli(capsys, tiny_argv(tmp_path / "run", tensorboard=str(tmp_path / "tb")))
    assert code == 2
    assert (
        "tensorboard: expected the tensorboard package (pip install tensorboard), "
        "got none installed" in err
    )
    assert not (tmp_path / "run").exists()  # refused before any work


def test_tensorboard_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny(tmp_path / "run", tensorboard=str(tmp_path / "tb")), progress=False)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    val = events.Scalars("val_accuracy")
    assert [e.step for e in val] == [3, 6, 9, 12]
    expected = [h["val_accuracy"] for h in result.metrics["history"]]
    assert [e.value for e in val] == pytest.approx(expected, rel=1e-6)
    assert {"train_loss", "seconds", "tokens", "lr"} <= set(events.Tags()["scalars"])
