"""Task families: each module owns its instruction templates, its gold-target rendering
(training) and its answer parsing (inference), so the two can never drift apart."""

from . import ner, qa, relation
from .base import TaskExample

__all__ = ["TaskExample", "ner", "qa", "relation"]
