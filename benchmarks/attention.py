"""Attention benchmark: SDPA vs our Nyström and linear attention vs two Nyström peers.

Single thread, float32 CPU, batch 1, 8 heads of 64 (d_model 512), 64 landmarks, one run:

- core: the attention function alone on the same (q, k, v): exact SDPA, our Nyström
  (default stopping rule, and 6 Newton–Schulz steps as the peers), our linear attention;
- module: the whole attention module (projections, depthwise-conv skip of kernel 33,
  output projection) with the same weights: ours, ``nystrom-attention`` (PyPI,
  lucidrains) and Hugging Face's ``NystromformerSelfAttention`` (built from a config,
  random weights, plus the output projection it lacks), and the exact module (SDPA);
- time (median over repeats), peak memory (each case in a fresh process: the rise of the
  resident set's high-water mark over the state before the call), relative error to the
  exact output on random inputs and on smooth (structured) inputs;
- crossover: the length at which SDPA takes as long as the rest of a layer (projections
  and FFN), measured for d in {256, 512, 768}, next to the cost model's 6d;
- basis: linear attention + RoPE with and without a learnable orthogonal basis P on a
  small relative-position task;
- defects: Hugging Face's padding mask (one kernel of three) and fixed length, shown;
- long: n = 16K, 32K, 64K, every core and module case in its own process under a time
  and a memory limit (--timeout 300 s, --mem-limit-gb 16; "did not fit in 16 GB" /
  "did not finish in 300 s" recorded as such): SDPA and the exact module one timed call
  after a warm-up at n = 1024, the others a full-size warm-up and the median of 3;
  error of the core cases against exact softmax on 256 sampled query rows.

Writes benchmarks/results/attention.json and attention.png.

    python benchmarks/attention.py               # everything (about 25 minutes)
    python benchmarks/attention.py --sections long --lock /tmp/structmat-bench.lock
    python benchmarks/attention.py --sections module,defects   # update those sections
    python benchmarks/attention.py --quick       # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The venv may hold a torchvision built for another torch (pulled in by pytorch-fid); it
# fails on import and transformers imports it whenever it is installed. Hide it.
sys.modules.setdefault("torchvision", None)  # type: ignore[arg-type]

import torch
import torch.nn.functional as F
from _attention_cases import (
    CONV,
    CORE,
    D_MODEL,
    HEAD_DIM,
    HEADS,
    LANDMARKS,
    MODULES,
    build_modules,
    core_fn,
    core_inputs,
    exact_rows,
    module_input,
)
from _memory import peak_rise_kb
from _meta import run_meta
from _subprocess_limits import bench_lock, run_limited
from torch import nn

from structmat._io import atomic_write, write_json
from structmat.attention import (
    MultiHeadAttention,
    crossover_length,
)
from structmat.attention.nystrom import landmarks, newton_schulz_pinv_info

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("core", "module", "crossover", "basis", "defects", "long")


# ----------------------------------------------------------------------------- measuring


def timeit(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def worker(kind: str, name: str, n: int) -> None:
    """Run one case once, warm, and print the peak resident-memory rise (bytes) as JSON."""
    torch.set_num_threads(1)
    if kind == "core":
        q, k, v = core_inputs(n, "random")
        fn = core_fn(name)
        call: Callable[[], Any] = lambda: fn(q, k, v)  # noqa: E731
    else:
        module = build_modules(n, (name,))[name]
        x = module_input(n, "random")
        call = lambda: module(x)  # noqa: E731
    with torch.no_grad():
        call()  # warm-up: one-time allocations (thread pools, kernels) happen here
        gc.collect()
        rise = peak_rise_kb(call)
    if rise is None:
        raise RuntimeError("peak memory needs /proc/self/clear_refs (Linux)")
    print(json.dumps({"peak_bytes": rise * 1024}))


def peak_memory(kind: str, name: str, n: int) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               # Every allocation above 64 KiB is its own mapping, returned on free, so the
               # resident set follows live tensors (no malloc arena caching between calls).
               MALLOC_MMAP_THRESHOLD_="65536")
    res = subprocess.run(
        [sys.executable, __file__, "--worker", kind, name, str(n)],
        capture_output=True, text=True, env=env, check=True,
    )
    return int(json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"])


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref.double()).norm() / ref.double().norm())


def repeats_for(n: int, quick: bool) -> tuple[int, int]:
    """(repeats, warm-up runs): few for the seconds-long exact runs at large n."""
    if quick:
        return 2, 1
    return (5, 0) if n >= 16384 else (5, 1)


# ----------------------------------------------------------------------------- sections


def bench_core(ns: list[int], quick: bool) -> dict[str, Any]:
    rows = []
    for n in ns:
        rep, warm = repeats_for(n, quick)
        row: dict[str, Any] = {"n": n, "time_s": {}, "peak_bytes": {}, "rel_err": {},
                               "rel_err_smooth": {}}
        q, k, v = core_inputs(n, "random")
        qs, ks, vs = core_inputs(n, "smooth")
        with torch.no_grad():
            exact = F.scaled_dot_product_attention(q, k, v)
            exact_s = F.scaled_dot_product_attention(qs, ks, vs)
            for name in CORE:
                fn = core_fn(name)
                r, w = (2, 0) if (name == "sdpa" and n >= 16384) else (rep, warm)
                times = timeit(lambda fn=fn, q=q, k=k, v=v: fn(q, k, v), r, w)
                row["time_s"][name] = statistics.median(times)
                if name == "sdpa":  # the exact reference itself
                    row["rel_err"][name] = row["rel_err_smooth"][name] = 0.0
                else:
                    row["rel_err"][name] = rel_err(fn(q, k, v), exact)
                    row["rel_err_smooth"][name] = rel_err(fn(qs, ks, vs), exact_s)
                row["peak_bytes"][name] = peak_memory("core", name, n)
                print(f"core n={n:>6} {name:<16} {row['time_s'][name]:8.4f} s  "
                      f"err {row['rel_err'][name]:.3e} / smooth {row['rel_err_smooth'][name]:.3e}"
                      f"  peak {row['peak_bytes'][name] / 2**20:7.1f} MiB", flush=True)
            # Newton–Schulz steps the default stopping rule took on these kernels.
            steps = {}
            for label, (qq, kk) in (("random", (q, k)), ("smooth", (qs, ks))):
                ql, _ = landmarks(qq, LANDMARKS)
                kl, _ = landmarks(kk, LANDMARKS)
                a2 = torch.softmax(ql @ kl.transpose(-1, -2) / math.sqrt(HEAD_DIM), -1)
                _, it, res = newton_schulz_pinv_info(a2)
                z6 = newton_schulz_pinv_info(a2, iterations=6)[0]
                r6 = float((torch.linalg.matrix_norm(a2 @ z6 @ a2 - a2)
                            / torch.linalg.matrix_norm(a2)).max())
                steps[label] = {"default_steps": it, "default_residual": res,
                                "six_step_residual": r6}
            row["pinv"] = steps
        s = row["time_s"]
        row["speedup_vs_sdpa"] = {k: s["sdpa"] / t for k, t in s.items()}
        rows.append(row)
    return {"rows": rows}


def bench_modules(ns: list[int], quick: bool) -> dict[str, Any]:
    rows = []
    for n in ns:
        rep, warm = repeats_for(n, quick)
        mods = build_modules(n)
        x, xs = module_input(n, "random"), module_input(n, "smooth")
        row: dict[str, Any] = {"n": n, "time_s": {}, "peak_bytes": {}, "rel_err": {},
                               "rel_err_smooth": {}}
        with torch.no_grad():
            exact, exact_s = mods["exact"](x), mods["exact"](xs)
            for name, mod in mods.items():
                r, w = (2, 0) if (name == "exact" and n >= 16384) else (rep, warm)
                times = timeit(lambda mod=mod, x=x: mod(x), r, w)
                row["time_s"][name] = statistics.median(times)
                if name == "exact":  # the reference itself
                    row["rel_err"][name] = row["rel_err_smooth"][name] = 0.0
                else:
                    row["rel_err"][name] = rel_err(mod(x), exact)
                    row["rel_err_smooth"][name] = rel_err(mod(xs), exact_s)
                row["peak_bytes"][name] = peak_memory("module", name, n)
                print(f"module n={n:>6} {name:<18} {row['time_s'][name]:8.4f} s  "
                      f"err {row['rel_err'][name]:.3e} / smooth {row['rel_err_smooth'][name]:.3e}"
                      f"  peak {row['peak_bytes'][name] / 2**20:7.1f} MiB", flush=True)
            # The four d_model x d_model projections every module runs (identical work);
            # module time minus this estimates each one's attention part.
            ours = mods["ours"]
            projs = [ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj]
            row["projections_s"] = statistics.median(
                timeit(lambda x=x, projs=projs: [lin(x) for lin in projs], rep, warm))
        s, p = row["time_s"], row["peak_bytes"]
        row["attention_part_s"] = {k: t - row["projections_s"] for k, t in s.items()}
        row["ours_speedup"] = {k: s[k] / s["ours"] for k in s}
        row["ours_memory_ratio"] = {k: p["ours"] / p[k] for k in p}
        rows.append(row)
        del mods
    return {"rows": rows}


def _rest_of_layer(d: int) -> nn.Module:
    """Everything in a layer but the attention core: QKV, output projection and a 4d FFN."""
    return nn.ModuleDict({
        "qkv": nn.Linear(d, 3 * d), "out": nn.Linear(d, d),
        "ffn": nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)),
    })


def bench_crossover(ds: list[int], quick: bool) -> dict[str, Any]:
    out = []
    for d in ds:
        h = d // HEAD_DIM
        rest = _rest_of_layer(d).eval()
        points = []
        cross = None
        for mult in ((1, 2) if quick else (2, 4, 8, 16)):
            n = mult * d
            x = torch.randn(1, n, d)
            q, k, v = (torch.randn(1, h, n, HEAD_DIM) for _ in range(3))

            def run_rest(x: torch.Tensor = x, rest: nn.Module = rest) -> None:
                rest["qkv"](x)
                rest["out"](x)
                rest["ffn"](x)

            with torch.no_grad():
                t_rest = statistics.median(timeit(run_rest, 2, 1))
                t_attn = statistics.median(timeit(
                    lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), 2, 1))
            points.append({"n": n, "attention_s": t_attn, "rest_s": t_rest,
                           "ratio": t_attn / t_rest})
            print(f"crossover d={d} n={n:>6}: attention {t_attn:.3f} s, rest {t_rest:.3f} s",
                  flush=True)
            if len(points) >= 2 and points[-2]["ratio"] < 1 <= points[-1]["ratio"]:
                a, b = points[-2], points[-1]
                # Interpolate log(ratio) linearly in log(n) between the bracketing lengths.
                f = -math.log(a["ratio"]) / (math.log(b["ratio"]) - math.log(a["ratio"]))
                cross = math.exp(math.log(a["n"]) + f * (math.log(b["n"]) - math.log(a["n"])))
                break
            if points[0]["ratio"] >= 1:
                break
        out.append({"d": d, "heads": h, "points": points,
                    "measured_crossover": None if cross is None else round(cross),
                    "model_crossover": crossover_length(d)})
    return {"rows": out}


def bench_basis(quick: bool) -> dict[str, Any]:
    """Linear attention + RoPE on "output the token 3 places back", with/without learned P."""
    from structmat.rope import RotaryEmbedding

    vocab, d, heads, length, offset = 16, 64, 4, 64, 3
    steps = 60 if quick else 300
    results: dict[str, list[float]] = {"fixed_basis": [], "learned_basis": []}
    for seed in range(1 if quick else 2):
        for label, learn in (("fixed_basis", False), ("learned_basis", True)):
            torch.manual_seed(seed)
            emb = nn.Embedding(vocab, d)
            attn = MultiHeadAttention(d, heads, "linear", rotary=RotaryEmbedding(d // heads),
                                      causal=True, learnable_basis=learn)
            head = nn.Linear(d, vocab)
            params = [*emb.parameters(), *attn.parameters(), *head.parameters()]
            opt = torch.optim.Adam(params, lr=3e-3)
            gen = torch.Generator().manual_seed(1000 + seed)
            for _ in range(steps):
                tok = torch.randint(vocab, (32, length), generator=gen)
                logits = head(attn(emb(tok)))[:, offset:]
                loss = F.cross_entropy(logits.reshape(-1, vocab), tok[:, :-offset].reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                test_gen = torch.Generator().manual_seed(7)
                tok = torch.randint(vocab, (256, length), generator=test_gen)
                pred = head(attn(emb(tok)))[:, offset:].argmax(-1)
                acc = float((pred == tok[:, :-offset]).float().mean())
            results[label].append(acc)
            print(f"basis seed={seed} {label:<14} accuracy {acc:.3f}", flush=True)
    return {"task": f"predict the token {offset} places back, vocab {vocab}, L={length}, "
                    f"d={d}, {heads} heads, causal linear attention + RoPE, {steps} Adam steps",
            "accuracy": results,
            "mean_accuracy": {k: statistics.mean(v) for k, v in results.items()}}


def bench_defects() -> dict[str, Any]:
    """The two Hugging Face defects the issue names, shown on the peers and on ours.

    1. Padding: change what padded positions hold; outputs at kept positions should not move.
       (HF adds the padding mask to only one of its three kernels.)
    2. Length: HF needs L == config.segment_means_seq_len; ours takes any L.
    """
    n, kept = 1024, 900
    mods = build_modules(n, ("ours", "nystrom-attention", "hf-nystromformer"))
    x = module_input(n, "random")
    x2 = x.clone()
    junk = torch.randn(1, n - kept, D_MODEL, generator=torch.Generator().manual_seed(3))
    x2[:, kept:] = 100 * junk
    mask = torch.ones(1, n, dtype=torch.bool)
    mask[:, kept:] = False
    # HF's extended additive mask, as NystromformerModel builds it: 0 keep, very negative drop.
    hf_mask = (~mask)[:, None, None, :].float() * torch.finfo(torch.float32).min
    calls = {
        "ours": lambda t: mods["ours"](t, mask),
        "nystrom-attention": lambda t: mods["nystrom-attention"](t, mask=mask),
        "hf-nystromformer": lambda t: mods["hf-nystromformer"].out(
            mods["hf-nystromformer"].attn(t, attention_mask=hf_mask)[0]),
    }
    padding: dict[str, float] = {}
    with torch.no_grad():
        for name, call in calls.items():
            a, b = call(x)[:, :kept], call(x2)[:, :kept]
            padding[name] = float((a - b).norm() / a.norm())
            print(f"defects: padding change at kept positions, {name:<18} {padding[name]:.3e}",
                  flush=True)
        length: dict[str, str] = {}
        for name, mod in mods.items():
            try:
                y = mod(x[:, :1000])
                length[name] = f"ok, output {tuple(y.shape)}"
            except Exception as err:  # a peer's failure is the result being recorded
                length[name] = f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
            print(f"defects: L=1000 with a module built for 1024, {name:<18} {length[name]}",
                  flush=True)
    return {"padding_relative_change_at_kept_positions": padding,
            "length_1000_on_a_1024_config": length, "n": n, "kept": kept}


# ----------------------------------------------------------------------------- long


LONG_NS = (16384, 32768, 65536)
EXACT_NAMES = ("sdpa", "exact")  # quadratic: one timed call after a warm-up at WARM_N
WARM_N, SAMPLED_ROWS, LONG_REPEATS = 1024, 256, 3


def long_worker(kind: str, name: str, n: int) -> None:
    """One long case: time, CPU time, peak memory rise and (core) error on sampled rows."""
    torch.set_num_threads(1)
    exact = name in EXACT_NAMES
    if kind == "core":
        q, k, v = core_inputs(n, "random")
        fn = core_fn(name)
        call: Callable[[], Any] = lambda: fn(q, k, v)  # noqa: E731
        qw, kw, vw = core_inputs(WARM_N, "random")
        warm: Callable[[], Any] = lambda: fn(qw, kw, vw)  # noqa: E731
    else:
        module = build_modules(n, (name,))[name]
        x = module_input(n, "random")
        call = lambda: module(x)  # noqa: E731
        xw = module_input(WARM_N, "random")
        warm = lambda: module(xw)  # noqa: E731
    repeats = 1 if exact else LONG_REPEATS
    with torch.no_grad():
        (warm if exact else call)()
        gc.collect()
        times, cpu, rises = [], [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rise = peak_rise_kb(call)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            rises.append(rise)
            gc.collect()
        res: dict[str, Any] = {
            "times_s": times, "time_s": statistics.median(times),
            "cpu_s": statistics.median(cpu), "repeats": repeats,
            "warmup": f"n={WARM_N}" if exact else "full size",
            "peak_bytes": None if None in rises else max(r or 0 for r in rises) * 1024,
            "rel_err_sampled": None, "rel_err_sampled_smooth": None,
        }
        if kind == "core" and not exact:
            # the exact softmax output on SAMPLED_ROWS query rows (their rows are exact)
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))[:SAMPLED_ROWS]
            for key, inputs in (("rel_err_sampled", (q, k, v)),
                                ("rel_err_sampled_smooth", core_inputs(n, "smooth"))):
                qi, ki, vi = inputs
                res[key] = rel_err(fn(qi, ki, vi)[..., idx, :], exact_rows(qi, ki, vi, idx))
    print(json.dumps(res))


def bench_long(ns: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """Every case at n >= 16K in its own process, under a time and a memory limit."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MALLOC_MMAP_THRESHOLD_="65536")
    rows: list[dict[str, Any]] = []
    for n in ns:
        for kind, names in (("core", CORE), ("module", MODULES)):
            for name in names:
                cmd = [sys.executable, __file__, "--long-worker", kind, name, str(n)]
                with bench_lock(args.lock):
                    load = os.getloadavg()[0]
                    run = run_limited(cmd, timeout_s=args.timeout,
                                      mem_limit_gb=args.mem_limit_gb, env=env)
                row: dict[str, Any] = {"n": n, "kind": kind, "name": name}
                row.update(run.limits())
                row["load_1min_before"] = round(load, 2)
                if run.outcome == "ok":
                    row.update(run.last_json())
                    print(f"long {kind:<6} n={n:>6} {name:<18} {row['time_s']:8.3f} s  "
                          f"peak {row['peak_bytes'] / 2**20:8.1f} MiB  "
                          f"sampled err {row['rel_err_sampled']}", flush=True)
                else:
                    print(f"long {kind:<6} n={n:>6} {name:<18} {row['status']}", flush=True)
                rows.append(row)
    for row in rows:  # exact time / this time, where both ran
        ref = next(r for r in rows if (r["n"], r["kind"]) == (row["n"], row["kind"])
                   and r["name"] in EXACT_NAMES)
        both = row["outcome"] == ref["outcome"] == "ok"
        row["speedup_vs_exact"] = ref["time_s"] / row["time_s"] if both else None
    return {"config": {"ns": ns, "timeout_s": args.timeout, "mem_limit_gb": args.mem_limit_gb,
                       "sampled_rows": SAMPLED_ROWS, "warmup_n_exact": WARM_N,
                       "repeats_exact": 1, "repeats_other": LONG_REPEATS},
            "rows": rows}


