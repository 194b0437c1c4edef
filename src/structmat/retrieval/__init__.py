"""k-NN search for expensive interaction scorers: ANNCUR / ADACUR CUR indexes,
scorers (cross-encoder, late interaction, bi-encoder, nanoranker's MLP) and rerank
baselines."""

from structmat.retrieval.anchors import ANCHOR_METHODS, select_anchor_items
from structmat.retrieval.baselines import BM25, rerank
from structmat.retrieval.build import score_matrix
from structmat.retrieval.cur import CURIndex, cur_approximate_scores, cur_query_weights
from structmat.retrieval.mips import MIPSIndex, faiss_available
from structmat.retrieval.nanoranker import NanorankerScorer
from structmat.retrieval.scorers import (
    BiEncoderScorer,
    CountingScorer,
    CrossEncoderScorer,
    LateInteractionScorer,
    MatrixScorer,
    minilm_path,
    scorer_from_spec,
)
from structmat.retrieval.stream import build_index_file

__all__ = [
    "ANCHOR_METHODS",
    "BM25",
    "BiEncoderScorer",
    "CURIndex",
    "CountingScorer",
    "CrossEncoderScorer",
    "LateInteractionScorer",
    "MIPSIndex",
    "MatrixScorer",
    "NanorankerScorer",
    "build_index_file",
    "cur_approximate_scores",
    "cur_query_weights",
    "faiss_available",
    "minilm_path",
    "rerank",
    "score_matrix",
    "scorer_from_spec",
    "select_anchor_items",
]
