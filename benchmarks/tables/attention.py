"""README tables of benchmarks/attention.py (benchmarks/results/attention.json).

``attention``: the n = 16384 comparison (core functions and whole modules, errors on
random and smooth inputs) and the measured crossover; ``attention_long``: 16K, 32K and
64K, every case in its own process under a time and memory limit.
"""

from __future__ import annotations

from typing import Any

from ._common import claim, meta_line, para, table

MODULES = [
    ("exact", "exact module (SDPA)"),
    ("ours", "**ours** (default)"),
    ("ours-6", "ours, 6 steps"),
    ("nystrom-attention", "nystrom-attention"),
    ("hf-nystromformer", "HF Nystromformer + out proj"),
]


def _row(rows: list[dict], n: int) -> dict:
    return next(r for r in rows if r["n"] == n)


def _err(r: dict, name: str) -> str:
    if r["rel_err"][name] == 0.0:
        return "exact"
    return f"{r['rel_err'][name]:.2g} / {r['rel_err_smooth'][name]:.2g}"


def _mb(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


def render(data: dict[str, Any]) -> str:
    n = max(data["config"]["ns"])
    core, mod = _row(data["core"]["rows"], n), _row(data["module"]["rows"], n)
    ct, mt = core["time_s"], mod["time_s"]
    rows = [
        [
            "SDPA core",
            f"{ct['sdpa']:.2f} s",
            f"{ct['sdpa'] / ct['ours-nystrom']:.1f}x our Nyström core ({ct['ours-nystrom']:.3f} s)",
            _mb(core["peak_bytes"]["sdpa"]),
            "exact",
        ],
        [
            "our linear core",
            f"{ct['ours-linear']:.3f} s",
            "—",
            _mb(core["peak_bytes"]["ours-linear"]),
            _err(core, "ours-linear"),
        ],
    ]
    for name, label in MODULES:
        t = f"{mt[name]:.3f} s" if name != "exact" else f"{mt[name]:.2f} s"
        rows.append(
            [
                label,
                f"**{t}**" if name == "ours" else t,
                f"{mt[name] / mt['ours']:.2f}x",
                _mb(mod["peak_bytes"][name]),
                _err(mod, name),
            ]
        )
    cross = ", ".join(
        f"d = {r['d']}: {r['measured_crossover']} (model {r['model_crossover']})"
        for r in data["crossover"]["rows"]
    )
    cfg = data["config"]
    defects = data["defects"]
    moved = defects["padding_relative_change_at_kept_positions"]
    lengths = defects["length_1000_on_a_1024_config"]
    claim(lengths["hf-nystromformer"].startswith(("RuntimeError", "ValueError")), "HF fails")
    claim(lengths["ours"].startswith("ok"), "ours takes any L")
    return "\n".join(
        [
            para(
                f"`python benchmarks/attention.py` — n = {n}, batch {cfg['batch']}, "
                f"{cfg['heads']}×{cfg['head_dim']} heads, {cfg['landmarks']} landmarks, "
                f"{cfg['dtype']}, {cfg['threads']} thread (peak memory in separate processes; "
                "errors relative to the exact output on random / smooth inputs):"
            ),
            "",
            table(["", "time", "vs ours", "peak memory", "rel. error (random / smooth)"], rows),
            "",
            para(
                "Measured crossover (1 thread, the length where SDPA takes as long as the "
                f"rest of the layer): {cross}."
            ),
            "",
            para(
                "HF's Nystromformer moves kept outputs by "
                f"{moved['hf-nystromformer']:.1f} (relative) when padded content changes "
                "and fails when L differs from its configured segment length; ours moves "
                f"them by {moved['ours']:g} and takes any L."
            ),
            "",
            meta_line(data),
        ]
    )


LONG = [
    ("core", "sdpa", "SDPA core"),
    ("core", "ours-nystrom", "our Nyström core"),
    ("core", "ours-linear", "our linear core"),
    ("module", "exact", "exact module"),
    ("module", "ours", "our module"),
    ("module", "nystrom-attention", "nystrom-attention"),
    ("module", "hf-nystromformer", "HF Nystromformer"),
]


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    if r["status"] != "ok":
        return r["status"]
    return f"{r['time_s']:.3f} s, {r['peak_bytes'] / 2**20:.0f} MiB"


def render_long(data: dict[str, Any]) -> str:
    long = data["long"]
    cfg = long["config"]
    found = {(r["kind"], r["name"], r["n"]): r for r in long["rows"]}
    rows = []
    for n in cfg["ns"]:
        sdpa, ours = found.get(("core", "sdpa", n)), found.get(("core", "ours-nystrom", n))
        speed = "—"
        if sdpa and ours and sdpa["status"] == ours["status"] == "ok":
            speed = f"{sdpa['time_s'] / ours['time_s']:.0f}x"
        rows.append([str(n), *(_cell(found.get((k, name, n))) for k, name, _ in LONG), speed])
    header = ["n", *(label for _, _, label in LONG), "SDPA / our Nyström core"]
    return "\n".join(
        [
            para(
                "Long sequences (`python benchmarks/attention.py --sections long`): every "
                f"case in its own process under a {cfg['timeout_s']} s / "
                f"{cfg['mem_limit_gb']} GB limit; time and peak memory of one call "
                f"(SDPA and the exact module: one timed call after a warm-up at n = "
                f"{cfg['warmup_n_exact']}; the others: median of {cfg['repeats_other']}):"
            ),
            "",
            table(header, rows),
            "",
            meta_line(data),
        ]
    )


TABLES = {
    "attention": ("attention.json", render),
    "attention_long": ("attention.json", render_long),
}
