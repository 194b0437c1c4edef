"""README table of benchmarks/frechet.py (benchmarks/results/frechet.json)."""

from __future__ import annotations

from typing import Any

from ._common import meta_line, para, table

PEERS = ["pytorch-fid (sqrtm)", "torchmetrics (eigvals)", "POT (ot.gaussian)"]


def _t(s: float) -> str:
    return f"{s:.3g} s" if s < 10 else f"{s:.1f} s"


def _e(m: dict) -> str:
    err = m["rel_err_vs_reference"]
    if err is None:
        return "NaN"
    return "0" if err == 0 else f"{err:.1e}".replace("e-0", "e-")


def _cell(m: dict | None, bold: bool = False) -> str:
    if m is None:
        return "—"
    t = f"**{_t(m['median_s'])}**" if bold else _t(m["median_s"])
    return f"{t} ({_e(m)})"


def _case(s: dict) -> str:
    if "cond" not in s:
        return f"n = {s['n']} < d = {s['d']} raw features"
    return f"{s['dtype']}, d = {s['d']}, cond {s['cond']:.0e}".replace("e+0", "e")


def render(data: dict[str, Any]) -> str:
    scen = [s for s in data["scenarios"] if "methods" in s and not s["name"].startswith("rotate")]
    rows = []
    for s in scen:
        m = s["methods"]
        if "cond" not in s:  # features row: ours twice, peers from covariances
            ours = (
                f"{_cell(m['structmat (features, Gram route)'], True)}, Gram route; "
                f"{_cell(m['structmat (covariances)'])} from covariances"
            )
            peers = [
                m.get(f"{p} (covariances)") for p in ("pytorch-fid (sqrtm)", "torchmetrics", "POT")
            ]
        elif s["dtype"] == "float32":
            ours = _cell(m["structmat float32"], True)
            peers = [None, m.get("torchmetrics float32"), None]
        else:
            ours = _cell(m["structmat"], True)
            peers = [m.get(p) for p in PEERS]
        rows.append([_case(s), ours, *(_cell(p) for p in peers)])
    head = [
        "case",
        "structmat",
        "pytorch-fid (`sqrtm`)",
        "torchmetrics (`eigvals`)",
        "POT (`ot.gaussian`)",
    ]
    big = [s for s in scen if s["d"] == 2048 and s.get("dtype") == "float64" and "cond" in s]
    r = [s["time_ratio_peer_over_ours"] for s in big]
    conds = " / ".join(f"{s['cond']:.0e}".replace("e+0", "e") for s in big)
    feat = next(s for s in scen if "cond" not in s)
    fm = feat["methods"]
    gram = fm["structmat (features, Gram route)"]["median_s"]
    text = [
        para(
            f"At d = 2048 that is {' / '.join(f'{x[PEERS[0]]:.1f}x' for x in r)} faster than "
            f"the `sqrtm` route and {' / '.join(f'{x[PEERS[1]]:.1f}x' for x in r)} faster "
            f"than torchmetrics (cond {conds}). With n < d features the Gram route is "
            f"{fm['torchmetrics (covariances)']['median_s'] / gram:.1f}x faster than "
            f"torchmetrics and "
            f"{fm['pytorch-fid (sqrtm) (covariances)']['median_s'] / gram:.0f}x faster than "
            "`sqrtm` (both given the covariances, untimed); from the singular covariance "
            f"matrices ours takes {_t(fm['structmat (covariances)']['median_s'])}."
        )
    ]
    rot = next((s for s in data["scenarios"] if s["name"].startswith("rotate")), None)
    if rot is not None:
        rm = rot["methods"]
        shared, formed = rm["shared pair: rotate(a, b, X)"], rm["shared pair: X @ rotation(a, b).T"]
        rows_m = rm["per-row pairs: rotate(A, B, X)"]
        rows_f = next(v for k, v in rm.items() if k.startswith("per-row pairs: rotation"))
        text.append(
            para(
                f"`rotate` at d = {rot['d']}, {rot['batch']:,} {rot['dtype']} vectors: one "
                f"shared (a, b) pair, {shared['median_s']:.3f} s against "
                f"{formed['median_s']:.3f} s for forming `rotation(a, b)` and multiplying "
                f"({formed['median_s'] / shared['median_s']:.1f}x); one pair per row, "
                f"{rows_m['median_s']:.2f} s against ~{rows_f['median_s']:.0f} s for forming "
                f"{rot['batch']:,} matrices (≈ {rows_f['median_s'] / rows_m['median_s']:.0f}x; "
                f"measured on {rot['batch'] // int(rows_f['scaled_by'])} rows and scaled)."
            )
        )
    return "\n\n".join([table(head, rows), *text, meta_line(data)])


TABLES = {"frechet": ("frechet.json", render)}
