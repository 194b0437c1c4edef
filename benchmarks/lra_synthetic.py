"""Experiment: every token mixer on ListOps (L = 1024) and the adding problem (L = 1000)
with the same step budget and (near) the same parameter count.

Each run is a separate ``structmat train`` process (so peak memory is its own);
the width of each mixer's model is chosen so its parameter count is closest to
``--params``. Reports test accuracy / MSE, training tokens/s and peak RSS.

    python benchmarks/lra_synthetic.py                  # the default budget (~1 h on 2 cores)
    python benchmarks/lra_synthetic.py --steps 60 --quick   # a smoke test

Writes benchmarks/results/lra_synthetic.json and lra_synthetic.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

from structmat._io import write_json
from structmat.models import MIXERS
from structmat.tasks import make_dataset
from structmat.train import TrainConfig, _build_model

# Published anchors (Long Range Arena / S4 paper, full training on accelerators).
ANCHORS = {"listops": {"s4": 0.596, "softmax": 0.364, "nystrom": 0.372}}


def width_for(mixer: str, task: str, length: int, layers: int, target: int) -> tuple[int, int]:
    """The d_model (a multiple of 8) whose model has the parameter count closest to target."""
    data = make_dataset(task, "val", 2, length, 0)
    best: tuple[int, int] | None = None
    for d in range(16, 257, 8):  # heads = 4 and an even head dim (RoPE)
        cfg = TrainConfig(
            task=task, model=mixer, length=length, d_model=d, layers=layers
        ).resolved()
        n = sum(p.numel() for p in _build_model(cfg, data).parameters())
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (d, n)
        if n > target:
            break
    assert best is not None
    return best


def run(task: str, length: int, mixer: str, args: argparse.Namespace) -> dict[str, Any]:
    d_model, params = width_for(mixer, task, length, args.layers, args.params)
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "structmat",
            "train",
            "--task",
            task,
            "--model",
            mixer,
            "--length",
            str(length),
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--d-model",
            str(d_model),
            "--layers",
            str(args.layers),
            "--eval-every",
            str(args.steps),
            "--train-size",
            str(args.train_size),
            "--val-size",
            "128",
            "--test-size",
            str(args.test_size),
            "--lr",
            str(args.lr),
            "--threads",
            str(args.threads),
            "--out",
            out,
            "--quiet",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"mixer": mixer, "error": proc.stderr.strip().splitlines()[-1:]}
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    result = {
        "mixer": mixer,
        "d_model": d_model,
        "params": params,
        "test": metrics["test"],
        "tokens_per_s": metrics["throughput_tokens_per_s"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "wall_s": wall,
        "history": metrics["history"],
    }
    score = ", ".join(f"{k} {v:.3f}" for k, v in metrics["test"].items() if k != "loss")
    print(
        f"  {mixer:8s} d={d_model:3d} {params:7,d} params  {score}  "
        f"{result['tokens_per_s']:8,.0f} tok/s  {result['peak_rss_mb']:6.0f} MB",
        flush=True,
    )
    return result


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 6.5), squeeze=False)
    for col, t in enumerate(tasks):
        runs = [r for r in t["runs"] if "error" not in r]
        names = [r["mixer"] for r in runs]
        key = "accuracy" if t["metric"] == "accuracy" else "mse"
        colors = ["C2" if MIXERS[n].kind == "ssm" else "C0" for n in names]
        axes[0][col].bar(names, [r["test"][key] for r in runs], color=colors)
        axes[0][col].set_title(
            f"{t['task']} L={t['length']}: test {key} ({results['steps']} steps)"
        )
        axes[1][col].bar(names, [r["tokens_per_s"] for r in runs], color=colors)
        axes[1][col].set_ylabel("training tokens/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--params", type=int, default=100_000, help="target parameter count")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mixers", default=",".join(MIXERS))
    parser.add_argument("--quick", action="store_true", help="short sequences (smoke test)")
    parser.add_argument("--out", default=str(RESULTS / "lra_synthetic.json"))
    args = parser.parse_args()
    specs = (
        [("listops", 128), ("adding", 128)] if args.quick else [("listops", 1024), ("adding", 1000)]
    )
    tasks = []
    for task, length in specs:
        print(f"{task} L={length}, {args.steps} steps, batch {args.batch_size}", flush=True)
        runs = [run(task, length, m, args) for m in args.mixers.split(",")]
        metric = "mse" if task == "adding" else "accuracy"
        tasks.append(
            {
                "task": task,
                "length": length,
                "metric": metric,
                "runs": runs,
                "anchors": ANCHORS.get(task, {}),
            }
        )
    results = {
        "benchmark": "lra_synthetic",
        "command": "python " + " ".join(["benchmarks/lra_synthetic.py", *sys.argv[1:]]),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "tasks": tasks,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    figure(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
