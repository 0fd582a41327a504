"""Command-line interface: `python -m spacy_bioreama COMMAND` (or `spacy-bioreama`)."""

from . import benchmark, results, scoring  # noqa: F401  (each registers its commands)
from ._util import app, main

__all__ = ["app", "main"]
