"""README attention cost table: computed by ``structmat cost`` (no JSON, no measurement).

The numbers are ``structmat.cli.cost.cost_table``'s, a deterministic FLOP count, so the
block carries no run line; the measured crossover below it in the README comes from
benchmarks/attention.py and is not generated here.
"""

from __future__ import annotations

from typing import Any

from structmat.attention.cost import crossover_length
from structmat.cli.cost import cost_table

from ._common import table

D, HEADS, NS, FFN_MULT, LANDMARKS = 768, 12, (512, 2048, 8192, 32768), 4, 64


def render(data: dict[str, Any]) -> str:
    del data  # computed, nothing is read
    rows = [
        [
            str(r["n"]),
            f"{r['gflops_softmax']:.1f}",
            f"{100 * r['n2_share']:.1f}%",
            f"{r['speedup_bound']:.2f}x",
            f"{r['speedup_linear']:.2f}x",
            f"{r['speedup_nystrom']:.2f}x",
        ]
        for r in cost_table(D, HEADS, list(NS), FFN_MULT, LANDMARKS)
    ]
    cross = crossover_length(D, FFN_MULT)
    ratio = f"{cross // D}d = " if cross % D == 0 else ""
    intro = (
        f"`structmat cost --d {D} --heads {HEADS} --n {','.join(map(str, NS))}` (BERT-base; "
        f"the n² part\nequals the rest at n = {ratio}{cross}):"
    )
    head = [
        "n",
        "GFLOPs/layer",
        "n² share",
        "bound (n² free)",
        "linear attn",
        f"Nyström ({LANDMARKS})",
    ]
    return "\n\n".join([intro, table(head, rows)])


TABLES = {"attention_cost": (None, render)}
