"""Memorise tokens over a long delay.

``copying`` (Arjovsky et al. 2016): K = 10 tokens from 8 symbols, then blanks, then
a delimiter, then K blanks during which the model must output the K tokens in
order: target k is read at position L - K + k, a fixed delay of L - K after its token.
``selective-copying`` (Gu & Dao 2023, Mamba): the K tokens are scattered at random
positions (in order) before the delimiter, and are output in the same last K
positions, so the model has to select by content, not by a fixed delay.

Token ids: 0 padding (unused: every sequence is full length), 1 blank,
2 delimiter, 3..10 the symbols. Targets: (N, K) symbol indices 0..7, one per
output position (the models' ``pool="last"`` reads the last K real positions).
"""

from __future__ import annotations

import torch

from structmat.tasks.base import TaskData, TaskInfo, check_size_length, split_generator

__all__ = ["make_copying", "make_selective_copying"]

NUM_TOKENS = 10  # K
NUM_SYMBOLS = 8
BLANK, DELIM, SYMBOL0 = 1, 2, 3
VOCAB_SIZE = SYMBOL0 + NUM_SYMBOLS
MIN_LENGTH = 2 * NUM_TOKENS + 1  # the tokens, the delimiter, the output positions


def _finish(name: str, inputs: torch.Tensor, symbols: torch.Tensor, length: int) -> TaskData:
    # The delimiter opens the K output positions, which stay blank.
    inputs[:, -NUM_TOKENS - 1] = DELIM
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
    """Symbols, blanks, delimiter, K output blanks. inputs (size, length), targets (size, K)."""
    check_size_length(size, length, min_length=MIN_LENGTH)
    gen = split_generator(seed, split)
    symbols = torch.randint(0, NUM_SYMBOLS, (size, NUM_TOKENS), generator=gen)
    inputs = torch.full((size, length), BLANK, dtype=torch.int64)
    inputs[:, :NUM_TOKENS] = SYMBOL0 + symbols
    return _finish("copying", inputs, symbols, length)


def make_selective_copying(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Symbols at random positions (in order) before the delimiter, then K output blanks."""
    check_size_length(size, length, min_length=MIN_LENGTH)
    gen = split_generator(seed, split)
    symbols = torch.randint(0, NUM_SYMBOLS, (size, NUM_TOKENS), generator=gen)
    # K distinct sorted positions before the delimiter: argsort of random keys.
    keys = torch.rand(size, length - NUM_TOKENS - 1, generator=gen)
    positions = keys.argsort(dim=1)[:, :NUM_TOKENS].sort(dim=1).values
    inputs = torch.full((size, length), BLANK, dtype=torch.int64)
    inputs.scatter_(1, positions, SYMBOL0 + symbols)
    return _finish("selective-copying", inputs, symbols, length)
