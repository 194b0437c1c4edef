"""S4 benchmark: structmat.ssm.S4 vs the official state-spaces/s4 standalone module.

Side by side in one run (float32, CPU, one thread):
  (1) kernel generation (forward, no gradient): ours (Cauchy/Woodbury, chunked) vs the
      official SSMKernelDPLR on its pure-PyTorch path (no CUDA extension, no pykeops)
      vs a naive dense-power (Krylov doubling) kernel;
  (2) layer forward + backward at batch B: ours vs the official S4Block (mode='nplr')
      vs softmax attention (QKV/out projections + scaled_dot_product_attention,
      H/64 heads of width 64).
Every point runs in a fresh subprocess, so its peak memory (ru_maxrss above the RSS
before the timed calls) is its own. Ratios are ours / peer, medians over repeats.

The official code is read from a local checkout named by STRUCTMAT_S4_PEER (e.g. a
``git archive`` of github.com/state-spaces/s4 extracted to /tmp/peers/s4); it is never
copied here. It imports pytorch_lightning only for a logging decorator; when that is
not installed a stand-in decorator is registered (the module's maths is untouched).

  STRUCTMAT_S4_PEER=/tmp/peers/s4 python benchmarks/s4.py            # quick sizes
  STRUCTMAT_S4_PEER=/tmp/peers/s4 python benchmarks/s4.py --full     # the issue's sizes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from _memory import maxrss_mb, rss_mb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------- helpers
def _load_official() -> Any:
    peer = os.environ.get("STRUCTMAT_S4_PEER")
    if not peer:
        raise SystemExit("set STRUCTMAT_S4_PEER to a checkout of github.com/state-spaces/s4")
    path = Path(peer) / "models" / "s4" / "s4.py"
    if not path.is_file():
        raise SystemExit(f"STRUCTMAT_S4_PEER={peer}: no models/s4/s4.py there")
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        # only `rank_zero_only` (a logging decorator) is used by the module
        pl = types.ModuleType("pytorch_lightning")
        ut = types.ModuleType("pytorch_lightning.utilities")

        def rank_zero_only(fn: Any) -> Any:
            return fn

        rank_zero_only.rank = 0  # type: ignore[attr-defined]
        ut.rank_zero_only = rank_zero_only  # type: ignore[attr-defined]
        pl.utilities = ut  # type: ignore[attr-defined]
        sys.modules["pytorch_lightning"] = pl
        sys.modules["pytorch_lightning.utilities"] = ut
    sys.path.insert(0, str(Path(peer)))
    import logging

    logging.disable(logging.WARNING)  # its "extension not found" warnings
    spec = importlib.util.spec_from_file_location("official_s4", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert not mod.has_cuda_extension and not mod.has_pykeops, "want the pure-PyTorch path"
    return mod


class Attention(torch.nn.Module):
    """QKV projection, scaled_dot_product_attention, output projection; (B, L, H)."""

    def __init__(self, H: int, head_dim: int = 64, causal: bool = False) -> None:
        super().__init__()
        self.heads, self.causal = max(1, H // head_dim), causal
        self.qkv = torch.nn.Linear(H, 3 * H)
        self.out = torch.nn.Linear(H, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(B, L, H))


def _naive_kernel(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """K_l = Re(C Āˡ B̄) by Krylov doubling with materialised powers Ā^(2^k): (H, L)."""
    X = dB.unsqueeze(-1)  # (H, N, 1)
    P = dA
    while X.shape[-1] < L:
        X = torch.cat([X, P @ X], dim=-1)  # (H, N, 2m)
        P = P @ P
    return torch.einsum("hn,hnl->hl", C, X[..., :L]).real


# ------------------------------------------------------------------------ worker
def worker(
    task: str, impl: str, L: int, H: int, N: int, B: int, repeats: int, causal: bool
) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from structmat.ssm import S4

    fn: Any
    if task == "kernel":
        if impl == "ours":
            m = S4(H, N, l_max=L)

            def fn() -> Any:
                with torch.no_grad():
                    return m.kernel(L)
        elif impl == "official":
            mod = _load_official()
            blk = mod.S4Block(d_model=H, d_state=N, l_max=L, mode="nplr", transposed=False)
            kern = blk.layer.kernel
            with torch.no_grad():
                kern(L=L)  # sets up C̃ (first call)

            def fn() -> Any:
                with torch.no_grad():
                    return kern(L=L)[0]
        else:  # naive
            m = S4(H, N, l_max=L)
            with torch.no_grad():
                A, Bv, C, dt = m.dense_ssm()
                from structmat.ssm.discretize import discretize_dense

            def fn() -> Any:
                with torch.no_grad():
                    dA, dB = discretize_dense(A, Bv, dt, "bilinear")
                    return _naive_kernel(dA, dB, C, L)
    else:  # layer forward + backward
        x = torch.randn(B, L, H, requires_grad=True)
        if impl == "ours":
            layer: Any = S4(H, N, l_max=L)
        elif impl == "official":
            mod = _load_official()
            blk = mod.S4Block(d_model=H, d_state=N, l_max=L, mode="nplr", transposed=False)
            layer = lambda t: blk(t)[0]  # noqa: E731
            params = list(blk.parameters())
        else:
            layer = Attention(H, causal=causal)
        if impl != "official":
            params = list(layer.parameters())

        def fn() -> Any:
            for p in params:
                p.grad = None
            x.grad = None
            y = layer(x)
            y.square().mean().backward()
            return y

    rss0 = rss_mb()
    fn()  # warm-up (also sets up lazily built state)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "task": task,
        "impl": impl,
        "L": L,
        "H": H,
        "N": N,
        "B": B if task == "layer" else None,
        "times_s": times,
        "median_s": statistics.median(times),
        "cpu_times_s": cpu,
        "median_cpu_s": statistics.median(cpu),
        "peak_mb": maxrss_mb() - rss0,
        "peak_rss_mb": maxrss_mb(),
    }


# -------------------------------------------------------------------------- main
def _run_point(args: argparse.Namespace, task: str, impl: str, L: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        task,
        impl,
        str(L),
        "--H",
        str(args.H),
        "--N",
        str(args.N),
        "--B",
        str(args.B),
        "--repeats",
        str(args.repeats),
    ] + (["--causal-attention"] if args.causal_attention else [])
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"task": task, "impl": impl, "L": L, "status": f"timeout > {args.timeout}s"}
    if p.returncode != 0:
        why = "killed (out of memory?)" if p.returncode < 0 else p.stderr.strip().splitlines()[-1:]
        return {"task": task, "impl": impl, "L": L, "status": f"failed: {why}"}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, metavar=("TASK", "IMPL", "L"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--full", action="store_true", help="the issue's sizes: L = 1K, 4K, 16K everywhere"
    )
    ap.add_argument(
        "--L", type=int, nargs="+", default=None, help="lengths (default 1024 2048 4096)"
    )
    ap.add_argument(
        "--L-ours-only",
        type=int,
        nargs="*",
        default=None,
        help="extra lengths run for ours (and the official kernel) only (default 16384)",
    )
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per point")
    ap.add_argument("--causal-attention", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "s4"), help="output stem (.json, .png)")
    args = ap.parse_args()
    if args.worker:
        task, impl, L = args.worker
        res = worker(
            task, impl, int(L), args.H, args.N, args.B, args.repeats, args.causal_attention
        )
        print(json.dumps(res))
        return 0

    _load_official()  # fail early when the peer is missing
    if args.full:
        Ls, extra = [1024, 4096, 16384], []
    else:
        Ls = args.L or [1024, 2048, 4096]
        extra = [16384] if args.L_ours_only is None else args.L_ours_only
    plan = []
    for L in Ls:
        plan += [("kernel", i, L) for i in ("ours", "official", "naive")]
        plan += [("layer", i, L) for i in ("ours", "official", "attention")]
    for L in extra:
        plan += [("kernel", "ours", L), ("kernel", "official", L), ("layer", "ours", L)]
    results = []
    for task, impl, L in plan:
        r = _run_point(args, task, impl, L)
        results.append(r)
        t = (
            f"{r['median_s']:.3f} s, peak {r['peak_mb']:.0f} MB"
            if r["status"] == "ok"
            else r["status"]
        )
        print(f"{task:6s} {impl:9s} L={L:6d}: {t}", flush=True)

    def get(task: str, impl: str, L: int) -> dict[str, Any] | None:
        for r in results:
            if (r["task"], r["impl"], r["L"]) == (task, impl, L) and r["status"] == "ok":
                return r
        return None

    # attention beyond the measured lengths: quadratic extrapolation from the largest
    att = sorted(
        (r["L"], r["median_s"]) for r in results if r["impl"] == "attention" and r["status"] == "ok"
    )
    ratios = []
    for L in sorted({L for _, _, L in plan}):
        row: dict[str, Any] = {"L": L}
        ko, kp, kn = (
            get("kernel", "ours", L),
            get("kernel", "official", L),
            get("kernel", "naive", L),
        )
        lo, lp, la = (
            get("layer", "ours", L),
            get("layer", "official", L),
            get("layer", "attention", L),
        )
        if ko and kp:
            row["kernel_time_ours_over_official"] = ko["median_s"] / kp["median_s"]
            row["kernel_cpu_ours_over_official"] = ko["median_cpu_s"] / kp["median_cpu_s"]
            row["kernel_mem_ours_over_official"] = ko["peak_mb"] / max(kp["peak_mb"], 1e-9)
        if ko and kn:
            row["kernel_time_ours_over_naive"] = ko["median_s"] / kn["median_s"]
        if lo and lp:
            row["layer_time_ours_over_official"] = lo["median_s"] / lp["median_s"]
            row["layer_cpu_ours_over_official"] = lo["median_cpu_s"] / lp["median_cpu_s"]
            row["layer_mem_ours_over_official"] = lo["peak_mb"] / max(lp["peak_mb"], 1e-9)
        if lo and la:
            row["layer_time_ours_over_attention"] = lo["median_s"] / la["median_s"]
            row["layer_cpu_ours_over_attention"] = lo["median_cpu_s"] / la["median_cpu_s"]
        elif lo and att:
            L0, t0 = att[-1]
            est = t0 * (L / L0) ** 2
            row["attention_time_estimated_s"] = est
            row["layer_time_ours_over_attention_estimated"] = lo["median_s"] / est
        ratios.append(row)
        print(json.dumps(row), flush=True)

    out = {
        "config": {
            "H": args.H,
            "N": args.N,
            "B": args.B,
            "dtype": "float32",
            "device": "cpu",
            "threads": 1,
            "repeats": args.repeats,
            "causal_attention": args.causal_attention,
            "torch": torch.__version__,
            "peer": os.environ.get("STRUCTMAT_S4_PEER"),
            "peer_path": "official models/s4/s4.py, SSMKernelDPLR / S4Block(mode='nplr'), "
            "cauchy_naive (no CUDA extension, no pykeops)",
        },
        "results": results,
        "ratios": ratios,
    }
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    from structmat._io import atomic_write, write_json

    write_json(stem.with_suffix(".json"), out)
    png = stem.with_suffix(".png")
    atomic_write(png, lambda f: _plot(results, f))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


def _plot(results: list[dict[str, Any]], f: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [
        ("kernel", "median_s", "kernel generation time (s)"),
        ("layer", "median_s", "layer forward+backward time (s)"),
        ("layer", "peak_mb", "layer forward+backward peak memory (MB)"),
    ]
    for ax, (task, key, title) in zip(axes, panels, strict=True):
        for impl in ("ours", "official", "naive", "attention"):
            pts = sorted(
                (r["L"], r[key])
                for r in results
                if r["task"] == task and r["impl"] == impl and r["status"] == "ok"
            )
            if pts:
                ax.loglog(*zip(*pts, strict=True), "o-", label=impl, base=2)
        ax.set_xlabel("L")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("S4 (H=256, N=64, float32, CPU, 1 thread): structmat vs official state-spaces/s4")
    fig.tight_layout()
    fig.savefig(f, dpi=110, format="png")


if __name__ == "__main__":
    raise SystemExit(main())
