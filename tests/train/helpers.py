"""A tiny training run shared by the train tests: its settings live here once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from structmat.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]

# Seconds of CPU on one thread; dropout exercises the saved RNG state.
TINY: dict[str, Any] = {
    "task": "recall",
    "model": "s4d",
    "length": 17,
    "steps": 12,
    "batch_size": 8,
    "d_model": 16,
    "layers": 1,
    "eval_every": 3,
    "train_size": 40,
    "val_size": 16,
    "test_size": 16,
    "threads": 1,
    "dropout": 0.1,
}


# Hypothesis settings of the train fuzz tests: repeatable, no deadline, tmp_path allowed.
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def tiny(out: Path, **overrides: Any) -> TrainConfig:
    """TINY as a TrainConfig writing to ``out``; an override of None drops a setting."""
    options = {**TINY, "out": str(out), **overrides}
    return TrainConfig(**{k: v for k, v in options.items() if v is not None})


def tiny_argv(out: Path, **overrides: Any) -> list[str]:
    """TINY as ``structmat train`` flags (quiet) writing to ``out``."""
    options = {**TINY, "out": str(out), **overrides}
    argv = ["train", "--quiet"]
    for key, value in options.items():
        if value is None or value is False:
            continue
        if key == "prenorm":
            argv += ["--norm", "pre" if value else "post"]
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv


def spawn_cli(
    argv: list[str],
    stdout: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[str]:
    """``python -m structmat *argv`` started in the background (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "structmat", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        preexec_fn=preexec_fn,
    )


def run_cli(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m structmat *argv`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "structmat", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def numbers(metrics: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal between a straight run and an interrupted one."""
    return metrics["history"], metrics["test"], metrics["steps"]


def read_metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def read_rows(out: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
