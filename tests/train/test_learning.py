"""Small learning tests: the shipped recipe must leave the constant predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from structmat.train import TrainConfig, TrainResult, train


def _train_short(out: Path, steps: int, **settings: Any) -> TrainResult:
    """A run of ``steps`` steps, evaluated once at the end, on 2000 training and 256 test
    examples, one thread, with the task's own defaults for everything else."""
    cfg = TrainConfig(
        steps=steps,
        eval_every=steps,
        train_size=2000,
        test_size=256,
        threads=1,
        out=str(out),
        **settings,
    )
    return train(cfg, progress=False)


@pytest.mark.parametrize("model", ["s4d", "s4"])
def test_adding_defaults_learn(tmp_path: Path, model: str) -> None:
    # The adding task's own defaults (BatchNorm, post-norm, lr 1e-2) at a short length;
    # the constant predictor scores about 0.167.
    result = _train_short(tmp_path, task="adding", model=model, length=200, steps=250)
    assert result.metrics["test"]["mse"] < 0.05


def test_copying_defaults_learn(tmp_path: Path) -> None:
    # The default task's recipe at a short length: chance is 1/8 per token.
    result = _train_short(tmp_path, length=128, steps=200)
    assert result.metrics["test"]["accuracy"] > 0.7
