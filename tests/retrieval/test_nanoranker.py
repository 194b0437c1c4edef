"""NanorankerScorer against nanoranker's own pipeline (its ONNX reranker and ``rank``)
on the committed fixture texts; batching, caching, counting and input checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from structmat.retrieval import CountingScorer, CURIndex, scorer_from_spec
from tests.retrieval.tiny_bert import fixture_texts

nanoranker = pytest.importorskip("nanoranker")
onnx = pytest.importorskip("onnx")

from structmat.retrieval import NanorankerScorer  # noqa: E402
from structmat.retrieval import nanoranker as nr_module  # noqa: E402


@pytest.fixture(scope="module")
def scorer() -> NanorankerScorer:
    return NanorankerScorer()


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    items, queries = fixture_texts()
    return items, queries


def _reference(queries: list[str], items: list[str]) -> np.ndarray:
    """nanoranker's probabilities as ``rank`` computes them: (Q, N) float32."""
    fq = np.stack([nanoranker.embed(q) for q in queries])  # (Q, 576) float64
    fd = np.stack([nanoranker.embed(d) for d in items])  # (N, 576)
    pairs = np.concatenate(
        [np.repeat(fq, len(items), axis=0), np.tile(fd, (len(queries), 1))], axis=1
    ).astype(np.float32)  # (Q * N, 1152)
    out = nanoranker.reranker_model.run(["output"], {"input": pairs})[0]  # (Q * N, 1)
    return out.reshape(len(queries), len(items))


