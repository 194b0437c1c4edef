"""Task generators: determinism, labels against independent evaluators, lengths."""

from __future__ import annotations

import pytest
import torch

from structmat.tasks import TASKS, copying, listops, make_dataset, recall
from tests.reference.tasks import eval_listops, recall_answer

SMALL = {
    "listops": 64,
    "adding": 50,
    "copying": 40,
    "selective-copying": 40,
    "recall": 33,
    "digits": 64,
}


@pytest.mark.parametrize("task", list(TASKS))
def test_deterministic_and_splits_differ(task: str) -> None:
    length = SMALL[task]
    a = make_dataset(task, "train", 20, length, seed=3)
    b = make_dataset(task, "train", 20, length, seed=3)
    torch.testing.assert_close(a.inputs, b.inputs)
    torch.testing.assert_close(a.targets, b.targets)
    val = make_dataset(task, "val", 20, length, seed=3)
    other = make_dataset(task, "train", 20, length, seed=4)
    assert not torch.equal(a.inputs, val.inputs)
    assert not torch.equal(a.inputs, other.inputs)
    assert a.inputs.shape[:2] == (20, length)
    assert len(a) == 20 and a.info.length == length
    assert bool((a.lengths <= length).all()) and bool((a.lengths >= 1).all())
    if a.info.vocab_size is not None:
        assert int(a.inputs.max()) < a.info.vocab_size
        # padding (id 0) fills everything after the true length
        assert bool((a.inputs[~a.mask()] == 0).all())


@pytest.mark.parametrize("length", [8, 100, 600])
def test_listops_labels_match_independent_interpreter(length: int) -> None:
    data = make_dataset("listops", "train", 40, length, seed=1)
    for i in range(len(data)):
        n = int(data.lengths[i])
        assert 1 <= n <= length
        text = listops.decode(data.inputs[i, :n])
        assert eval_listops(text) == int(data.targets[i])
        assert bool((data.inputs[i, :n] != 0).all())
    if length >= 100:  # trees are grown to a budget in [length/2, length]
        assert int(data.lengths.min()) >= length // 4
        assert float(data.lengths.float().mean()) > 0.5 * length


def test_listops_nesting_depth_and_arity_within_lra_limits() -> None:
    data = make_dataset("listops", "test", 30, 800, seed=2)
    for i in range(len(data)):
        depth = deepest = 0
        args_stack: list[int] = []
        for t in data.inputs[i, : int(data.lengths[i])].tolist():
            if t in listops.OPERATORS.values():
                if args_stack:
                    args_stack[-1] += 1
                args_stack.append(0)
                depth += 1
                deepest = max(deepest, depth)
            elif t == listops.CLOSE:
                assert 2 <= args_stack.pop() <= listops.MAX_ARGS
                depth -= 1
            elif args_stack:
                args_stack[-1] += 1
        assert deepest <= listops.MAX_DEPTH


def test_adding_targets() -> None:
    data = make_dataset("adding", "train", 50, 30)
    values, marks = data.inputs[..., 0], data.inputs[..., 1]
    assert bool((marks.sum(1) == 2).all())
    assert bool((marks[:, :15].sum(1) == 1).all()) and bool((marks[:, 15:].sum(1) == 1).all())
    torch.testing.assert_close(data.targets, (values * marks).sum(1))
    assert data.info.metric == "mse" and data.info.input_dim == 2


def test_copying_and_selective_copying_layouts() -> None:
    k = copying.NUM_TOKENS
    plain = make_dataset("copying", "train", 10, 40)
    # Arjovsky et al.: tokens, blanks, delimiter, then K blank output positions.
    torch.testing.assert_close(plain.inputs[:, :k], plain.targets + copying.SYMBOL0)
    assert bool((plain.inputs[:, k : -k - 1] == copying.BLANK).all())
    assert bool((plain.inputs[:, -k - 1] == copying.DELIM).all())
    assert bool((plain.inputs[:, -k:] == copying.BLANK).all())
    sel = make_dataset("selective-copying", "train", 10, 40)
    for row, target in zip(sel.inputs, sel.targets, strict=True):
        symbols = row[row >= copying.SYMBOL0] - copying.SYMBOL0
        torch.testing.assert_close(symbols, target)  # in order of appearance
        assert int(row[-k - 1]) == copying.DELIM
        assert bool((row[-k:] == copying.BLANK).all())
    assert sel.info.num_targets == k and sel.info.num_classes == copying.NUM_SYMBOLS
    # selective copying scatters the symbols: not all at the front
    assert not bool((sel.inputs[:, :k] >= copying.SYMBOL0).all())


@pytest.mark.parametrize("length", [9, 10, 101])
def test_recall_answers_match_independent_scan(length: int) -> None:
    data = make_dataset("recall", "train", 30, length)
    for row, target in zip(data.inputs.tolist(), data.targets.tolist(), strict=True):
        assert recall_answer(row, recall.KEY0, recall.VALUE0, recall.NUM_KEYS) == target


def test_digits_split_sizes_and_disjointness() -> None:
    pytest.importorskip("sklearn")
    sizes = {s: len(make_dataset("digits", s, 5000, 64)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    train = make_dataset("digits", "train", 5000, 64)
    test = make_dataset("digits", "test", 5000, 64)
    train_rows = {tuple(r) for r in train.inputs.tolist()}
    overlap = sum(tuple(r) in train_rows for r in test.inputs.tolist())
    assert overlap < 5  # identical images may occur twice in the raw data, not by split leakage


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("sudoku", "train", 4, 10), r"task: expected one of 'listops'"),
        (
            ("listops", "dev", 4, 10),
            r"split: expected one of 'train' \| 'val' \| 'test', got 'dev'",
        ),
        (("listops", "train", 0, 10), r"size: expected an integer >= 1, got 0"),
        (("listops", "train", 4, 3), r"length: expected an integer >= 4, got 3"),
        (("copying", "train", 4, 20), r"length: expected an integer >= 21, got 20"),
        (("digits", "train", 4, 100), r"length: expected 64 for digits"),
    ],
)
def test_bad_arguments(args: tuple, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_dataset(*args)
