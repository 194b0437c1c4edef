"""``structmat cost``: when does linear attention pay? FLOPs of one Transformer layer.

Per layer (width d, FFN 4d) the projections and FFN cost 24·n·d² and softmax attention's
n² part 4·n²·d, so that part dominates only for n > 6d (kexue.fm/archives/8610). The table
gives, per length n, the share of the layer's FLOPs in the n² part, the speed-up bound if
that part cost nothing, and the speed-up of the layer with linear or Nyström attention.
"""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

from structmat._io import atomic_write
from structmat.attention.cost import crossover_length, layer_flops
from structmat.cli._common import CLIError

# Newton–Schulz steps counted for Nyström: about what the default stopping rule takes.
_PINV_STEPS = 12


def _lengths(text: str) -> list[int]:
    try:
        ns = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise CLIError(f"--n: expected comma-separated integers, got {text!r}") from err
    if not ns or any(n < 1 for n in ns):
        raise CLIError(f"--n: expected comma-separated integers >= 1, got {text!r}")
    return ns


def cost_table(
    d: int, heads: int, ns: list[int], ffn_mult: int = 4, landmarks: int = 64
) -> list[dict[str, Any]]:
    """One row per length: FLOPs and shares (see the module docstring)."""
    rows = []
    for n in ns:
        soft = layer_flops(n, d, heads, ffn_mult, "softmax")
        lin = layer_flops(n, d, heads, ffn_mult, "linear")
        nys = layer_flops(n, d, heads, ffn_mult, "nystrom", landmarks, _PINV_STEPS)
        quad = soft["scores"] + soft["weighted_sum"]
        rows.append(
            {
                "n": n,
                "gflops_softmax": soft["total"] / 1e9,
                "n2_share": quad / soft["total"],
                "speedup_bound": soft["total"] / (soft["total"] - quad),
                "speedup_linear": soft["total"] / lin["total"],
                "speedup_nystrom": soft["total"] / nys["total"],
            }
        )
    return rows


def _plot(rows: list[dict[str, Any]], d: int, heads: int, crossover: int, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise CLIError("--plot needs matplotlib (pip install 'structmat[bench]')") from err
    ns = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.semilogx(ns, [100 * r["n2_share"] for r in rows], "o-", base=2)
    ax1.axvline(crossover, color="grey", ls="--", label=f"6d = {crossover}")
    ax1.set(
        xlabel="sequence length n",
        ylabel="% of layer FLOPs in the n² part",
        title=f"d = {d}, {heads} heads, FFN 4d",
        ylim=(0, 100),
    )
    ax1.legend()
    ax2.loglog(ns, [r["speedup_bound"] for r in rows], "o-", base=2, label="bound (n² part free)")
    ax2.loglog(ns, [r["speedup_linear"] for r in rows], "s-", base=2, label="linear attention")
    ax2.loglog(ns, [r["speedup_nystrom"] for r in rows], "^-", base=2, label="Nyström")
    ax2.set(xlabel="sequence length n", ylabel="layer speed-up (FLOPs)")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def run(args: argparse.Namespace) -> int:
    ns = _lengths(args.n)
    rows = cost_table(args.d, args.heads, ns, args.ffn_mult, args.landmarks)
    cross = crossover_length(args.d, args.ffn_mult)
    if args.plot:
        _plot(rows, args.d, args.heads, cross, args.plot)
    if args.json:
        print(
            json.dumps(
                {
                    "d": args.d,
                    "heads": args.heads,
                    "ffn_mult": args.ffn_mult,
                    "landmarks": args.landmarks,
                    "crossover_length": cross,
                    "rows": rows,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"Transformer layer, d = {args.d}, {args.heads} heads, FFN {args.ffn_mult}d "
        f"(matmul FLOPs; n² part = scores + weighted sum)"
    )
    print(f"the n² part equals the rest at n = {cross}")
    head = f"{'n':>7}  {'GFLOPs':>9}  {'n² share':>8}  {'bound':>7}  {'linear':>7}  {'Nyström':>7}"
    print(head)
    for r in rows:
        print(
            f"{r['n']:>7}  {r['gflops_softmax']:>9.1f}  {100 * r['n2_share']:>7.1f}%  "
            f"{r['speedup_bound']:>6.2f}x  {r['speedup_linear']:>6.2f}x  "
            f"{r['speedup_nystrom']:>6.2f}x"
        )
    print(
        f"bound: layer speed-up if the n² part cost nothing; linear / Nyström "
        f"({args.landmarks} landmarks): layer speed-up with that attention"
    )
    if args.plot:
        print(f"figure written to {args.plot}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cost",
        help="FLOPs of a Transformer layer: when does linear attention pay?",
        description=__doc__,
    )
    p.add_argument("--d", type=int, default=768, help="model width (default 768, BERT-base)")
    p.add_argument("--heads", type=int, default=12, help="attention heads (default 12)")
    p.add_argument(
        "--n",
        default="512,2048,8192,32768",
        help="comma-separated sequence lengths (default 512,2048,8192,32768)",
    )
    p.add_argument("--ffn-mult", type=int, default=4, help="FFN width / d (default 4)")
    p.add_argument("--landmarks", type=int, default=64, help="Nyström landmarks (default 64)")
    p.add_argument("--plot", metavar="FILE", help="write a PNG figure")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)
