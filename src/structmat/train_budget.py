"""Time budgets: how many steps fit in ``--minutes``, from measured costs.

The run's wall time is modelled as

    setup + steps·step + evals(steps)·eval + final,
    evals(n) = ceil(n / eval_every)   (every eval_every steps and after the last one)

with ``eval`` one validation pass plus a checkpoint, and ``final`` the test set's
generation and evaluation. ``plan_steps`` takes the largest ``steps`` whose cost
fits in ``MARGIN`` of the budget (the rest absorbs noise in the measured times).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from structmat._checks import fail
from structmat.checkpoint import state_digest
from structmat.tasks import TaskData
from structmat.train_config import TrainConfig
from structmat.train_ops import World, all_reduce, evaluate, local_batch, train_step

__all__ = [
    "MARGIN",
    "Plan",
    "make_plan",
    "measure_costs",
    "median_seconds",
    "plan_run",
    "plan_steps",
]

MARGIN = 0.9
PROBE_STEPS = 3  # timed training steps (after one warm-up step)


def _evals(steps: int, eval_every: int) -> int:
    return -(-steps // eval_every)


def plan_steps(
    budget_s: float, step_s: float, eval_s: float, eval_every: int, final_s: float
) -> int:
    """The largest n with n·step_s + ceil(n / eval_every)·eval_s + final_s <= budget_s
    (0 when not even one step fits). All times in seconds, step_s > 0."""

    def cost(n: int) -> float:
        return n * step_s + _evals(n, eval_every) * eval_s + final_s

    if cost(1) > budget_s:
        return 0
    # cost(n) >= n·(step_s + eval_s/eval_every) + final_s bounds n from above; cost
    # grows with n, so a binary search between 1 and that bound finds the largest.
    lo, hi = 1, max(1, int((budget_s - final_s) / (step_s + eval_s / eval_every)) + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget_s:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Plan:
    """A planned run: the budget, the steps chosen and the costs measured (seconds)."""

    minutes: float
    steps: int
    step_seconds: float
    eval_seconds: float
    final_seconds: float
    setup_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(
    minutes: float,
    *,
    setup_s: float,
    step_s: float,
    eval_s: float,
    final_s: float,
    eval_every: int,
) -> Plan:
    """Plan the steps of a ``minutes`` budget of which ``setup_s`` is already spent.

    Raises:
        ValueError: ``minutes: expected a budget that fits one step ...`` when not
            even one step (with its evaluation and the final test) fits.
    """
    budget = MARGIN * minutes * 60.0 - setup_s
    steps = plan_steps(budget, max(step_s, 1e-9), eval_s, eval_every, final_s)
    if steps < 1:
        need = (setup_s + step_s + eval_s + final_s) / MARGIN / 60.0
        raise fail(
            "minutes",
            f"a budget that fits one step here (at least {need:.3g} min: setup "
            f"{setup_s:.2f} s, a step {step_s:.3g} s, an evaluation {eval_s:.3g} s, "
            f"the test {final_s:.3g} s)",
            repr(minutes),
        )
    return Plan(minutes, steps, step_s, eval_s, final_s, setup_s)


def median_seconds(call: Callable[[int], object], repeats: int) -> float:
    """Median wall seconds of ``call(i)`` for i = 1 .. repeats, after an untimed
    ``call(0)`` (the first call pays one-off costs: allocations, lazy init)."""
    call(0)
    times = []
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_costs(
    cfg: TrainConfig,
    world: World,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: TaskData,
    val_data: TaskData,
) -> tuple[float, float, float]:
    """Seconds of (a training step, a validation pass, a checkpoint's serialisation),
    timed on throw-away copies of the model and optimizer under a forked RNG, so the
    run itself is untouched: a planned run equals one given its steps."""
    assert cfg.batch_size is not None
    probe_net, probe_opt = copy.deepcopy((network, optimizer))
    wrapped = nn.parallel.DistributedDataParallel(probe_net) if world.size > 1 else probe_net
    cache: dict[int, torch.Tensor] = {}

    def step(i: int) -> None:
        idx = local_batch(i, cfg, world, len(train_data), cache)
        train_step(wrapped, probe_net, probe_opt, train_data, idx)

    with torch.random.fork_rng(devices=[]):
        step_s = median_seconds(step, PROBE_STEPS)
        t0 = time.perf_counter()
        evaluate(wrapped, val_data, world, cfg.batch_size)
        val_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        payload = {"model": probe_net.state_dict(), "optimizer": probe_opt.state_dict()}
        state_digest(payload)
        torch.save(payload, io.BytesIO())
        save_s = time.perf_counter() - t0
    return step_s, val_s, save_s


def plan_run(
    cfg: TrainConfig,
    world: World,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[TaskData, TaskData],
    started: float,
    val_make_s: float,
) -> Plan:
    """Plan the steps of ``cfg.minutes`` from measured costs (the slowest rank's,
    so every rank plans the same steps).

    Args:
        data: the (train, val) splits.
        started: ``time.perf_counter()`` when the run began (setup counts).
        val_make_s: seconds the validation split took to generate (the test split
            is estimated from it).
    """
    assert cfg.minutes is not None and cfg.eval_every and cfg.val_size and cfg.test_size
    step_s, val_s, save_s = measure_costs(cfg, world, network, optimizer, *data)
    final_s = (val_s + val_make_s) * cfg.test_size / cfg.val_size  # make + evaluate the test set
    costs = [time.perf_counter() - started, step_s, val_s + save_s, final_s]
    setup_s, step_s, eval_s, final_s = all_reduce(costs, world, dist.ReduceOp.MAX)
    return make_plan(
        cfg.minutes,
        setup_s=setup_s,
        step_s=step_s,
        eval_s=eval_s,
        final_s=final_s,
        eval_every=cfg.eval_every,
    )
