"""The learned pairwise reranker of the ``nanoranker`` PyPI package as a scorer.

nanoranker (v1.2) scores a (query, document) pair with an MLP over the two texts'
features, s(q, d) = σ(MLP([f(q), f(d)])), where f(text) (576,) is the 512-d
multilingual Universal Sentence Encoder embedding (Yang et al., 2019, an ONNX
export) followed by 64 signed character-n-gram hashing features (n = 1..6,
L2-normalised: scikit-learn's ``HashingVectorizer``) and the MLP is
1152 → 1280 → 1536 → 2048 → 2048 → 1024 → 512 → 1 with ReLUs (``reranker_nn_v2.onnx``).
The query and the document meet from the first layer on, so no dot product of
per-text vectors gives the score: an interaction scorer, the kind CUR indexes
(ANNCUR, Yadav et al. 2022) are for.

:class:`NanorankerScorer` runs that pipeline in batches: each distinct text's
features are computed once (nanoranker's own ``embed``) and cached, and the MLP
runs in torch on the weights read from the package's ONNX file, over all
(query, item) pairs of a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structmat._checks import check_choice, check_int, check_positive_int, fail
from structmat.retrieval.evaluation import package_folder

__all__ = ["NanorankerScorer", "load_reranker_mlp", "nanoranker_resources"]

FEATURE_DIM = 576  # 512 USE + 64 character-hash features per text
OUTPUTS = ("logit", "probability")


def nanoranker_resources() -> Path:
    """Folder of the ONNX files the ``nanoranker`` package ships (found without importing it).

    Raises:
        ValueError: the package is not installed.
    """
    return package_folder("nanoranker", "resources", "reranker_nn_v2.onnx", "nanoranker",
                          "nanoranker")  # fmt: skip


def load_reranker_mlp(path: str | Path) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """The reranker's layers from its ONNX file: ``[(W (out, in), b (out,), relu_after), ...]``.

    The graph must be a chain ``Gemm (transB=1, alpha=beta=1) [→ Relu]`` ending in
    ``Sigmoid``; the layers returned give the logit (the input of that Sigmoid).

    Raises:
        ValueError: the graph is not such a chain.
    """
    import onnx  # optional dependency (the `retrieval` extra)
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
    ops = [n.op_type for n in graph.node]
    expected = "a chain of Gemm (transB=1) and Relu layers ending in Sigmoid"
    if not ops or ops[-1] != "Sigmoid":
        raise fail("reranker", expected, f"the operators {ops}")
    for node in graph.node[:-1]:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Relu" and layers and not layers[-1][2]:
            w, b, _ = layers[-1]
            layers[-1] = (w, b, True)
        elif (
            node.op_type == "Gemm"
            and len(node.input) == 3
            and attrs.get("transB") == 1
            and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
            and node.input[1] in weights
            and node.input[2] in weights
        ):
            w = torch.from_numpy(weights[node.input[1]].astype(np.float32))  # (out, in)
            b = torch.from_numpy(weights[node.input[2]].astype(np.float32))  # (out,)
            layers.append((w, b, False))
        else:
            raise fail("reranker", expected, f"the operators {ops}")
    if not layers or layers[0][0].shape[1] != 2 * FEATURE_DIM or layers[-1][0].shape[0] != 1:
        shapes = [tuple(w.shape) for w, _, _ in layers]
        raise fail("reranker", f"layers from {2 * FEATURE_DIM} inputs to 1 output", str(shapes))
    return layers


def _check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise fail(name, "a sequence of texts (str)", type(texts).__name__)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise fail(name, "texts (str)", f"an entry of type {type(bad).__name__}")
    return list(texts)


class NanorankerScorer:
    """nanoranker's learned reranker, batched: ``scorer(queries, items) -> (Q, N)`` float32.

    Output: by default the **pre-sigmoid logit** z, not nanoranker's probability
    σ(z). The ranking is the same (σ is increasing), but the CUR approximation
    ŝ = c · pinv(R[:, anchors]) · R works on raw scores: z is the MLP's output
    layer, linear in its last hidden layer, while σ bends it. Measured on Debian
    package descriptions (benchmarks/cur_recall.py, 5,000 items, 500 anchor
    queries, dev queries only): the probability never saturates to 1.0 there
    (max ≈ 0.98; float32 ties are rare), but CUR on the logit finds
    more of the top 10 at every budget (ADACUR at 100 calls: 82.1% vs 73.8%;
    ANNCUR: 58.0% vs 47.9%), and its spectrum decays faster beyond σ₂
    (σ₁₀/σ₁ = 0.074 vs 0.104 on 60 × 400 scores). ``output="probability"``
    returns σ(z), nanoranker's own number. The logit is exact: the layers are
    the ONNX file's Gemm weights run in torch (float32), and σ of it equals
    nanoranker's score (``rank``) to float32 rounding.

    Features: f(text) (576,) float32 is nanoranker's ``embed(text)`` (USE, one text
    per ONNX call: the ONNX encoder takes a batch of strings, but its batched
    output differs from the one-text output by up to ~0.02 (padding), so
    batching it would not be nanoranker's score). Each distinct text is embedded
    once and kept in ``cache`` (text -> (576,) array); past ``cache_size`` texts
    the oldest are dropped. The first layer is linear in [f(q), f(d)], so
    W₀ [f(q); f(d)] = W₀[:, :576] f(q) + W₀[:, 576:] f(d) is computed per text, not
    per pair (a sum of the same products in another order: float32 rounding).

    Cost: ≈ 11.9 M multiply-adds per pair (layers 2 to 7), ≈ 5,000 pairs/s on one
    CPU thread (the ONNX session: ≈ 2,700); features ≈ 8 ms per 400-character
    text (the character hashing is pure Python). One call scores
    ``len(queries) * len(items)`` pairs (what :class:`CountingScorer` counts).

    Args:
        output: ``"logit"`` (default) or ``"probability"``.
        batch_size: (query, item) pairs per MLP forward pass.
        cache_size: most texts whose features are kept.
        device: where the MLP runs (features are computed on the CPU).

    Raises:
        ValueError: a bad option, nanoranker (or onnx) missing, or an ONNX graph
            that is not the expected MLP.
    """

    def __init__(
        self,
        *,
        output: str = "logit",
        batch_size: int = 4096,
        cache_size: int = 200_000,
        device: str | torch.device = "cpu",
    ) -> None:
        check_choice(output, "output", OUTPUTS)
        check_positive_int(batch_size, "batch_size")
        check_int(cache_size, "cache_size", minimum=0)
        resources = nanoranker_resources()
        try:
            import nanoranker  # builds its two ONNX sessions on import
        except ImportError as err:  # e.g. onnxruntime-extensions missing
            raise fail("nanoranker", "an importable nanoranker", f"{err}") from err
        self._embed = nanoranker.embed
        self.device = torch.device(device)
        self.layers = [
            (w.to(self.device), b.to(self.device), relu)
            for w, b, relu in load_reranker_mlp(resources / "reranker_nn_v2.onnx")
        ]
        self.output = output
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.cache: dict[str, np.ndarray] = {}

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """f(text) for each text: (n, 576) float32 (cached per distinct text)."""
        texts = _check_texts(texts, "texts")
        out = np.empty((len(texts), FEATURE_DIM), dtype=np.float32)
        for a, t in enumerate(texts):
            f = self.cache.get(t)
            if f is None:
                # float64 concatenation cast to float32, as nanoranker.rank does.
                f = np.asarray(self._embed(t), dtype=np.float32)  # (576,)
                if self.cache_size:
                    while len(self.cache) >= self.cache_size:  # oldest first (insertion order)
                        del self.cache[next(iter(self.cache))]
                    self.cache[t] = f
            out[a] = f
        return torch.from_numpy(out)

    def clear_cache(self) -> None:
        self.cache.clear()

    @torch.inference_mode()
    def logits(self, queries: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        """The pre-sigmoid logits z(q, d): (len(queries), len(items)) float32."""
        queries = _check_texts(queries, "queries")
        items = _check_texts(items, "items")
        n_q, n_d = len(queries), len(items)
        out = torch.empty(n_q * n_d, dtype=torch.float32)
        if not out.numel():
            return out.reshape(n_q, n_d)
        (w0, b0, relu0), *rest = self.layers
        fq = self.features(queries).to(self.device)  # (Q, 576)
        fd = self.features(items).to(self.device)  # (N, 576)
        # First layer split by input half: per text, not per pair.
        hq = fq @ w0[:, :FEATURE_DIM].T  # (Q, 1280)
        hd = torch.addmm(b0, fd, w0[:, FEATURE_DIM:].T)  # (N, 1280)
        q_idx, d_idx = np.divmod(np.arange(n_q * n_d), n_d)
        q_t, d_t = torch.from_numpy(q_idx), torch.from_numpy(d_idx)
        for lo in range(0, n_q * n_d, self.batch_size):
            hi = min(lo + self.batch_size, n_q * n_d)
            h = hq[q_t[lo:hi]] + hd[d_t[lo:hi]]  # (b, 1280)
            if relu0:
                h.relu_()
            for w, b, relu in rest:
                h = torch.addmm(b, h, w.T)  # (b, out)
                if relu:
                    h.relu_()
            out[lo:hi] = h[:, 0].cpu()
        return out.reshape(n_q, n_d)  # (Q, N)

    def __call__(self, queries: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        z = self.logits(queries, items)  # (Q, N)
        return z if self.output == "logit" else torch.sigmoid(z)
