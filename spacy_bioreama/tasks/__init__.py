"""Task families: each module owns its instruction templates, its gold-target rendering
(training), its answer parsing (inference) and the units it contributes to an
instruction dataset, so the three can never drift apart. Task names are defined in
`names`, the shared answer-line parser in `answers`, the unit interface in `units` and
the table of tasks by name in `registry`."""

from . import names, ner, pair, qa, relation
from .base import TaskExample

__all__ = ["TaskExample", "names", "ner", "pair", "qa", "relation"]
