"""The unit of work of `annotate-corpus`: a chunk of one shard's documents.

Both engines move the same rows: `read_chunks` turns a shard into chunk rows (Docs
serialised in a DocBin, with where each came from and what could not be read), and
`ChunkAnnotator` -- a callable class, as Ray Data's `map_batches` wants one, holding the
pipeline it builds once -- annotates them. The local engine calls the very same two
pieces in-process, so that the engines cannot disagree.

A row is a dict of plain values (Arrow-friendly)::

    shard (int), chunk (int), last (bool: the shard's final chunk), docbin (bytes),
    wheres (JSON list: each document's locator, e.g. "line 12"),
    errors (JSON list of {"where", "doc_id", "stage", "error"})

and the annotator adds ``worker`` ("host:pid"), ``restarted`` (the worker is a restart
after a crash), ``seconds``, ``rss_mb`` (the worker's peak RSS) and ``stats`` (JSON:
the component's counters for this chunk).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, DocBin

from ..annotations.doc_ids import doc_id
from ..annotations.spans import copy_for_prediction
from ..pipeline.loading import PipelineSpec
from ..tasks.names import TASK_ENTITIES
from .sources import iter_source

Row = dict[str, Any]


@dataclass(frozen=True)
class Shard:
    """One input file of a run: its position, path, format and output name."""

    index: int
    path: str
    format: str
    name: str


def docbin_bytes(docs: Sequence[Doc]) -> bytes:
    """Docs as DocBin bytes (user data kept: document ids, relations)."""
    return DocBin(docs=docs, store_user_data=True).to_bytes()


def docs_from_bytes(data: bytes, vocab) -> list[Doc]:
    """Inverse of `docbin_bytes`."""
    return list(DocBin(store_user_data=True).from_bytes(data).get_docs(vocab))


@lru_cache(maxsize=4)
def _tokenizer(path: str | None):
    """The tokenizer of the pipeline at `path` (None: blank English), once per process."""
    return PipelineSpec(path=path).build_tokenizer()


def read_chunks(shard: Shard, spec: PipelineSpec, chunk_size: int) -> Iterator[Row]:
    """The shard's documents as chunk rows of up to `chunk_size` documents, the last
    row flagged (and always present, so that an empty or unreadable shard completes
    too). Documents are copied as the component's input: text, document id and --
    when the pipeline only predicts relations -- the input's entities."""
    make_doc = _tokenizer(spec.path).make_doc
    keep_entities = TASK_ENTITIES not in spec.tasks
    docs: list[Doc] = []
    wheres: list[str] = []
    errors: list[dict[str, Any]] = []
    chunk = 0
    for item in iter_source(Path(shard.path), shard.format, make_doc):
        if item.doc is None:
            errors.append(
                {"where": item.where, "doc_id": item.doc_id, "stage": "read", "error": item.error}
            )
            continue
        docs.append(copy_for_prediction(make_doc, item.doc, keep_entities))
        wheres.append(item.where)
        if len(docs) >= chunk_size:
            yield _row(shard, chunk, False, docs, wheres, errors)
            chunk += 1
            docs, wheres, errors = [], [], []
    yield _row(shard, chunk, True, docs, wheres, errors)


def read_shard_rows(row: Mapping[str, Any], spec: PipelineSpec, chunk_size: int) -> Iterator[Row]:
    """`read_chunks` of a shard given as a row (`Shard`'s fields): Ray's `flat_map`."""
    shard = Shard(int(row["index"]), str(row["path"]), str(row["format"]), str(row["name"]))
    yield from read_chunks(shard, spec, chunk_size)


def _row(shard: Shard, chunk: int, last: bool, docs, wheres, errors) -> Row:
    return {
        "shard": shard.index,
        "chunk": chunk,
        "last": last,
        "docbin": docbin_bytes(docs),
        "wheres": json.dumps(wheres),
        "errors": json.dumps(errors),
    }


class ChunkAnnotator:
    """Annotates chunk rows with the pipeline of `spec`, built once per instance (per
    Ray actor). `threads`: torch's thread count in this process (None: leave it).

    A chunk is annotated with one `nlp.pipe`; if that fails, document by document, and
    a document that still fails becomes an error of stage "annotate" (its locator and
    the exception), never a lost chunk."""

    def __init__(self, spec: PipelineSpec, threads: int | None = None, built=None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.spec = spec
        # `built`: the (nlp, component) of `spec`, where the caller has built it already
        self.nlp, self.component = built if built is not None else spec.build()
        _ = self.component.backend  # load the model now, not inside the first chunk
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.restarted = _actor_restarted()

    def __call__(self, batch: Any) -> Any:
        """Annotate every row of a batch: a pyarrow Table (Ray Data's `map_batches` with
        `batch_format="pyarrow"`, which keeps bytes intact) or a dict of columns."""
        if hasattr(batch, "to_pylist"):
            import pyarrow

            return pyarrow.Table.from_pylist([self.annotate(row) for row in batch.to_pylist()])
        rows = [
            dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)
        ]
        out = [self.annotate(row) for row in rows]
        return {key: [row[key] for row in out] for key in out[0]} if out else {}

    def annotate(self, row: Mapping[str, Any]) -> Row:
        """One chunk row, annotated (see the module docstring)."""
        from ..util.resources import peak_rss_bytes

        start = time.perf_counter()
        before = Counter(self.component.stats)
        wheres = json.loads(row["wheres"])
        errors = json.loads(row["errors"])
        # the chunk's strings are freed when it is done, so a long run's vocab stays flat
        with self.nlp.memory_zone():
            annotated = self._annotate(bytes(row["docbin"]), wheres, errors)
            docbin = docbin_bytes([doc for doc, _ in annotated])
        stats = Counter(self.component.stats)
        stats.subtract(before)
        return {
            "shard": int(row["shard"]),
            "chunk": int(row["chunk"]),
            "last": bool(row["last"]),
            "docbin": docbin,
            "wheres": json.dumps([where for _, where in annotated]),
            "errors": json.dumps(errors),
            "worker": self.worker,
            "restarted": self.restarted,
            "seconds": time.perf_counter() - start,
            "rss_mb": peak_rss_bytes() / 2**20,
            "stats": json.dumps({k: v for k, v in stats.items() if v}),
        }

    def _annotate(self, data: bytes, wheres: list[str], errors: list[dict]) -> list:
        try:
            docs = docs_from_bytes(data, self.nlp.vocab)
            annotated = self.nlp.pipe(docs, batch_size=self.spec.batch_size)
            return list(zip(annotated, wheres, strict=True))
        except Exception:  # noqa: BLE001 - retried one by one below, failures reported
            pass
        out = []
        # fresh copies: the failed batch may have changed its Docs (entities, tokens)
        for doc, where in zip(docs_from_bytes(data, self.nlp.vocab), wheres, strict=True):
            try:
                out.append((self.nlp(doc), where))
            except Exception as err:  # noqa: BLE001 - reported in errors.jsonl
                errors.append(
                    {
                        "where": where,
                        "doc_id": doc_id(doc) or None,
                        "stage": "annotate",
                        "error": f"{type(err).__name__}: {err}",
                    }
                )
        return out


def _actor_restarted() -> bool:
    """Whether this process is a Ray actor restarted after a crash (False outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return False
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - no Ray, or not in an actor
        return False


__all__ = [
    "ChunkAnnotator",
    "Row",
    "Shard",
    "docbin_bytes",
    "docs_from_bytes",
    "read_chunks",
    "read_shard_rows",
]