def test_scores_match_nanorankers_pipeline(scorer: NanorankerScorer, texts: tuple) -> None:
    items, queries = texts
    z = scorer(queries, items)
    assert z.shape == (len(queries), len(items)) and z.dtype == torch.float32
    want = _reference(queries, items)
    # sigmoid(logit) is nanoranker's probability to float32 rounding.
    np.testing.assert_allclose(torch.sigmoid(z).numpy(), want, rtol=1e-5, atol=2e-6)
    # The logit really is the pre-sigmoid value: its inverse of the probability.
    np.testing.assert_allclose(z.numpy(), np.log(want / (1 - want)), rtol=1e-4, atol=1e-4)
    prob = NanorankerScorer(output="probability")(queries[:3], items)
    np.testing.assert_allclose(prob.numpy(), want[:3], rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(prob, torch.sigmoid(z[:3]))


def test_ranking_equals_nanoranker_rank(scorer: NanorankerScorer, texts: tuple) -> None:
    items, queries = texts
    assert len(set(items)) == len(items)  # so a text names one item
    z = scorer(queries[:3], items)
    for a, q in enumerate(queries[:3]):
        ranked = nanoranker.rank(q, items, top_n=len(items), normalize_scores=False)
        want = [items.index(d) for d, _ in ranked]
        got = np.argsort(-z[a].numpy(), kind="stable").tolist()
        assert got == want
        top = nanoranker.rank(q, items, top_n=5)  # normalised scores: the same order
        assert [items.index(d) for d, _ in top] == got[:5]


def test_mlp_layers_reproduce_the_onnx_reranker() -> None:
    """The Gemm weights run in torch give the ONNX graph's pre-sigmoid output."""
    layers = nr_module.load_reranker_mlp(nr_module.nanoranker_resources() / "reranker_nn_v2.onnx")
    widths = [layers[0][0].shape[1], *(w.shape[0] for w, _, _ in layers)]
    assert widths == [1152, 1280, 1536, 2048, 2048, 1024, 512, 1]
    assert [relu for _, _, relu in layers] == [True] * 6 + [False]
    x = torch.rand(7, 1152)
    h = x
    for w, b, relu in layers:
        h = h @ w.T + b
        h = h.relu() if relu else h
    want = nanoranker.reranker_model.run(["output"], {"input": x.numpy()})[0]  # (7, 1)
    np.testing.assert_allclose(torch.sigmoid(h).numpy(), want, rtol=1e-5, atol=2e-6)


def test_batching_caching_and_counting(texts: tuple) -> None:
    items, queries = texts
    big = NanorankerScorer()
    small = NanorankerScorer(batch_size=7)
    want = big(queries[:4], items[:30])
    torch.testing.assert_close(small(queries[:4], items[:30]), want, rtol=1e-5, atol=1e-5)
    assert set(small.cache) == set(queries[:4]) | set(items[:30])
    # Repeated texts: one feature vector each, and the pairs still come out in place.
    again = small([queries[1], queries[1]], [items[3], items[0], items[3]])
    torch.testing.assert_close(again, want[[1, 1]][:, [3, 0, 3]], rtol=1e-5, atol=1e-5)
    assert len(small.cache) == 34
    small.clear_cache()
    assert small.cache == {}
    # One call is still one (query, item) pair.
    counter = CountingScorer(small)
    counter(queries[:2], items[:5])
    assert counter.calls == 10
    # A bounded cache drops the oldest texts first.
    tiny = NanorankerScorer(cache_size=3)
    tiny(queries[:1], items[:4])
    assert list(tiny.cache) == items[1:4]
    off = NanorankerScorer(cache_size=0)
    torch.testing.assert_close(off(queries[:1], items[:4]), want[:1, :4], rtol=1e-5, atol=1e-5)
    assert off.cache == {}
    # Empty queries or items: an empty (Q, N) matrix.
    assert small([], items[:3]).shape == (0, 3)
    assert small(queries[:2], []).shape == (2, 0)


def test_index_over_nanoranker(scorer: NanorankerScorer, texts: tuple, tmp_path: Path) -> None:
    items, queries = texts
    counter = CountingScorer(scorer)
    index = CURIndex.build(counter, queries[:12], items, batch_size=32, progress=False)
    assert counter.calls == 12 * len(items)
    counter.reset()
    s, ids = index.search(queries[15], k=5, anchor_items=10, budget=30, adaptive_rounds=2)
    assert counter.calls == 30
    exact = scorer([queries[15]], [items[j] for j in ids])[0]
    torch.testing.assert_close(s, exact)


def test_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(scorer_from_spec("nanoranker"), NanorankerScorer)
    with pytest.raises(ValueError, match=r"scorer: expected nanoranker without a :PATH"):
        scorer_from_spec("nanoranker:/some/path")
    with pytest.raises(ValueError, match=r"scorer: expected a kind in .*'nanoranker'"):
        scorer_from_spec("nano:x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output": "prob"}, r"output: expected one of 'logit' \| 'probability', got 'prob'"),
        ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
        ({"cache_size": -1}, r"cache_size: expected an integer >= 0, got -1"),
        ({"cache_size": 2.5}, r"cache_size: expected an integer >= 0, got 2.5"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NanorankerScorer(**kwargs)


@pytest.mark.parametrize(
    ("queries", "items", "message"),
    [
        ("a query", ["item"], r"queries: expected a sequence of texts \(str\), got str"),
        (["q"], None, r"items: expected a sequence of texts \(str\), got NoneType"),
        (["q", 3], ["item"], r"queries: expected texts \(str\), got an entry of type int"),
        (["q"], ["item", b"bytes"], r"items: expected texts \(str\), got an entry of type bytes"),
    ],
)
def test_bad_texts(scorer: NanorankerScorer, queries: object, items: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scorer(queries, items)  # type: ignore[arg-type]


def test_missing_package_and_wrong_graphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import TensorProto, helper, numpy_helper

    def graph(ops: list[str], path: Path, width: int = 1152) -> Path:
        w = numpy_helper.from_array(np.ones((1, width), np.float32), "w")
        b = numpy_helper.from_array(np.zeros(1, np.float32), "b")
        nodes, x = [], "x"
        for i, op in enumerate(ops):
            args = [x, "w", "b"] if op == "Gemm" else [x]
            attrs = {"transB": 1} if op == "Gemm" else {}
            nodes.append(helper.make_node(op, args, [f"y{i}"], **attrs))
            x = f"y{i}"
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 1])
        g = helper.make_graph(nodes, "g", [inp], [out], initializer=[w, b])
        onnx.save(helper.make_model(g), str(path))
        return path

    layers = nr_module.load_reranker_mlp(graph(["Gemm", "Sigmoid"], tmp_path / "ok.onnx"))
    assert len(layers) == 1 and layers[0][0].shape == (1, 1152) and not layers[0][2]
    for ops, message in (
        (["Gemm"], r"reranker: expected a chain of Gemm .* ending in Sigmoid, got the operators"),
        (["Gemm", "Tanh", "Sigmoid"], r"reranker: expected a chain of Gemm"),
        (["Relu", "Sigmoid"], r"reranker: expected a chain of Gemm"),
    ):
        with pytest.raises(ValueError, match=message):
            nr_module.load_reranker_mlp(graph(ops, tmp_path / "bad.onnx"))
    with pytest.raises(ValueError, match=r"reranker: expected layers from 1152 inputs to 1 output"):
        nr_module.load_reranker_mlp(graph(["Gemm", "Sigmoid"], tmp_path / "w.onnx", width=8))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"nanoranker: expected the nanoranker package installed"):
        NanorankerScorer()
