"""ListOps (Nangia & Bowman 2018; Long Range Arena, Tay et al. 2021), generated locally.

Nested prefix expressions over digits, e.g. ``[MAX 2 9 [MIN 4 7 ] 0 ]`` = 9, with
the LRA operators MAX, MIN, MED (median, rounded down as LRA's ``int(np.median)``)
and SM (sum modulo 10); up to 10 arguments per operator and 10 levels of nesting
(LRA's MAX_ARGS and MAX_DEPTH). Ten classes: the expression's value.

LRA draws random trees and rejects those outside the length range; at lengths of
hundreds to thousands of tokens that rejection is slow, so here each tree is grown
to a token budget drawn uniformly from [length/2, length]: a node with budget b
>= 4 becomes an operator whose b - 2 inner tokens are split at random among 2..10
children. Values are computed while generating; tests check them with a separate
interpreter.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

import torch

from structmat.tasks.base import PAD, TaskData, TaskInfo, check_size_length, split_generator

__all__ = ["CLOSE", "DIGIT0", "OPERATORS", "decode", "make_dataset"]

MAX_ARGS = 10
MAX_DEPTH = 10
DIGIT0 = 1  # token ids 1..10 are the digits 0..9
OPERATORS = {"MAX": 11, "MIN": 12, "MED": 13, "SM": 14}
CLOSE = 15
VOCAB_SIZE = 16  # with padding 0

_APPLY: dict[str, Callable[[list[int]], int]] = {
    "MAX": max,
    "MIN": min,
    "MED": lambda xs: int(statistics.median(xs)),
    "SM": lambda xs: sum(xs) % 10,
}


def _grow(rng: random.Random, budget: int, depth: int, out: list[int]) -> int:
    """Append an expression of at most ``budget`` tokens to ``out``; return its value."""
    if budget < 4 or depth >= MAX_DEPTH:
        value = rng.randrange(10)
        out.append(DIGIT0 + value)
        return value
    name = rng.choice(tuple(OPERATORS))
    inner = budget - 2  # the operator and its closing bracket
    k = rng.randint(2, min(MAX_ARGS, inner))
    cuts = sorted(rng.sample(range(1, inner), k - 1))
    out.append(OPERATORS[name])
    values = [
        _grow(rng, hi - lo, depth + 1, out)
        for lo, hi in zip([0, *cuts], [*cuts, inner], strict=True)
    ]
    out.append(CLOSE)
    return int(_APPLY[name](values))


def make_dataset(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """Generate ``size`` ListOps sequences of at most ``length`` tokens.

    Returns:
        TaskData with inputs (size, length) int64 (0-padded), targets (size,) in 0..9.
    """
    check_size_length(size, length, min_length=4)
    gen = split_generator(seed, split)
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=gen)))
    inputs = torch.full((size, length), PAD, dtype=torch.int64)
    targets = torch.empty(size, dtype=torch.int64)
    lengths = torch.empty(size, dtype=torch.int64)
    for i in range(size):
        tokens: list[int] = []
        targets[i] = _grow(rng, rng.randint(max(4, length // 2), length), 0, tokens)
        lengths[i] = len(tokens)
        inputs[i, : len(tokens)] = torch.tensor(tokens)
    info = TaskInfo("listops", length, "accuracy", vocab_size=VOCAB_SIZE, num_classes=10)
    return TaskData(inputs, targets, lengths, info)


def decode(tokens: torch.Tensor) -> str:
    """Token ids (L,) back to text, e.g. ``[MAX 2 9 ]``; padding dropped."""
    names = {v: f"[{k}" for k, v in OPERATORS.items()} | {CLOSE: "]"}
    names |= {DIGIT0 + d: str(d) for d in range(10)}
    return " ".join(names[int(t)] for t in tokens if int(t) != PAD)
