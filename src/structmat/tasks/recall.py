"""Associative recall (Ba et al. 2016; Zoology, Arora et al. 2023).

A sequence of key-value pairs ``k1 v1 k2 v2 ...`` with distinct keys, then a
query key repeated from the pairs; the target is the value that followed it.
Keys and values come from separate 16-symbol alphabets; the pairs fill the
sequence up to ``length - 1``, so the answer may lie far back.

Token ids: 0 padding (an even length starts with one pad), 1..16 keys, 17..32 values.
"""

from __future__ import annotations

import torch

from structmat.tasks.base import PAD, TaskData, TaskInfo, check_size_length, split_generator

__all__ = ["make_dataset"]

NUM_KEYS = 16
NUM_VALUES = 16
KEY0, VALUE0 = 1, 1 + NUM_KEYS
VOCAB_SIZE = 1 + NUM_KEYS + NUM_VALUES


def make_dataset(split: str, size: int, length: int, seed: int = 0) -> TaskData:
    """inputs (size, length) int64, targets (size,) value ids 0..15.

    Keys repeat across the sequence when there are more pairs than keys; the
    latest binding of the queried key is the answer.
    """
    check_size_length(size, length, min_length=3)
    gen = split_generator(seed, split)
    pairs = (length - 1) // 2
    keys = torch.randint(0, NUM_KEYS, (size, pairs), generator=gen)
    values = torch.randint(0, NUM_VALUES, (size, pairs), generator=gen)
    inputs = torch.full((size, length), PAD, dtype=torch.int64)
    start = length - 1 - 2 * pairs  # 1 when length is even: one leading pad token
    inputs[:, start : length - 1 : 2] = KEY0 + keys
    inputs[:, start + 1 : length - 1 : 2] = VALUE0 + values
    which = torch.randint(0, pairs, (size,), generator=gen)
    rows = torch.arange(size)
    query = keys[rows, which]
    inputs[:, -1] = KEY0 + query
    # The answer is the value of the query key's last occurrence.
    position = torch.arange(pairs).expand(size, pairs)
    last = torch.where(keys == query.unsqueeze(1), position, -1).amax(dim=1)
    targets = values[rows, last]
    lengths = torch.full((size,), length, dtype=torch.int64)
    info = TaskInfo("recall", length, "accuracy", vocab_size=VOCAB_SIZE, num_classes=NUM_VALUES)
    return TaskData(inputs, targets, lengths, info)
