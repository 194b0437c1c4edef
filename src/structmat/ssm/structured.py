"""Cauchy and Vandermonde products in pure PyTorch, chunked in forward and backward.

Both are structured matrix-vector products whose matrix (H x N x L) is never stored:
the forward pass and the closed-form backward pass visit it one chunk of L at a time,
so memory stays O(H·N·chunk) (S4 Sec. 3.3 and App. C.3; S4D Sec. 3.2). They are
``torch.autograd.Function`` s, so autograd never saves the big matrix either; the
backward recomputes each chunk from the small inputs (v, z, w / v, log x).

Gradient convention: PyTorch's for complex tensors, grad_x = Σ conj(∂y/∂x) · grad_y
for holomorphic y(x) (both products here are holomorphic in each input).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from structmat._checks import check_positive_int, check_same_last_dim, check_tensor, fail, shape_str

__all__ = ["cauchy", "cauchy_conj", "vandermonde"]

# Entries of one (batch, N, chunk) block of the Cauchy matrix: 2^18 (1 MiB per float32
# buffer) keeps a chunk's working set near the L2 cache while its matmuls stay large
# enough (chunk 32 at H = 256, N/2 = 32); measured faster than 2^20 on one core.
_CAUCHY_BLOCK = 1 << 18


def _complex_dtype(*xs: torch.Tensor) -> torch.dtype:
    """complex128 if any input is double precision, else complex64."""
    double = any(x.dtype in (torch.float64, torch.complex128) for x in xs)
    return torch.complex128 if double else torch.complex64


def _broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of two shapes (torch.broadcast_shapes imports torch._refs,
    seconds on first use)."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def _flatten_batch(
    v: torch.Tensor, w: torch.Tensor, name: str = "w"
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Broadcast v (..., M, N) and w (..., N) over their batch dims and flatten them:
    returns vb (Bt, M, N), wb (Bt, N) and the broadcast batch shape (``name`` names w
    in the error)."""
    try:
        batch = _broadcast_shapes(v.shape[:-2], w.shape[:-1])
    except ValueError as err:
        raise fail(
            name, f"batch dims broadcastable with v {shape_str(v.shape)}", shape_str(w.shape)
        ) from err
    M, N = v.shape[-2:]
    Bt = math.prod(batch)  # explicit: reshape(-1, ...) is ambiguous when M or N is 0
    vb = v.expand(*batch, M, N).reshape(Bt, M, N)  # (Bt, M, N)
    wb = w.expand(*batch, N).reshape(Bt, N)  # (Bt, N)
    return vb, wb, batch


