"""One shard's output files, written as documents arrive and published all at once.

`ShardWriter` streams each annotated Doc into hidden temporary files beside the
outputs -- JSON Lines always (`export.jsonl.doc_to_record`), plus any of PubTator,
BioC XML, BioC JSON and DocBin -- and `commit` fsyncs and renames them into place
(`os.replace`, atomic per file on one file system), returning their hashes for the
manifest. The manifest is the commit point: a shard counts as finished only once the
manifest records it, after its files are in place, so a run killed at any moment
leaves either a finished shard or one the next run redoes (its temporary files
removed, its half-renamed files overwritten). Documents are written as they come, so a
shard never has to fit in memory (the DocBin excepted: it is built in memory,
compactly; BioC JSON is streamed document by document by hand).
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
        # one report per format: what a writer had to change (e.g. a PubTator PMID)
        self.reports = {fmt: ExportReport(fmt, str(folder)) for fmt in self.files}
        if "bioc-xml" in self.reports and "bioc-json" in self.reports:
            self.reports["bioc-json"] = self.reports["bioc-xml"]  # one BioC document each
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
        record = doc_to_record(doc, i, self.reports["jsonl"])
        self._streams["jsonl"].write(json.dumps(record, ensure_ascii=False) + "\n")
        if "pubtator" in self._streams:
            self._streams["pubtator"].write(doc_to_pubtator(doc, i, self.reports["pubtator"]))
        bioc_formats = [f for f in ("bioc-xml", "bioc-json") if f in self.files]
        if bioc_formats:  # built once, written to both BioC files
            document = doc_to_bioc(doc, i, self.reports[bioc_formats[0]])
        if self._bioc_xml is not None:
            self._bioc_xml.write_document(document)
        if "bioc-json" in self._streams:
            from bioc.biocjson import toJSON

            text = json.dumps(toJSON(document), ensure_ascii=False)
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
    def adjusted(self) -> dict[str, list[str]]:
        """What each format's writer had to change, by format (formats with changes)."""
        return {fmt: list(r.adjusted) for fmt, r in self.reports.items() if r.adjusted}

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Errors recorded so far."""
        return list(self._errors)

    def commit(self) -> dict[str, str]:
        """Finish every file, fsync and rename it into place; `{file: sha256}`. The
        errors file is written only when there were errors (else an old one is removed)."""
        if self._bioc_xml is not None:
            self._bioc_xml.close()
            self._bioc_xml = None
        if "bioc-json" in self._streams:
            self._streams["bioc-json"].write("\n]}\n")
        if self._docbin is not None:
            self._streams["docbin"] = self._tmp(self.files["docbin"]).open("wb")
            self._streams["docbin"].write(self._docbin.to_bytes())
        published = list(self.files.values())
        if self._errors:
            self._streams["errors"] = self._tmp(self.errors_file).open("w")
            self._streams["errors"].writelines(
                json.dumps(e, ensure_ascii=False) + "\n" for e in self._errors
            )
            published.append(self.errors_file)
        else:
            (self.folder / self.errors_file).unlink(missing_ok=True)
        for stream in self._streams.values():
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        self._streams = {}
        hashes = {file: sha256_file(self._tmp(file)) for file in published}
        for file in published:
            os.replace(self._tmp(file), self.folder / file)
        _fsync_folder(self.folder)
        return hashes

    def abort(self) -> None:
        """Close and delete the temporary files (nothing is published)."""
        if self._bioc_xml is not None:
            self._bioc_xml.close()
            self._bioc_xml = None
        for stream in self._streams.values():
            stream.close()
        self._streams = {}
        for file in [*self.files.values(), self.errors_file]:
            self._tmp(file).unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (where the platform allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "ERRORS_SUFFIX",
    "OUTPUT_FORMATS",
    "OUTPUT_SUFFIXES",
    "ShardWriter",
    "output_files",
    "remove_temporary_files",
]
