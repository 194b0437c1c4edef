"""README CUR recall tables: cur_recall_nanoranker.json (nanoranker) and cur_recall.json
(MaxSim), both written by ``benchmarks/cur_recall.py --scorer ...``."""

from __future__ import annotations

from typing import Any

from ._common import claim, meta_line, para, pct, run_fields, span, table

NANORANKER_JSON, MAXSIM_JSON = "cur_recall_nanoranker.json", "cur_recall.json"

METHODS = ("anncur", "adacur", "adacur-bi-seeded", "bi-encoder+rerank", "bm25+rerank")
BASELINES = ("bi-encoder+rerank", "bm25+rerank")
HEADLINE = ("adacur", 100)  # bold when it is its column's best


def _labels(bi_encoder: str) -> dict[str, str]:
    return {
        "anncur": "ANNCUR",
        "adacur": "ADACUR (adaptive)",
        "adacur-bi-seeded": "ADACUR seeded by the bi-encoder",
        "bi-encoder+rerank": f"bi-encoder ({bi_encoder}) + rerank",
        "bm25+rerank": "BM25 + rerank",
    }


def _top(data: dict[str, Any], method: str, budget: int, k: int = 10) -> float:
    return data["methods"][method][f"top{k}"][data["budgets"].index(budget)]


def recall_table(data: dict[str, Any], bi_encoder: str) -> str:
    budgets = data["budgets"]
    labels = _labels(bi_encoder)
    rows = []
    for m in METHODS:
        cells = []
        for b in budgets:
            cell = pct(_top(data, m, b))
            if (m, b) == HEADLINE and all(_top(data, m, b) >= _top(data, o, b) for o in METHODS):
                cell = f"**{cell}**"
            cells.append(cell)
        rows.append([labels[m], *cells])
    return table(["scorer calls / query", *map(str, budgets)], rows)


def _sigmas(spectrum: dict[str, Any], ks: tuple[str, ...]) -> str:
    sub = {"2": "₂", "5": "₅", "10": "₁₀", "20": "₂₀", "50": "₅₀"}
    return ", ".join(f"σ{sub[k]}/σ₁ = {spectrum['sigma_k_over_sigma1'][k]:.2f}" for k in ks)


def _corpus(data: dict[str, Any]) -> str:
    c = data["corpus"]
    return (
        f"Corpus: {c['items']:,} Debian package descriptions, "
        f"{c['anchor_queries']} anchor queries, "
        f"{c['test_queries']} held-out test queries; k_i and rounds chosen on "
        f"{c['dev_queries']} dev queries:"
    )


def _threads(data: dict[str, Any]) -> str:
    threads = run_fields(data)["threads"]
    if threads is None:
        return "threads not recorded"
    return "one thread" if threads == 1 else f"{threads} threads"


def render_nanoranker(data: dict[str, Any]) -> str:
    at = 100
    ada, ada1 = _top(data, "adacur", at), _top(data, "adacur", at, 1)
    best = max(BASELINES, key=lambda m: _top(data, m, at))
    base, base1 = _top(data, best, at), _top(data, best, at, 1)
    seeded_helps = [
        b for b in data["budgets"] if _top(data, "adacur-bi-seeded", b) > _top(data, "adacur", b)
    ]
    claim(seeded_helps == data["budgets"][:1], "seeding with the bi-encoder helps only at 50")
    top_at_500 = max(_top(data, m, data["budgets"][-1]) for m in BASELINES)
    claim(0.4 <= top_at_500 <= 0.6, "first stages find about half of the top 10 at 500 calls")
    spec = data["spectrum_60x400"]["score"]
    rows, cols = spec["shape"]
    dev = data["output_choice_dev"][str(at)]
    claim(dev["adacur_logit_dev_top10"] > dev["adacur_probability_dev_top10"], "logit beats prob.")
    build, lat = data["build"], data["latency"]
    pairs_per_s = build["scorer_calls"] / build["seconds"]
    serving = sorted(v["median_ms_per_query"] for v in lat["mips_serving"].values())
    prose = (
        "A first stage that does not share the scorer's notion of relevance finds about half "
        "of its top 10 even when "
        f"{data['budgets'][-1]} items are reranked; the CUR index learns that notion from the "
        f"anchor queries' scores, so ADACUR is {100 * (ada - base):.0f} points ahead of the best "
        f"baseline at {at} calls ({pct(ada)} vs {pct(base)}; top-1: {pct(ada1)} vs "
        f"{pct(base1)}). Seeding ADACUR with the bi-encoder helps only at "
        f"{data['budgets'][0]} calls. The score matrix is far from low rank ({rows} test "
        f"queries × {cols} items: {_sigmas(spec, ('2', '10', '50'))}; "
        f"{spec['rank_for_99pct_energy']} singular values hold 99% of the energy). On the dev "
        "queries the logit beats nanoranker's sigmoid probability as the score CUR approximates "
        f"(ADACUR at {at} calls: {pct(dev['adacur_logit_dev_top10'])} vs "
        f"{pct(dev['adacur_probability_dev_top10'])}; same ranking). Build: "
        f"{build['scorer_calls'] / 1e6:.1f} M scorer calls in {build['seconds']:.0f} s ("
        f"{_threads(data)}, ~{round(pairs_per_s, -2):,.0f} pairs/s including "
        f"the item features); search at {at} calls: "
        f"{1e3 * lat['anncur_budget100_real_scorer_median_s']:.0f} ms per query with the real "
        "scorer (item features cached, the query's computed) against "
        f"{lat['brute_force_per_query_s']:.2f} s for brute force over the "
        f"{data['corpus']['items']:,} items; MIPS serving alone "
        f"{span(f'{serving[0]:.1f}', f'{serving[-1]:.1f}')} ms. "
        f"The whole run took {data['total_seconds'] / 60:.0f} min."
    )
    return "\n\n".join(
        [
            para(_corpus(data)),
            recall_table(data, "all-MiniLM-L6-v2"),
            para(prose),
            meta_line(data, NANORANKER_JSON),
        ]
    )


def render_maxsim(data: dict[str, Any]) -> str:
    at = 100
    ada, bi = _top(data, "adacur", at), _top(data, "bi-encoder+rerank", at)
    claim(ada < bi, "ADACUR alone stays below the bi-encoder")
    claim(
        all(
            _top(data, "adacur-bi-seeded", b) > _top(data, "bi-encoder+rerank", b)
            for b in data["budgets"]
        ),
        "seeded ADACUR is ahead at every budget",
    )
    spec = data["spectrum_60x400"]["score"]
    build, lat = data["build"], data["latency"]
    prose = (
        "Here the bi-encoder is the scorer's own model, the best case for retrieve-and-rerank, "
        f"so ADACUR alone stays below it ({pct(ada)} vs {pct(bi)} at {at} calls); seeded by "
        f"it, ADACUR is ahead at every budget ({_sigmas(spec, ('2',))}). Build: "
        f"{build['scorer_calls'] / 1e6:.1f} M scorer calls ({build['seconds']:.0f} s, "
        f"{_threads(data)}); search at {at} calls: "
        f"{lat['anncur_budget100_real_scorer_median_s']:.1f} s per query with the real scorer "
        "(it re-encodes the items it scores). The whole run took "
        f"{data['total_seconds'] / 60:.0f} min."
    )
    return "\n\n".join(
        [recall_table(data, "same MiniLM"), para(prose), meta_line(data, MAXSIM_JSON)]
    )


TABLES = {
    "cur_recall_nanoranker": (NANORANKER_JSON, render_nanoranker),
    "cur_recall_maxsim": (MAXSIM_JSON, render_maxsim),
}
