"""structmat: structured-matrix methods for fast sequence models and retrieval."""

__version__ = "0.1.0"
