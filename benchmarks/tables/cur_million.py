"""README "A million items": benchmarks/results/cur_million.json (benchmarks/cur_million.py).

Sizes are MiB: the benchmark divides bytes (and ru_maxrss KiB) by 2**20 (2**10).
"""

from __future__ import annotations

import math
from typing import Any

from ._common import claim, meta_line, para, table

JSON = "cur_million.json"

# What benchmarks/cur_million.py hard-coded before it recorded "search_settings"
# (the committed JSON predates that key; the values are the script's at that commit).
LEGACY_SEARCH = {
    "anchor_items": 50,
    "budget": 100,
    "adacur_rounds": 5,
    "test_queries": 200,
    "recall_queries": 50,
    "r_check_items": 2000,
}
BYTES = {"float16": 2, "float32": 4}


def sig3(x: float) -> str:
    """Three significant digits with thousands separators: 4337.09 -> "4,340"."""
    return f"{float(f'{x:.3g}'):,.0f}" if x >= 100 else f"{x:.3g}"


def sci1(x: float) -> str:
    """One significant digit, scientific: 0.000407 -> "4e-4"."""
    e = math.floor(math.log10(x))
    m = round(x / 10**e)
    if m == 10:
        m, e = 1, e + 1
    return f"{m}e{e}"


def render(data: dict[str, Any]) -> str:
    s = data["search"]
    cfg = {**LEGACY_SEARCH, **data.get("search_settings", {})}
    meta = data.get("meta") or {}
    cores = meta.get("cores") or (data.get("machine") or {}).get("cpu_count")
    n, k_q = data["items"], data["anchor_queries"]
    claim(data["killed_first_run"], "the first build was killed")
    total_s = data["first_run_seconds"] + data["resumed_run_seconds"]
    index = data["index_mb"]
    r_mib = n * k_q * BYTES[data["dtype"]] / 2**20
    ann, ada = s["ANNCUR"], s[f"ADACUR ({cfg['adacur_rounds']} rounds)"]
    machine = f"on this {cores}-core machine" if cores else "(machine's cores not recorded)"
    intro = (
        f"Measured with {n:,} items, {k_q} anchor queries, {data['dtype']} R and that "
        f"scorer, on Ray with {data['workers']} worker processes {machine}:"
    )
    rows = [
        [
            f"build ({sig3(n * k_q / 1e6)} M scorer calls, killed with SIGKILL at "
            f"{data['resumed_blocks'] / data['blocks']:.0%}, rerun resumed "
            f"{data['resumed_blocks']} of {data['blocks']} blocks)",
            f"{sig3(data['items_per_second'])} items/s overall "
            f"({data['pairs_per_second'] / 1e6:.1f} M pairs/s), {total_s:.0f} s including the "
            "restart and the IVF",
        ],
        [
            "index file",
            f"{index:,.0f} MiB (R {r_mib:,.0f} MiB; the IVF and the items "
            f"{index - r_mib:,.0f} MiB)",
        ],
        [
            "peak RSS: build driver / each Ray worker",
            f"{data['build_driver_peak_rss_mb']:,.0f} MiB "
            f"({data['build_driver_peak_rss_mb'] / index:.2f}× the index) / "
            f"{max(data['ray_workers_peak_rss_mb']):,.0f} MiB",
        ],
        [
            "peak RSS of the search process",
            f"{s['peak_rss_mb']:,.0f} MiB ({s['peak_rss_mb'] / index:.2f}× the index; R is "
            "mapped, not read)",
        ],
        [
            f"R against the scorer ({cfg['r_check_items']:,} random items re-scored)",
            f"max error {sci1(s['r_max_rel_error_vs_scorer'])} of the largest score "
            f"({data['dtype']})",
        ],
        [
            "search overhead outside scorer calls, ANNCUR "
            f"(k_i {cfg['anchor_items']}, budget {cfg['budget']})",
            f"p50 {ann['overhead_ms_p50']:.1f} ms, p99 {ann['overhead_ms_p99']:.1f} ms",
        ],
        [
            f"search overhead, ADACUR ({cfg['adacur_rounds']} rounds, budget {cfg['budget']})",
            f"p50 {ada['overhead_ms_p50']:.1f} ms, p99 {ada['overhead_ms_p99']:.1f} ms",
        ],
        [
            f"top-10 recall of the exact top 10 ({cfg['recall_queries']} queries)",
            f"ANNCUR {100 * ann['top10_recall']:.1f}%, ADACUR {100 * ada['top10_recall']:.1f}%",
        ],
    ]
    return "\n\n".join([para(intro), table(["", ""], rows), meta_line(data, JSON)])


TABLES = {"cur_million": (JSON, render)}
