"""``structmat train``: train a sequence model on a locally generated long-range task.

Also runs under ``torchrun --nproc_per_node N -m structmat train ...`` (DDP, gloo).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from typing import Any

from structmat.models import MIXERS
from structmat.tasks import TASKS
from structmat.train import TrainConfig, train

_DEFAULTS = TrainConfig()


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
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
    print(
        f"{m['model']} on {m['task']} (L={m['length']}, {m['params']:,} params, "
        f"{m['steps']} steps): test {score}; {tput:,.0f} tokens/s; "
        f"metrics in {config.out}/metrics.json"
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a sequence model on a generated long-range task", description=__doc__
    )
    d = _DEFAULTS
    p.add_argument(
        "--model", default=d.model, help=f"token mixer: {' | '.join(MIXERS)} (default {d.model})"
    )
    p.add_argument("--task", default=d.task, help=f"{' | '.join(TASKS)} (default {d.task})")
    p.add_argument("--length", type=int, default=None, help="sequence length (default: per task)")
    p.add_argument(
        "--steps", type=int, default=d.steps, help="steps of the whole run (schedules depend on it)"
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        dest="stop_after",
        help="checkpoint and exit 0 after N steps of this invocation",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, dest="batch_size")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, dest="weight_decay")
    p.add_argument("--d-model", type=int, default=d.d_model, dest="d_model")
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--pool", choices=["mean", "last"], default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--eval-every", type=int, default=d.eval_every, dest="eval_every")
    p.add_argument("--train-size", type=int, default=d.train_size, dest="train_size")
    p.add_argument("--val-size", type=int, default=d.val_size, dest="val_size")
    p.add_argument("--test-size", type=int, default=d.test_size, dest="test_size")
    p.add_argument("--out", default=d.out, help=f"output directory (default {d.out})")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
