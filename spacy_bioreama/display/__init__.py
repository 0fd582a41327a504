"""The relation view: documents' mentions and relations as an HTML page (`render`),
gold vs predicted side by side; `python -m spacy_bioreama visualize` writes or serves it.
See docs/architecture.md (the display floor)."""

from .html import render

__all__ = ["render"]