def _cauchy_chunk(Bt: int, N: int, J: int, chunk: int | None) -> int:
    if chunk is not None:
        return max(1, min(chunk, J))
    return max(1, min(J, _CAUCHY_BLOCK // max(1, Bt * N)))


def _check_cauchy_args(
    v: torch.Tensor, z: torch.Tensor, zname: str, w: torch.Tensor, chunk: int | None
) -> None:
    """The argument checks shared by ``cauchy`` and ``cauchy_conj``."""
    check_tensor(v, "v", "(..., M, N)", 2, at_least=True, kind="numeric")
    check_tensor(z, zname, "(J,)", 1, kind="numeric")
    check_tensor(w, "w", "(..., N)", 1, at_least=True, kind="numeric")
    check_same_last_dim(w, "w", v.shape[-1], "v")
    if chunk is not None:
        check_positive_int(chunk, "chunk")


def _apply_cauchy(
    fn: type[torch.autograd.Function],
    v: torch.Tensor,
    z: torch.Tensor,
    w: torch.Tensor,
    chunk: int | None,
) -> torch.Tensor:
    """Flatten the batch, pick the chunk, run ``fn`` ((Bt, M, N), (J,), (Bt, N)) and
    restore the batch: (..., M, J). Zeros when there are no nodes or no batch."""
    vb, wb, batch = _flatten_batch(v, w)
    M, N = v.shape[-2:]
    J = z.shape[0]
    if J == 0 or vb.shape[0] == 0:
        return torch.zeros(*batch, M, J, dtype=v.dtype, device=v.device)
    ck = _cauchy_chunk(vb.shape[0], N, J, chunk)
    out = fn.apply(vb.contiguous(), z.contiguous(), wb.contiguous(), ck)
    return out.reshape(*batch, M, J)  # (..., M, J)


def _save(ctx: Any, chunk: int, *tensors: torch.Tensor) -> None:
    """Keep the small inputs and the chunk size for a chunked backward."""
    ctx.save_for_backward(*tensors)
    ctx.chunk = chunk


def _saved(ctx: Any) -> tuple[Any, ...]:
    """What ``_save`` kept: the saved tensors, then the chunk size."""
    return (*ctx.saved_tensors, ctx.chunk)


class _Cauchy(torch.autograd.Function):
    """r[b, m, j] = Σ_n v[b, m, n] / (z[j] - w[b, n]) on flattened batches."""

    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        out = v.new_empty(v.shape[0], v.shape[1], z.shape[0])  # (Bt, M, J)
        wc = w.unsqueeze(-1)  # (Bt, N, 1)
        for j0 in range(0, z.shape[0], chunk):
            G = torch.reciprocal(z[j0 : j0 + chunk] - wc)  # (Bt, N, Jc)
            torch.matmul(v, G, out=out[:, :, j0 : j0 + chunk])  # (Bt, M, Jc)
        _save(ctx, chunk, v, z, w)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        v, z, w, chunk = _saved(ctx)
        need_v, need_z, need_w = ctx.needs_input_grad[:3]
        J = z.shape[0]
        wc = w.unsqueeze(-1)  # (Bt, N, 1)
        gv = torch.zeros_like(v) if need_v else None
        acc = torch.zeros_like(v) if need_w else None  # Σ_j conj(G²)[n, j] g[m, j]
        gz = torch.zeros_like(z) if need_z else None
        for j0 in range(0, J, chunk):
            Gc = torch.reciprocal(z[j0 : j0 + chunk] - wc).conj()  # (Bt, N, Jc)
            gc = g[:, :, j0 : j0 + chunk]  # (Bt, M, Jc)
            if gv is not None:
                # ∂r/∂v[m, n] = G[n, j]  ->  grad_v = g @ conj(G)ᵀ
                gv += torch.matmul(gc, Gc.transpose(-1, -2))  # (Bt, M, N)
            if acc is not None or gz is not None:
                G2c = Gc * Gc  # conj(G)², (Bt, N, Jc)
                if acc is not None:
                    # ∂r[m, j]/∂w[n] = v[m, n] G[n, j]²
                    acc += torch.matmul(gc, G2c.transpose(-1, -2))  # (Bt, M, N)
                if gz is not None:
                    # ∂r[m, j]/∂z[j] = -Σ_n v[m, n] G[n, j]²
                    d = torch.matmul(v.conj(), G2c)  # (Bt, M, Jc)
                    gz[j0 : j0 + chunk] = -(d * gc).sum(dim=(0, 1))
        gw = (v.conj() * acc).sum(dim=1) if acc is not None else None  # (Bt, N)
        return gv, gz, gw, None


def cauchy(
    v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Cauchy matrix-vector products sharing their denominators (S4 Sec. 3.3, eq. 5).

    r[..., m, j] = Σ_n v[..., m, n] / (z[j] - w[..., n])

    Computed chunk by chunk over j, in forward and (closed-form) backward, so the
    (..., N, J) Cauchy matrix is never held in memory.

    Args:
        v: (..., M, N) numerators; M products share one set of denominators.
        z: (J,) nodes.
        w: (..., N) poles, batch dims broadcastable with v's.
        chunk: nodes per chunk; None picks one that keeps a chunk near 2^18 entries.

    Returns:
        r: (..., M, J) complex (complex128 if any input is double precision).

    Raises:
        ValueError: wrong ranks, mismatched N, non-positive chunk.
    """
    _check_cauchy_args(v, z, "z", w, chunk)
    cdt = _complex_dtype(v, z, w)
    return _apply_cauchy(_Cauchy, v.to(cdt), z.to(cdt), w.to(cdt), chunk)


class _CauchyConj(torch.autograd.Function):
    """r[b, m, j] = Σ_n v/(i y_j - w) + v̄/(i y_j - w̄), in real arithmetic.

    With z = i y: (z - w)(z - w̄) = D = p - i q, p = a² + (c - y)(c + y), q = 2 a y for
    w = a + i c (the product form of p avoids cancelling |w|² against y²), and
    r = Σ_n (2 Re(v) z - 2 Re(v w̄)) E, E = 1/D = (p + i q)/(p² + q²): per entry a few
    real multiply-adds instead of two complex divisions, then real matmuls. Each chunk
    works in preallocated buffers (no allocation or page faults per chunk), with Re E
    and Im E side by side in one (Bt, N, 2·Jc) block so one matmul covers both.
    """

    @staticmethod
    def _E(
        a2: torch.Tensor,
        ax2: torch.Tensor,
        c: torch.Tensor,
        y: torch.Tensor,
        E: torch.Tensor,
        tmp: torch.Tensor,
    ) -> None:
        """E[..., :Jc] = Re, E[..., Jc:] = Im of 1/((iy - w)(iy - w̄)); E (Bt, N, 2 Jc)."""
        jc = y.shape[0]
        p, q = E[..., :jc], E[..., jc:]
        torch.sub(c, y, out=tmp)  # c - y
        torch.add(c, y, out=p)  # c + y
        p.mul_(tmp).add_(a2)  # p = a² + (c-y)(c+y)
        torch.mul(ax2, y, out=q)  # q = 2 a y
        torch.mul(p, p, out=tmp)
        tmp.addcmul_(q, q).reciprocal_()  # 1/(p² + q²)
        p.mul_(tmp)
        q.mul_(tmp)

    @staticmethod
    def _poles(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """a², 2a and c for w = a + i c, each (Bt, N, 1), as ``_E`` takes them."""
        a, c = w.real.unsqueeze(-1), w.imag.unsqueeze(-1).contiguous()  # (Bt, N, 1)
        return a * a, 2.0 * a, c

    @staticmethod
    def _buffers(Bt: int, N: int, jc: int, like: torch.Tensor, n: int) -> list[torch.Tensor]:
        return [
            torch.empty(Bt * N * 2 * jc, dtype=like.dtype, device=like.device) for _ in range(n)
        ]

    @staticmethod
    def _view(buf: torch.Tensor, *shape: int) -> torch.Tensor:
        return buf[: math.prod(shape)].view(*shape)

    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, y: torch.Tensor, w: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        Bt, M, N = v.shape
        J = y.shape[0]
        a2, ax2, c = _CauchyConj._poles(w)
        alpha = 2.0 * v.real  # (Bt, M, N)
        beta = -2.0 * (v * w.conj().unsqueeze(1)).real  # (Bt, M, N)
        coef = torch.cat([alpha, beta], dim=1)  # (Bt, 2M, N)
        out = torch.empty(Bt, M, J, dtype=v.dtype, device=v.device)
        o = torch.view_as_real(out)  # (Bt, M, J, 2)
        bE, bt = _CauchyConj._buffers(Bt, N, chunk, y, 2)
        V = _CauchyConj._view
        for j0 in range(0, J, chunk):
            yc = y[j0 : j0 + chunk]
            jc = yc.shape[0]
            E = V(bE, Bt, N, 2 * jc)
            _CauchyConj._E(a2, ax2, c, yc, E, V(bt, Bt, N, jc))
            R = torch.matmul(coef, E)  # (Bt, 2M, 2Jc): [α·Er, α·Ei; β·Er, β·Ei]
            # r = i y (α·E) + β·E
            o[:, :, j0 : j0 + jc, 0] = R[:, M:, :jc] - yc * R[:, :M, jc:]
            o[:, :, j0 : j0 + jc, 1] = R[:, M:, jc:] + yc * R[:, :M, :jc]
        _save(ctx, chunk, v, y, w)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        # Closed forms (PyTorch convention, S0 = Σ_j conj(E) g, T_k = Σ_j y^k conj(E)² g):
        #   grad_v = 2 Im(S1) - 2 w Re(S0)
        #   grad_w = Σ_m conj(v) (2 w² Re T0 - 4 w Im T1 - 2 Re T2)
        # with conj(E)² = Fr + i Fi, Fr = (Er - Ei)(Er + Ei), Fi = -2 Er Ei.
        v, y, w, chunk = _saved(ctx)
        Bt, M, N = v.shape
        J = y.shape[0]
        a2, ax2, c = _CauchyConj._poles(w)
        gr, gi = g.real, g.imag  # (Bt, M, J)
        rdt = gr.dtype
        U = torch.zeros(Bt, 2 * M, N, dtype=rdt, device=g.device)  # Re S0, Im S1
        T = torch.zeros(Bt, 3 * M, N, dtype=rdt, device=g.device)  # Re T0, Im T1, Re T2
        need_w = ctx.needs_input_grad[2]
        bE, bt = _CauchyConj._buffers(Bt, N, chunk, y, 2)
        bF = _CauchyConj._buffers(Bt, N, chunk, y, 1)[0] if need_w else bt
        bL = torch.empty(Bt * 3 * M * 2 * chunk, dtype=rdt, device=g.device)
        V = _CauchyConj._view
        for j0 in range(0, J, chunk):
            sl = slice(j0, j0 + chunk)
            yc = y[sl]
            jc = yc.shape[0]
            E = V(bE, Bt, N, 2 * jc)
            tmp = V(bt, Bt, N, jc)
            _CauchyConj._E(a2, ax2, c, yc, E, tmp)
            Er, Ei = E[..., :jc], E[..., jc:]
            gr_c, gi_c = gr[:, :, sl], gi[:, :, sl]
            # rows [gr | gi] and [y gi | -y gr] against [Er | Ei]
            Lm = V(bL, Bt, 2 * M, 2 * jc)
            Lm[:, :M, :jc] = gr_c
            Lm[:, :M, jc:] = gi_c
            torch.mul(gi_c, yc, out=Lm[:, M:, :jc])
            torch.mul(gr_c, -yc, out=Lm[:, M:, jc:])
            U.baddbmm_(Lm, E.transpose(-1, -2))  # (Bt, 2M, N)
            if need_w:
                F_ = V(bF, Bt, N, 2 * jc)
                Fr, Fi = F_[..., :jc], F_[..., jc:]
                torch.sub(Er, Ei, out=tmp)
                torch.add(Er, Ei, out=Fr)
                Fr.mul_(tmp)  # Re conj(E)²
                torch.mul(Er, Ei, out=Fi)  # -Im conj(E)² / 2 (the -2 goes into the rows)
                # rows [gr | -gi], [y gi | y gr], [y² gr | -y² gi] against [Fr | Fi·(-2)]
                L3 = V(bL, Bt, 3 * M, 2 * jc)
                L3[:, :M, :jc] = gr_c
                torch.mul(gi_c, 2.0, out=L3[:, :M, jc:])
                torch.mul(gi_c, yc, out=L3[:, M : 2 * M, :jc])
                torch.mul(gr_c, -2.0 * yc, out=L3[:, M : 2 * M, jc:])
                y2 = yc * yc
                torch.mul(gr_c, y2, out=L3[:, 2 * M :, :jc])
                torch.mul(gi_c, 2.0 * y2, out=L3[:, 2 * M :, jc:])
                T.baddbmm_(L3, F_.transpose(-1, -2))  # (Bt, 3M, N)
        wb = w.unsqueeze(1)  # (Bt, 1, N)
        gv = 2.0 * U[:, M:] - 2.0 * wb * U[:, :M]  # (Bt, M, N) complex
        gw = None
        if need_w:
            inner = 2.0 * wb * wb * T[:, :M] - 4.0 * wb * T[:, M : 2 * M] - 2.0 * T[:, 2 * M :]
            gw = (v.conj() * inner).sum(dim=1)  # (Bt, N)
        return gv if ctx.needs_input_grad[0] else None, None, gw, None


def cauchy_conj(
    v: torch.Tensor, y: torch.Tensor, w: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Conjugate-pair Cauchy products at imaginary nodes z_j = i y_j (S4 Alg. 1, step 2).

    r[..., m, j] = Σ_n v[..., m, n] / (i y_j - w[..., n]) + conj(v) / (i y_j - conj(w))

    i.e. ``cauchy`` over the full state (w, w̄) with numerators (v, v̄), which is what a
    real SSM kept as N/2 conjugate pairs needs; S4's nodes z = (2/Δ)(1-ω)/(1+ω) lie on
    the imaginary axis, so real arithmetic does it at about a quarter of the cost.
    Chunked over j with a closed-form chunked backward (not differentiable in y).

    Args:
        v: (..., M, N2) numerators.
        y: (J,) real; the nodes are i·y.
        w: (..., N2) poles, batch dims broadcastable with v's.
        chunk: nodes per chunk (None: automatic).

    Returns:
        r: (..., M, J) complex.

    Raises:
        ValueError: wrong ranks, mismatched sizes, complex y.
    """
    _check_cauchy_args(v, y, "y", w, chunk)
    if y.is_complex():
        raise fail("y", "real node positions (the nodes are i·y)", f"dtype {y.dtype}")
    cdt = _complex_dtype(v, y, w)
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    return _apply_cauchy(_CauchyConj, v.to(cdt), y.to(rdt), w.to(cdt), chunk)


def _vandermonde_chunk(L: int, chunk: int | None) -> int:
    if chunk is not None:
        return max(1, min(chunk, L))
    # Lc ~ sqrt(L): the (N, Lc) base block and the (N, L/Lc) chunk offsets are then
    # both O(sqrt L) in size, and the work is one matmul over all chunks.
    lc = 1
    while lc * lc < L:
        lc *= 2
    return max(1, min(L, max(lc, 64)))


class _Vandermonde(torch.autograd.Function):
    """out[b, m, l] = Σ_n v[b, m, n] exp(l · logx[b, n]), l < L, flattened batches.

    x^(l0 + t) = x^l0 · x^t: with chunks of Lc positions starting at l0 = c·Lc,
    out[:, :, c·Lc + t] = (v · x^l0) @ X, X[n, t] = x_n^t (Bt, N, Lc) shared by all
    chunks, so every chunk is one row block of a single batched matmul.
    """

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, logx: torch.Tensor, L: int, chunk: int) -> torch.Tensor:
        Bt, M, N = v.shape
        n_chunks = -(-L // chunk)
        t = torch.arange(chunk, device=v.device, dtype=logx.real.dtype)
        l0 = torch.arange(n_chunks, device=v.device, dtype=logx.real.dtype) * chunk
        X = torch.exp(logx.unsqueeze(-1) * t)  # (Bt, N, Lc)
        X0 = torch.exp(logx.unsqueeze(-1) * l0)  # (Bt, N, C)
        vs = (v.unsqueeze(-2) * X0.transpose(-1, -2).unsqueeze(1)).reshape(Bt, M * n_chunks, N)
        out = torch.matmul(vs, X).reshape(Bt, M, n_chunks * chunk)  # (Bt, M, C·Lc)
        ctx.save_for_backward(v, logx)
        ctx.L, ctx.chunk = L, chunk
        return out[:, :, :L]

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        v, logx = ctx.saved_tensors
        L, chunk = ctx.L, ctx.chunk
        Bt, M, N = v.shape
        n_chunks = -(-L // chunk)
        rdt = logx.real.dtype
        t = torch.arange(chunk, device=v.device, dtype=rdt)
        l0 = torch.arange(n_chunks, device=v.device, dtype=rdt) * chunk
        Xc = torch.exp(logx.unsqueeze(-1) * t).conj()  # (Bt, N, Lc)
        X0c = torch.exp(logx.unsqueeze(-1) * l0).conj()  # (Bt, N, C)
        gp = torch.nn.functional.pad(g, (0, n_chunks * chunk - L))  # (Bt, M, C·Lc)
        gp = gp.reshape(Bt, M * n_chunks, chunk)  # (Bt, M·C, Lc)
        # T[m, c, n] = Σ_t g[m, c·Lc + t] conj(x_n^t)
        T = torch.matmul(gp, Xc.transpose(-1, -2)).reshape(Bt, M, n_chunks, N)
        gv = glogx = None
        if ctx.needs_input_grad[0]:
            # grad_v[m, n] = Σ_l g[m, l] conj(x_n^l) = Σ_c conj(x_n^l0) T[m, c, n]
            gv = torch.einsum("bmcn,bnc->bmn", T, X0c)  # (Bt, M, N)
        if ctx.needs_input_grad[1]:
            # ∂out[m, l]/∂logx[n] = l v[m, n] x_n^l, l = l0 + t
            T2 = torch.matmul(gp, (Xc * t).transpose(-1, -2)).reshape(Bt, M, n_chunks, N)
            S = torch.einsum("bmcn,bnc->bmn", T * l0[:, None] + T2, X0c)  # (Bt, M, N)
            glogx = (v.conj() * S).sum(dim=1)  # (Bt, N)
        return gv, glogx, None, None


def vandermonde(
    v: torch.Tensor, logx: torch.Tensor, L: int, chunk: int | None = None
) -> torch.Tensor:
    """Vandermonde matrix-vector products (S4D Sec. 3.2, eq. 6), from log-nodes.

    out[..., m, l] = Σ_n v[..., m, n] · exp(l · logx[..., n]),  0 <= l < L

    Chunked over l (sizes O(N·sqrt L) per batch entry instead of O(N·L)), with a
    closed-form chunked backward; the (N, L) Vandermonde matrix is never stored.
    Passing log x rather than x keeps exp(l·log x) exact in the log domain and makes
    stable nodes (Re log x < 0) decay instead of overflowing.

    Args:
        v: (..., M, N) coefficients.
        logx: (..., N) log of the nodes, batch dims broadcastable with v's.
        L: number of powers.
        chunk: powers per chunk; None picks about sqrt(L).

    Returns:
        out: (..., M, L) complex.

    Raises:
        ValueError: wrong ranks, mismatched N, L or chunk not a positive integer.
    """
    check_tensor(v, "v", "(..., M, N)", 2, at_least=True, kind="numeric")
    check_tensor(logx, "logx", "(..., N)", 1, at_least=True, kind="numeric")
    check_positive_int(L, "L")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    check_same_last_dim(logx, "logx", v.shape[-1], "v")
    cdt = _complex_dtype(v, logx)
    v, logx = v.to(cdt), logx.to(cdt)
    vb, xb, batch = _flatten_batch(v, logx, "logx")
    if vb.shape[0] == 0:
        return torch.zeros(*batch, v.shape[-2], L, dtype=cdt, device=v.device)
    out = _Vandermonde.apply(vb.contiguous(), xb.contiguous(), L, _vandermonde_chunk(L, chunk))
    return out.reshape(*batch, v.shape[-2], L)  # (..., M, L)
