"""The adding problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

Input (L, 2): channel 0 holds values drawn from U(0, 1), channel 1 marks exactly
two positions, one in each half of the sequence. Target: the sum of the two
marked values (regression, metric MSE; always predicting 1 scores about 0.167).
"""

from __future__ import annotations

import torch

from structmat.tasks.base import TaskData, TaskInfo, check_size_length, split_generator

__all__ = ["make_dataset"]


def make_dataset(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Returns TaskData with inputs (size, length, 2) float32, targets (size,) float32."""
    check_size_length(size, length, min_length=2)
    gen = split_generator(seed, split)
    values = torch.rand(size, length, generator=gen)
    half = length // 2
    first = torch.randint(0, half, (size,), generator=gen)
    second = torch.randint(half, length, (size,), generator=gen)
    marks = torch.zeros(size, length)
    rows = torch.arange(size)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    inputs = torch.stack([values, marks], dim=-1)  # (size, length, 2)
    targets = values[rows, first] + values[rows, second]
    lengths = torch.full((size,), length, dtype=torch.int64)
    return TaskData(inputs, targets, lengths, TaskInfo("adding", length, "mse", input_dim=2))
