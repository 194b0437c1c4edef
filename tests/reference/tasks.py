"""Independent evaluators for the generated tasks (plain Python, no shared code)."""

from __future__ import annotations

import statistics


def eval_listops(text: str) -> int:
    """Evaluate a ListOps expression like ``[MAX 2 [MIN 4 7 ] ]`` with a stack."""
    ops = {
        "[MAX": max,
        "[MIN": min,
        "[MED": lambda xs: int(statistics.median(xs)),
        "[SM": lambda xs: sum(xs) % 10,
    }
    stack: list[list] = []
    result = None
    for tok in text.split():
        if tok in ops:
            stack.append([ops[tok]])
        elif tok == "]":
            frame = stack.pop()
            value = frame[0](frame[1:])
            if stack:
                stack[-1].append(value)
            else:
                result = value
        else:
            digit = int(tok)
            if stack:
                stack[-1].append(digit)
            else:
                result = digit
    assert not stack and result is not None, "unbalanced expression"
    return result


def recall_answer(tokens: list[int], key0: int, value0: int, num_keys: int) -> int:
    """Scan key-value pairs; return the value index last bound to the final query key."""
    query = tokens[-1]
    answer = None
    for i in range(len(tokens) - 2):
        t = tokens[i]
        if key0 <= t < key0 + num_keys and t == query:
            answer = tokens[i + 1] - value0
    assert answer is not None
    return answer
