"""Training loop: a sequence model on a locally generated task, with evaluation,
atomic verified checkpoints, exact resume, time budgets and data parallelism (DDP).

Determinism: the model is initialised from ``seed``; the batch of step ``s`` is a
fixed function of (seed, s) (positions s·B .. (s+1)·B of an endless stream of
seeded per-epoch permutations), and the checkpoint carries model, optimizer,
scheduler, the run state (``RunState``: step, rows, the logging interval's sums)
and the torch RNG state (dropout) of every rank. So a run stopped with
``stop_after`` (or killed) and resumed gives exactly the metrics of a straight run.

Files in ``out`` (rank 0 writes them, atomically): ``.lock`` (one run per
directory), ``config.json`` (resolved settings, the time-budget plan),
``checkpoint.pt``, ``metrics.jsonl`` (one row per evaluation) and ``metrics.json``.
``resume`` continues from ``checkpoint.pt``; a run killed before its first
checkpoint (its lock or config.json is there, no checkpoint and no metrics.json)
starts again from step 0 with the settings and time-budget plan it had.

DDP: under ``torchrun`` (``WORLD_SIZE`` > 1) each process joins a ``gloo`` group
and takes its slice of every global batch and of the evaluation sets.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from structmat._checks import fail
from structmat.checkpoint import load_checkpoint, save_checkpoint, write_or_fail
from structmat.models import SequenceModel
from structmat.run_lock import acquire_lock
from structmat.run_log import METRICS_LOG, RunLog, summary_writer_class
from structmat.tasks import TaskData, make_dataset
from structmat.train_budget import plan_run
from structmat.train_config import TrainConfig, config_from_dict, read_config_json, same_run
from structmat.train_ops import (
    World,
    all_sum,
    evaluate,
    init_world,
    local_batch,
    lr_schedule,
    make_optimizer,
    peak_rss_mb,
    together,
    train_step,
)
from structmat.train_ops import build_model as _build_model  # benchmarks import it from here
from structmat.train_state import RunState

__all__ = ["TrainConfig", "TrainResult", "train"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.json"


@dataclass
class TrainResult:
    """What ``train`` returns: the metrics written to metrics.json, and how it ended."""

    metrics: dict[str, Any]
    status: str  # "finished" | "stopped" (stop_after) | "interrupted" (Ctrl-C)
    step: int


# --- setup ------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the loop works on."""

    cfg: TrainConfig  # resolved, steps planned
    world: World
    out_dir: Path
    train_data: TaskData
    val_data: TaskData
    network: SequenceModel
    wrapped: nn.Module  # ``network``, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    state: RunState
    plan: dict[str, Any] | None
    params: int
    resumed_from: int | None
    log: RunLog | None  # rank 0 only
    perm_cache: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.train_data.info.metric


def _write_json(path: Path, obj: Any, what: str) -> None:
    data = (json.dumps(obj, indent=2) + "\n").encode()
    write_or_fail(path, lambda f: f.write(data), what)


def _claim(out_dir: Path, world: World, stack: contextlib.ExitStack) -> bool:
    """Rank 0 creates ``out_dir``, takes its lock and removes temporary files that
    killed writes left. Returns whether a dead run's lock was there (on every rank)."""
    error, stale = None, False
    if world.main:
        try:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise fail("out", "a writable directory", f"{out_dir} ({err.strerror})") from err
            lock = acquire_lock(out_dir)
            stack.callback(lock.release)
            stale = lock.stale
            for name in (CHECKPOINT, CONFIG, METRICS, METRICS_LOG):
                for tmp in out_dir.glob(f".{name}.*.tmp"):  # atomic_write's temporary names
                    tmp.unlink(missing_ok=True)
        except ValueError as err:
            error = err
    together(world, error, "take the run directory")
    return bool(all_sum([float(stale)], world)[0])


def _start_point(
    cfg: TrainConfig, out_dir: Path, stale_lock: bool
) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any] | None]:
    """Where the run starts: (settings, checkpoint or None, time-budget plan or None)."""
    if not cfg.resume:
        return cfg, None, None
    path = out_dir / CHECKPOINT
    if path.is_file():
        saved = load_checkpoint(path)
        cfg = same_run(
            config_from_dict(saved.get("config"), str(path)), cfg, "the checkpointed run"
        )
        return cfg, saved, saved.get("plan")
    if (out_dir / METRICS).is_file():
        raise fail("resume", f"a checkpoint at {path}", f"none, beside the {METRICS} of a run")
    if (out_dir / CONFIG).is_file():  # killed before its first checkpoint: from step 0
        saved_cfg, plan = read_config_json(out_dir / CONFIG)
        return same_run(saved_cfg, cfg, f"the run started in {out_dir}"), None, plan
    if stale_lock:  # killed before writing anything but its lock
        return cfg, None, None
    raise fail("resume", f"a checkpoint at {path}", "no such file (run without --resume first)")


