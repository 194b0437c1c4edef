"""S4 benchmark: structmat.ssm.S4 vs the official state-spaces/s4 standalone module.

Side by side in one run (float32, CPU, one thread):
  (1) kernel generation (forward, no gradient): ours (Cauchy/Woodbury, chunked) vs the
      official SSMKernelDPLR on its pure-PyTorch path (no CUDA extension, no pykeops)
      vs a naive dense-power (Krylov doubling) kernel;
  (2) layer forward + backward at batch B: ours vs the official S4Block (mode='nplr')
      vs softmax attention (QKV/out projections + scaled_dot_product_attention,
      H/64 heads of width 64).
Every point runs in a fresh subprocess under a time limit (--timeout, 300 s) and a
memory limit (--mem-limit-gb, 16 GiB; the parent polls the child's VmHWM and kills it
past the limit, see _subprocess_limits.py), so its peak memory (ru_maxrss above the RSS
before the timed calls) is its own, and a point that does not fit is recorded as "did
not fit in 16 GB" (or "did not finish in 300 s"), never estimated. Below L = 16384 a
point is a full-size warm-up and --repeats timed calls (median); from 16384 on it is a
warm-up at L = 1024 and one timed call. A layer peer that does not fit at --B is run
again at --fallback-B (1) next to ours at the same batch. Ratios are ours / peer.

The official code is read from a local checkout named by STRUCTMAT_S4_PEER (e.g. a
``git archive`` of github.com/state-spaces/s4 extracted to /tmp/peers/s4); it is never
copied here; without it (or without einops) the official rows are left out and the
JSON says why. It imports pytorch_lightning only for a logging decorator; when that is
not installed a stand-in decorator is registered (the module's maths is untouched).

  STRUCTMAT_S4_PEER=/tmp/peers/s4 python benchmarks/s4.py --lock /tmp/structmat-bench.lock
      # L = 1K, 2K, 4K, 16K for all; 32K, 64K for ours (about 15 minutes)
  python benchmarks/s4.py --quick --out /tmp/s4_quick     # smoke test, small sizes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from _memory import maxrss_mb, rss_mb
from _meta import run_meta
from _subprocess_limits import bench_lock, run_limited

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------- helpers
def _official_missing_reason() -> str | None:
    """Why the official module cannot be loaded here, or None when it can."""
    peer = os.environ.get("STRUCTMAT_S4_PEER")
    if not peer:
        return "STRUCTMAT_S4_PEER is not set (a checkout of github.com/state-spaces/s4)"
    if not (Path(peer) / "models" / "s4" / "s4.py").is_file():
        return f"STRUCTMAT_S4_PEER={peer}: no models/s4/s4.py there"
    if importlib.util.find_spec("einops") is None:
        return "the official module needs einops (pip install einops)"
    return None


def _official_or_none() -> bool:
    """True when the official module is available; else say why once and go on without it."""
    why = _official_missing_reason()
    if why:
        print(f"official S4 not run: {why}", file=sys.stderr, flush=True)
    return why is None


def _load_official() -> Any:
    why = _official_missing_reason()
    if why:
        raise SystemExit(why)
    peer = os.environ["STRUCTMAT_S4_PEER"]
    path = Path(peer) / "models" / "s4" / "s4.py"
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
LONG = 16384  # from here on: one timed call, after a warm-up call at L = WARM_L
WARM_L = 1024


def worker(
    task: str, impl: str, L: int, H: int, N: int, B: int, repeats: int, causal: bool
) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from structmat.ssm import S4

    fn: Any
    warm: Any = None  # the warm-up call; None: fn itself
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

        def step(inp: torch.Tensor) -> Any:
            for p in params:
                p.grad = None
            inp.grad = None
            y = layer(inp)
            y.square().mean().backward()
            return y

        def fn() -> Any:
            return step(x)

        if L >= LONG:  # a full-size warm-up would double seconds-to-minutes-long points
            x_warm = torch.randn(B, WARM_L, H, requires_grad=True)

            def warm() -> Any:
                return step(x_warm)

    rss0 = rss_mb()
    (warm or fn)()  # warm-up (thread pools, lazily built state)
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
        "repeats": repeats,
        "warmup": f"L={WARM_L}" if warm is not None else "full size",
        "times_s": times,
        "median_s": statistics.median(times),
        "cpu_times_s": cpu,
        "median_cpu_s": statistics.median(cpu),
        "peak_mb": maxrss_mb() - rss0,
        "peak_rss_mb": maxrss_mb(),
    }


# -------------------------------------------------------------------------- main
def _run_point(
    args: argparse.Namespace, task: str, impl: str, L: int, B: int | None = None
) -> dict[str, Any]:
    """One point in its own process, under args.timeout seconds and args.mem_limit_gb GiB."""
    B = args.B if B is None else B
    repeats = 1 if L >= LONG else args.repeats
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
        str(B),
        "--repeats",
        str(repeats),
    ] + (["--causal-attention"] if args.causal_attention else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with bench_lock(args.lock):
        load = os.getloadavg()[0]
        run = run_limited(cmd, timeout_s=args.timeout, mem_limit_gb=args.mem_limit_gb, env=env)
    base = {"task": task, "impl": impl, "L": L, "B": B if task == "layer" else None}
    res = run.last_json() if run.outcome == "ok" else base
    res.update(run.limits())
    res["load_1min_before"] = round(load, 2)
    return res


def _fmt(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"{r['status']} (peak seen {r['child_peak_rss_mb']:.0f} MB)"
    return f"{r['median_s']:.3f} s, peak {r['peak_mb']:.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, metavar=("TASK", "IMPL", "L"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: H=64, N=16, B=2, L 256 512 (+1024)"
    )
    ap.add_argument(
        "--L", type=int, nargs="+", default=None, help="lengths (default 1024 2048 4096 16384)"
    )
    ap.add_argument(
        "--L-ours-only",
        type=int,
        nargs="*",
        default=None,
        help="extra lengths run for ours only (default 32768 65536)",
    )
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument(
        "--fallback-B",
        type=int,
        default=1,
        help="batch at which a layer peer that does not fit (or finish) at --B is run "
        "again, next to ours at the same batch",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed calls below L = 16384")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per point (its process)")
    ap.add_argument("--mem-limit-gb", type=float, default=16, help="GiB per point (its process)")
    ap.add_argument(
        "--lock",
        default=None,
        help="flock this file around each point (e.g. /tmp/structmat-bench.lock); "
        "do not combine with an outer `flock` on the same file",
    )
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

    if args.quick:
        args.H, args.N, args.B, args.repeats = 64, 16, 2, 1
        Ls, extra = args.L or [256, 512], [1024] if args.L_ours_only is None else args.L_ours_only
    else:
        Ls = args.L or [1024, 2048, 4096, 16384]
        extra = [32768, 65536] if args.L_ours_only is None else args.L_ours_only
    peer = _official_or_none()
    peer_impls = ("official",) if peer else ()
    plan = []
    for L in Ls:
        kernels = ("ours", *peer_impls, "naive") if L < LONG else ("ours", *peer_impls)
        plan += [("kernel", i, L) for i in kernels]
        plan += [("layer", i, L) for i in ("ours", *peer_impls, "attention")]
    for L in extra:
        plan += [("kernel", "ours", L), ("layer", "ours", L)]
    results: list[dict[str, Any]] = []
    for task, impl, L in plan:
        r = _run_point(args, task, impl, L)
        results.append(r)
        print(f"{task:6s} {impl:9s} L={L:6d}: {_fmt(r)}", flush=True)
        if task == "layer" and impl != "ours" and r["outcome"] in ("memory", "timeout"):
            # Like with like where the peer fits: both again at the fallback batch.
            for i in (impl, "ours"):
                if not any(
                    (q["task"], q["impl"], q["L"], q["B"]) == ("layer", i, L, args.fallback_B)
                    for q in results
                ):
                    f = _run_point(args, "layer", i, L, B=args.fallback_B)
                    results.append(f)
                    print(f"layer  {i:9s} L={L:6d} B={args.fallback_B}: {_fmt(f)}", flush=True)

    ratios = [_ratios(results, L, args.B, args.fallback_B) for L in sorted({p[2] for p in plan})]
    for row in ratios:
        print(json.dumps(row), flush=True)

    out = {
        "config": {
            "H": args.H,
            "N": args.N,
            "B": args.B,
            "fallback_B": args.fallback_B,
            "dtype": "float32",
            "device": "cpu",
            "threads": 1,
            "repeats": args.repeats,
            "repeats_from_L_16384": 1,
            "warmup_from_L_16384": f"one call at L={WARM_L}",
            "timeout_s": args.timeout,
            "mem_limit_gb": args.mem_limit_gb,
            "causal_attention": args.causal_attention,
            "attention": f"QKV/out projections + scaled_dot_product_attention, "
            f"{max(1, args.H // 64)} heads of 64",
            "torch": torch.__version__,
            "peer": os.environ.get("STRUCTMAT_S4_PEER") if peer else None,
            "peer_missing": None if peer else _official_missing_reason(),
            "peer_path": "official models/s4/s4.py, SSMKernelDPLR / S4Block(mode='nplr'), "
            "cauchy_naive (no CUDA extension, no pykeops)",
            "quick": args.quick,
        },
        "results": results,
        "ratios": ratios,
        "meta": run_meta(threads=1, peer=os.environ.get("STRUCTMAT_S4_PEER") if peer else None),
    }
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    from structmat._io import atomic_write, write_json

    write_json(stem.with_suffix(".json"), out)
    png = stem.with_suffix(".png")
    atomic_write(png, lambda f: _plot(results, f, args))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


def _ratios(results: list[dict[str, Any]], L: int, B: int, fallback_B: int) -> dict[str, Any]:
    """ours / peer at one L; a peer that did not run records its status instead."""

    def get(task: str, impl: str, b: int | None = B) -> dict[str, Any] | None:
        for r in results:
            if (r["task"], r["impl"], r["L"]) == (task, impl, L) and (
                task == "kernel" or r["B"] == b
            ):
                return r
        return None

    def ok(r: dict[str, Any] | None) -> bool:
        return r is not None and r["status"] == "ok"

    row: dict[str, Any] = {"L": L}
    ko, kp, kn = get("kernel", "ours"), get("kernel", "official"), get("kernel", "naive")
    lo, lp, la = get("layer", "ours"), get("layer", "official"), get("layer", "attention")
    if ok(ko) and ok(kp):
        assert ko is not None and kp is not None
        row["kernel_time_ours_over_official"] = ko["median_s"] / kp["median_s"]
        row["kernel_cpu_ours_over_official"] = ko["median_cpu_s"] / kp["median_cpu_s"]
        row["kernel_mem_ours_over_official"] = ko["peak_mb"] / max(kp["peak_mb"], 1e-9)
    if ok(ko) and ok(kn):
        assert ko is not None and kn is not None
        row["kernel_time_ours_over_naive"] = ko["median_s"] / kn["median_s"]
    for name, peer in (("official", lp), ("attention", la)):
        if peer is None:
            continue
        row[f"layer_{name}_status"] = peer["status"]
        if ok(lo) and ok(peer):
            assert lo is not None and peer is not None
            row[f"layer_time_ours_over_{name}"] = lo["median_s"] / peer["median_s"]
            row[f"layer_cpu_ours_over_{name}"] = lo["median_cpu_s"] / peer["median_cpu_s"]
            row[f"layer_mem_ours_over_{name}"] = lo["peak_mb"] / max(peer["peak_mb"], 1e-9)
        elif peer["outcome"] in ("memory", "timeout"):
            fo, fp = get("layer", "ours", fallback_B), get("layer", name, fallback_B)
            fb: dict[str, Any] = {"B": fallback_B}
            for who, r in (("ours", fo), (name, fp)):
                fb[f"{who}_status"] = None if r is None else r["status"]
                if ok(r):
                    assert r is not None
                    fb[f"{who}_s"], fb[f"{who}_peak_mb"] = r["median_s"], r["peak_mb"]
            if ok(fo) and ok(fp):
                assert fo is not None and fp is not None
                fb["time_ours_over_peer"] = fo["median_s"] / fp["median_s"]
                fb["mem_ours_over_peer"] = fo["peak_mb"] / max(fp["peak_mb"], 1e-9)
            row[f"layer_{name}_at_fallback_B"] = fb
    return row


def _plot(results: list[dict[str, Any]], f: Any, args: argparse.Namespace) -> None:
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
                and r["B"] in (None, args.B)
            )
            if pts:
                ax.loglog(*zip(*pts, strict=True), "o-", label=impl, base=2)
        ax.set_xlabel("L")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"S4 (H={args.H}, N={args.N}, layer batch {args.B}, float32, CPU, 1 thread): "
        "structmat vs official state-spaces/s4 vs softmax attention (missing: did not fit "
        f"in {args.mem_limit_gb:g} GB or finish in {args.timeout:g} s)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(f, dpi=110, format="png")


if __name__ == "__main__":
    raise SystemExit(main())
