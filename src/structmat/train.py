"""Training loop: a sequence model on a locally generated task, with evaluation,
atomic checkpoints, exact resume and multi-process data parallelism (DDP).

Determinism: the model is initialised from ``seed``; the batch of step ``s`` is a
fixed function of (seed, s) (positions s·B .. (s+1)·B of an endless stream of
seeded per-epoch permutations), and the checkpoint carries model, optimizer,
scheduler, the step, the torch RNG state (dropout) of every rank and the running
sums of the current logging interval. So a run stopped with ``stop_after`` and
resumed gives exactly the metrics of a straight run on the CPU.

DDP: under ``torchrun`` (``WORLD_SIZE`` > 1) each process joins a ``gloo`` group,
takes its slice of every global batch and of the evaluation sets, and rank 0
alone writes files and shows progress.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from structmat._checks import check_choice, check_positive_int, fail
from structmat._io import atomic_write, write_json
from structmat.models import MIXERS, SequenceClassifier, SequenceModel, SequenceRegressor
from structmat.tasks import TASKS, TaskData, make_dataset

__all__ = ["TrainConfig", "TrainResult", "train"]

CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1

# Default length per task when --length is not given.
DEFAULT_LENGTH = {
    "listops": 512,
    "adding": 1000,
    "copying": 512,
    "selective-copying": 512,
    "recall": 257,
    "digits": 64,
}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` and in checkpoints."""

    # Defaults: S4D on copying at L = 512 learns well above chance (12.5%) in ~3 min on 2 cores.
    task: str = "copying"
    model: str = "s4d"
    length: int | None = None
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup: int = 20
    d_model: int = 64
    layers: int = 2
    dropout: float = 0.0
    pool: str | None = None  # None: "last" for copying tasks, else "mean"
    seed: int = 0
    eval_every: int = 100
    train_size: int = 4000
    val_size: int = 256
    test_size: int = 512
    out: str = "runs/latest"
    resume: bool = False
    stop_after: int | None = None
    threads: int | None = None

    # Settings that must match between a checkpoint and a resumed run.
    IDENTITY = (
        "task",
        "model",
        "length",
        "steps",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup",
        "d_model",
        "layers",
        "dropout",
        "pool",
        "seed",
        "train_size",
    )

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check_choice(self.task, "task", list(TASKS))
        check_choice(self.model, "model", list(MIXERS))
        for name in (
            "steps",
            "batch_size",
            "d_model",
            "layers",
            "eval_every",
            "train_size",
            "val_size",
            "test_size",
        ):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.warmup, "warmup", minimum=0)
        if self.length is not None:
            check_positive_int(self.length, "length")
        if self.stop_after is not None:
            check_positive_int(self.stop_after, "stop_after")
        if self.threads is not None:
            check_positive_int(self.threads, "threads")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise fail("lr", "a positive learning rate", repr(self.lr))
        if not self.weight_decay >= 0:
            raise fail("weight_decay", "a number >= 0", repr(self.weight_decay))
        if not 0.0 <= self.dropout < 1.0:
            raise fail("dropout", "a probability in [0, 1)", repr(self.dropout))
        if self.pool is not None:
            check_choice(self.pool, "pool", ["mean", "last"])

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in (length, pool)."""
        out = TrainConfig(**asdict(self))
        if out.length is None:
            out.length = DEFAULT_LENGTH[out.task]
        if out.pool is None:
            out.pool = "last" if out.task in ("copying", "selective-copying", "recall") else "mean"
        return out


@dataclass
class TrainResult:
    """What ``train`` returns: the metrics written to metrics.json, and how it ended."""

    metrics: dict[str, Any]
    status: str  # "finished" | "stopped" (stop_after) | "interrupted" (Ctrl-C)
    step: int


# --- distributed helpers ----------------------------------------------------------


@dataclass
class _World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_world() -> _World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return _World(dist.get_rank(), dist.get_world_size())


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux/macOS), or None."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


def _all_sum(values: list[float], world: _World) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if world.size > 1:
        dist.all_reduce(t)
    return t.tolist()


# --- data ----------------------------------------------------------------------


def _batch_indices(
    step: int, batch: int, n: int, seed: int, cache: dict[int, torch.Tensor]
) -> torch.Tensor:
    """Indices of the global batch of ``step``: positions step·batch .. +batch of the
    endless concatenation of per-epoch seeded permutations of range(n)."""
    positions = torch.arange(step * batch, (step + 1) * batch)
    epochs = positions // n
    out = torch.empty(batch, dtype=torch.int64)
    for epoch in epochs.unique().tolist():
        if epoch not in cache:
            gen = torch.Generator().manual_seed(seed * 7919 + 104729 + epoch)
            cache.clear()  # keep one epoch's permutation at a time
            cache[epoch] = torch.randperm(n, generator=gen)
        sel = epochs == epoch
        out[sel] = cache[epoch][positions[sel] % n]
    return out


def _build_model(cfg: TrainConfig, data: TaskData) -> SequenceModel:
    info = data.info
    common: dict[str, Any] = {
        "d_model": cfg.d_model,
        "n_layers": cfg.layers,
        "mixer": cfg.model,
        "dropout": cfg.dropout,
        "pool": cfg.pool,
        "num_targets": info.num_targets,
        "length": info.length,
        "causal": cfg.pool == "last",
    }
    if info.vocab_size is not None:
        common["num_tokens"] = info.vocab_size
    else:
        common["input_dim"] = info.input_dim
    if info.metric == "mse":
        return SequenceRegressor(1, **common)
    assert info.num_classes is not None
    return SequenceClassifier(info.num_classes, **common)


def _loss_and_score(
    out: torch.Tensor, target: torch.Tensor, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, sum of per-sample scores: correct fraction or squared error)."""
    if metric == "mse":
        err = (out - target).square()
        return err.mean(), err.detach().sum()
    logits = out.reshape(-1, out.shape[-1])  # (B·K, C)
    loss = nn.functional.cross_entropy(logits, target.reshape(-1))
    correct = (out.detach().argmax(-1) == target).to(torch.float64)  # (B,) or (B, K)
    per_sample = correct.mean(-1) if correct.ndim > 1 else correct
    return loss, per_sample.sum()


