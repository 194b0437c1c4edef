"""README "What makes S4 learn the adding problem": benchmarks/results/ssm_recipe.json.

Rows name their runs by the tags ``benchmarks/ssm_recipe.py`` writes.
"""

from __future__ import annotations

import math
from typing import Any

from ._common import meta_line, para, table

JSON = "ssm_recipe.json"

STEPS = (100, 300, 600)
PLATEAU = 0.15  # below this val MSE a run has left the constant predictor's 0.167

# (label, the tag of each run shown: one per seed)
ROWS: list[tuple[str, list[str]]] = [
    ("pre-norm LayerNorm (the old default)", ["pre-norm LayerNorm"]),
    ("post-norm LayerNorm", ["post-norm LayerNorm"]),
    ("post-norm LayerNorm, pool last (causal)", ["post-norm LayerNorm, pool last (causal)"]),
    ("post-norm LayerNorm, standardised inputs", ["post-norm LayerNorm, standardised inputs"]),
    ("pre-norm LayerNorm, standardised inputs", ["pre-norm LayerNorm, standardised inputs"]),
    (
        "**post-norm BatchNorm** (new default), seeds 0 / 1 / 2",
        [
            "post-norm BatchNorm (default)",
            "post-norm BatchNorm, seed 1",
            "post-norm BatchNorm, seed 2",
        ],
    ),
    ("pre-norm BatchNorm", ["pre-norm BatchNorm"]),
    ("post-norm BatchNorm, S4 (NPLR)", ["post-norm BatchNorm, S4 (NPLR)"]),
]


def mse(x: float) -> str:
    """3 decimals from 0.01 up, else 2 significant digits (0.172, 0.077, 0.0048, 0.0040)."""
    if x >= 0.01:
        return f"{x:.3f}"
    if x <= 0:
        return "0"
    x = float(f"{x:.2g}")  # round first, so 0.000995 gives 0.0010
    return f"{x:.{1 - math.floor(math.log10(x))}f}"


def _at(run: dict[str, Any], step: int) -> float:
    for s, v in run["curve"]:
        if s == step:
            return v
    raise KeyError(f"run {run['tag']!r} has no val MSE at step {step}")


def _plateau(run: dict[str, Any]) -> str:
    """' (plateau)' / ' (plateau ~N steps)' for a run still on it at the first column."""
    if _at(run, STEPS[0]) < PLATEAU:
        return ""
    left = next((s for s, v in run["curve"] if v < PLATEAU), None)
    return " (plateau)" if left is None or left > STEPS[-1] else f" (plateau ~{left} steps)"


def _runs_of(data: dict[str, Any], tags: list[str]) -> list[dict[str, Any]]:
    by_tag = {r["tag"]: r for r in data["runs"]}
    missing = [t for t in tags if t not in by_tag]
    if missing:
        raise KeyError(f"no run tagged {missing[0]!r}")
    return [by_tag[t] for t in tags]


def _show(value: Any) -> str:
    if value is None:
        return "not recorded"
    if value in ("const", "cos"):
        return {"const": "constant", "cos": "cosine"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings_line(runs: list[dict[str, Any]]) -> str:
    """What the shown runs share, and what differs between them (by L)."""
    keys = {
        "batch": "batch",
        "lr": "lr",
        "ssm_lr": "S4 lr",
        "sched": "lr schedule",
        "steps": "steps",
    }
    shared, differ = [], []
    for key, name in keys.items():
        by_l: dict[int, set[str]] = {}
        for r in runs:
            by_l.setdefault(r["settings"]["L"], set()).add(_show(r["settings"].get(key)))
        values = set().union(*by_l.values())
        if len(values) == 1:
            shared.append(f"{name} {values.pop()}")
        else:
            each = (f"{' / '.join(sorted(v))} at L = {n}" for n, v in sorted(by_l.items()))
            differ.append(f"{name} " + ", ".join(each))
    return "Settings recorded for these runs: " + "; ".join(shared + differ) + "."


def render(data: dict[str, Any]) -> str:
    rows, shown = [], []
    for label, tags in ROWS:
        runs = _runs_of(data, tags)
        shown += runs
        lengths = {r["settings"]["L"] for r in runs}
        if len(lengths) != 1:
            raise ValueError(f"row {label!r} mixes lengths {sorted(lengths)}")
        if len(runs) == 1:
            cells = [mse(_at(runs[0], s)) for s in STEPS]
            cells[-1] += _plateau(runs[0])
        else:
            cells = []
            for s in STEPS:
                vals = sorted(_at(r, s) for r in runs)
                cells.append(f"{mse(vals[0])}–{mse(vals[-1])}")
        rows.append([label, str(lengths.pop()), " / ".join(cells)])
    head = ["change", "L", "val MSE at step " + " / ".join(map(str, STEPS))]
    return "\n\n".join([table(head, rows), para(_settings_line(shown)), meta_line(data, JSON)])


TABLES = {"ssm_recipe": (JSON, render)}
