"""Benchmark: a CUR index over a million items, built on Ray, killed and resumed, searched.

The scorer is synthetic but not low rank: a one-hidden-layer MLP over the pair,
s(q, i) = v · relu(A f(q) + B f(i) + c), with random weights (H = 128) and
64-d Gaussian features f drawn from a hash of each id (so every Ray worker makes
the same features without shipping them). Its 60 x 400 score matrix has
σ2/σ1 ≈ 0.55 and then decays slowly (σ10/σ1 ≈ 0.08): no few anchor queries explain
it. At 1.6 M pairs/s a thread it is cheap enough to score 500 x 1,000,000 pairs here.

Steps (each in its own process, so that peak RSS is the step's own):

1. ``build_index_file`` over N items and k_q anchor queries, float16 R, FAISS IVF
   (4-bit codes), on Ray with ``--workers`` worker processes. The build is killed
   with SIGKILL (its whole process group, Ray included) once ``--kill-at`` of the
   blocks are journaled, then run again: it resumes from the journaled blocks.
2. Check: 2,000 random items re-scored by the scorer match R (float16 rounding).
3. Search with 200 test queries (ids never used as anchors): ANNCUR (k_i = 50,
   budget 100) and ADACUR (5 rounds); the time outside scorer calls per query
   (p50/p99), the peak RSS of the search process against the index size, and
   top-10 recall of the exact top 10 for 50 of the queries (their exact scores
   over all N items computed by the scorer).

    python benchmarks/cur_million.py                 # N = 1,000,000 (~10 min on 2 cores)
    python benchmarks/cur_million.py --items 50000   # a quick run

Writes benchmarks/results/cur_million.json and cur_million.png.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # Ray workers inherit it: one thread each

import argparse
import json
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _meta import run_meta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from structmat._io import write_json
from structmat.retrieval import CURIndex
from structmat.retrieval.stream import build_index_file

RESULTS = ROOT / "benchmarks" / "results"
ANCHOR_SALT, ITEM_SALT = 1, 2
# search settings (recorded in the JSON under "search_settings")
SEARCH_ANCHOR_ITEMS, SEARCH_BUDGET, ADACUR_ROUNDS, R_CHECK_ITEMS = 50, 100, 5, 2000


# --- the synthetic scorer ----------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 (Steele et al., OOPSLA 2014) of uint64 counters, elementwise."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hashed_features(ids: Any, salt: int, d: int) -> np.ndarray:
    """(n, d) float32 standard normals, a pure function of (id, salt) (Box–Muller)."""
    ids = np.asarray(ids, dtype=np.uint64)
    counters = ids[:, None] * np.uint64(2 * d) + np.arange(2 * d, dtype=np.uint64)[None]
    u = (_splitmix64(counters ^ np.uint64(salt << 56)) >> np.uint64(11)) * 2.0**-53
    u1, u2 = u[:, :d], u[:, d:]
    return (np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


class HashMLPScorer:
    """s(q, i) = v · relu(A f(q) + B f(i) + c): queries and items are integer ids."""

    def __init__(self, d: int = 64, hidden: int = 128, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.d, self.hidden = d, hidden
        self.a = torch.randn(hidden, d, generator=g) / d**0.5
        self.b = torch.randn(hidden, d, generator=g) / d**0.5
        self.c = torch.randn(hidden, generator=g) * 0.5
        self.v = torch.randn(hidden, generator=g) / hidden**0.5

    @torch.inference_mode()
    def __call__(self, queries: list[int], items: list[int]) -> torch.Tensor:
        pq = torch.from_numpy(hashed_features(queries, ANCHOR_SALT, self.d)) @ self.a.T  # (Q, H)
        pi = torch.from_numpy(hashed_features(items, ITEM_SALT, self.d)) @ self.b.T + self.c
        out = torch.empty(len(queries), len(items))
        step = max(1, (1 << 24) // max(1, len(queries) * self.hidden))  # ≤ 64 MB at a time
        for lo in range(0, len(items), step):
            h = torch.relu(pq[:, None, :] + pi[None, lo : lo + step, :])  # (Q, b, H)
            out[:, lo : lo + step] = h @ self.v
        return out  # (Q, N)


class TimedScorer:
    """Counts the seconds spent inside the scorer (to report search time without it)."""

    def __init__(self, score: HashMLPScorer) -> None:
        self.score, self.seconds, self.calls = score, 0.0, 0

    def __call__(self, queries: list[int], items: list[int]) -> torch.Tensor:
        t = time.perf_counter()
        out = self.score(queries, items)
        self.seconds += time.perf_counter() - t
        self.calls += len(queries) * len(items)
        return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def ray_workers_peak_rss_mb() -> list[float]:
    """VmHWM (peak RSS) of every live Ray worker process."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmd = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if b"default_worker.py" in cmd or text.startswith("Name:\tray::"):
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]) / 1024)
    return out


