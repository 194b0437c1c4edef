"""Experiment: every token mixer at the same wall time, on the long-range tasks.

Each (task, length, mixer) run is a separate ``structmat train --minutes M`` process
with the task's own defaults (what a user gets from ``--model/--task/--length``):
the step count is planned from the mixer's measured step time, so a slow mixer
takes fewer steps in the same seconds. The held-out (validation) metric is logged
every ``--eval-every`` steps against wall seconds (``metrics.jsonl``), and the test
metric is measured once at the end.

Default tasks: adding at L = 1000 and 4000 and ListOps at L = 1024 (where S4 should
lead), and selective copying and associative recall (where a time-invariant SSM is
known to be weak: the answer depends on content, not on a fixed delay).

    python benchmarks/lra_synthetic.py                   # ~65 min of runs, 2 at a time (~33 min)
    python benchmarks/lra_synthetic.py --quick           # a smoke test (~8 min)

Writes benchmarks/results/lra_synthetic.json and lra_synthetic.png (one panel per
task: metric against seconds, one curve per mixer).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from _meta import run_meta

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

from structmat._io import write_json
from structmat.models import MIXERS

# task name, length, minutes per run
FULL = [
    ("adding", 1000, 2.0),
    ("adding", 4000, 5.0),
    ("listops", 1024, 3.0),
    ("selective-copying", 512, 1.5),
    ("recall", 257, 1.5),
]
QUICK = [("adding", 200, 1.5), ("selective-copying", 64, 1.5)]


def run(task: str, length: int, mixer: str, minutes: float, args: argparse.Namespace) -> dict:
    """One ``structmat train`` process; returns its curve, test metric and costs."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable, "-m", "structmat", "train",
            "--task", task, "--model", mixer, "--length", str(length),
            "--minutes", str(minutes), "--eval-every", str(args.eval_every),
            "--val-size", str(args.val_size), "--threads", str(args.threads),
            "--seed", str(args.seed), "--out", out, "--quiet",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            print(f"  {task} L={length} {mixer}: failed: {lines[-1:]}", flush=True)
            return {"mixer": mixer, "error": lines[-1:], "wall_s": wall}
        metrics = json.loads((Path(out) / "metrics.json").read_text())
        config = json.loads((Path(out) / "config.json").read_text())
        lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    key = "accuracy" if "accuracy" in metrics["test"] else "mse"
    result = {
        "mixer": mixer,
        "steps": config["steps"],
        "params": metrics.get("params"),
        "test": metrics["test"],
        "tokens_per_s": metrics["throughput_tokens_per_s"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "wall_s": wall,
        "curve": [{"seconds": r["seconds"], "val": r[f"val_{key}"]} for r in log],
    }
    print(
        f"  {task} L={length} {mixer:8s} {config['steps']:5d} steps  test {key} "
        f"{metrics['test'][key]:.4f}  {result['tokens_per_s']:8,.0f} tok/s  "
        f"{result['peak_rss_mb']:6.0f} MB  {wall:5.0f} s",
        flush=True,
    )
    return result


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.0), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        key = t["metric"]
        for r in t["runs"]:
            if "error" in r or not r["curve"]:
                continue
            style = "-" if MIXERS[r["mixer"]].kind == "ssm" else "--"
            xs = [p["seconds"] for p in r["curve"]]
            ys = [p["val"] for p in r["curve"]]
            ax.plot(xs, ys, style, marker=".", label=f"{r['mixer']} (test {r['test'][key]:.3g})")
        if key == "mse":
            ax.set_yscale("log")
        ax.set_title(f"{t['task']} L={t['length']} ({t['minutes']:g} min each)")
        ax.set_xlabel("wall seconds")
        ax.set_ylabel(f"validation {key}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", default=",".join(MIXERS))
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--val-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--out", default=str(RESULTS / "lra_synthetic.json"))
    args = parser.parse_args()
    mixers = args.mixers.split(",")
    specs = [(t, n, m * args.scale) for t, n, m in (QUICK if args.quick else FULL)]
    jobs = [(t, n, mixer, m) for t, n, m in specs for mixer in mixers]
    # Runs go `parallel` at a time, each on `threads` threads: every mixer meets
    # the same sharing of the machine, so equal minutes stay comparable.
    with ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(lambda job: run(*job, args), jobs))
    tasks = []
    for t, n, m in specs:
        runs = [r for (jt, jn, _, _), r in zip(jobs, done, strict=True) if (jt, jn) == (t, n)]
        metric = "mse" if t == "adding" else "accuracy"
        tasks.append({"task": t, "length": n, "minutes": m, "metric": metric, "runs": runs})
    results = {
        "benchmark": "lra_synthetic",
        "command": "python " + " ".join(["benchmarks/lra_synthetic.py", *sys.argv[1:]]),
        "threads": args.threads,
        "parallel": args.parallel,
        "eval_every": args.eval_every,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "val_size": args.val_size,
        "seed": args.seed,
        "meta": run_meta(threads=args.threads, parallel_runs=args.parallel),
        "tasks": tasks,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    figure(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
