"""Corpus readers: one module per format, each turning a corpus file into spaCy Docs.

Every reader has the signature ``read_x(path, make_doc=None, report=None, **options)
-> Iterator[Doc]``. Docs carry ``doc.user_data["doc_id"]``; mentions are in
``doc.ents`` (``label_`` = corpus type, ``kb_id_`` = corpus id) with overlapping ones in
``doc.spans["bio_entities"]``; relations in ``doc._.relations``. Whatever cannot be
placed is recorded in the `ConversionReport`; malformed input raises
`CorpusFormatError` naming the file and line.

`FORMATS` maps the format names used by ``python -m spacy_bioreama convert`` to readers;
`convert` reads one input and writes a ``.spacy`` DocBin.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, DocBin

from .base import CorpusFormatError, MakeDoc, PathArg, default_make_doc, split_concept_ids
from .bioc_formats import read_bioc_json, read_bioc_xml
from .brat import read_brat
from .ddi import read_ddi
from .jsonl import read_jsonl
from .ncbi_disease import read_ncbi_disease
from .pair_tsv import PAIR_SCHEMES, PairScheme, read_pair_tsv
from .pubmedqa import read_pubmedqa
from .pubtator import read_pubtator
from .report import ConversionReport, Issue

Reader = Callable[..., Iterator[Doc]]


@dataclass(frozen=True)
class CorpusFormat:
    """A registered corpus format: its `convert` name, reader and one-line description."""

    name: str
    reader: Reader
    description: str


FORMATS: dict[str, CorpusFormat] = {}


def register_format(name: str, reader: Reader, description: str = "") -> None:
    """Register (or replace) a reader under a format name."""
    FORMATS[name] = CorpusFormat(name, reader, description)


register_format("pubtator", read_pubtator, "PubTator (BioRED, BC5CDR): title|abstract + TSV")
register_format("ncbi-disease", read_ncbi_disease, "NCBI-disease corpus files")
register_format("bioc-xml", read_bioc_xml, "BioC XML collection (BioRED, BC5CDR, ...)")
register_format("bioc-json", read_bioc_json, "BioC JSON collection (BioRED's JSON)")
register_format("ddi", read_ddi, "DDI-2013 XML: a file or a directory of *.xml")
register_format("gad", partial(read_pair_tsv, scheme="gad"), "GAD masked TSV (BLURB)")
register_format("euadr", partial(read_pair_tsv, scheme="euadr"), "EU-ADR masked TSV (BLURB)")
register_format("chemprot", partial(read_pair_tsv, scheme="chemprot"), "ChemProt masked TSV (BLUE)")
register_format("pubmedqa", read_pubmedqa, "PubMedQA JSON (PQA-L)")
register_format("brat", read_brat, "brat standoff: a folder of .txt/.ann pairs")
register_format("jsonl", read_jsonl, "JSON Lines document records (our export)")


def get_reader(name: str) -> Reader:
    """The reader registered as `name`; an unknown name is an error listing the known ones."""
    if name not in FORMATS:
        raise ValueError(f"Unknown corpus format {name!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[name].reader


def read(
    format: str,
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
    **options: Any,
) -> Iterator[Doc]:
    """Read `path` in `format` (a name in `FORMATS`): an iterator of Docs."""
    reader = get_reader(format)
    if report is None:
        report = ConversionReport(format, str(path))
    return reader(path, make_doc=make_doc, report=report, **options)


def convert(
    format: str,
    input_path: PathArg,
    output_path: PathArg,
    *,
    make_doc: MakeDoc | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ConversionReport:
    """Read `input_path` in `format` and write a ``DocBin(store_user_data=True)`` to
    `output_path` (parent directories created). Returns the `ConversionReport`.

    `progress`: show a tqdm bar on stderr (None: only when stderr is a terminal). Stdout
    is left to the caller (print the report there)."""
    report = ConversionReport(format, str(input_path))
    docs = read(format, input_path, make_doc=make_doc, report=report, **options)
    if progress is None or progress:
        from tqdm import tqdm

        disable = None if progress is None else False
        docs = tqdm(docs, desc=f"convert {format}", unit="doc", file=sys.stderr, disable=disable)
    doc_bin = DocBin(store_user_data=True)
    for doc in docs:
        doc_bin.add(doc)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    doc_bin.to_disk(output_path)
    return report


__all__ = [
    "FORMATS",
    "PAIR_SCHEMES",
    "ConversionReport",
    "CorpusFormat",
    "CorpusFormatError",
    "Issue",
    "PairScheme",
    "convert",
    "default_make_doc",
    "get_reader",
    "read",
    "read_bioc_json",
    "read_bioc_xml",
    "read_brat",
    "read_ddi",
    "read_jsonl",
    "read_ncbi_disease",
    "read_pair_tsv",
    "read_pubmedqa",
    "read_pubtator",
    "register_format",
    "split_concept_ids",
]
