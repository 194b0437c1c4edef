"""Pieces of a training step: collectives across DDP ranks, the batch of a step,
the model, optimizer and lr schedule of a config, the loss, and evaluation.

Plain functions of their arguments; the loop in ``structmat.train`` owns the state.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from structmat._checks import fail
from structmat.models import SequenceClassifier, SequenceModel, SequenceRegressor
from structmat.ssm import ssm_parameter_groups
from structmat.tasks import TaskData
from structmat.train_config import TrainConfig

__all__ = [
    "World",
    "all_reduce",
    "all_sum",
    "batch_indices",
    "build_model",
    "evaluate",
    "init_world",
    "local_batch",
    "loss_and_score",
    "lr_schedule",
    "make_optimizer",
    "peak_rss_mb",
    "together",
    "train_step",
]

# --- distributed helpers ----------------------------------------------------------


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return World(dist.get_rank(), dist.get_world_size())


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux/macOS), or None."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


def all_reduce(values: list[float], world: World, op: Any = None) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if world.size > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def all_sum(values: list[float], world: World) -> list[float]:
    return all_reduce(values, world)


def together(world: World, error: ValueError | None, task: str) -> None:
    """Raise on every rank when any failed: files are rank 0's alone, and a rank left
    behind would wait at the next collective forever."""
    failed = all_sum([float(error is not None)], world)[0]
    if error is not None:
        raise error
    if failed:
        raise fail("out", f"rank 0 to {task}", "an error there (see its message)")


# --- data, model, optimizer ---------------------------------------------------------


def batch_indices(
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


def local_batch(
    step: int, cfg: TrainConfig, world: World, n: int, cache: dict[int, torch.Tensor]
) -> torch.Tensor:
    """This rank's slice (batch_size / world size,) of the global batch of ``step``."""
    assert cfg.batch_size is not None
    local = cfg.batch_size // world.size
    idx = batch_indices(step, cfg.batch_size, n, cfg.seed, cache)
    return idx[world.rank * local : (world.rank + 1) * local]


def build_model(cfg: TrainConfig, data: TaskData) -> SequenceModel:
    """The model of a resolved ``cfg`` for ``data``'s task."""
    info = data.info
    common: dict[str, Any] = {
        "d_model": cfg.d_model,
        "n_layers": cfg.layers,
        "mixer": cfg.model,
        "dropout": cfg.dropout,
        "pool": cfg.pool,
        "prenorm": cfg.prenorm,
        "norm": cfg.normalization,
        "num_targets": info.num_targets,
        "length": info.length,
        "causal": cfg.pool == "last",
        # S4 options; attention mixers ignore them.
        "mixer_options": {"d_state": cfg.d_state, "dt_min": cfg.dt_min, "dt_max": cfg.dt_max},
    }
    if info.vocab_size is not None:
        common["num_tokens"] = info.vocab_size
    else:
        common["input_dim"] = info.input_dim
    if info.metric == "mse":
        return SequenceRegressor(1, **common)
    assert info.num_classes is not None
    return SequenceClassifier(info.num_classes, **common)


def make_optimizer(network: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; S4 parameters get their own group (ssm_lr, no weight decay, S4 App. D.2)."""
    assert cfg.lr is not None and cfg.weight_decay is not None
    groups = ssm_parameter_groups(
        network, lr=cfg.lr, ssm_lr=cfg.ssm_lr, weight_decay=cfg.weight_decay
    )
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 0 over ``steps`` or a constant lr."""
    warmup, steps, kind = cfg.warmup or 0, cfg.steps or 1, cfg.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def loss_and_score(
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


def train_step(
    wrapped: nn.Module,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TaskData,
    idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimizer step on samples ``idx`` (n,): (mean loss, score sum, real tokens)."""
    mask = data.mask(idx)  # (n, L)
    out = wrapped(data.inputs[idx], mask)
    loss, score = loss_and_score(out, data.targets[idx], data.info.metric)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(network.parameters(), 1.0)
    optimizer.step()
    return loss, score, float(mask.sum())


@torch.no_grad()
def evaluate(network: nn.Module, data: TaskData, world: World, batch: int) -> dict[str, float]:
    """Loss and metric over the whole split; each rank takes every size-th batch."""
    was_training = network.training
    network.eval()
    metric = data.info.metric
    loss_sum = score_sum = count = 0.0
    starts = list(range(0, len(data), batch))[world.rank :: world.size]
    for start in starts:
        idx = slice(start, start + batch)
        out = network(data.inputs[idx], data.mask(idx))
        loss, score = loss_and_score(out, data.targets[idx], metric)
        n = out.shape[0]
        loss_sum += loss.item() * n
        score_sum += float(score)
        count += n
    loss_sum, score_sum, count = all_sum([loss_sum, score_sum, count], world)
    network.train(was_training)
    return {"loss": loss_sum / count, metric: score_sum / count}