def _restore(
    saved: dict[str, Any],
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    world: World,
    source: Path,
) -> RunState:
    try:
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"][world.rank])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        why = (str(err).splitlines() or [repr(err)])[0][:160]
        raise fail("resume", f"a checkpoint of this model at {source}", why) from err
    return RunState.from_checkpoint(saved, str(source))


def _data(cfg: TrainConfig) -> tuple[TaskData, TaskData, float]:
    """The train and val splits, and the seconds the val split took to make."""
    assert cfg.length is not None and cfg.train_size is not None and cfg.val_size is not None
    train_data = make_dataset(cfg.task, "train", cfg.train_size, cfg.length, cfg.seed)
    t0 = time.perf_counter()
    val_data = make_dataset(cfg.task, "val", cfg.val_size, cfg.length, cfg.seed)
    return train_data, val_data, time.perf_counter() - t0


def _setup(cfg: TrainConfig, world: World, started: float, stack: contextlib.ExitStack) -> _Run:
    """Claim the directory, find the start point, build data, model, optimizer and
    (after planning a time budget) the schedule; restore a checkpoint; write config.json."""
    assert cfg.batch_size is not None
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    elif world.size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.size))
    if cfg.batch_size % world.size:
        raise fail("batch_size", f"a multiple of the {world.size} processes", str(cfg.batch_size))
    out_dir = Path(cfg.out)
    cfg, saved, plan = _start_point(cfg, out_dir, _claim(out_dir, world, stack))
    if world.size > 1:
        dist.barrier()  # every rank has read the directory before rank 0 writes to it
    train_data, val_data, val_make_s = _data(cfg)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    network = _build_model(cfg, train_data)
    optimizer = make_optimizer(network, cfg)
    torch.manual_seed(cfg.seed * 31 + 1 + world.rank)  # dropout stream, per rank
    if cfg.minutes is not None and plan is None:
        data = (train_data, val_data)
        plan = plan_run(cfg, world, network, optimizer, data, started, val_make_s).to_dict()
        cfg = replace(cfg, steps=plan["steps"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(cfg))
    state = RunState()
    if saved is not None:
        state = _restore(saved, network, optimizer, scheduler, world, out_dir / CHECKPOINT)
    params = sum(p.numel() for p in network.parameters())
    log = None
    if world.main:
        config = {**asdict(cfg), "world_size": world.size, "params": params, "plan": plan}
        _write_json(out_dir / CONFIG, config, "config")
        log = RunLog(out_dir, state.rows, cfg.tensorboard, state.step)
        stack.callback(log.close)
    wrapped = nn.parallel.DistributedDataParallel(network) if world.size > 1 else network
    resumed_from = state.step if saved is not None else None
    return _Run(
        cfg, world, out_dir, train_data, val_data, network, wrapped, optimizer, scheduler,
        state, plan, params, resumed_from, log,
    )  # fmt: skip


# --- the loop ----------------------------------------------------------------------


def _checkpoint(run: _Run) -> None:
    rng = torch.get_rng_state()
    states = [rng]
    if run.world.size > 1:
        states = [torch.empty_like(rng) for _ in range(run.world.size)]
        dist.all_gather(states, rng)
    error = None
    if run.world.main:
        state = {
            "config": asdict(run.cfg),
            "plan": run.plan,
            "model": run.network.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": states,
            **run.state.to_checkpoint(),
        }
        try:
            save_checkpoint(run.out_dir / CHECKPOINT, state)
        except ValueError as err:
            error = err
    together(run.world, error, "write the checkpoint")


def _advance(run: _Run) -> tuple[float, float]:
    """One optimizer step; returns the global batch's (loss, score) sums."""
    cfg, world, state = run.cfg, run.world, run.state
    assert cfg.batch_size is not None
    t0 = time.perf_counter()
    idx = local_batch(state.step, cfg, world, len(run.train_data), run.perm_cache)
    loss, score, tokens = train_step(run.wrapped, run.network, run.optimizer, run.train_data, idx)
    run.scheduler.step()
    state.step += 1
    state.seconds += time.perf_counter() - t0
    local = cfg.batch_size // world.size
    loss_sum, score_sum, tokens = all_sum([loss.item() * local, score.item(), tokens], world)
    state.tokens += tokens
    state.interval.add(loss_sum, score_sum, cfg.batch_size)
    return loss_sum, score_sum


def __evaluate_and_save(run: _Run) -> None:
    """Validate, record the row, checkpoint, then log the row (a row in
    metrics.jsonl is always in the checkpoint too)."""
    assert run.cfg.batch_size is not None
    val = evaluate(run.wrapped, run.val_data, run.world, run.cfg.batch_size)
    row = run.state.record(run.metric, float(run.scheduler.get_last_lr()[0]), val)
    _checkpoint(run)
    if run.log is not None:
        run.log.append(row)


def _loop(run: _Run, progress: bool) -> str:
    """Train until ``steps`` or ``stop_after``; "finished" or "interrupted" (Ctrl-C)."""
    cfg, state = run.cfg, run.state
    assert cfg.steps is not None and cfg.batch_size is not None and cfg.eval_every is not None
    stop_at = cfg.steps if cfg.stop_after is None else min(cfg.steps, state.step + cfg.stop_after)
    bar = tqdm(
        total=cfg.steps,
        initial=state.step,
        disable=not (progress and run.world.main),
        desc=f"{cfg.model} on {cfg.task}",
        dynamic_ncols=True,
    )
    run.wrapped.train()
    try:
        while state.step < stop_at:
            loss_sum, score_sum = _advance(run)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_sum / cfg.batch_size:.3f}",
                **{run.metric[:3]: f"{score_sum / cfg.batch_size:.3f}"},
                tok_s=f"{state.tokens / state.seconds:.0f}",
            )
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                __evaluate_and_save(run)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        bar.close()
    return "finished"


