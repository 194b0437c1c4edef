"""API fuzzing harness: corrupt one argument of a valid call, check the reaction.

A ``Case`` is a public function (or a module's constructor or method) together
with a valid call. The fuzz test picks one argument, replaces it by a wrong
value drawn by hypothesis (wrong rank, mismatched size, dtype, NaN, empty
tensor, non-tensor, bad integer or choice), and requires:

* either a normal return (only for inputs that may be legitimate, e.g. an extra
  batch dimension, an integer tensor that is cast, NaN where finiteness is not
  promised), or
* a ``ValueError`` whose message names the corrupted argument, in the project's
  ``"name: expected ..., got ..."`` form (``name`` may also appear as the
  argument another one is matched against: "(to match q)").

Anything else (IndexError, RuntimeError, TypeError, AttributeError from inside
torch or numpy) fails the test. Inputs marked ``must_raise`` may not return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Bounded, reproducible runs for CI: the same examples every time, a fixed count.
FUZZ = settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

NON_TENSORS: tuple[Any, ...] = (None, "abc", {"a": 1}, object(), (1, "x"))
FLOAT_DTYPES = (torch.float32, torch.float64)
DTYPE_CLASSES = {
    "float": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "complex": (torch.complex64, torch.complex128),
    "int": (torch.int64, torch.int32, torch.int16, torch.uint8),
    "bool": (torch.bool,),
}


@dataclass(frozen=True)
class Tens:
    """A tensor argument.

    Attributes:
        make: builds the valid value (a fresh tensor each call).
        ndim: allowed ranks (lo, hi); ``hi=None`` for any number of batch dims.
        kinds: dtype classes accepted ("float", "complex", "int", "bool").
        tied: dims (negative indices of the valid shape) whose size must match
            another argument or an option; changing one must raise.
        finite: NaN / inf must raise (the function promises to check).
        coerce: lists and NumPy arrays are accepted (``as_tensor`` boundaries),
            so integer or boolean tensors may be cast instead of rejected.
        optional: None is a valid value.
    """

    make: Callable[[], torch.Tensor]
    ndim: tuple[int, int | None]
    kinds: tuple[str, ...] = ("float",)
    tied: tuple[int, ...] = ()
    finite: bool = False
    coerce: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Int:
    """An integer argument (a size or a count): ``value >= minimum``."""

    valid: int | None
    minimum: int = 1
    optional: bool = False
    even: bool = False


@dataclass(frozen=True)
class Num:
    """A real number argument in ``(low, high)`` (open or closed ends as stated)."""

    valid: float | None
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Choice:
    """A string option among a fixed set."""

    valid: str


@dataclass(frozen=True)
class Opts:
    """Any other argument: a valid value and a list of values that must be rejected."""

    valid: Any
    bad: tuple[Any, ...]


Spec = Tens | Int | Num | Choice | Opts


@dataclass(frozen=True, repr=False)
class Case:
    """One public callable and a valid call ``fn(**{name: valid})``."""

    id: str
    fn: Callable[..., Any]
    args: dict[str, Spec]
    fixed: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints the case of a failing example
        return f"Case({self.id})"

    def valid_kwargs(self) -> dict[str, Any]:
        out = dict(self.fixed)
        for name, spec in self.args.items():
            out[name] = spec.make() if isinstance(spec, Tens) else spec.valid
        return out


@dataclass(frozen=True)
class Wrong:
    """A corrupted value; ``must_raise`` when no correct function may accept it."""

    value: Any
    label: str
    must_raise: bool
    relational: bool = False


def _small_shape(draw: st.DrawFn, ndim: int) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))


@st.composite
def wrong_tensor(draw: st.DrawFn, spec: Tens) -> Wrong:
    """A wrong value for a tensor argument (see ``Tens``)."""
    t = spec.make()
    lo, hi = spec.ndim
    kinds = ["non_tensor", "rank", "size", "dtype", "empty", "nonfinite", "list"]
    kind = draw(st.sampled_from(kinds))
    if kind == "non_tensor":
        v = draw(st.sampled_from(NON_TENSORS[1:] if spec.optional else NON_TENSORS))
        return Wrong(v, f"non-tensor {type(v).__name__}", True)
    if kind == "rank":
        bad = [r for r in range(6) if r < lo or (hi is not None and r > hi)]
        if not bad:
            kind = "size"
        else:
            r = draw(st.sampled_from(bad))
            shape = _small_shape(draw, r)
            return Wrong(torch.randn(shape).to(t.dtype), f"rank {r} {shape}", True)
    if kind == "size":
        if t.ndim == 0:
            return Wrong(t, "valid scalar", False)
        dim = draw(st.integers(-t.ndim, -1))
        size = draw(st.integers(1, 7).filter(lambda s: s != t.shape[dim]))
        shape = list(t.shape)
        shape[dim] = size
        bad_t = _like(t, tuple(shape))
        return Wrong(bad_t, f"size {tuple(shape)} (dim {dim})", dim in spec.tied, True)
    if kind == "dtype":
        dtype = draw(st.sampled_from([d for ds in DTYPE_CLASSES.values() for d in ds]))
        cls = next(k for k, ds in DTYPE_CLASSES.items() if dtype in ds)
        accepted = cls in spec.kinds or (spec.coerce and cls in ("int", "bool"))
        accepted = accepted or (cls == "float" and "complex" in spec.kinds)
        return Wrong(_cast(t, dtype), f"dtype {dtype}", not accepted)
    if kind == "empty" and t.ndim > 0:
        dim = draw(st.integers(-t.ndim, -1))
        shape = list(t.shape)
        shape[dim] = 0
        return Wrong(_like(t, tuple(shape)), f"empty {tuple(shape)}", False, True)
    if kind == "nonfinite" and (t.is_floating_point() or t.is_complex()) and t.numel() > 0:
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        idx = draw(st.integers(0, t.numel() - 1))
        u = t.detach().clone()
        u.view(-1)[idx] = bad
        return Wrong(u, f"{bad} at {idx}", spec.finite)
    # A nested list / NumPy copy of the valid value: accepted or a clear error.
    as_np = draw(st.booleans())
    numpy_ok = as_np and not t.is_complex() and t.dtype != torch.bfloat16
    v = t.detach().numpy() if numpy_ok else t.tolist()
    return Wrong(v, "numpy" if isinstance(v, np.ndarray) else "list", False)


def _like(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex():
        return torch.randn(shape, dtype=t.dtype)
    if t.dtype == torch.bool:
        return torch.ones(shape, dtype=torch.bool)
    return torch.zeros(shape, dtype=t.dtype)


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if t.is_complex() and not dtype.is_complex:
        t = t.real
    return t.detach().to(dtype)


def wrong_int(spec: Int) -> st.SearchStrategy[Wrong]:
    bad: list[Wrong] = [
        Wrong(spec.minimum - 1, f"{spec.minimum - 1} (< minimum)", True),
        Wrong(-7, "-7", True),
        Wrong(2.5, "2.5", True),
        Wrong("3", "'3'", True),
        Wrong(True, "True", True),
    ]
    if not spec.optional:
        bad.append(Wrong(None, "None", True))
    if spec.even and spec.valid is not None:
        bad.append(Wrong(spec.valid + 1, "odd", True))
    return st.sampled_from(bad)


def wrong_num(spec: Num) -> st.SearchStrategy[Wrong]:
    bad: list[Wrong] = [
        Wrong(math.nan, "nan", True),
        Wrong("1.0", "'1.0'", True),
        Wrong([1.0], "[1.0]", True),
    ]
    if spec.high < math.inf or spec.low > -math.inf:
        bad.append(Wrong(math.inf, "inf", True))
    if spec.low > -math.inf:
        below = spec.low if spec.low_open else spec.low - 1.0
        bad.append(Wrong(below, f"{below} (below range)", True))
    if spec.high < math.inf:
        bad.append(Wrong(spec.high + 1.0, "above range", True))
    if not spec.optional:
        bad.append(Wrong(None, "None", True))
    return st.sampled_from(bad)


def wrong_choice(spec: Choice) -> st.SearchStrategy[Wrong]:
    return st.sampled_from(
        [Wrong("bogus", "'bogus'", True), Wrong(None, "None", True), Wrong(3, "3", True)]
    )


def wrong_value(spec: Spec) -> st.SearchStrategy[Wrong]:
    if isinstance(spec, Opts):
        return st.sampled_from([Wrong(v, repr(v), True) for v in spec.bad])
    if isinstance(spec, Tens):
        return wrong_tensor(spec)
    if isinstance(spec, Int):
        return wrong_int(spec)
    if isinstance(spec, Num):
        return wrong_num(spec)
    return wrong_choice(spec)


def names(message: str, name: str) -> bool:
    """The message blames ``name``: as its subject, or as what another is matched to."""
    subject = message.split(": expected", 1)[0]
    pattern = rf"(^|[\s(,.]){re.escape(name)}($|[\s).,:\[']|'s)"
    return bool(re.search(pattern, subject)) or bool(
        re.search(rf"((match(es)?|of|and) {re.escape(name)}\b)|\b{re.escape(name)}'s\b", message)
    )


def run_case(case: Case, name: str, wrong: Wrong) -> None:
    """Call ``case`` with ``name`` replaced by ``wrong`` and check the reaction."""
    kwargs = case.valid_kwargs()
    kwargs[name] = wrong.value
    where = f"{case.id}({name} = {wrong.label})"
    try:
        case.fn(**kwargs)
    except ValueError as err:
        # A relational error (sizes that disagree) may blame the other side.
        blamed = [name, *case.args] if wrong.relational else [name]
        if not any(names(str(err), n) for n in blamed):
            pytest.fail(f"{where}: ValueError does not name {name!r}: {err}")
        return
    except Exception as err:  # the point of the test: nothing else may escape
        pytest.fail(f"{where}: raised {type(err).__name__}: {err}")
    if wrong.must_raise:
        pytest.fail(f"{where}: accepted a wrong value")


def case_params(cases: Sequence[Case]) -> list[Any]:
    """pytest parameters (case, argument name), one per argument of every case."""
    return [pytest.param(c, n, id=f"{c.id}-{n}") for c in cases for n in c.args]


def valid_call_works(case: Case) -> None:
    """The unmodified call must succeed: otherwise every error would be vacuous."""
    case.fn(**case.valid_kwargs())
