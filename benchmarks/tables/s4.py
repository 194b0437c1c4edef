"""README table of benchmarks/s4.py (benchmarks/results/s4.json)."""

from __future__ import annotations

from typing import Any

from ._common import meta_line, para


def _find(data: dict[str, Any], task: str, impl: str, L: int, B: int | None) -> dict | None:
    for r in data["results"]:
        if r["task"] == task and r["impl"] == impl and r["L"] == L and r.get("B") == B:
            return r
    return None


def _s(r: dict | None) -> str:
    if r is None:
        return "—"
    return f"{r['median_s']:.3f}" if r["status"] == "ok" else r["status"]


def _mb(r: dict | None) -> str:
    return f"{r['peak_mb']:.0f}" if r is not None and r["status"] == "ok" else "—"


def render(data: dict[str, Any]) -> str:
    B = data["config"]["B"]
    lines = [
        "| L | kernel s: ours / official / naive | kernel: official / ours "
        "| kernel peak MB: ours / official | layer s: ours / official / attention "
        "| layer: ours / attention | layer peak MB: ours / official / attention |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for ratio in data["ratios"]:
        L = ratio["L"]
        k = [_find(data, "kernel", i, L, None) for i in ("ours", "official", "naive")]
        lay = [_find(data, "layer", i, L, B) for i in ("ours", "official", "attention")]
        speed = ratio.get("kernel_time_ours_over_official")
        vs_attn = ratio.get("layer_time_ours_over_attention")
        lines.append(
            f"| {L} | {' / '.join(_s(r) for r in k)} "
            f"| {'—' if speed is None else f'{1 / speed:.1f}x'} "
            f"| {' / '.join(_mb(r) for r in k[:2])} "
            f"| {' / '.join(_s(r) for r in lay)} "
            f"| {'—' if vs_attn is None else f'{vs_attn:.3f}'} "
            f"| {' / '.join(_mb(r) for r in lay)} |"
        )
        fb = ratio.get("layer_official_at_fallback_B")
        if fb is not None:
            ours = (
                f"{fb['ours_s']:.2f} s, {fb['ours_peak_mb']:.0f} MB"
                if fb["ours_status"] == "ok"
                else fb["ours_status"]
            )
            notes.append(
                f"At L = {L} the official layer at batch {B}: "
                f"{ratio['layer_official_status']}; again at batch {fb['B']}: "
                f"{fb['official_status']} (ours at batch {fb['B']}: {ours})."
            )
    cfg = data["config"]
    lines += [
        "",
        para(
            f"Every point ran in its own process under a {cfg['timeout_s']:.0f} s / "
            f"{cfg['mem_limit_gb']:g} GB limit; '—' is a point not run (the 32K and 64K "
            "rows are ours only). From 16K on, one timed call after a warm-up. " + " ".join(notes)
        ),
        "",
        meta_line(data),
    ]
    return "\n".join(lines)


TABLES = {"s4": ("s4.json", render)}
