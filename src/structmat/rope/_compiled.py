"""The rotation compiled by inductor for the CPU, taken only once it has paid for itself.

Why: the ``half`` layout cannot be one eager op. Its pairs ``(x[i], x[i + D/2])``
are not adjacent, so there is no complex view, and the eager path needs three
passes over each cache-sized block (1.4-1.6x a plain copy here, more in 16 bit,
where every block is also converted). Inductor fuses the whole expression into one
loop that reads ``x`` once and writes the output once: 1.05-1.2x a copy in float32
and 1.1-1.4x in bfloat16 (1 and 2 threads, benchmarks/rope.py). The interleaved
layout never comes here: in float32/float64 it is already one complex multiply at
copy speed, and in 16 bit inductor's stride-2 loads ran no faster than eager
(3-4.7x a copy against eager's 4x, measured).

When: compiling costs seconds (1-6 s with inductor's on-disk cache warm, ~15 s
cold), so the first calls run eagerly and the time they take is charged to their
kind (dtype, ranks, contiguity, partial rotary or not: what makes dynamo compile
again). Once a kind has spent ``EAGER_SECONDS`` in eager rotations the kernel is
compiled. Eager spends about half its time on what compiling saves, so that is when
the saving would have repaid a ~5 s compile: the ski-rental rule, never worse than
twice the better of "always eager" and "compile at once" in hindsight. Inputs under
``MIN_NUMEL`` elements always run eagerly (launch costs dominate there, and a compile
would take too long to pay back).

``STRUCTMAT_ROPE_COMPILE`` overrides the rule: ``0`` never compiles, ``1`` compiles
on the first large call, ``auto`` (the default) is the rule above. If compiling
fails (no C++ compiler, an unsupported platform) a warning is given once and the
eager path is used from then on. Compiled and eager results agree to rounding (the
compiled loop may fuse multiply-adds), not bit for bit.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from structmat._checks import fail

__all__ = ["DISPATCH", "EAGER_SECONDS", "ENV", "MIN_NUMEL", "Dispatch", "rotate_expression"]

ENV = "STRUCTMAT_ROPE_COMPILE"
MIN_NUMEL = 1 << 20
EAGER_SECONDS = 10.0

_Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]


def rotate_expression(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
) -> torch.Tensor:
    """The rotation as one differentiable expression (what inductor compiles).

    Args:
        x: (..., L, D).
        cos, sin: (..., L, R/2) in the compute dtype, broadcastable to x's pairs; the
            first R channels rotate, the rest pass through (partial rotary).
        layout: ``"half"`` or ``"interleaved"``, within the first R channels.

    Returns:
        (..., L, D), x's dtype, contiguous. Each half is rounded to x's dtype once.
    """
    work = cos.dtype
    h = cos.shape[-1]  # R/2
    if layout == "half":
        a, b = x[..., :h].to(work), x[..., h : 2 * h].to(work)
    else:
        a, b = x[..., 0 : 2 * h : 2].to(work), x[..., 1 : 2 * h : 2].to(work)
    ra = (a * cos - b * sin).to(x.dtype)  # (..., L, R/2)
    rb = (b * cos + a * sin).to(x.dtype)
    if layout == "half":
        head = torch.cat([ra, rb], dim=-1)
    else:
        head = torch.stack([ra, rb], dim=-1).flatten(-2)  # (..., L, R/2, 2) -> (..., L, R)
    return head if 2 * h == x.shape[-1] else torch.cat([head, x[..., 2 * h :]], dim=-1)


def _mode() -> str:
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "0", "1"):
        raise fail(ENV, "one of auto, 0, 1", repr(os.environ.get(ENV)))
    return mode


class Dispatch:
    """Chooses, per call, between the compiled kernel and the eager path.

    One instance (:data:`DISPATCH`) serves the process; tests make their own.
    """

    def __init__(self, compile_fn: Callable[..., Any] | None = None) -> None:
        self._compile_fn = compile_fn
        self._kernel: _Kernel | None = None
        self._failed = False
        self._spent: dict[tuple, float] = {}  # kind -> eager seconds charged
        self._ready: set[tuple] = set()  # kinds that run compiled

    @staticmethod
    def kind(x: torch.Tensor, cos: torch.Tensor, layout: str) -> tuple | None:
        """The kind of a call that may be compiled, or None where eager is the answer."""
        if x.device.type != "cpu" or x.numel() < MIN_NUMEL or layout != "half":
            return None
        return (x.dtype, x.ndim, cos.ndim, x.is_contiguous(), 2 * cos.shape[-1] == x.shape[-1])

    def kernel(self, kind: tuple | None) -> _Kernel | None:
        """The compiled kernel if ``kind`` should run compiled now, else None."""
        if kind is None or self._failed:
            return None
        mode = _mode()
        if mode == "0":
            return None
        if kind not in self._ready:
            if mode == "auto" and self._spent.get(kind, 0.0) < EAGER_SECONDS:
                return None
            self._ready.add(kind)
        if self._kernel is None:
            compile_fn = self._compile_fn or torch.compile
            # dynamic=None: static at first, then only the dims that change (batch,
            # length) become symbolic; D stays a constant, so the loop vectorises.
            self._kernel = compile_fn(rotate_expression, fullgraph=True)
        return self._kernel

    def run(
        self, kernel: _Kernel, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
    ) -> torch.Tensor | None:
        """The kernel's result; None (and eager from now on) if compiling fails."""
        try:
            return kernel(x, cos, sin, layout)
        except Exception as err:  # any compiler failure means: stay eager
            self._failed = True
            warnings.warn(
                f"structmat.rope: compiling the rotation failed ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}); using the eager "
                f"path. Set {ENV}=0 to skip the attempt.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def charge(self, kind: tuple | None, started: float) -> None:
        """Charge the eager call that started at ``started`` (perf_counter) to its kind."""
        if kind is not None:
            self._spent[kind] = self._spent.get(kind, 0.0) + time.perf_counter() - started


DISPATCH = Dispatch()
