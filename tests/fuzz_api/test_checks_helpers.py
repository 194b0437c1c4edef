"""The validation helpers the fuzzed boundaries rely on (structmat._checks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from structmat._checks import (
    as_real_array,
    check_even_int,
    check_int,
    check_number,
    check_tensor,
)
from tests.fuzz_api.harness import FUZZ


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (True, {}, r"n: expected an integer, got True"),
        (2.0, {"minimum": 1}, r"n: expected an integer >= 1, got 2.0"),
        (0, {"minimum": 1}, r"n: expected an integer >= 1, got 0"),
        (9, {"minimum": 2, "maximum": 8}, r"n: expected an integer in \[2, 8\], got 9"),
        (6, {"multiple_of": 4}, r"n: expected an integer multiple of 4, got 6"),
        ("3", {"wanted": "a count"}, r"n: expected a count, got '3'"),
    ],
)
def test_check_int_rejects(value: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", **kwargs)


def test_check_int_and_even_int_accept() -> None:
    check_int(np.int64(3), "n", 1, 3)
    check_int(-5, "n")
    check_even_int(4, "dim")
    with pytest.raises(ValueError, match=r"dim: expected an even integer >= 2, got 3"):
        check_even_int(3, "dim")


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (math.nan, {}, r"x: expected a finite number, got nan"),
        (math.inf, {"low": 1.0, "low_open": True}, r"x: expected a finite number > 1, got inf"),
        (1.0, {"low": 1.0, "low_open": True}, r"x: expected a finite number > 1, got 1.0"),
        (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, r"x: expected a number in \[0, 1\)"),
        (True, {}, r"x: expected a finite number, got True"),
        ("1", {"low": 0.0}, r"x: expected a finite number >= 0, got '1'"),
        (2, {"high": 1.5}, r"x: expected a finite number <= 1.5, got 2"),
    ],
)
def test_check_number_rejects(value: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_number(value, "x", **kwargs)


@FUZZ
@given(value=st.one_of(st.floats(allow_nan=True), st.integers(-10, 10)))
def test_check_number_accepts_exactly_finite_values_in_range(value: float) -> None:
    inside = math.isfinite(value) and 0 <= value < 1
    try:
        check_number(value, "x", 0.0, 1.0, high_open=True)
    except ValueError:
        assert not inside
    else:
        assert inside


def test_check_tensor() -> None:
    check_tensor(torch.zeros(2, 3), "x", "(B, D)", 2, kind="float")
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(B, D\), got list"):
        check_tensor([1.0], "x", "(B, D)")
    with pytest.raises(ValueError, match=r"x: expected shape \(B, D\), got shape \(2,\)"):
        check_tensor(torch.zeros(2), "x", "(B, D)", 2)
    with pytest.raises(ValueError, match=r"x: expected a floating-point tensor, got dtype"):
        check_tensor(torch.zeros(2, dtype=torch.int64), "x", "(D,)", kind="float")
    with pytest.raises(ValueError, match=r"x: expected a numeric tensor, got dtype torch.bool"):
        check_tensor(torch.zeros(2, dtype=torch.bool), "x", "(D,)", kind="numeric")


def test_as_real_array() -> None:
    got = as_real_array(torch.ones(2, 3, dtype=torch.bfloat16), "r", 2, "(k_q, N)")
    assert got.dtype == np.float32 and got.shape == (2, 3)
    assert as_real_array([[1, 2]], "r", 2, "(k_q, N)").dtype.kind == "i"
    with pytest.raises(ValueError, match=r"r: expected a real array of shape \(k_q, N\)"):
        as_real_array(None, "r", 2, "(k_q, N)")
    with pytest.raises(ValueError, match=r"r: expected an array of shape \(k_q, N\), got list"):
        as_real_array([[1.0], [1.0, 2.0]], "r", 2, "(k_q, N)")  # ragged
    with pytest.raises(ValueError, match=r"r: expected finite values"):
        as_real_array([[math.nan]], "r", 2, "(k_q, N)")
    with pytest.raises(ValueError, match=r"r: expected shape \(k_q, N\), got shape \(2,\)"):
        as_real_array([1.0, 2.0], "r", 2, "(k_q, N)")
