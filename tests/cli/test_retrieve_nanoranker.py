"""`structmat retrieve build|search --scorer nanoranker` on the committed fixture:
the index remembers the spec, and search prints what the library finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from structmat.cli import main
from tests.retrieval.tiny_bert import DATA, fixture_texts

pytest.importorskip("nanoranker")
pytest.importorskip("onnx")
pytest.importorskip("safetensors")


def test_build_and_search_with_nanoranker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from structmat.retrieval import CURIndex, NanorankerScorer

    items, queries = fixture_texts()
    out = tmp_path / "index.safetensors"
    code = main(
        [
            "retrieve", "build",
            "--items", str(DATA / "items.txt"),
            "--anchor-queries", str(DATA / "queries.txt"),
            "--scorer", "nanoranker",
            "--out", str(out),
            "--batch-size", "40",
            "--no-progress",
        ]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"({len(items) * len(queries)} scorer calls)" in err
    query = "library for reading image files"
    code = main(
        [
            "retrieve", "search", "--index", str(out), "--query", query,
            "--k", "4", "--budget", "30", "--anchor-items", "12", "--adaptive-rounds", "2",
            "--json",
        ]
    )  # fmt: skip
    printed, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(printed)
    scorer = NanorankerScorer()
    index = CURIndex.load(out, scorer)
    assert index.scorer_spec == "nanoranker" and index.anchor_queries == queries
    scores, ids = index.search(query, k=4, anchor_items=12, budget=30, adaptive_rounds=2)
    assert [h["id"] for h in result["results"]] == ids.tolist()
    assert [h["text"] for h in result["results"]] == [items[j] for j in ids.tolist()]
    got = torch.tensor([h["score"] for h in result["results"]])
    torch.testing.assert_close(got, scores, rtol=1e-5, atol=1e-5)
    # The scores printed are nanoranker's logits of those items.
    exact = scorer([query], [items[j] for j in ids.tolist()])[0]
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-5)
