"""A tiny randomly initialised BERT (and its WordPiece tokenizer) saved to a local
directory: the scorers load it from there, as they would a real checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def fixture_texts() -> tuple[list[str], list[str]]:
    """(items, queries) of the committed fixture (Debian package descriptions)."""
    items = (DATA / "items.txt").read_text().splitlines()
    queries = (DATA / "queries.txt").read_text().splitlines()
    return items, queries


def wordpiece_tokenizer(cls: Any, vocab: Path) -> Any:
    """A WordPiece tokenizer of class ``cls`` over the words in ``vocab``.

    transformers 5 takes the vocabulary as ``vocab`` (a dict) and silently ignores
    4.x's ``vocab_file``, which would leave every word [UNK].
    """
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        words = vocab.read_text().splitlines()
        return cls(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    return cls(vocab_file=str(vocab), do_lower_case=True)


def make_tiny_bert(path: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT for sequence classification and its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    items, queries = fixture_texts()
    words = sorted({w for t in items + queries for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = wordpiece_tokenizer(BertTokenizerFast, vocab)
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


def make_tiny_distilbert(path: Path, seed: int = 0) -> Path:
    """A 2-layer DistilBERT for sequence classification (no token_type_ids), same vocabulary."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    bert = make_tiny_bert(path, seed=seed)  # writes the vocabulary and the tokenizer
    from transformers import DistilBertTokenizerFast

    tokenizer = wordpiece_tokenizer(DistilBertTokenizerFast, bert / "vocab.txt")
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
        num_labels=1,
    )
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (path / name).unlink(missing_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
