"""TrainConfig: resolution order (explicit > task-mixer > task > global), the new
model settings reaching the model, and reading a saved run's config.json."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from structmat.tasks import TASKS, TaskSpec
from structmat.train import TrainConfig, _build_model, train
from structmat.train_config import (
    DEFAULTABLE,
    GLOBAL_DEFAULTS,
    IDENTITY,
    config_from_dict,
    default_settings,
    read_config_json,
)
from structmat.train_ops import make_optimizer
from tests.train.helpers import FUZZ, tiny


def test_resolution_order_explicit_task_mixer_task_global(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TaskSpec(
        TASKS["recall"].make,
        default_length=33,
        pool="mean",
        defaults={"lr": 1.0, "steps": 7, "d_model": 24, "layers": 3},
        mixer_defaults={"s4d": {"lr": 2.0, "d_model": 32, "pool": "last"}},
    )
    monkeypatch.setitem(TASKS, "recall", spec)
    cfg = TrainConfig(task="recall", model="s4d", d_model=40).resolved()
    assert cfg.d_model == 40  # explicit beats the task-mixer default
    assert cfg.lr == 2.0 and cfg.pool == "last"  # task-mixer beats task
    assert cfg.steps == 7 and cfg.layers == 3 and cfg.length == 33  # task beats global
    assert cfg.batch_size == GLOBAL_DEFAULTS["batch_size"] and cfg.warmup == 20  # global
    assert cfg.ssm_lr == 1e-3  # derived from the resolved lr: min(lr, 1e-3)
    other = TrainConfig(task="recall", model="softmax").resolved()
    assert other.lr == 1.0 and other.d_model == 24 and other.pool == "mean"
    assert default_settings("recall", "s4d")["lr"] == 2.0
    # An explicit value equal to a default still counts as explicit.
    assert TrainConfig(task="recall", model="s4d", lr=5e-3).resolved().lr == 5e-3


def test_specs_name_only_trainconfig_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, spec in TASKS.items():
        keys = set(spec.defaults) | {k for v in spec.mixer_defaults.values() for k in v}
        assert keys <= set(DEFAULTABLE), name
    bad = TaskSpec(TASKS["recall"].make, 33, "last", defaults={"learning_rate": 1.0})
    monkeypatch.setitem(TASKS, "recall", bad)
    with pytest.raises(ValueError, match=r"TASKS\['recall'\]: expected defaults naming settings"):
        TrainConfig(task="recall").resolved()
    with pytest.raises(TypeError):
        bad.defaults["lr"] = 1.0  # type: ignore[index]  # specs are read-only


def test_the_default_run_resolves_to_the_copying_recipe() -> None:
    # global defaults, with copying's own (TASKS["copying"].defaults) on top
    expected = {
        "length": 512,
        "steps": 600,
        "batch_size": 32,
        "lr": 1e-2,
        "ssm_lr": 5e-3,
        "weight_decay": 0.01,
        "warmup": 20,
        "schedule": "cosine",
        "d_model": 64,
        "layers": 2,
        "d_state": 64,
        "dt_min": 1e-3,
        "dt_max": 1e-1,
        "prenorm": False,
        "normalization": "batch",
        "dropout": 0.0,
        "pool": "last",
        "eval_every": 100,
        "train_size": 4000,
        "val_size": 256,
        "test_size": 512,
    }
    cfg = TrainConfig().resolved()
    assert {k: getattr(cfg, k) for k in expected} == expected
    lengths = {name: TrainConfig(task=name).resolved().length for name in TASKS}
    pools = {name: TrainConfig(task=name).resolved().pool for name in TASKS}
    assert lengths == {
        "listops": 1024,
        "adding": 1000,
        "copying": 512,
        "selective-copying": 512,
        "recall": 257,
        "digits": 64,
    }
    assert {n for n, p in pools.items() if p == "last"} == {
        "copying",
        "selective-copying",
        "recall",
    }


def test_minutes_with_steps_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^minutes: expected either a time budget or --steps"):
        TrainConfig(minutes=1.0, steps=10).resolved()
    assert TrainConfig(minutes=1.0).resolved().steps is None  # planned by train()


def test_new_settings_reach_the_model_and_optimizer(tmp_path: Path) -> None:
    from structmat.ssm import S4
    from structmat.tasks import make_dataset

    cfg = tiny(tmp_path, d_state=8, dt_min=0.01, dt_max=0.05, prenorm=False, ssm_lr=3e-4)
    cfg = cfg.resolved()
    network = _build_model(cfg, make_dataset("recall", "val", 2, 17))
    layers = [m for m in network.modules() if isinstance(m, S4)]
    assert layers and all(m.d_state == 8 for m in layers)
    for m in layers:
        dt = m.log_dt.detach().exp()
        assert bool(((dt >= 0.01 * (1 - 1e-6)) & (dt <= 0.05 * (1 + 1e-6))).all())
    assert all(not block.prenorm for block in network.blocks)
    lrs = sorted(g["lr"] for g in make_optimizer(network, cfg).param_groups)
    assert lrs == [3e-4, cfg.lr]


def test_constant_schedule_holds_the_lr_after_warmup(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, schedule="constant", warmup=2, lr=4e-3), progress=False)
    assert {h["lr"] for h in result.metrics["history"]} == {4e-3}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["schedule"] == "constant" and config["d_state"] == 64 and config["prenorm"]


# --- reading config.json -------------------------------------------------------------


def _saved(tmp_path: Path) -> dict[str, Any]:
    return {**asdict(tiny(tmp_path).resolved()), "world_size": 1, "params": 1, "plan": None}


def test_config_json_round_trip_and_legacy_fill(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    cfg, plan = read_config_json(path)
    assert asdict(cfg) == {k: v for k, v in saved.items() if k in asdict(cfg)} and plan is None
    # A run from before d_state, dt_*, prenorm, schedule, minutes and ssm_lr existed.
    legacy = {k: v for k, v in saved.items() if k not in ("d_state", "dt_min", "dt_max")}
    legacy = {k: v for k, v in legacy.items() if k not in ("prenorm", "schedule", "ssm_lr")}
    old = config_from_dict({k: v for k, v in legacy.items() if k != "minutes"}, "old")
    assert (old.d_state, old.dt_min, old.dt_max, old.prenorm) == (64, 1e-3, 1e-1, True)
    assert old.schedule == "cosine" and old.ssm_lr == 1e-3 and old.minutes is None


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{", r"got unreadable JSON \(Expecting property name"),
        ("", r"got unreadable JSON"),
        ("[1, 2]", r"got a JSON list instead of an object"),
        ("[" * 100_000, r"got unreadable JSON"),
        ('{"task": "recall"}', r"got no 'model' setting"),
    ],
)
def test_config_json_errors_are_one_line(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(
        ValueError, match=rf"^resume: expected a valid run configuration in .*{pattern}"
    ):
        read_config_json(path)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("steps", "ten", r"'steps' = 'ten' \(wanted int\)"),
        ("steps", 2.5, r"'steps' = 2.5 \(wanted int\)"),
        ("lr", True, r"'lr' = True \(wanted float\)"),
        ("prenorm", 1, r"'prenorm' = 1 \(wanted bool\)"),
        ("lr", None, r"'lr' = None \(wanted float\)"),
        ("lr", -1, r"lr: expected a positive learning rate, got -1.0"),
        ("task", "sudoku", r"task: expected one of"),
        ("plan", [1], r"'plan' = \[1\] \(wanted an object or null\)"),
        ("minutes", 2.0, r"no 'plan' for its --minutes budget"),
    ],
)
def test_config_json_bad_values(tmp_path: Path, key: str, value: Any, pattern: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**_saved(tmp_path), key: value}))
    with pytest.raises(ValueError, match=pattern):
        read_config_json(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _check_read(path: Path) -> None:
    """A clean one-line ValueError, or a config that validates."""
    try:
        cfg, _ = read_config_json(path)
    except ValueError as err:
        assert str(err).startswith("resume: expected a valid run configuration in ")
        return
    cfg.validate()


@FUZZ
@given(data=st.binary(max_size=64))
def test_fuzz_config_json_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(data)
    _check_read(path)


@FUZZ
@given(obj=_JSON)
def test_fuzz_config_json_any_json(tmp_path: Path, obj: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(obj))
    _check_read(path)


@FUZZ
@given(
    drop=st.sets(st.sampled_from(sorted(IDENTITY + DEFAULTABLE)), max_size=4),
    change=st.dictionaries(st.sampled_from(sorted(IDENTITY + DEFAULTABLE)), _JSON, max_size=3),
)
def test_fuzz_config_json_missing_and_mistyped(
    tmp_path: Path, drop: set[str], change: dict[str, Any]
) -> None:
    saved = {k: v for k, v in _saved(tmp_path).items() if k not in drop}
    saved.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    _check_read(path)


def test_nan_and_infinite_settings_are_rejected() -> None:
    for name in ("lr", "minutes", "dt_min", "ssm_lr"):
        for value in (math.nan, math.inf, 0.0, -1.0):
            with pytest.raises(ValueError, match=rf"^{name}: expected a positive"):
                TrainConfig(**{name: value}).validate()
