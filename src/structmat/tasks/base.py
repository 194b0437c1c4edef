"""What every task returns: padded tensors plus the facts a model and a metric need."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from structmat._checks import check_choice, check_int, check_positive_int

__all__ = ["SPLITS", "TaskData", "TaskInfo", "split_generator"]

SPLITS = ("train", "val", "test")

# Token id 0 is padding in every token task.
PAD = 0


@dataclass(frozen=True)
class TaskInfo:
    """Metadata of a generated task.

    Attributes:
        name: task name.
        length: the longest sequence the task produces (inputs are padded to it).
        metric: ``"accuracy"`` (classification) or ``"mse"`` (regression).
        vocab_size: number of token ids including padding 0; None for real-valued inputs.
        input_dim: channels of real-valued inputs; None for token inputs.
        num_classes: classes per target (classification); None for regression.
        num_targets: targets per sequence (e.g. 10 tokens to copy); 1 for a single label.
    """

    name: str
    length: int
    metric: str
    vocab_size: int | None = None
    input_dim: int | None = None
    num_classes: int | None = None
    num_targets: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskData:
    """A generated split.

    Attributes:
        inputs: (N, L) int64 token ids (0 = padding) or (N, L, C) float32 values.
        targets: (N,) or (N, K) int64 class ids, or (N,) float32 regression targets.
        lengths: (N,) int64 true length of each sequence; positions >= length are padding.
        info: the task's metadata.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    info: TaskInfo

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def mask(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """(n, L) bool, True at real positions (False at padding)."""
        lengths = self.lengths if index is None else self.lengths[index]
        return torch.arange(self.inputs.shape[1]) < lengths.unsqueeze(-1)


def split_generator(seed: int, split: str) -> torch.Generator:
    """A generator seeded from (seed, split): splits never share samples' randomness."""
    check_choice(split, "split", SPLITS)
    check_int(seed, "seed", 0)
    # Distinct, fixed streams per split; the constant only spreads the seeds apart.
    return torch.Generator().manual_seed(seed * 1_000_003 + SPLITS.index(split) + 1)


def check_size_length(size: int, length: int, min_length: int) -> None:
    check_positive_int(size, "size")
    check_positive_int(length, "length", minimum=min_length)
