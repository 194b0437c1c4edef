"""Long-range tasks generated locally from a seed (no downloads).

``make_dataset(task, split, size, length, seed)`` returns a ``TaskData`` with
padded inputs, targets, lengths and a ``TaskInfo`` (vocabulary, classes, metric).
"""

from __future__ import annotations

from collections.abc import Callable

from structmat._checks import check_choice
from structmat.tasks import adding, copying, digits, listops, recall
from structmat.tasks.base import SPLITS, TaskData, TaskInfo

__all__ = ["SPLITS", "TASKS", "TaskData", "TaskInfo", "make_dataset"]

# name -> make_dataset(split, size, length, seed); a new task is one entry.
TASKS: dict[str, Callable[[str, int, int, int], TaskData]] = {
    "listops": listops.make_dataset,
    "adding": adding.make_dataset,
    "copying": copying.make_copying,
    "selective-copying": copying.make_selective_copying,
    "recall": recall.make_dataset,
    "digits": digits.make_dataset,
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
    return TASKS[task](split, size, length, seed)
