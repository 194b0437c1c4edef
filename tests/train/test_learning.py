"""Small learning tests: the shipped recipe must leave the constant predictor."""

from __future__ import annotations

from pathlib import Path

import pytest

from structmat.train import TrainConfig, train


@pytest.mark.parametrize("model", ["s4d", "s4"])
def test_adding_defaults_learn(tmp_path: Path, model: str) -> None:
    # The adding task's own defaults (BatchNorm, post-norm, lr 1e-2) at a short length;
    # the constant predictor scores about 0.167.
    cfg = TrainConfig(
        task="adding",
        model=model,
        length=200,
        steps=250,
        eval_every=250,
        train_size=2000,
        test_size=256,
        threads=1,
        out=str(tmp_path),
    )
    result = train(cfg, progress=False)
    assert result.metrics["test"]["mse"] < 0.05


def test_copying_defaults_learn(tmp_path: Path) -> None:
    # The default task's recipe at a short length: chance is 1/8 per token.
    cfg = TrainConfig(
        length=128,
        steps=200,
        eval_every=200,
        train_size=2000,
        test_size=256,
        threads=1,
        out=str(tmp_path),
    )
    result = train(cfg, progress=False)
    assert result.metrics["test"]["accuracy"] > 0.7
