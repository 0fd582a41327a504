"""The document identifier every reader stores on a Doc (PMID, DDI id, question id).

Readers write it, `annotate` keeps it, and scoring aligns gold and predicted documents
by it, so the key is defined here once.
"""

from __future__ import annotations

from spacy.tokens import Doc

DOC_ID_KEY = "doc_id"


def doc_id(doc: Doc, default: str | None = None) -> str | None:
    """`doc.user_data["doc_id"]` as a string, or `default` where the Doc has none."""
    value = doc.user_data.get(DOC_ID_KEY)
    return default if value is None else str(value)