# ----------------------------------------------------------------------------- figure


def figure(res: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(25, 4.5))
    for kind, names, ax_t, marker in (("core", CORE, axes[0], "o"),
                                      ("module", MODULES, axes[1], "s")):
        rows = res.get(kind, {}).get("rows", [])
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        for name in names:
            ax_t.loglog(ns, [r["time_s"][name] for r in rows], marker + "-", base=2, label=name)
            axes[2].loglog(ns, [r["peak_bytes"][name] / 2**20 for r in rows], marker + "-",
                           base=2, label=f"{kind}: {name}")
        ax_t.set(xlabel="n", ylabel="seconds (median, 1 thread)",
                 title=f"{kind}: batch 1, 8 heads x 64, float32")
        ax_t.legend(fontsize=8)
    axes[2].set(xlabel="n", ylabel="peak memory rise (MiB)", title="peak memory (own process)")
    axes[2].legend(fontsize=6)
    for row in res.get("crossover", {}).get("rows", []):
        pts = row["points"]
        axes[3].loglog([p["n"] for p in pts], [p["ratio"] for p in pts], "o-", base=2,
                       label=f"d={row['d']}: measured {row['measured_crossover']}, "
                             f"model {row['model_crossover']}")
    axes[3].axhline(1, color="grey", ls="--")
    axes[3].set(xlabel="n", ylabel="SDPA time / rest-of-layer time",
                title="when does attention dominate a layer?")
    axes[3].legend(fontsize=8)
    long_rows = res.get("long", {}).get("rows", [])
    for kind, names, marker in (("core", CORE, "o"), ("module", MODULES, "s")):
        for name in names:
            pts = [(r["n"], r["time_s"]) for r in long_rows
                   if (r["kind"], r["name"], r["outcome"]) == (kind, name, "ok")]
            if pts:
                axes[4].loglog(*zip(*pts, strict=True), marker + "-", base=2,
                               label=f"{kind}: {name}")
    if long_rows:
        cfg = res["long"]["config"]
        axes[4].set(xlabel="n", ylabel="seconds (own process)",
                    title=f"n >= 16K, limits {cfg['timeout_s']:g} s / {cfg['mem_limit_gb']:g} GB")
        axes[4].legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--timeout", type=float, default=300,
                   help="long section: seconds per case (its own process)")
    p.add_argument("--mem-limit-gb", type=float, default=16,
                   help="long section: GiB per case (its own process)")
    p.add_argument("--lock", default=None,
                   help="long section: flock this file around each case (e.g. "
                        "/tmp/structmat-bench.lock); not with an outer flock on the same file")
    p.add_argument("--long-worker", nargs=3, metavar=("KIND", "NAME", "N"),
                   help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "attention.json"))
    p.add_argument("--worker", nargs=3, metavar=("KIND", "NAME", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        kind, name, n = args.worker
        worker(kind, name, int(n))
        return
    if args.long_worker:
        kind, name, n = args.long_worker
        long_worker(kind, name, int(n))
        return
    torch.set_num_threads(1)
    sections = args.sections.split(",")
    ns = [256, 1024] if args.quick else [1024, 4096, 16384]
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "config": {"batch": 1, "heads": HEADS, "head_dim": HEAD_DIM, "landmarks": LANDMARKS,
                   "conv_kernel": CONV, "dtype": "float32", "threads": 1, "ns": ns,
                   "torch": torch.__version__, "quick": args.quick},
    }
    if "core" in sections:
        res["core"] = bench_core(ns, args.quick)
    if "module" in sections:
        res["module"] = bench_modules(ns, args.quick)
    if "crossover" in sections:
        res["crossover"] = bench_crossover([256] if args.quick else [256, 512, 768], args.quick)
    if "basis" in sections:
        res["basis"] = bench_basis(args.quick)
    if "defects" in sections:
        res["defects"] = bench_defects()
    if "long" in sections:
        res["long"] = bench_long([1024, 2048] if args.quick else list(LONG_NS), args)
    res["wall_s"] = time.perf_counter() - t0
    res["load_average_1min"] = os.getloadavg()[0]
    res["meta"] = run_meta(threads=1, sections=sections)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wall = res["wall_s"]
    if out.exists() and set(sections) != set(SECTIONS):
        # A partial run updates its sections and keeps the others from the last full run.
        old = json.loads(out.read_text())
        old.update({k: v for k, v in res.items() if k in sections})
        old.setdefault("wall_s_by_run", []).append({
            "sections": sections, "wall_s": res["wall_s"],
            "load_average_1_5_15min": res["meta"]["load_average_1_5_15min"]})
        old["meta"] = res["meta"]  # of this (the last) run; the list above has each run's
        res = old
    write_json(out, res)
    figure(res, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} in {wall:.0f} s")


if __name__ == "__main__":
    main()
