"""Time budgets (--minutes): the plan's arithmetic, planning from measured steps,
and exact resume of a planned run (never re-planned)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from structmat.cli import main
from structmat.train import train
from structmat.train_budget import make_plan, plan_steps
from tests.train.helpers import numbers, tiny, tiny_argv


def _cost(n: int, step: float, ev: float, every: int, final: float) -> float:
    return n * step + math.ceil(n / every) * ev + final


def test_plan_steps_examples() -> None:
    assert plan_steps(10.0, 1.0, 0.0, 5, 0.0) == 10
    # 50 steps + 5 evaluations of 10 s = 100 s; a 51st step would need a 6th evaluation.
    assert plan_steps(100.0, 1.0, 10.0, 10, 0.0) == 50
    assert plan_steps(10.0, 1.0, 0.0, 1, 5.0) == 5  # the final test is paid first
    assert plan_steps(0.5, 1.0, 0.0, 1, 0.0) == 0


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    budget=st.floats(0.0, 1e4),
    step=st.floats(1e-4, 10.0),
    ev=st.floats(0.0, 100.0),
    every=st.integers(1, 500),
    final=st.floats(0.0, 100.0),
)
def test_plan_steps_is_the_largest_that_fits(
    budget: float, step: float, ev: float, every: int, final: float
) -> None:
    n = plan_steps(budget, step, ev, every, final)
    assert n >= 0
    if n:
        assert _cost(n, step, ev, every, final) <= budget
    assert _cost(n + 1, step, ev, every, final) > budget


def test_make_plan_refuses_a_budget_without_room_for_one_step() -> None:
    pattern = r"^minutes: expected a budget that fits one step here \(at least .* min: setup"
    with pytest.raises(ValueError, match=pattern):
        make_plan(1e-4, setup_s=0.5, step_s=0.1, eval_s=0.1, final_s=0.1, eval_every=10)
    plan = make_plan(1.0, setup_s=0.0, step_s=1.0, eval_s=0.0, final_s=0.0, eval_every=10)
    assert plan.steps == 54  # 90% of 60 s


def test_measured_plan_is_recorded_and_leaves_the_run_untouched(tmp_path: Path) -> None:
    """The steps are planned from real timed steps (on copies, under a forked RNG):
    the planned run equals a run given the same steps."""
    planned = train(tiny(tmp_path / "a", steps=None, minutes=0.05, eval_every=1000), progress=False)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    plan = config["plan"]
    assert plan["steps"] >= 1 and plan["step_seconds"] > 0 and plan["minutes"] == 0.05
    assert config["steps"] == plan["steps"] == planned.metrics["steps"] == planned.step
    assert planned.metrics["plan"] == plan
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["plan"] == plan and state["config"]["steps"] == plan["steps"]
    straight = train(tiny(tmp_path / "b", steps=plan["steps"], eval_every=1000), progress=False)
    assert numbers(planned.metrics) == numbers(straight.metrics)


def _fake_costs(monkeypatch: pytest.MonkeyPatch, step_s: float = 0.1) -> None:
    monkeypatch.setattr(
        "structmat.train_budget.measure_costs", lambda *a, **k: (step_s, step_s / 2, 0.0)
    )


def _no_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("a resumed run must not re-plan")

    monkeypatch.setattr("structmat.train_budget.measure_costs", refuse)


def test_stop_and_resume_under_a_budget_equals_a_straight_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_costs(monkeypatch)  # a planned step of 0.1 s: about 20 steps in 3 s
    first = train(tiny(tmp_path / "a", steps=None, minutes=0.05, stop_after=4), progress=False)
    steps = json.loads((tmp_path / "a" / "config.json").read_text())["plan"]["steps"]
    assert first.status == "stopped" and first.step == 4 and steps > 4
    _no_planning(monkeypatch)
    second = train(tiny(tmp_path / "a", steps=None, minutes=0.05, resume=True), progress=False)
    assert second.status == "finished" and second.step == steps
    straight = train(tiny(tmp_path / "b", steps=steps), progress=False)
    assert numbers(second.metrics) == numbers(straight.metrics)
    with pytest.raises(ValueError, match=r"resume: expected the settings of the checkpointed run"):
        train(tiny(tmp_path / "a", steps=None, minutes=0.06, resume=True), progress=False)


def test_killed_before_its_first_checkpoint_keeps_its_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_costs(monkeypatch)
    out = tmp_path / "a"
    done = train(tiny(out, steps=None, minutes=0.05), progress=False)
    for name in ("checkpoint.pt", "metrics.json"):
        (out / name).unlink()  # as if killed before the first checkpoint: config.json only
    _no_planning(monkeypatch)
    again = train(tiny(out, steps=None, minutes=0.05, resume=True), progress=False)
    assert again.metrics["resumed_from"] is None and numbers(again.metrics) == numbers(done.metrics)


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--minutes", "0"], r"minutes: expected a positive, finite number of minutes, got 0.0"),
        (["--minutes", "-1"], r"minutes: expected a positive, finite number of minutes, got -1.0"),
        (["--minutes", "nan"], r"minutes: expected a positive, finite number of minutes, got nan"),
        (["--minutes", "1e-7"], r"minutes: expected a budget that fits one step here"),
        (["--minutes", "1", "--steps", "5"], r"minutes: expected either a time budget or --steps"),
    ],
)
def test_cli_bad_budgets_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], pattern: str
) -> None:
    code = main([*tiny_argv(tmp_path, steps=None), *flags])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and re.search(pattern, err), err
