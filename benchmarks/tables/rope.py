"""README "Rotary position embeddings": benchmarks/results/rope.json (benchmarks/rope.py)."""

from __future__ import annotations

import math
from typing import Any

from ._common import claim, meta_line, para, span, table

JSON = "rope.json"

# (JSON method, column label), in the table's order
METHODS = [
    ("structmat-half", "structmat `half`"),
    ("structmat-half-eager", "`half`, eager"),
    ("structmat-interleaved", "structmat `interleaved`"),
    ("hf-style", "HF `x*cos + rotate_half(x)*sin`"),
    ("rotary-embedding-torch", "rotary-embedding-torch"),
]
EXACT = "exact, rounded once"


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def error(v: float | None) -> str:
    """5.02e-07 -> "5.0e-7", 0.015609 -> "0.0156", 8.7577 -> "8.76", None -> "–"."""
    if v is None:
        return "–"
    if v >= 1e-3:
        return f"{v:.3g}"
    e = math.floor(math.log10(v))
    m = round(v / 10**e, 1)
    if m >= 10:
        m, e = m / 10, e + 1
    return f"{m:.1f}e{e}"


def _ordered(values: list[Any]) -> list[Any]:
    return sorted(set(values), key=lambda v: (str(type(v)), v))


def _speed_table(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        res = c["results"]
        rows.append(
            [
                _shape(c["shape"]),
                c["dtype"],
                str(c["threads"]),
                f"{res['clone']['median_ms']:.1f}",
                *(f"{res[m]['ratio_vs_clone']:.2f}" for m, _ in METHODS),
            ]
        )
    head = ["q, k shape", "dtype", "threads", "clone ms", *(label for _, label in METHODS)]
    return table(head, rows)


def _accuracy_table(cases: list[dict[str, Any]]) -> tuple[str, str]:
    """(its introduction, the table): errors and memory at the largest shape, fewest threads."""
    shape = max((c["shape"] for c in cases), key=math.prod)
    threads = min(c["threads"] for c in cases if c["shape"] == shape)
    at = {c["dtype"]: c for c in cases if c["shape"] == shape and c["threads"] == threads}
    dtypes = [d for d in ("float32", "bfloat16") if d in at] + sorted(
        d for d in at if d not in ("float32", "bfloat16")
    )
    rows = []
    for method, label in [("clone", "clone"), *METHODS]:
        res = [at[d]["results"][method] for d in dtypes]
        rows.append(
            [
                label,
                *(error(r["max_abs_error_vs_float64"]) for r in res),
                *(f"{r['peak_extra_mb']:.0f}" for r in res),
            ]
        )
    once = [at[d]["results"]["_summary"]["exact_rounded_once_max_abs_error"] for d in dtypes]
    rows.append([EXACT, *map(error, once), *("–" for _ in dtypes)])
    head = [
        "method",
        *(f"max abs error, {d}" for d in dtypes),
        *(f"peak extra MB, {d}" for d in dtypes),
    ]
    intro = (
        f"Max abs error against float64 (all positions of the first batch entry; "
        f"{EXACT}: the float64 result cast to the dtype) and the resident memory one call "
        f"adds, outputs included, at {_shape(shape)}, {threads} thread"
        f"{'' if threads == 1 else 's'}:"
    )
    return intro, table(head, rows)


def _span(values: list[float]) -> str:
    return span(f"{min(values):.1f}", f"{max(values):.1f}") + "x"


def render(data: dict[str, Any]) -> str:
    cases = data["cases"]
    shapes = [_shape(s) for s in _ordered([tuple(c["shape"]) for c in cases])]
    dtypes = list(dict.fromkeys(c["dtype"] for c in cases))
    threads = [str(t) for t in _ordered([c["threads"] for c in cases])]

    def _and(words: list[str]) -> str:
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    intro = (
        f"`python benchmarks/rope.py` — q and k of {_and(shapes)}, {_and(dtypes)}, "
        f"{_and(threads)} thread{'' if threads == ['1'] else 's'}; time as a multiple of "
        "`clone` (one read and one write of q and k, the bound any out-of-place rotation "
        f"pays), the median over {data['repeats']} repeats of the ratio within one repeat:"
    )
    summaries = [c["results"]["_summary"] for c in cases]
    first = max(s["first_compiled_call_s"] for s in summaries)
    hf = [s["hf_style_over_structmat_half"] for s in summaries]
    ret = [s["ret_over_structmat_interleaved"] for s in summaries]
    claim(min(hf) > 1 and min(ret) > 1, "structmat is faster than both peers in every case")
    after = (
        "structmat `half` is the compiled loop in its steady state (the first compiled call "
        f"of this run took up to {first:.1f} s); by default it takes over after "
        f"{data['auto_compile_after_eager_s']:g} s of eager rotation of one kind, and the "
        "`half`, eager column is what runs until then. In the same layout, over these "
        "cases: HF-style "
        f"/ structmat `half` = {_span(hf)}, rotary-embedding-torch / structmat "
        f"`interleaved` = {_span(ret)}."
    )
    acc_intro, acc = _accuracy_table(cases)
    return "\n\n".join(
        [
            para(intro),
            _speed_table(cases),
            para(after),
            para(acc_intro),
            acc,
            meta_line(data, JSON),
        ]
    )


TABLES = {"rope": (JSON, render)}
