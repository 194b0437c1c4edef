"""File fuzzing of ``config.json`` (read on ``--resume``): every mutation gives the
saved settings back or one ``ValueError`` naming the file, never another exception."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structmat.train_config import TrainConfig, read_config_json

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
ODD_VALUES = [None, True, -1, 0, 1e308, float("nan"), "x", [], {}, "\udcff"[:0] + "é" * 3]


def _saved() -> dict[str, Any]:
    cfg = TrainConfig(task="adding", length=64, steps=5, threads=1).resolved()
    return {**asdict(cfg), "world_size": 1, "params": 10, "plan": None}


def _read(path: Path) -> None:
    """A valid TrainConfig, or one line naming the file."""
    try:
        cfg, _ = read_config_json(path)
    except ValueError as err:
        message = str(err)
        assert "\n" not in message and str(path) in message, message
        return
    assert isinstance(cfg, TrainConfig)


def test_the_saved_config_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_saved()))
    cfg, plan = read_config_json(path)
    assert asdict(cfg) == {k: v for k, v in _saved().items() if k in asdict(cfg)}
    assert plan is None


def test_truncated_at_every_length(tmp_path: Path) -> None:
    data = json.dumps(_saved()).encode()
    path = tmp_path / "config.json"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(ValueError, match=r"config\.json"):
            read_config_json(path)


@FUZZ
@given(data=st.data())
def test_flipped_bytes(tmp_path: Path, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(_saved()).encode())
    for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
        raw[i] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "config.json"
    path.write_bytes(bytes(raw))  # often invalid UTF-8 or invalid JSON
    _read(path)


@FUZZ
@given(data=st.data())
def test_missing_keys_and_odd_values(tmp_path: Path, data: st.DataObject) -> None:
    saved = _saved()
    keys = sorted(saved)
    for key in data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
        if data.draw(st.booleans()):
            del saved[key]
        else:
            saved[key] = data.draw(st.sampled_from(ODD_VALUES))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    _read(path)


@pytest.mark.parametrize(
    "text", ["", "[]", "null", "1", '"config"', "{" * 10_000, "[" * 100_000, "{}", "\xff\xfe"]
)
def test_not_a_config_object(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"resume: expected a valid run configuration"):
        read_config_json(path)


def test_a_10_mb_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**_saved(), "task": "a" * 10_000_000}))
    with pytest.raises(ValueError, match=r"config.json, got task: .*characters\)$") as err:
        read_config_json(path)
    assert len(str(err.value)) < 1000  # the value is cut, not quoted whole