def journaled_blocks(journal: Path) -> int:
    """Blocks a partial build's journal lists (a JSON line, then 4 bytes per block)."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return 0
    return (len(data) - data.find(b"\n") - 1) // 4 if b"\n" in data else 0


# --- the steps (each runs in its own process) --------------------------------------


def step_build(args: argparse.Namespace) -> None:
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    resumed = journaled_blocks(Path(args.out + ".partial.journal"))
    t = time.perf_counter()
    build_index_file(
        HashMLPScorer(), list(range(args.anchor_queries)), list(range(args.items)), args.out,
        batch_size=args.batch_size, dtype="float16", mips="ivf", executor="ray",
        progress=True, nprobe=args.nprobe,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    workers = ray_workers_peak_rss_mb()
    ray.shutdown()
    write_json(args.report, {"seconds": seconds, "resumed_blocks": resumed,
                             "driver_peak_rss_mb": peak_rss_mb(),
                             "ray_workers_peak_rss_mb": workers})  # fmt: skip


def step_search(args: argparse.Namespace) -> None:
    score = TimedScorer(HashMLPScorer())
    t = time.perf_counter()
    index = CURIndex.load(args.out, score, nprobe=args.nprobe)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    # 1. R against the scorer, on random items.
    cols = np.sort(rng.choice(index.num_items, R_CHECK_ITEMS, replace=False))
    fresh = score.score(list(range(index.num_anchor_queries)), cols.tolist()).numpy()
    stored = index.r[:, cols].astype(np.float32)
    err = float(np.abs(stored - fresh).max() / np.abs(fresh).max())
    # 2. Search overhead, outside scorer calls.
    queries = [10_000_000 + i for i in range(args.test_queries)]
    methods = {"ANNCUR": 0, "ADACUR (5 rounds)": ADACUR_ROUNDS}
    out: dict[str, Any] = {"load_seconds": load_s, "r_max_rel_error_vs_scorer": err}
    for name, rounds in methods.items():
        kw = {"k": 10, "anchor_items": SEARCH_ANCHOR_ITEMS, "budget": SEARCH_BUDGET}
        index.search(queries[0], adaptive_rounds=rounds, **kw)
        overhead, hits = [], []
        for q in queries:
            score.seconds = 0.0
            t = time.perf_counter()
            _, ids = index.search(q, adaptive_rounds=rounds, **kw)
            overhead.append(time.perf_counter() - t - score.seconds)
            hits.append(ids.numpy())
        out[name] = {"overhead_ms": [1e3 * x for x in overhead], "ids": hits}
    out["search_peak_rss_mb_before_recall"] = peak_rss_mb()
    # 3. Recall against the exact top 10 (the scorer over all N items; the items'
    # half of the hidden layer is computed once, after the peak RSS was taken).
    mlp = score.score
    items_h = torch.cat([
        torch.from_numpy(hashed_features(range(lo, min(lo + 65536, index.num_items)),
                                         ITEM_SALT, mlp.d)) @ mlp.b.T + mlp.c
        for lo in range(0, index.num_items, 65536)
    ])  # fmt: skip  # (N, H)
    for q_i, q in enumerate(queries[: args.recall_queries]):
        pq = torch.from_numpy(hashed_features([q], ANCHOR_SALT, mlp.d)) @ mlp.a.T  # (1, H)
        exact = (torch.relu(items_h + pq) @ mlp.v).numpy()  # (N,), as mlp([q], items)
        top = set(np.argsort(-exact, kind="stable")[:10].tolist())
        for name in methods:
            out[name].setdefault("recall", []).append(len(top & set(out[name]["ids"][q_i])) / 10)
    for name in methods:
        out[name].pop("ids")
    write_json(args.report, out)


# --- the driver --------------------------------------------------------------------


def _run_step(step: str, args: argparse.Namespace, report: Path, kill_at: float = 0.0) -> bool:
    """Run a step in a child process (its own session); True when it completed."""
    cmd = [sys.executable, __file__, "--step", step, "--report", str(report), "--out", args.out,
           "--items", str(args.items), "--anchor-queries", str(args.anchor_queries),
           "--workers", str(args.workers), "--batch-size", str(args.batch_size),
           "--nprobe", str(args.nprobe), "--test-queries", str(args.test_queries),
           "--recall-queries", str(args.recall_queries)]  # fmt: skip
    child = subprocess.Popen(cmd, start_new_session=True)
    if kill_at <= 0:
        return child.wait() == 0
    journal = Path(args.out + ".partial.journal")
    n_blocks = -(-args.items // args.batch_size)
    while child.poll() is None:
        time.sleep(0.2)
        if journaled_blocks(journal) >= kill_at * n_blocks:
            os.killpg(child.pid, signal.SIGKILL)  # the driver and the Ray processes it started
            child.wait()
            subprocess.run(["pkill", "-9", "-f", "ray::|raylet|gcs_server|default_worker"],
                           check=False)  # fmt: skip
            return False
    return child.returncode == 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--anchor-queries", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--nprobe", type=int, default=8)
    p.add_argument("--kill-at", type=float, default=0.4)
    p.add_argument("--test-queries", type=int, default=200)
    p.add_argument("--recall-queries", type=int, default=50)
    p.add_argument("--out", default=None, help="index file (default: a temporary folder)")
    p.add_argument("--search-only", action="store_true",
                   help="only the search step, on the index at --out")  # fmt: skip
    p.add_argument("--step", choices=("build", "search"), help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.step == "build":
        return step_build(args)
    if args.step == "search":
        return step_search(args)
    with tempfile.TemporaryDirectory(dir=os.environ.get("STRUCTMAT_BENCH_TMP")) as tmp:
        args.out = args.out or str(Path(tmp) / "items.cur")
        if args.search_only:  # the build numbers stay those of the last full run
            old = json.loads((RESULTS / "cur_million.json").read_text())
            killed, first_s = old["killed_first_run"], old["first_run_seconds"]
            build = {"seconds": old["resumed_run_seconds"], "resumed_blocks": old["resumed_blocks"],
                     "driver_peak_rss_mb": old["build_driver_peak_rss_mb"],
                     "ray_workers_peak_rss_mb": old["ray_workers_peak_rss_mb"]}  # fmt: skip
        else:
            t0 = time.perf_counter()
            killed = not _run_step("build", args, Path(tmp) / "b1.json", kill_at=args.kill_at)
            first_s = time.perf_counter() - t0
            assert _run_step("build", args, Path(tmp) / "b2.json"), "the resumed build failed"
            build = json.loads((Path(tmp) / "b2.json").read_text())
        size = os.path.getsize(args.out)
        assert _run_step("search", args, Path(tmp) / "s.json"), "the search step failed"
        search = json.loads((Path(tmp) / "s.json").read_text())
    n_blocks = -(-args.items // args.batch_size)
    total_s = first_s + build["seconds"]
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "load_avg": os.getloadavg()},
        "items": args.items, "anchor_queries": args.anchor_queries, "workers": args.workers,
        "batch_size": args.batch_size, "nprobe": args.nprobe, "dtype": "float16",
        "killed_first_run": killed, "first_run_seconds": first_s,
        "resumed_blocks": build["resumed_blocks"], "blocks": n_blocks,
        "resumed_run_seconds": build["seconds"],
        "items_per_second": args.items / total_s,
        "pairs_per_second": args.items * args.anchor_queries / total_s,
        "build_driver_peak_rss_mb": build["driver_peak_rss_mb"],
        "ray_workers_peak_rss_mb": build["ray_workers_peak_rss_mb"],
        "index_mb": size / 2**20,
        "search_settings": {"anchor_items": SEARCH_ANCHOR_ITEMS, "budget": SEARCH_BUDGET,
                            "adacur_rounds": ADACUR_ROUNDS, "test_queries": args.test_queries,
                            "recall_queries": args.recall_queries, "r_check_items": R_CHECK_ITEMS},
        # threads of this process; its steps and the Ray workers inherit OMP_NUM_THREADS
        "meta": run_meta(threads=torch.get_num_threads(), ray_workers=args.workers),
        "search": {"load_seconds": search["load_seconds"],
                   "peak_rss_mb": search["search_peak_rss_mb_before_recall"],
                   "r_max_rel_error_vs_scorer": search["r_max_rel_error_vs_scorer"]},
    }  # fmt: skip
    for name in ("ANNCUR", "ADACUR (5 rounds)"):
        ms = np.asarray(search[name]["overhead_ms"])
        result["search"][name] = {
            "overhead_ms_p50": float(np.percentile(ms, 50)),
            "overhead_ms_p99": float(np.percentile(ms, 99)),
            "top10_recall": float(np.mean(search[name]["recall"])),
            "overhead_ms": ms.tolist(),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "cur_million.json", result)
    _plot(result)
    s = result["search"]
    print(f"N={args.items:,} k_q={args.anchor_queries} workers={args.workers}: "
          f"{result['items_per_second']:.0f} items/s, index {result['index_mb']:.0f} MB, "
          f"build driver peak RSS {result['build_driver_peak_rss_mb']:.0f} MB, "
          f"search peak RSS {s['peak_rss_mb']:.0f} MB; resumed {build['resumed_blocks']}"
          f"/{n_blocks} blocks after kill -9")  # fmt: skip
    for name in ("ANNCUR", "ADACUR (5 rounds)"):
        m = s[name]
        print(
            f"  {name}: overhead p50 {m['overhead_ms_p50']:.2f} ms, p99 "
            f"{m['overhead_ms_p99']:.2f} ms, top-10 recall {100 * m['top10_recall']:.1f}%"
        )


def _plot(result: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("ANNCUR", "ADACUR (5 rounds)"):
        ms = np.sort(result["search"][name]["overhead_ms"])
        ax.plot(ms, np.linspace(0, 1, len(ms)), label=name)
    ax.axvline(20, color="gray", ls=":", label="20 ms target (p50)")
    ax.set_xlabel("search time outside scorer calls per query (ms)")
    ax.set_ylabel("fraction of queries")
    ax.set_title(f"CUR search over {result['items']:,} items, k_q = {result['anchor_queries']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cur_million.png", dpi=120)


if __name__ == "__main__":
    main()
