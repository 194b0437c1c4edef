"""Memorise tokens over a long delay.

``copying`` (Arjovsky et al. 2016): K = 10 tokens from 8 symbols, then blanks, then
a delimiter; the model must output the K tokens from its state at the end.
``selective-copying`` (Gu & Dao 2023, Mamba): the K tokens are scattered at random
positions among blanks, and must be output in order, so the model has to select
by content, not by a fixed delay.

Token ids: 0 padding (unused: every sequence is full length), 1 blank,
2 delimiter, 3..10 the symbols. Targets: (N, K) symbol indices 0..7.
"""

from __future__ import annotations

import torch

from structmat.tasks.base import TaskData, TaskInfo, check_size_length, split_generator

__all__ = ["make_copying", "make_selective_copying"]

NUM_TOKENS = 10  # K
NUM_SYMBOLS = 8
BLANK, DELIM, SYMBOL0 = 1, 2, 3
VOCAB_SIZE = SYMBOL0 + NUM_SYMBOLS


def _finish(name: str, inputs: torch.Tensor, symbols: torch.Tensor, length: int) -> TaskData:
    inputs[:, -1] = DELIM
    lengths = torch.full((inputs.shape[0],), length, dtype=torch.int64)
    info = TaskInfo(
        name,
        length,
        "accuracy",
        vocab_size=VOCAB_SIZE,
        num_classes=NUM_SYMBOLS,
        num_targets=NUM_TOKENS,
    )
    return TaskData(inputs, symbols, lengths, info)


def make_copying(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Symbols first, blanks, delimiter last. inputs (size, length), targets (size, K)."""
    check_size_length(size, length, min_length=NUM_TOKENS + 1)
    gen = split_generator(seed, split)
    symbols = torch.randint(0, NUM_SYMBOLS, (size, NUM_TOKENS), generator=gen)
    inputs = torch.full((size, length), BLANK, dtype=torch.int64)
    inputs[:, :NUM_TOKENS] = SYMBOL0 + symbols
    return _finish("copying", inputs, symbols, length)


def make_selective_copying(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Symbols at random positions (in order) among blanks, delimiter last."""
    check_size_length(size, length, min_length=NUM_TOKENS + 1)
    gen = split_generator(seed, split)
    symbols = torch.randint(0, NUM_SYMBOLS, (size, NUM_TOKENS), generator=gen)
    # K distinct sorted positions in [0, length - 1): argsort of random keys.
    keys = torch.rand(size, length - 1, generator=gen)
    positions = keys.argsort(dim=1)[:, :NUM_TOKENS].sort(dim=1).values
    inputs = torch.full((size, length), BLANK, dtype=torch.int64)
    inputs.scatter_(1, positions, SYMBOL0 + symbols)
    return _finish("selective-copying", inputs, symbols, length)
