"""Long-range tasks generated locally from a seed (no downloads).

``make_dataset(task, split, size, length, seed)`` returns a ``TaskData`` with
padded inputs, targets, lengths and a ``TaskInfo`` (vocabulary, classes, metric).
``TASKS[name]`` is the task's ``TaskSpec``: its generator and the facts training
needs (default length, pooling, the settings it trains well with).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from structmat._checks import check_choice
from structmat.tasks import adding, copying, digits, listops, recall
from structmat.tasks.base import SPLITS, TaskData, TaskInfo

__all__ = ["SPLITS", "TASKS", "TaskData", "TaskInfo", "TaskSpec", "make_dataset"]


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class TaskSpec:
    """One task: how to generate it and what training should default to for it.

    Attributes:
        make: ``make(split, size, length, seed) -> TaskData``.
        default_length: the sequence length when none is given.
        pool: ``"mean"`` (the answer depends on the whole sequence) or ``"last"``
            (the answer is read after the sequence: copying, recall; causal mixers).
        defaults: training settings this task wants, keyed by ``TrainConfig`` field
            name (``"steps"``, ``"lr"``, ``"batch_size"``, ``"d_model"``, ...).
        mixer_defaults: per-mixer overrides of ``defaults``, keyed by mixer name
            (``{"s4": {"lr": ...}}``); they win over ``defaults``.
    """

    make: Callable[[str, int, int, int], TaskData]
    default_length: int
    pool: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    mixer_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self.pool, "pool", ["mean", "last"])
        # Read-only views: a spec is shared by every run, so no run may edit it.
        object.__setattr__(self, "defaults", _frozen(self.defaults))
        object.__setattr__(
            self,
            "mixer_defaults",
            _frozen({k: _frozen(v) for k, v in self.mixer_defaults.items()}),
        )


# name -> TaskSpec; a new task is one entry. A task without `defaults` trains with
# the global ones (structmat.train_config.GLOBAL_DEFAULTS).
TASKS: dict[str, TaskSpec] = {
    # The LRA length; the answer hinges on the root operator (reading it alone gives
    # ~40%, the majority class ~20%), a rare event that BatchNorm post-norm lifts as on
    # adding. S4D: 36% test at step 1200 (12 min on one thread), LayerNorm pre-norm ~20%.
    "listops": TaskSpec(
        listops.make_dataset,
        1024,
        "mean",
        defaults={
            "normalization": "batch",
            "prenorm": False,
            "lr": 1e-2,
            "ssm_lr": 5e-3,
            "train_size": 8000,
            "steps": 1200,
        },
    ),
    # BatchNorm lifts the two marked positions out of the L - 2 others (LayerNorm
    # normalises each position alone); with it S4 and S4D leave the constant-predictor
    # plateau within ~150 steps at L = 1000 instead of ~1500 (benchmarks/ssm_recipe.py).
    "adding": TaskSpec(
        adding.make_dataset,
        1000,
        "mean",
        defaults={
            "normalization": "batch",
            "prenorm": False,
            "lr": 1e-2,
            "ssm_lr": 1e-3,
            "batch_size": 16,
            "steps": 1000,
        },
    ),
    # Post-norm BatchNorm and a faster-learning S4 kernel (ssm_lr 5e-3): S4D reaches
    # ~98% at step 600 where pre-norm LayerNorm with ssm_lr 1e-3 gives ~80%
    # (README "What makes S4 learn"); ~2 min on 2 cores.
    "copying": TaskSpec(
        copying.make_copying,
        512,
        "last",
        defaults={
            "normalization": "batch",
            "prenorm": False,
            "lr": 1e-2,
            "ssm_lr": 5e-3,
            "steps": 600,
        },
    ),
    "selective-copying": TaskSpec(copying.make_selective_copying, 512, "last"),
    "recall": TaskSpec(recall.make_dataset, 257, "last"),
    "digits": TaskSpec(digits.make_dataset, digits.LENGTH, "mean"),
}


def make_dataset(task: str, split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Generate split ``split`` ("train" | "val" | "test") of ``task``, deterministically.

    Args:
        task: one of ``TASKS``.
        size: number of sequences.
        length: maximum sequence length (inputs are padded to it).
        seed: the same seed gives the same data; splits never overlap in randomness.
    """
    check_choice(task, "task", list(TASKS))
    return TASKS[task].make(split, size, length, seed)
