"""Sequential digits: scikit-learn's bundled 8×8 handwritten digits (UCI, 1,797
images) read pixel by pixel as a 64-token sequence; ten classes. A tiny real-data
sanity task (like sequential MNIST, but shipped with scikit-learn: no download).

Token ids: 1 + pixel intensity (0..16), so 1..17; 0 is padding (unused).
Splits: a fixed seeded permutation, 60% train, 20% val, 20% test; ``size`` takes
the first ``size`` images of the split (at most the split's size).
"""

from __future__ import annotations

import torch

from structmat._checks import check_positive_int, fail
from structmat.tasks.base import SPLITS, TaskData, TaskInfo, split_generator

__all__ = ["make_dataset"]

LENGTH = 64
VOCAB_SIZE = 18


def make_dataset(split: str, size: int, length: int = LENGTH, seed: int = 0) -> TaskData:
    """inputs (n, 64) int64, targets (n,) in 0..9, n = min(size, split size)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise fail(
            "task",
            "scikit-learn installed for 'digits' (pip install 'structmat[tasks]')",
            "no sklearn",
        ) from err
    check_positive_int(size, "size")
    if length != LENGTH:
        raise fail("length", f"{LENGTH} for digits (8×8 pixels)", str(length))
    split_generator(seed, split)  # validates split and seed
    images, labels = load_digits(return_X_y=True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    bounds = [0, int(0.6 * len(order)), int(0.8 * len(order)), len(order)]
    i = SPLITS.index(split)
    chosen = order[bounds[i] : bounds[i + 1]][:size]
    inputs = 1 + torch.as_tensor(images, dtype=torch.int64)[chosen]  # (n, 64)
    targets = torch.as_tensor(labels, dtype=torch.int64)[chosen]
    lengths = torch.full((len(chosen),), LENGTH, dtype=torch.int64)
    info = TaskInfo("digits", LENGTH, "accuracy", vocab_size=VOCAB_SIZE, num_classes=10)
    return TaskData(inputs, targets, lengths, info)
