"""One shard's output files, written as documents arrive and published all at once.

`ShardWriter` streams each annotated Doc into hidden temporary files beside the
outputs -- JSON Lines always (`export.jsonl.doc_to_record`), plus any of PubTator,
BioC XML, BioC JSON and DocBin -- and `commit` fsyncs and renames them into place
(`os.replace`, atomic on one file system), returning their hashes for the manifest. A
run killed before `commit` leaves only temporary files, which the next run removes:
a shard's outputs exist whole or not at all. Documents are written as they come, so a
shard never has to fit in memory (DocBin and BioC JSON excepted: the DocBin is built in
memory, compactly, and BioC JSON is streamed document by document by hand).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from spacy.tokens import Doc, DocBin

from ..export.bioc import SOURCE, doc_to_bioc
from ..export.common import ExportReport
from ..export.jsonl import doc_to_record
from ..export.pubtator import doc_to_pubtator
from ..util.files import sha256_file

# --format name → file suffix (JSON Lines is always written)
OUTPUT_SUFFIXES = {
    "jsonl": ".jsonl",
    "pubtator": ".pubtator",
    "bioc-xml": ".bioc.xml",
    "bioc-json": ".bioc.json",
    "docbin": ".spacy",
}
OUTPUT_FORMATS = tuple(OUTPUT_SUFFIXES)
ERRORS_SUFFIX = ".errors.jsonl"
TMP_SUFFIX = ".tmp"


def output_files(name: str, formats: Iterable[str]) -> dict[str, str]:
    """File names of a shard's outputs by format (JSON Lines first, always)."""
    wanted = ["jsonl", *[f for f in formats if f != "jsonl"]]
    return {fmt: name + OUTPUT_SUFFIXES[fmt] for fmt in wanted}


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete what an interrupted run left (`.NAME.tmp`); the paths removed."""
    removed = []
    for path in folder.glob(f".*{TMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class ShardWriter:
    """Writes one shard's outputs into `folder` (see the module docstring)."""

    def __init__(self, folder: Path, name: str, formats: Iterable[str]) -> None:
        self.folder = folder
        self.files = output_files(name, formats)
        self.errors_file = name + ERRORS_SUFFIX
        self.report = ExportReport("annotate-corpus", str(folder))
        self._streams: dict[str, IO[Any]] = {}
        self._docbin = DocBin(store_user_data=True) if "docbin" in self.files else None
        self._bioc_xml = None
        self._errors: list[dict[str, Any]] = []
        self._index = 0
        for fmt, file in self.files.items():
            if fmt == "docbin":
                continue
            self._streams[fmt] = self._tmp(file).open("wb" if fmt == "bioc-xml" else "w")
        if "bioc-xml" in self.files:
            import bioc.biocxml
            from bioc import BioCCollection

            self._bioc_xml = bioc.biocxml.BioCXMLDocumentWriter(self._streams["bioc-xml"])
            info = BioCCollection()
            info.source, info.key = SOURCE, "BioC.key"
            self._bioc_xml.write_collection_info(info)
        if "bioc-json" in self.files:
            head = {"source": SOURCE, "date": "", "key": "BioC.key", "infons": {}}
            self._streams["bioc-json"].write(json.dumps(head)[:-1] + ', "documents": [\n')

    def _tmp(self, file: str) -> Path:
        return self.folder / f".{file}{TMP_SUFFIX}"

    def add(self, doc: Doc) -> None:
        """Write one annotated document to every output."""
        i = self._index
        record = doc_to_record(doc, i, self.report)
        self._streams["jsonl"].write(json.dumps(record, ensure_ascii=False) + "\n")
        if "pubtator" in self._streams:
            self._streams["pubtator"].write(doc_to_pubtator(doc, i, self.report))
        if self._bioc_xml is not None:
            self._bioc_xml.write_document(doc_to_bioc(doc, i, self.report))
        if "bioc-json" in self._streams:
            from bioc.biocjson import toJSON

            text = json.dumps(toJSON(doc_to_bioc(doc, i, self.report)), ensure_ascii=False)
            self._streams["bioc-json"].write(("" if i == 0 else ",\n") + text)
        if self._docbin is not None:
            self._docbin.add(doc)
        self._index += 1

    def add_error(self, error: dict[str, Any]) -> None:
        """Record a document that could not be read or annotated."""
        self._errors.append(error)

    @property
    def documents(self) -> int:
        """Documents written so far."""
        return self._index

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Errors recorded so far."""
        return list(self._errors)

    def commit(self) -> dict[str, str]:
        """Finish every file, fsync and rename it into place; `{file: sha256}`. The
        errors file is written only when there were errors (else an old one is removed)."""
        if self._bioc_xml is not None:
            self._bioc_xml.close()
        if "bioc-json" in self._streams:
            self._streams["bioc-json"].write("\n]}\n")
        if self._docbin is not None:
            self._tmp(self.files["docbin"]).write_bytes(self._docbin.to_bytes())
        for stream in self._streams.values():
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        self._streams = {}
        published = list(self.files.values())
        errors_path = self.folder / self.errors_file
        if self._errors:
            with self._tmp(self.errors_file).open("w") as f:
                f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in self._errors)
            published.append(self.errors_file)
        else:
            errors_path.unlink(missing_ok=True)
        for file in published:
            os.replace(self._tmp(file), self.folder / file)
        return {file: sha256_file(self.folder / file) for file in published}

    def abort(self) -> None:
        """Close and delete the temporary files (nothing is published)."""
        for stream in self._streams.values():
            stream.close()
        self._streams = {}
        for file in [*self.files.values(), self.errors_file]:
            self._tmp(file).unlink(missing_ok=True)


__all__ = [
    "ERRORS_SUFFIX",
    "OUTPUT_FORMATS",
    "OUTPUT_SUFFIXES",
    "ShardWriter",
    "output_files",
    "remove_temporary_files",
]
