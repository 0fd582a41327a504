"""Corpus writers: the inverse of `corpora`'s readers, one module per format.

`FORMATS` maps the names used by ``python -m spacy_bioreama export`` to writers;
`export_docs` writes Docs in one of them and returns an `ExportReport`. What a writer
writes, our reader for that format reads back into the same text, mentions (offsets,
labels, concept ids, overflow included), relations and document ids
(`tests/test_export.py` checks it on BioRED dev). Every file is written atomically.
The record builders (`doc_to_record`, `doc_to_pubtator`, `bioc_collection`,
`doc_to_ann`) serve `annotate-corpus` too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import PathLike

from spacy.tokens import Doc

from .bioc import bioc_collection, doc_to_bioc, write_bioc_json, write_bioc_xml
from .brat import annotation_conf, doc_to_ann, write_brat
from .common import PASSAGES_KEY, ExportReport, Passage, passages
from .jsonl import doc_to_record, jsonl_text, write_jsonl
from .pubtator import doc_to_pubtator, pubtator_text, write_pubtator

Writer = Callable[[Iterable[Doc], "str | PathLike", ExportReport], None]


@dataclass(frozen=True)
class ExportFormat:
    """A registered export format: its name, writer, whether OUTPUT is a folder, and the
    `convert` format that reads it back."""

    name: str
    writer: Writer
    description: str
    folder: bool = False
    reader: str = ""


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "pubtator", write_pubtator, "PubTator title|abstract + TSV", reader="pubtator"
        ),
        ExportFormat("bioc-xml", write_bioc_xml, "BioC XML collection", reader="bioc-xml"),
        ExportFormat("bioc-json", write_bioc_json, "BioC JSON collection", reader="bioc-json"),
        ExportFormat("brat", write_brat, "brat standoff folder (.txt + .ann)", True, "brat"),
        ExportFormat("jsonl", write_jsonl, "JSON Lines, one document a line", reader="jsonl"),
    )
}


def export_docs(
    docs: Iterable[Doc],
    output: str | PathLike,
    fmt: str,
    *,
    progress: bool | None = None,
) -> ExportReport:
    """Write `docs` to `output` in `fmt` (a name in `FORMATS`; brat writes a folder).
    `progress`: a tqdm bar on stderr (None: only when stderr is a terminal)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    report = ExportReport(fmt, str(output))
    if progress is None or progress:
        from tqdm import tqdm

        disable = None if progress is None else False
        docs = tqdm(docs, desc=f"export {fmt}", unit="doc", file=sys.stderr, disable=disable)
    FORMATS[fmt].writer(docs, output, report)
    return report


__all__ = [
    "FORMATS",
    "PASSAGES_KEY",
    "ExportFormat",
    "ExportReport",
    "Passage",
    "annotation_conf",
    "bioc_collection",
    "doc_to_ann",
    "doc_to_bioc",
    "doc_to_pubtator",
    "doc_to_record",
    "export_docs",
    "jsonl_text",
    "passages",
    "pubtator_text",
    "write_bioc_json",
    "write_bioc_xml",
    "write_brat",
    "write_jsonl",
    "write_pubtator",
]