@torch.no_grad()
def _evaluate(model: nn.Module, data: TaskData, world: _World, batch: int) -> dict[str, float]:
    """Loss and metric over the whole split; each rank takes every size-th batch."""
    was_training = model.training
    model.eval()
    metric = data.info.metric
    loss_sum = score_sum = count = 0.0
    starts = list(range(0, len(data), batch))[world.rank :: world.size]
    for start in starts:
        idx = slice(start, start + batch)
        out = model(data.inputs[idx], data.mask(idx))
        loss, score = _loss_and_score(out, data.targets[idx], metric)
        n = out.shape[0]
        loss_sum += loss.item() * n
        score_sum += float(score)
        count += n
    loss_sum, score_sum, count = _all_sum([loss_sum, score_sum, count], world)
    model.train(was_training)
    return {"loss": loss_sum / count, metric: score_sum / count}


# --- checkpoints ---------------------------------------------------------------------


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise fail("resume", f"a checkpoint at {path}", "no such file (run without --resume first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or corrupted file
        raise fail(
            "resume", f"a readable checkpoint at {path}", f"an unreadable file ({err})"
        ) from err
    if state.get("format_version") != FORMAT_VERSION:
        raise fail(
            "resume", f"checkpoint format {FORMAT_VERSION}", repr(state.get("format_version"))
        )
    saved = state["config"]
    for key in TrainConfig.IDENTITY:
        if saved.get(key) != getattr(cfg, key):
            flag = key.replace("_", "-")
            raise fail(
                "resume",
                f"the settings of the checkpointed run (--{flag} {saved.get(key)})",
                f"--{flag} {getattr(cfg, key)}",
            )
    return state


def _schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0 over ``steps``: depends on steps alone."""

    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; S4 parameters get their own group (smaller lr, no weight decay, S4 App. D.2)."""
    if MIXERS[cfg.model].kind == "ssm":
        from structmat.ssm import ssm_parameter_groups

        groups = ssm_parameter_groups(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


# --- the loop ----------------------------------------------------------------------


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train ``config.model`` on ``config.task``; write config.json, checkpoints and
    metrics.json under ``config.out`` (rank 0 only).

    Args:
        config: the run's settings (``TrainConfig``).
        progress: show a tqdm progress bar (rank 0).

    Returns:
        TrainResult with the metrics (also in metrics.json) and how the run ended.

    Raises:
        ValueError: bad settings, an unwritable output directory, or a checkpoint
            that does not match the settings.
    """
    config.validate()
    cfg = config.resolved()
    world = _init_world()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    elif world.size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.size))
    if cfg.batch_size % world.size:
        raise fail("batch_size", f"a multiple of the {world.size} processes", str(cfg.batch_size))
    out_dir = Path(cfg.out)
    if world.main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            probe = out_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise fail("out", "a writable directory", f"{cfg.out} ({err.strerror})") from err

    assert cfg.length is not None
    train_data = make_dataset(cfg.task, "train", cfg.train_size, cfg.length, cfg.seed)
    val_data = make_dataset(cfg.task, "val", cfg.val_size, cfg.length, cfg.seed)
    metric = train_data.info.metric

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = _build_model(cfg, train_data)
    params = sum(p.numel() for p in model.parameters())
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    torch.manual_seed(cfg.seed * 31 + 1 + world.rank)  # dropout stream, per rank

    history: list[dict[str, Any]] = []
    step, resumed_from = 0, None
    interval = {"loss": 0.0, "score": 0.0, "count": 0.0, "steps": 0.0}
    train_seconds, train_tokens = 0.0, 0.0
    if cfg.resume:
        state = _load_checkpoint(out_dir / CHECKPOINT, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][world.rank])
        step = resumed_from = int(state["step"])
        history = list(state["history"])
        interval = dict(state["interval"])
        train_seconds, train_tokens = float(state["train_seconds"]), float(state["train_tokens"])

    if world.main:
        write_json(
            out_dir / "config.json", {**asdict(cfg), "world_size": world.size, "params": params}
        )
    net: nn.Module = model
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(model)

    def checkpoint() -> None:
        rng = torch.get_rng_state()
        states = [rng]
        if world.size > 1:
            states = [torch.empty_like(rng) for _ in range(world.size)]
            dist.all_gather(states, rng)
        if world.main:
            _save_checkpoint(
                out_dir / CHECKPOINT,
                {
                    "format_version": FORMAT_VERSION,
                    "config": asdict(cfg),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": states,
                    "step": step,
                    "history": history,
                    "interval": interval,
                    "train_seconds": train_seconds,
                    "train_tokens": train_tokens,
                },
            )

    def metrics(test: dict[str, float] | None) -> dict[str, Any]:
        return {
            "task": cfg.task,
            "model": cfg.model,
            "length": cfg.length,
            "steps": step,
            "total_steps": cfg.steps,
            "resumed_from": resumed_from,
            "params": params,
            "world_size": world.size,
            "throughput_tokens_per_s": train_tokens / train_seconds if train_seconds else None,
            "peak_rss_mb": _peak_rss_mb(),
            "history": history,
            "test": test,
        }

    perm_cache: dict[int, torch.Tensor] = {}
    local = cfg.batch_size // world.size
    stop_at = cfg.steps if cfg.stop_after is None else min(cfg.steps, step + cfg.stop_after)
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not (progress and world.main),
        desc=f"{cfg.model} on {cfg.task}",
        dynamic_ncols=True,
    )
    status = "finished"
    net.train()
    try:
        while step < stop_at:
            t0 = time.perf_counter()
            idx = _batch_indices(step, cfg.batch_size, len(train_data), cfg.seed, perm_cache)
            idx = idx[world.rank * local : (world.rank + 1) * local]
            mask = train_data.mask(idx)
            out = net(train_data.inputs[idx], mask)
            loss, score = _loss_and_score(out, train_data.targets[idx], metric)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            train_seconds += time.perf_counter() - t0
            loss_sum, score_sum, tokens = _all_sum(
                [loss.item() * local, score.item(), float(mask.sum())], world
            )
            train_tokens += tokens
            interval["loss"] += loss_sum
            interval["score"] += score_sum
            interval["count"] += cfg.batch_size
            interval["steps"] += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_sum / cfg.batch_size:.3f}",
                **{metric[:3]: f"{score_sum / cfg.batch_size:.3f}"},
                tok_s=f"{train_tokens / train_seconds:.0f}",
            )
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val = _evaluate(net, val_data, world, cfg.batch_size)
                history.append(
                    {
                        "step": step,
                        "lr": scheduler.get_last_lr()[0],
                        "train_loss": interval["loss"] / interval["count"],
                        f"train_{metric}": interval["score"] / interval["count"],
                        "val_loss": val["loss"],
                        f"val_{metric}": val[metric],
                    }
                )
                interval = {"loss": 0.0, "score": 0.0, "count": 0.0, "steps": 0.0}
                checkpoint()
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()

    test = None
    if step >= cfg.steps and status == "finished":
        test_data = make_dataset(cfg.task, "test", cfg.test_size, cfg.length, cfg.seed)
        result = _evaluate(net, test_data, world, cfg.batch_size)
        test = {metric: result[metric], "loss": result["loss"]}
    else:
        status = "interrupted" if status == "interrupted" else "stopped"
    checkpoint()
    result_metrics = metrics(test)
    if world.main:
        write_json(out_dir / "metrics.json", result_metrics)
    if world.size > 1:
        dist.destroy_process_group()
    return TrainResult(result_metrics, status, step)