def _finish(run: _Run, status: str) -> TrainResult:
    """Test a finished run, checkpoint, write metrics.json."""
    cfg, state = run.cfg, run.state
    assert cfg.steps is not None and cfg.batch_size is not None and cfg.test_size is not None
    test = None
    if status == "finished" and state.step >= cfg.steps:
        test_data = make_dataset(cfg.task, "test", cfg.test_size, cfg.length or 0, cfg.seed)
        result = evaluate(run.wrapped, test_data, run.world, cfg.batch_size)
        test = {run.metric: result[run.metric], "loss": result["loss"]}
    elif status != "interrupted":
        status = "stopped"
    _checkpoint(run)
    metrics = {
        "task": cfg.task,
        "model": cfg.model,
        "length": cfg.length,
        "steps": state.step,
        "total_steps": cfg.steps,
        "resumed_from": run.resumed_from,
        "params": run.params,
        "world_size": run.world.size,
        "throughput_tokens_per_s": state.tokens / state.seconds if state.seconds else None,
        "peak_rss_mb": peak_rss_mb(),
        "plan": run.plan,
        "history": state.history,
        "test": test,
    }
    if run.world.main:
        _write_json(run.out_dir / METRICS, metrics, "metrics")
    return TrainResult(metrics, status, state.step)


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train ``config.model`` on ``config.task``; write config.json, checkpoints,
    metrics.jsonl and metrics.json under ``config.out`` (rank 0 only).

    Args:
        config: the run's settings (``TrainConfig``; unset ones are resolved).
        progress: show a tqdm progress bar (rank 0).

    Returns:
        TrainResult with the metrics (also in metrics.json) and how the run ended.

    Raises:
        ValueError: bad settings, an unwritable or busy output directory, a time
            budget too small for one step, a checkpoint or config.json that is
            corrupt or does not match the settings, a failed write (disk full).
    """
    started = time.perf_counter()
    config.validate()
    cfg = config.resolved()
    cfg.validate()  # the task's and mixer's defaults too
    if cfg.tensorboard is not None:
        summary_writer_class()  # fail before any work when tensorboard is missing
    world = init_world()
    with contextlib.ExitStack() as stack:
        if world.size > 1:
            stack.callback(dist.destroy_process_group)
        run = _setup(cfg, world, started, stack)
        return _finish(run, _loop(run, progress))
