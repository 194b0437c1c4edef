"""Training: metrics files, exact resume, DDP with two processes, CLI error paths."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from structmat.cli import main
from structmat.train import train
from tests.train.helpers import ROOT, numbers, spawn_cli, tiny, tiny_argv


def test_writes_metrics_and_config(tmp_path: Path) -> None:
    result = train(tiny(tmp_path), progress=False)
    assert result.status == "finished"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["task"] == "recall" and metrics["model"] == "s4d" and metrics["steps"] == 12
    assert metrics["resumed_from"] is None and metrics["params"] > 0
    assert metrics["throughput_tokens_per_s"] > 0
    assert [h["step"] for h in metrics["history"]] == [3, 6, 9, 12]
    assert set(metrics["test"]) == {"accuracy", "loss"} and 0 <= metrics["test"]["accuracy"] <= 1
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["length"] == 17 and config["pool"] == "last"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 12
    assert not (tmp_path / ".lock").exists()  # released when the run ends


@pytest.mark.parametrize("model", ["s4d", "softmax"])
def test_stop_and_resume_equals_straight_run(tmp_path: Path, model: str) -> None:
    straight = train(tiny(tmp_path / "a", model=model), progress=False)
    first = train(tiny(tmp_path / "b", model=model, stop_after=5), progress=False)
    assert first.status == "stopped" and first.step == 5 and first.metrics["test"] is None
    second = train(tiny(tmp_path / "b", model=model, resume=True), progress=False)
    assert second.status == "finished" and second.metrics["resumed_from"] == 5
    assert numbers(second.metrics) == numbers(straight.metrics)


def test_regression_task_reports_mse(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, task="adding", model="linear", length=20), progress=False)
    assert set(result.metrics["test"]) == {"mse", "loss"}
    assert "val_mse" in result.metrics["history"][-1]


def test_resume_rejects_mismatched_settings(tmp_path: Path) -> None:
    train(tiny(tmp_path, stop_after=2), progress=False)
    with pytest.raises(
        ValueError, match=r"resume: expected the settings of the checkpointed run \(--d-model 16\)"
    ):
        train(tiny(tmp_path, resume=True, d_model=32), progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"resume: expected a readable checkpoint"):
        train(tiny(tmp_path, resume=True), progress=False)


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--task", "sudoku"], r"task: expected one of 'listops'"),
        (["--model", "lstm"], r"model: expected one of 's4' \| 's4d'"),
        (["--task", "copying", "--length", "5"], r"length: expected an integer >= 21, got 5"),
        (["--steps", "0"], r"steps: expected an integer >= 1, got 0"),
        (["--out", "/proc/structmat-cannot-write"], r"out: expected a writable directory"),
        (["--resume", "--out", "{tmp}/empty"], r"resume: expected a checkpoint at"),
        (["--batch-size", "x"], r"argument --batch-size: invalid int value: 'x'"),
        (["--d-state", "7"], r"d_state: expected an even state size"),
        (["--dt-min", "0.2"], r"dt_max: expected a step size >= dt_min = 0.2, got 0.1"),
        (["--ssm-lr", "-1"], r"ssm_lr: expected a positive learning rate, got -1.0"),
        (["--schedule", "linear"], r"argument --schedule: invalid choice: 'linear'"),
        (["--norm", "mid"], r"argument --norm: invalid choice: 'mid'"),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], pattern: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    code, out, err = _cli(
        capsys, ["train", *argv, "--quiet", "--train-size", "8", "--val-size", "4"]
    )
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and re.search(pattern, err), err
    assert "Traceback" not in err


def test_cli_stop_and_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = tiny_argv(tmp_path, steps=6, batch_size=4, d_model=8, train_size=16, val_size=8)
    code, out, _ = _cli(capsys, [*argv, "--stop-after", "3"])
    assert code == 0 and "stopped after step 3 of 6" in out
    code, out, _ = _cli(capsys, [*argv, "--resume"])
    assert code == 0 and "test accuracy" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["resumed_from"] == 3


def test_ddp_two_processes_match_one_process(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): each takes half of every batch; the
    averaged gradients equal the single-process ones up to rounding."""
    settings = {"model": "softmax", "steps": 6, "train_size": 32, "dropout": None}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv = ["--nproc_per_node", "2", "-m", "structmat", *tiny_argv(tmp_path / "ddp", **settings)]
    proc = subprocess.run(
        [*torchrun, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2
    single = train(tiny(tmp_path / "one", **settings), progress=False)
    for a, b in zip(ddp["history"], single.metrics["history"], strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def _plain_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its own handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _logged(out: Path) -> bool:
    log = out / "metrics.jsonl"
    return log.exists() and log.stat().st_size > 0


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = tiny_argv(out, steps=100000, batch_size=4, d_model=8, train_size=16, val_size=8)
    # The child gets Ctrl-C as a shell's foreground job would: SIGINT at its default and
    # unblocked, whatever this test process inherited or a library here changed.
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    proc = spawn_cli(argv, env={**os.environ, "PYTHONFAULTHANDLER": "1"}, preexec_fn=_plain_sigint)
    deadline = time.monotonic() + 120
    while not (out / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # config.json is written just before the training loop starts
    # While it runs, a second run on the same --out is refused, naming the first.
    code, _, err = _cli(capsys, argv)
    assert code == 2 and err.count("\n") == 1, err
    assert (
        f"out: expected a directory no other run is using, got {out}, in use by PID {proc.pid}"
        in err
    )
    # Ctrl-C once the loop runs (a first evaluation is logged), not during its setup.
    while not _logged(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread
        proc.send_signal(signal.SIGABRT)
        _, stderr = proc.communicate(timeout=60)
        pytest.fail(
            f"no exit within 120 s of SIGINT (this process's SIGINT handler and blocked "
            f"signals: {inherited}); the child's threads:\n{stderr[-8000:]}"
        )
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] > 0
    assert json.loads((out / "metrics.json").read_text())["test"] is None
