"""RoPE speed, memory and accuracy: structmat vs the HF formula vs rotary-embedding-torch.

Rotates q and k of shape (B, H, L, D) (default (4, 16, 2048, 64) and
(8, 16, 4096, 64)) in one process, at 1 and 2 threads, float32 and bfloat16, and
times, side by side and in rotating order each repeat:

* ``clone``: ``q.clone(), k.clone()``: one read and one write of each tensor, the
  memory-bandwidth bound any out-of-place rotation must pay;
* ``structmat-half``: :class:`structmat.rope.RotaryEmbedding` in its steady state,
  the inductor-compiled loop (``STRUCTMAT_ROPE_COMPILE=1`` here; by default it takes
  over after ``EAGER_SECONDS`` of eager rotation, see structmat/rope/_compiled.py);
  its compile time is recorded;
* ``structmat-half-eager``: the eager path (``STRUCTMAT_ROPE_COMPILE=0``), what the
  first calls of a process and small inputs run;
* ``structmat-interleaved``: one complex multiply (never compiled);
* ``hf-style``: ``q * cos + rotate_half(q) * sin`` (transformers'
  ``apply_rotary_pos_emb``), cos/sin (L, D) precomputed in the input dtype as the HF
  rotary module does once per forward (not timed);
* ``rotary-embedding-torch``: ``RotaryEmbedding(D).rotate_queries_or_keys`` (its
  default interleaved layout; the module caches its frequencies).

Reports median wall time over repeats, ratios (method / clone, peer / ours), the
peak extra resident memory of one call (VmHWM after minus VmRSS before, Linux),
and the max abs error against float64 on the first batch entry (all positions).
Writes benchmarks/results/rope.json and rope.png; ``python benchmarks/readme_tables.py``
puts the table into README.md.

Run: ``python benchmarks/rope.py`` (``--quick`` for a small shape).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.metadata
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _memory import peak_rise_kb
from _meta import run_meta

from structmat._io import write_json
from structmat.rope import RotaryEmbedding
from structmat.rope._compiled import EAGER_SECONDS, ENV

RESULTS = Path(__file__).resolve().parent / "results"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """transformers' rotate_half: (x1, x2) -> (-x2, x1)."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def hf_tables(L: int, D: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (L, D) as LlamaRotaryEmbedding builds them (float32 angles, cast to dtype)."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.arange(L, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (L, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (L, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def exact(x: torch.Tensor, layout: str) -> torch.Tensor:
    """float64 textbook rotation of x (..., L, D) at positions 0..L-1, base 10000."""
    x = x.double()
    L, D = x.shape[-2:]
    theta = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * theta  # (L, D/2)
    c, s = ang.cos(), ang.sin()
    if layout == "half":
        a, b = x[..., : D // 2], x[..., D // 2 :]
        return torch.cat([a * c - b * s, b * c + a * s], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)


def _trim() -> None:
    """Return freed heap pages to the OS (glibc), so VmRSS counts live memory only."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_extra_mb(fn: Callable[[], object]) -> float | None:
    """Peak resident memory one call adds (MB), from /proc (Linux); None elsewhere."""
    gc.collect()
    _trim()
    rise = peak_rise_kb(fn)
    return None if rise is None else rise / 1024


def _methods(
    q: torch.Tensor, k: torch.Tensor
) -> tuple[dict[str, Callable[[], tuple]], dict[str, str | None]]:
    """The contenders, each rotating q and k; and the pair layout each one uses."""
    from rotary_embedding_torch import RotaryEmbedding as RETRotary

    L, D = q.shape[-2:]
    ours_h = RotaryEmbedding(D, layout="half")
    ours_i = RotaryEmbedding(D, layout="interleaved")
    ret = RETRotary(dim=D)  # interleaved, theta 10000
    cos, sin = hf_tables(L, D, q.dtype)

    def half(mode: str) -> Callable[[], tuple]:
        def call() -> tuple:
            os.environ[ENV] = mode  # read by structmat at each call
            return ours_h.rotate(q), ours_h.rotate(k)

        return call

    methods: dict[str, Callable[[], tuple]] = {
        "clone": lambda: (q.clone(), k.clone()),
        "structmat-half": half("1"),
        "structmat-half-eager": half("0"),
        "structmat-interleaved": lambda: (ours_i.rotate(q), ours_i.rotate(k)),
        "hf-style": lambda: (q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin),
        "rotary-embedding-torch": lambda: (
            ret.rotate_queries_or_keys(q),
            ret.rotate_queries_or_keys(k),
        ),
    }
    layouts = {
        "clone": None,
        "structmat-half": "half",
        "structmat-half-eager": "half",
        "structmat-interleaved": "interleaved",
        "hf-style": "half",
        "rotary-embedding-torch": "interleaved",
    }
    return methods, layouts


def run_case(shape: tuple[int, int, int, int], name: str, threads: int, repeats: int) -> dict:
    """Time, memory and accuracy of every method for one shape, dtype and thread count."""
    torch.set_num_threads(threads)
    dtype = getattr(torch, name)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(shape, generator=g).to(dtype)
    k = torch.randn(shape, generator=g).to(dtype)
    methods, layouts = _methods(q, k)
    names = list(methods)
    times: dict[str, list[float]] = {m: [] for m in names}
    errors: dict[str, float | None] = {}
    peaks: dict[str, float | None] = {}
    with torch.no_grad():
        t0 = time.perf_counter()
        methods["structmat-half"]()  # compiles (or finds it compiled) for this case
        first_call_s = time.perf_counter() - t0
        for m in names:  # warm-up (caches, allocator), accuracy and memory
            res = methods[m]()
            lay = layouts[m]
            if lay is not None:
                errors[m] = float((res[0][:1].double() - exact(q[:1], lay)).abs().max())
            else:
                errors[m] = None
            del res
            peaks[m] = peak_extra_mb(methods[m])
        # what rounding the exact result once to the dtype costs
        ref_h = exact(q[:1], "half")
        rounded_once = float((ref_h.to(dtype).double() - ref_h).abs().max())
        del ref_h
        for r in range(repeats):  # rotate the order each repeat; medians below
            order = names[r % len(names) :] + names[: r % len(names)]
            for m in order:
                t0 = time.perf_counter()
                res = methods[m]()
                times[m].append(time.perf_counter() - t0)
                del res
            print(f"  {shape} {name} {threads}t repeat {r + 1}/{repeats}", file=sys.stderr)
    med = {m: statistics.median(v) * 1e3 for m, v in times.items()}

    def paired(a: str, b: str) -> float:
        """Median over repeats of time(a) / time(b), both from the same repeat."""
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    per: dict = {}
    for m in names:
        per[m] = {
            "median_ms": round(med[m], 2),
            "times_ms": [round(t * 1e3, 2) for t in times[m]],
            "ratio_vs_clone": round(paired(m, "clone"), 3),
            "peak_extra_mb": None if peaks[m] is None else round(peaks[m], 1),
            "max_abs_error_vs_float64": errors[m],
        }
    per["_summary"] = {
        "first_compiled_call_s": round(first_call_s, 2),
        "hf_style_over_structmat_half": round(paired("hf-style", "structmat-half"), 2),
        "ret_over_structmat_interleaved": round(
            paired("rotary-embedding-torch", "structmat-interleaved"), 2
        ),
        "exact_rounded_once_max_abs_error": rounded_once,
    }
    for m in names:
        p = per[m]
        print(
            f"{shape} {threads}t {name:9s} {m:24s} {p['median_ms']:9.1f} ms  "
            f"x{p['ratio_vs_clone']:.2f} clone  "
            f"peak +{p['peak_extra_mb']} MB  err {p['max_abs_error_vs_float64']}"
        )
    print(f"{name:9s} summary {per['_summary']}")
    return per


def run(
    shapes: list[tuple[int, int, int, int]], dtypes: list[str], threads: list[int], repeats: int
) -> dict:
    cases = [
        {
            "shape": list(shape),
            "threads": t,
            "dtype": name,
            "results": run_case(shape, name, t, repeats),
        }
        for shape in shapes
        for t in threads
        for name in dtypes
    ]
    return {
        "benchmark": "rope",
        "command": "python benchmarks/rope.py",
        "meta": run_meta(
            threads=max(threads),
            threads_run=threads,
            rotary_embedding_torch=importlib.metadata.version("rotary-embedding-torch"),
        ),
        "repeats": repeats,
        "auto_compile_after_eager_s": EAGER_SECONDS,
        "notes": "median ms to rotate q and k; ratios are medians over repeats of the "
        "ratio within one repeat (method / clone, peer / ours), robust to load drift; "
        "peak_extra_mb = resident memory one call adds (outputs included); "
        "structmat-half is the compiled steady state, structmat-half-eager the eager path",
        "cases": cases,
    }


def figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = data["cases"]
    methods = [m for m in cases[0]["results"] if not m.startswith("_")]
    fig, ax = plt.subplots(figsize=(13, 4.8))
    w = 0.8 / len(cases)
    for j, case in enumerate(cases):
        label = f"{tuple(case['shape'])} {case['dtype']} {case['threads']}t"
        xs = [i + j * w for i in range(len(methods))]
        ax.bar(xs, [case["results"][m]["ratio_vs_clone"] for m in methods], w, label=label)
    ax.set_xticks([i + w * (len(cases) - 1) / 2 for i in range(len(methods))])
    ax.set_xticklabels(methods, rotation=15, ha="right", fontsize=8)
    ax.axhline(1.3, color="k", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("time / clone (median of per-repeat ratios)")
    ax.set_title("rotate q and k (dashed: 1.3x)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shape",
        type=int,
        nargs=4,
        action="append",
        help="B H L D (repeatable; default (4, 16, 2048, 64) and (8, 16, 4096, 64))",
    )
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--quick", action="store_true", help="shape (2, 4, 1024, 64), 3 repeats")
    ap.add_argument("--out", type=Path, default=RESULTS / "rope.json")
    args = ap.parse_args(argv)
    shapes = args.shape or [[4, 16, 2048, 64], [8, 16, 4096, 64]]
    if args.quick:
        shapes = [[2, 4, 1024, 64]]
    repeats = 3 if args.quick else args.repeats
    data = run([tuple(s) for s in shapes], args.dtypes, args.threads, repeats)  # type: ignore[misc]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, data)
    figure(data, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    print(
        json.dumps(
            [
                {"case": f"{c['shape']} {c['dtype']} {c['threads']}t", **c["results"]["_summary"]}
                for c in data["cases"]
            ]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
