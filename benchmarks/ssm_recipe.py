"""What makes S4/S4D learn the adding problem: one change at a time, val MSE against steps.

Each variant trains a 2-layer, d = 64 S4D (or S4) regressor on adding, one thread,
in its own process (``--one`` runs a single variant and prints its curve as JSON).
Variants start from a plain model and change one thing each: pre/post-norm,
LayerNorm/BatchNorm, input standardisation, pooling, lr, the S4 (NPLR) mixer, seeds.

    python benchmarks/ssm_recipe.py          # L = 1000 (and 300) variants, ~40 min on 2 cores
    python benchmarks/ssm_recipe.py --quick      # L = 100, 100 steps (smoke test)

Writes benchmarks/results/ssm_recipe.json and ssm_recipe.png.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from _meta import run_meta
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (tag, settings changed from BASE)
BASE = {
    "L": 1000,
    "steps": 600,
    "batch": 16,
    "lr": 1e-2,
    "ssm_lr": 1e-3,
    "post": False,
    "norm": "layer",
    "pool": "mean",
    "mixer": "s4d",
    "sched": "cos",
    "standardize": False,
    "seed": 0,
}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("pre-norm LayerNorm", {}),
    ("post-norm LayerNorm", {"post": True}),
    ("pre-norm LayerNorm, standardised inputs", {"standardize": True}),
    ("post-norm LayerNorm, standardised inputs", {"post": True, "standardize": True}),
    ("pre-norm BatchNorm", {"norm": "batch"}),
    ("post-norm BatchNorm (default)", {"post": True, "norm": "batch"}),
    ("post-norm BatchNorm, seed 1", {"post": True, "norm": "batch", "seed": 1}),
    ("post-norm BatchNorm, seed 2", {"post": True, "norm": "batch", "seed": 2}),
    ("post-norm BatchNorm, lr 3e-3", {"post": True, "norm": "batch", "lr": 3e-3}),
    ("post-norm BatchNorm, S4 (NPLR)", {"post": True, "norm": "batch", "mixer": "s4"}),
    ("post-norm LayerNorm, pool last (causal)", {"post": True, "pool": "last", "L": 300}),
]


def run_one(s: dict[str, Any]) -> list[tuple[int, float]]:
    """Train one variant; returns [(step, val MSE)] every 50 steps."""
    from structmat.models import SequenceRegressor
    from structmat.ssm import ssm_parameter_groups
    from structmat.tasks import make_dataset

    torch.set_num_threads(1)
    tr = make_dataset("adding", "train", 4000, s["L"], s["seed"])
    va = make_dataset("adding", "val", 256, s["L"], s["seed"])
    flat = tr.inputs.reshape(-1, 2)
    mu, sd = flat.mean(0), flat.std(0)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x - mu) / sd if s["standardize"] else x

    torch.manual_seed(s["seed"])
    model = SequenceRegressor(
        1,
        input_dim=2,
        d_model=64,
        n_layers=2,
        mixer=s["mixer"],
        pool=s["pool"],
        prenorm=not s["post"],
        causal=s["pool"] == "last",
        length=s["L"],
        norm=s["norm"],
    )
    groups = ssm_parameter_groups(model, lr=s["lr"], ssm_lr=s["ssm_lr"], weight_decay=0.01)
    opt = torch.optim.AdamW(groups, lr=s["lr"], weight_decay=0.01)
    warm, steps = 20, s["steps"]

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warm) / max(1, steps - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(s["seed"] + 123)
    curve = []
    for t in range(1, steps + 1):
        idx = torch.randint(0, len(tr), (s["batch"],), generator=gen)
        loss = (model(prep(tr.inputs[idx])) - tr.targets[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if t % 50 == 0 or t == steps:
            model.eval()
            with torch.no_grad():
                err = (model(prep(va.inputs)) - va.targets).square().mean().item()
            model.train()
            curve.append((t, err))
    return curve


def figure(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        steps, mse = zip(*r["curve"], strict=True)
        ax.plot(steps, mse, label=f"{r['tag']} (L={r['settings']['L']})")
    ax.axhline(0.167, color="k", ls=":", label="constant predictor")
    ax.set_yscale("log")
    ax.set_xlabel("step (batch 16)")
    ax.set_ylabel("val MSE")
    ax.set_title("adding problem: one change at a time")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", help="JSON settings of one variant (internal)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "ssm_recipe.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    todo = []
    for tag, change in VARIANTS:
        s = {**BASE, **change}
        if args.quick:
            s.update(L=100, steps=100)
        todo.append((tag, s))

    def launch(item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        tag, s = item
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(s)],
            capture_output=True,
            text=True,
            check=True,
        )
        curve = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{tag:45s} final val MSE {curve[-1][1]:.4f}", flush=True)
        return {"tag": tag, "settings": s, "curve": curve, "wall_s": time.perf_counter() - t0}

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(launch, todo))
    from structmat._io import write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = run_meta(threads=1, parallel_runs=args.jobs)  # each variant: its own 1-thread process
    write_json(
        out,
        {"benchmark": "ssm_recipe", "torch": torch.__version__, "meta": meta, "runs": results},
    )
    figure(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
