"""The S4 layer (Gu, Goel, Ré, "Efficiently Modeling Long Sequences with Structured
State Spaces", ICLR 2022) and its diagonal variant S4D, in one ``nn.Module``.

Convolution mode: per channel h (H independent SSMs) a kernel K_h of length L, from
the Cauchy/Woodbury algorithm (``mode="nplr"``, S4 Alg. 1) or the Vandermonde product
(``mode="diag"``, S4D); y = K * u (FFT, zero-padded) + D u, then GELU, dropout and an
output linear layer (GLU by default, as the official S4Block). Recurrent mode:
``step`` runs x_k = Ā x_{k-1} + B̄ u_k, y_k = Re(C x_k) + D u_k (S4 eq. 3).

The truncation term C̃ = C (I - Ā^L) (NPLR mode). As in S4 (Sec. 3.3, App. C.3),
the layer learns C̃ directly and never forms Ā^L in the forward pass: parameter ``C``
holds C̃ for the length ``l_kernel`` (a buffer). With ``l_max`` set, l_kernel = l_max
from construction: C is drawn at random and converted once to C̃ = C (I - Ā^l_max)
with a dense float64 matrix power, and ``kernel(L)`` for L <= l_max is the first L
terms of the length-l_max kernel, i.e. exactly the kernel of the continuous system
(A, B, C = C̃ (I - Ā^l_max)⁻¹, Δ) that ``dense_ssm()`` returns. With ``l_max=None``,
l_kernel is set by the first input, and a longer input re-expresses C̃ for the new
length (C̃' = C̃ (I - Ā^l)⁻¹ (I - Ā^l'), dense, float64, without gradient), which
leaves the represented system, hence every shorter kernel, unchanged. The diagonal
mode evaluates the truncated kernel directly, so C is plain C there.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from structmat._checks import (
    check_choice,
    check_ndim,
    check_number,
    check_positive_int,
    fail,
    shape_str,
)
from structmat.ssm.conv import fft_conv
from structmat.ssm.discretize import DISCRETIZATIONS, discretize_dense, discretize_diag
from structmat.ssm.hippo import MEASURES
from structmat.ssm.nplr import full_system, nplr
from structmat.ssm.nplr_kernel import nplr_kernel
from structmat.ssm.s4d import DIAG_INITS, diag_init, diag_kernel

__all__ = ["MODES", "S4"]

MODES = ("nplr", "diag")

# Smallest |Re λ| at initialisation: Re λ = -exp(log_neg_re) cannot represent 0
# (legt, lagt and fout have purely imaginary Λ); the official code clamps the same way.
_MIN_NEG_RE = 1e-4


def _complex_of(x: torch.Tensor) -> torch.Tensor:
    """View a real (..., 2) parameter as complex (...)."""
    return torch.view_as_complex(x)


def _untruncate(dA: torch.Tensor, Ct: torch.Tensor, L: int) -> torch.Tensor:
    """C = C̃ (I - Ā^L)⁻¹ for a full-state C̃ (M, H, N) and Ā (H, N, N), by a solve:
    (I - Ā^L)ᵀ Cᵀ = C̃ᵀ."""
    eye = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
    E = eye - torch.linalg.matrix_power(dA, L)  # (H, N, N)
    return torch.linalg.solve(E.transpose(-1, -2), Ct.unsqueeze(-1)).squeeze(-1)


class S4(nn.Module):
    """Structured state space sequence layer (S4 / S4D).

    Args:
        d_model: H, channels (each an independent single-input single-output SSM).
        d_state: N, state size, even (N/2 complex modes kept per conjugate pair).
        l_max: longest sequence; None lets the kernel length follow the input.
        mode: ``"nplr"`` (S4: A = Λ - P Pᴴ, Cauchy kernel) or ``"diag"`` (S4D).
        init: ``"legs" | "legt" | "lagt" | "fout"`` for nplr (HiPPO measure);
            ``"diag-lin" | "diag-inv" | "legs"`` for diag (S4D-Lin/Inv/LegS).
        discretization: ``"bilinear" | "zoh"``; None picks bilinear for nplr (the
            only one the Cauchy kernel supports) and zoh for diag.
        bidirectional: add an anti-causal kernel (separate C, shared A, B, Δ).
        dropout: dropout after the activation.
        dt_min, dt_max: log-uniform range of the initial step sizes Δ.
        glu: output layer Linear(H, 2H) + GLU (True, as the official S4Block) or
            Linear(H, H).
        chunk: chunk length of the Cauchy/Vandermonde products (None: automatic).

    Shapes: ``forward(u)`` u (B, L, H) -> y (B, L, H); ``kernel(L)`` (H, L), or
    (2, H, L) when bidirectional; ``step(u_t, state)`` u_t (B, H), state (B, H, N')
    complex with N' = N (nplr) or N/2 (diag).

    Raises:
        ValueError: bad sizes or choices, odd d_state, nplr with zoh.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        l_max: int | None = None,
        mode: str = "nplr",
        init: str = "legs",
        discretization: str | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        glu: bool = True,
        chunk: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(d_model, "d_model")
        check_positive_int(d_state, "d_state")
        if d_state % 2:
            raise fail("d_state", "an even state size (conjugate pairs of modes)", repr(d_state))
        if l_max is not None:
            check_positive_int(l_max, "l_max")
        check_choice(mode, "mode", MODES)
        check_choice(init, "init", MEASURES if mode == "nplr" else DIAG_INITS)
        if discretization is None:
            discretization = "bilinear" if mode == "nplr" else "zoh"
        check_choice(discretization, "discretization", DISCRETIZATIONS)
        if mode == "nplr" and discretization != "bilinear":
            raise fail(
                "discretization",
                "'bilinear' for mode='nplr' (the Cauchy/Woodbury kernel needs the bilinear "
                "transform; use mode='diag' for zoh)",
                repr(discretization),
            )
        check_number(dropout, "dropout", 0.0, 1.0, high_open=True, wanted="a probability in [0, 1)")
        check_number(dt_min, "dt_min", 0.0, low_open=True)
        check_number(dt_max, "dt_max", 0.0, low_open=True)
        if not dt_min <= dt_max:
            raise fail("dt_min, dt_max", "0 < dt_min <= dt_max", f"{dt_min!r}, {dt_max!r}")
        if chunk is not None:
            check_positive_int(chunk, "chunk")
        self.d_model, self.d_state, self.l_max = d_model, d_state, l_max
        self.mode, self.init, self.discretization = mode, init, discretization
        self.bidirectional, self.glu, self.chunk = bidirectional, glu, chunk
        H, N2 = d_model, d_state // 2
        M = 2 if bidirectional else 1
        real = torch.get_default_dtype()

        log_dt = torch.rand(H, dtype=torch.float64) * (
            math.log(dt_max) - math.log(dt_min)
        ) + math.log(dt_min)  # (H,)
        if mode == "nplr":
            Lam, P, B, _ = nplr(init, d_state)  # (N2,), (R, N2), (N2,)
        else:
            Lam, B = diag_init(init, d_state)
        Lam = Lam.expand(H, N2)  # (H, N2)
        C = torch.randn(M, H, N2, dtype=torch.complex128)  # variance 1 (1/2 per part)

        self.log_dt = nn.Parameter(log_dt.to(real))
        self.log_neg_re = nn.Parameter(torch.log((-Lam.real).clamp(min=_MIN_NEG_RE)).to(real))
        self.Lambda_im = nn.Parameter(Lam.imag.clone().to(real))
        self.B = nn.Parameter(torch.view_as_real(B.expand(H, N2).clone()).to(real))  # (H, N2, 2)
        if mode == "nplr":
            P = P[:, None, :].expand(-1, H, -1).clone()  # (R, H, N2)
            self.P = nn.Parameter(torch.view_as_real(P).to(real))  # (R, H, N2, 2)
        self.C = nn.Parameter(torch.view_as_real(C).to(real))  # (M, H, N2, 2)
        self.D = nn.Parameter(torch.randn(H, dtype=torch.float64).to(real))
        # Length that C̃ refers to (nplr); 0 = not set yet, C then holds plain C.
        self.register_buffer("l_kernel", torch.zeros((), dtype=torch.long))
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(H, 2 * H if glu else H)
        self._step_cache: tuple[Any, ...] | None = None
        if mode == "nplr" and l_max is not None:
            self._set_kernel_length(l_max)

    # ------------------------------------------------------------------ parameters
    def ssm_parameters(self) -> list[nn.Parameter]:
        """The SSM parameters (Λ, P, B, log Δ) that S4 trains with their own learning
        rate and no weight decay (S4 App. D.2); C and D are ordinary weights."""
        ps = [self.log_dt, self.log_neg_re, self.Lambda_im, self.B]
        if self.mode == "nplr":
            ps.append(self.P)
        return ps

    def _l_kernel_buf(self) -> torch.Tensor:
        buf = self.l_kernel
        assert isinstance(buf, torch.Tensor)
        return buf

    def _lk(self) -> int:
        """Length that C̃ refers to (nplr); 0 before the first kernel."""
        return int(self._l_kernel_buf())

    def _lambda(self) -> torch.Tensor:
        """Λ (H, N2) complex, Re Λ = -exp(log_neg_re) < 0 (stable)."""
        return torch.complex(-torch.exp(self.log_neg_re), self.Lambda_im)

    def _dt(self) -> torch.Tensor:
        return torch.exp(self.log_dt)  # (H,)

    def _n_state(self) -> int:
        """N' of the recurrent state: N (nplr, full system) or N/2 (diag)."""
        return self.d_state if self.mode == "nplr" else self.d_state // 2

    def _complex_dtype(self) -> torch.dtype:
        """The complex dtype of the layer's precision (complex128 for a float64 layer)."""
        return torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64

    def _full_nplr(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full N-state (A (H, N, N), B (H, N), Δ (H,)) of the nplr mode in ``dtype``."""
        Lam = self._lambda().to(dtype)
        P = _complex_of(self.P).to(dtype)
        B = _complex_of(self.B).to(dtype)
        A, Bf, _ = full_system(Lam, P, B)  # (H, N, N), (H, N)
        return A, Bf, self._dt().to(A.real.dtype)

    @torch.no_grad()
    def _set_kernel_length(self, L: int) -> None:
        """Re-express C̃ for length L (nplr mode); dense float64, no gradient."""
        A, _, dt = self._full_nplr(torch.complex128)
        dA, _ = discretize_dense(A, torch.zeros_like(A[..., 0]), dt, "bilinear")  # (H, N, N)
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        C = _complex_of(self.C).to(torch.complex128)  # (M, H, N2)
        Cf = torch.cat([C, C.conj()], dim=-1)  # (M, H, N)
        old = self._lk()
        if old > 0:
            Cf = _untruncate(dA, Cf, old)  # C = C̃ (I - Ā^old)⁻¹
        E = eye - torch.linalg.matrix_power(dA, L)  # (H, N, N)
        Ct = torch.einsum("mhn,hnk->mhk", Cf, E)[..., : Cf.shape[-1] // 2]  # (M, H, N2)
        self.C.copy_(torch.view_as_real(Ct).to(self.C.dtype))
        self._l_kernel_buf().fill_(L)
        self._step_cache = None

    # --------------------------------------------------------------------- kernels
    def _check_length(self, L: Any, name: str, shape: torch.Size | None = None) -> None:
        if shape is None:
            check_positive_int(L, name)
        if self.l_max is not None and L > self.l_max:
            got = repr(L) if shape is None else f"shape {shape_str(shape)}"
            raise fail(name, f"length L <= l_max = {self.l_max}", got)

    def _kernels(self, L: int) -> torch.Tensor:
        """All kernels (M, H, L) for M = 1 (causal) or 2 (bidirectional)."""
        dt = self._dt()
        Lam = self._lambda()
        B = _complex_of(self.B)
        C = _complex_of(self.C)
        if self.mode == "diag":
            return diag_kernel(Lam, B, C, dt, L, self.discretization, chunk=self.chunk)
        if self._lk() == 0 or L > self._lk():
            self._set_kernel_length(L)
            C = _complex_of(self.C)
        Lk = self._lk()
        K = nplr_kernel(Lam, _complex_of(self.P), B, C, dt, Lk, chunk=self.chunk)  # (M, H, Lk)
        return K if L == Lk else K[..., :L]  # (M, H, L)

    def kernel(self, L: int) -> torch.Tensor:
        """Convolution kernel K_l = Re(C Āˡ B̄), l < L (S4 eq. 4-5).

        Args:
            L: kernel length, 1 <= L (<= l_max when set).

        Returns:
            K: (H, L) real, or (2, H, L) (causal, anti-causal) when bidirectional.

        Raises:
            ValueError: L not a positive integer or L > l_max.
        """
        self._check_length(L, "L")
        K = self._kernels(L)  # (M, H, L)
        return K if self.bidirectional else K[0]

    def dense_ssm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The continuous-time per-channel system behind ``kernel``.

        Discretising (A, B) with Δ = dt (``self.discretization``) and taking
        Re(C Āˡ B̄) reproduces ``kernel(L)`` for every L <= l_kernel (nplr) / any L
        (diag). nplr: the full N-state system (the low-rank term couples conjugate
        pairs), C = C̃ (I - Ā^l_kernel)⁻¹. diag: the N/2 kept modes, factor 2 in C.

        Returns:
            (A, B, C, dt): A (H, N', N') complex, B (H, N'), C (H, N') or (2, H, N')
            when bidirectional, dt (H,) real; N' = N (nplr) or N/2 (diag).
        """
        cdt = self._complex_dtype()
        C = _complex_of(self.C).to(cdt)  # (M, H, N2)
        if self.mode == "diag":
            A = torch.diag_embed(self._lambda().to(cdt))  # (H, N2, N2)
            B = _complex_of(self.B).to(cdt)
            dt = self._dt()
            Cd = 2.0 * C
        else:
            A, B, dt = self._full_nplr(cdt)
            Cd = torch.cat([C, C.conj()], dim=-1)  # (M, H, N)
            Lk = self._lk()
            if Lk > 0:
                dA, _ = discretize_dense(A, B, dt, "bilinear")
                Cd = _untruncate(dA, Cd, Lk)
        return A, B, (Cd if self.bidirectional else Cd[0]), dt

    # --------------------------------------------------------------------- forward
    def _post(self, y: torch.Tensor) -> torch.Tensor:
        """Activation, dropout, output layer on (..., H)."""
        y = self.dropout(F.gelu(y))
        y = self.output_linear(y)  # (..., H) or (..., 2H)
        return F.glu(y, dim=-1) if self.glu else y  # (..., H)

    def _check_shape(self, u: torch.Tensor, name: str, ndim: int, layout: str) -> None:
        """dtype checks, then rank ``ndim`` with H = d_model channels last."""
        self._check_input(u, name)
        check_ndim(u, name, ndim, layout)
        if u.shape[-1] != self.d_model:
            raise fail(
                name,
                f"shape {layout} with H = d_model = {self.d_model}",
                f"shape {shape_str(u.shape)}",
            )

    def _check_input(self, u: torch.Tensor, name: str) -> None:
        if not isinstance(u, torch.Tensor):
            raise fail(name, "a torch.Tensor", type(u).__name__)
        if u.dtype != self.log_dt.dtype:
            raise fail(
                name,
                f"dtype {self.log_dt.dtype} (the layer's; convert it with .double()/.float())",
                f"dtype {u.dtype}",
            )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            u: (B, L, H) real, L <= l_max when set.

        Returns:
            y: (B, L, H).

        Raises:
            ValueError: wrong rank, channel count, dtype, or L > l_max.
        """
        self._check_shape(u, "u", 3, "(B, L, H)")
        L = u.shape[1]
        if L == 0:
            raise fail("u", "a sequence length L >= 1", f"shape {shape_str(u.shape)}")
        self._check_length(L, "u", u.shape)
        x = u.transpose(1, 2).contiguous()  # (B, H, L), contiguous for the FFT
        K = self._kernels(L)  # (M, H, L)
        y = fft_conv(x, K, self.D)  # (B, H, L), D u folded into tap 0
        # one explicit copy to (B, L, H): the activation, the output matmul and their
        # backward then run on contiguous memory instead of strided views
        return self._post(y.transpose(1, 2).contiguous())  # (B, L, H)

    # ------------------------------------------------------------------- recurrent
    def _step_system(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Ā, B̄, C) of the recurrence; Ā (H, N, N) for nplr, (H, N2) for diag.

        Cached while no gradient is recorded and the parameters are unchanged.
        """
        params = list(self.parameters())
        key = (tuple(p._version for p in params), self.log_dt.dtype, self.log_dt.device)
        use_cache = not (torch.is_grad_enabled() and any(p.requires_grad for p in params))
        if use_cache and self._step_cache is not None and self._step_cache[0] == key:
            return self._step_cache[1]
        A, B, C, dt = self.dense_ssm()
        if self.mode == "diag":
            logA, Bbar = discretize_diag(
                torch.diagonal(A, dim1=-2, dim2=-1), B, dt, self.discretization
            )
            system = (torch.exp(logA), Bbar, C)
        else:
            dA, dB = discretize_dense(A, B, dt, "bilinear")
            system = (dA, dB, C)
        if use_cache:
            self._step_cache = (key, system)
        return system

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero state for ``step``.

        Args:
            batch: B.

        Returns:
            state: (B, H, N') complex; N' = N (nplr, full system) or N/2 (diag).
        """
        check_positive_int(batch, "batch")
        n = self._n_state()
        cdt = self._complex_dtype()
        return torch.zeros(batch, self.d_model, n, dtype=cdt, device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the recurrent view (causal layer only).

        x_k = Ā x_{k-1} + B̄ u_k,  y_k = Re(C x_k) + D u_k, then the same activation and
        output layer as ``forward``; running it over a sequence equals ``forward``.
        Run it under ``torch.no_grad()`` for generation so (Ā, B̄, C) are cached.

        Args:
            u_t: (B, H) input at one time step.
            state: (B, H, N') complex, from ``initial_state`` or a previous step.

        Returns:
            (y_t, state): y_t (B, H), the new state (B, H, N').

        Raises:
            ValueError: bidirectional layer, wrong shapes or dtypes.
        """
        if self.bidirectional:
            raise fail(
                "step",
                "a causal layer (bidirectional=False) for recurrent mode",
                "bidirectional=True",
            )
        self._check_shape(u_t, "u_t", 2, "(B, H)")
        n = self._n_state()
        want = (u_t.shape[0], self.d_model, n)
        cdt = self._complex_dtype()
        # The state's dtype is initial_state's: the recurrence does not mix precisions.
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != want or state.dtype != cdt:
            got = (
                f"shape {shape_str(state.shape)} dtype {state.dtype}"
                if isinstance(state, torch.Tensor)
                else type(state).__name__
            )
            wanted = f"a complex tensor of shape (B, H, N') = {shape_str(want)}, dtype {cdt}"
            raise fail("state", wanted, got)
        dA, dB, C = self._step_system()
        u_c = u_t.to(dB.dtype)
        if self.mode == "diag":
            x = dA * state + dB * u_c[..., None]  # (B, H, N2)
        else:
            x = torch.einsum("hmn,bhn->bhm", dA, state) + dB * u_c[..., None]  # (B, H, N)
        y = torch.einsum("hn,bhn->bh", C, x).real + self.D * u_t  # (B, H)
        return self._post(y), x

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, l_max={self.l_max}, "
            f"mode={self.mode!r}, init={self.init!r}, discretization={self.discretization!r}, "
            f"bidirectional={self.bidirectional}, glu={self.glu}"
        )
