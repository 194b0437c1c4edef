"""A tiny randomly initialised BERT (and its WordPiece tokenizer) saved to a local
directory: the scorers load it from there, as they would a real checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def fixture_texts() -> tuple[list[str], list[str]]:
    """(items, queries) of the committed fixture (Debian package descriptions)."""
    items = (DATA / "items.txt").read_text().splitlines()
    queries = (DATA / "queries.txt").read_text().splitlines()
    return items, queries


def make_tiny_bert(path: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT for sequence classification and its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    items, queries = fixture_texts()
    words = sorted({w for t in items + queries for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
