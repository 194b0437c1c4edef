"""``structmat train``: train a sequence model on a locally generated long-range task.

Settings left out take the task's defaults (``structmat.tasks.TASKS``), then the
global ones (``structmat.train_config.GLOBAL_DEFAULTS``). Also runs under
``torchrun --nproc_per_node N -m structmat train ...`` (DDP, gloo).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from typing import Any

from structmat.models import MIXERS
from structmat.tasks import TASKS
from structmat.train import TrainConfig, train
from structmat.train_config import GLOBAL_DEFAULTS, SCHEDULES

_DEFAULTS = TrainConfig()


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(TrainConfig)}
    options = {k: v for k, v in vars(args).items() if k in names}
    if args.norm is not None:
        options["prenorm"] = args.norm == "pre"
    config = TrainConfig(**options)
    result = train(config, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    m = result.metrics
    if result.status == "interrupted":
        print(
            f"interrupted at step {result.step}; checkpoint saved in {config.out}; "
            "continue with --resume"
        )
        return 130
    if result.status == "stopped":
        print(
            f"stopped after step {result.step} of {m['total_steps']}; checkpoint in {config.out}; "
            "continue with --resume"
        )
        return 0
    score = ", ".join(f"{k} {v:.4f}" for k, v in m["test"].items())
    tput = m["throughput_tokens_per_s"]
    plan = m.get("plan")
    planned = f", planned for {plan['minutes']:g} min" if plan else ""
    print(
        f"{m['model']} on {m['task']} (L={m['length']}, {m['params']:,} params, "
        f"{m['steps']} steps{planned}): test {score}; {tput:,.0f} tokens/s; "
        f"metrics in {config.out}/metrics.json"
    )
    return 0


def _per_task(name: str) -> str:
    fallback = GLOBAL_DEFAULTS[name]
    return "default: per task" + ("" if fallback is None else f", else {fallback}")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a sequence model on a generated long-range task", description=__doc__
    )
    d = _DEFAULTS
    p.add_argument(
        "--model", default=d.model, help=f"token mixer: {' | '.join(MIXERS)} (default {d.model})"
    )
    p.add_argument("--task", default=d.task, help=f"{' | '.join(TASKS)} (default {d.task})")
    p.add_argument("--length", type=int, help=f"sequence length ({_per_task('length')})")
    p.add_argument(
        "--steps",
        type=int,
        help=f"steps of the whole run; schedules depend on it ({_per_task('steps')})",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="time budget: the steps are planned from a measured step time so the "
        "whole run (evaluations and test included) fits; --resume keeps the plan; "
        "not with --steps",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        dest="stop_after",
        help="checkpoint and exit 0 after N steps of this invocation",
    )
    for flag, kind, what in (
        ("--batch-size", int, "global batch size"),
        ("--lr", float, "learning rate"),
        ("--weight-decay", float, "AdamW weight decay (not on S4 parameters)"),
        ("--warmup", int, "linear warm-up steps"),
        ("--d-model", int, "model width"),
        ("--layers", int, "residual blocks"),
        ("--d-state", int, "S4 state size N (even)"),
        ("--dt-min", float, "S4 initial step sizes: smallest"),
        ("--dt-max", float, "S4 initial step sizes: largest"),
        ("--dropout", float, "dropout"),
        ("--eval-every", int, "steps between evaluations (and checkpoints)"),
        ("--train-size", int, "training sequences"),
        ("--val-size", int, "validation sequences"),
        ("--test-size", int, "test sequences"),
    ):
        dest = flag[2:].replace("-", "_")
        p.add_argument(flag, type=kind, dest=dest, help=f"{what} ({_per_task(dest)})")
    p.add_argument(
        "--ssm-lr",
        type=float,
        dest="ssm_lr",
        help="learning rate of the S4 parameters (default: min(lr, 1e-3))",
    )
    p.add_argument(
        "--schedule", choices=SCHEDULES, help=f"lr after warm-up ({_per_task('schedule')})"
    )
    p.add_argument(
        "--norm", choices=["pre", "post"], help="pre- or post-norm blocks (default: pre)"
    )
    p.add_argument(
        "--normalization",
        choices=["layer", "batch"],
        help="LayerNorm or BatchNorm over real positions (default: per task)",
    )
    p.add_argument("--pool", choices=["mean", "last"], help="pooling (default: per task)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help=f"output directory (default {d.out})")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (from step 0 if it was killed before its first checkpoint)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write TensorBoard scalars to DIR (needs: pip install tensorboard)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
