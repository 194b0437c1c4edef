"""Sequence models with a pluggable token mixer (S4, S4D, softmax, linear, Nyström)."""

from structmat.models.classifier import SequenceClassifier, SequenceModel, SequenceRegressor
from structmat.models.mixers import MIXERS, build_mixer

__all__ = ["MIXERS", "SequenceClassifier", "SequenceModel", "SequenceRegressor", "build_mixer"]
