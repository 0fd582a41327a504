"""`annotate_corpus`: a whole collection in, one set of output files per input shard out.

The steps: find the input shards (`sources.expand_inputs`), fingerprint the pipeline,
open (or start) the output folder's manifest and refuse to mix pipelines or changed
inputs, skip the shards already finished, annotate the rest on the chosen engine,
write each shard as its chunks come back (`ShardWriter`) and record it in the manifest
once its files are in place. What could not be read or annotated goes to the shard's
errors file and, for the whole folder, `errors.jsonl`. One run at a time per folder
(a lock file), so that two runs cannot interleave their writes.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..export.common import ordered_mentions
from ..pipeline.loading import PipelineSpec
from ..util.files import atomic_write_text, sha256_file
from ..util.resources import peak_rss_bytes
from .chunks import Shard, docs_from_bytes
from .engines import EngineSettings, run_engine
from .manifest import MANIFEST_FILE, Manifest, ManifestMismatch
from .outputs import ERRORS_SUFFIX, OUTPUT_FORMATS, ShardWriter, remove_temporary_files
from .sources import FILE_WHERE, INPUT_FORMATS, count_documents, detect_format, expand_inputs

ERRORS_FILE = "errors.jsonl"
LOCK_FILE = ".lock"


class CorpusRunError(ValueError):
    """A run that cannot start: no inputs, a folder in use, a manifest that does not fit."""


@dataclass
class RunSummary:
    """What one `annotate_corpus` call did."""

    output: str
    engine: str
    workers: int
    shards: int = 0
    shards_skipped: int = 0
    documents: int = 0
    entities: int = 0
    relations: int = 0
    errors: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    worker_peak_rss_mb: dict[str, float] = field(default_factory=dict)
    worker_restarts: int = 0
    failed_shards: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with docs/s."""
        data = dict(self.__dict__)
        data["docs_per_s"] = round(self.documents / self.seconds, 4) if self.seconds else None
        data["seconds"] = round(self.seconds, 2)
        data["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        data["worker_peak_rss_mb"] = {k: round(v, 1) for k, v in self.worker_peak_rss_mb.items()}
        return data


def annotate_corpus(
    inputs: Sequence[str | Path],
    output: str | Path,
    spec: PipelineSpec,
    *,
    formats: Sequence[str] = (),
    engine: EngineSettings | None = None,
    input_format: str | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> RunSummary:
    """Annotate every document of `inputs` into `output` (see the module docstring).

    `formats`: outputs beside JSON Lines (`outputs.OUTPUT_FORMATS`); `input_format`:
    one of `sources.INPUT_FORMATS` for every input (None: detected per file); `force`:
    discard what `output` holds and start over; `progress`: a tqdm bar on stderr (None:
    when stderr is a terminal)."""
    engine = engine or EngineSettings()
    formats = sorted(set(formats) - {"jsonl"})
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown:
        raise CorpusRunError(f"unknown output format(s) {unknown}; formats: {list(OUTPUT_FORMATS)}")
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise CorpusRunError(f"unknown input format {input_format!r}; formats: {INPUT_FORMATS}")
    try:
        paths = expand_inputs(inputs)
    except FileNotFoundError as err:
        raise CorpusRunError(str(err)) from err
    if not paths:
        raise CorpusRunError("no input files")
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    inside = [p for p in paths if p.resolve().is_relative_to(folder.resolve())]
    if inside:
        raise CorpusRunError(f"input {inside[0]} is inside the output folder {folder}")
    with _locked(folder):
        nlp, component = spec.build()
        # a saved pipeline's own tasks decide whether the input's entities are kept
        spec = replace(spec, tasks=tuple(component.tasks))
        manifest = _open_manifest(folder, spec.fingerprint(component), formats, force)
        remove_temporary_files(folder)
        shards = _plan(paths, manifest, input_format)
        pending = [s for s in shards if not manifest.is_done(s.name)]
        manifest.save()
        summary = RunSummary(str(folder), engine.engine, engine.workers)
        summary.shards, summary.shards_skipped = len(pending), len(shards) - len(pending)
        start = time.perf_counter()
        if pending:
            rows = run_engine(pending, spec, engine, built=(nlp, component))
            _write(pending, rows, manifest, nlp, formats, summary, _progress(pending, progress))
        summary.seconds = time.perf_counter() - start
        summary.peak_rss_mb = peak_rss_bytes() / 2**20
        _write_errors(folder, manifest)
        manifest.runs.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary.to_dict()})
        manifest.save()
    return summary


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with (folder / LOCK_FILE).open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusRunError(
                f"{folder} is in use by another annotate-corpus run (wait for it to end)"
            ) from None
        yield


def _open_manifest(folder: Path, fingerprint: dict, formats: list[str], force: bool) -> Manifest:
    try:
        manifest = Manifest.load(folder)
    except ManifestMismatch:
        if not force:
            raise
        manifest = None
    if manifest is not None and force:
        _remove_outputs(folder, manifest)
        manifest = None
    if manifest is None:
        return Manifest(folder=folder, pipeline=fingerprint, formats=formats)
    if not manifest.shards:  # nothing finished yet, so nothing to mix with
        manifest.pipeline, manifest.formats = fingerprint, formats
        return manifest
    manifest.check_compatible(fingerprint, formats)
    return manifest


def _remove_outputs(folder: Path, manifest: Manifest) -> None:
    """`--force`: delete the files the manifest lists, the errors file and the manifest."""
    for entry in manifest.shards.values():
        for file in entry.get("files", {}):
            (folder / file).unlink(missing_ok=True)
    (folder / ERRORS_FILE).unlink(missing_ok=True)
    manifest.path.unlink(missing_ok=True)


def _plan(paths: list[Path], manifest: Manifest, input_format: str | None) -> list[Shard]:
    """A `Shard` per input (by resolved path). Its output name is the one an earlier run
    gave it -- or gave a finished input with the same content that is no longer where it
    was (a moved folder) -- else its file name without the last suffix, made unique
    with -2, -3, ... and never one of the folder's own files (`errors`, `manifest`)."""
    shards = []
    taken = {e["name"] for e in manifest.inputs.values()}
    for index, path in enumerate(paths):
        resolved = str(path.resolve())
        try:
            digest, size = sha256_file(path), path.stat().st_size
            fmt = input_format or detect_format(path)
        except (OSError, ValueError) as err:
            raise CorpusRunError(f"{path}: cannot be read ({err})") from err
        manifest.check_input(resolved, digest)
        name = manifest.shard_name(resolved) or _moved_shard(manifest, digest)
        if name is None:
            base = path.stem or path.name
            name, n = base, 1
            while name in taken or not _free_name(name):
                n += 1
                name = f"{base}-{n}"
            taken.add(name)
        manifest.add_input(resolved, {"name": name, "format": fmt, "sha256": digest, "bytes": size})
        shards.append(Shard(index, resolved, fmt, name))
    return shards


def _free_name(name: str) -> bool:
    """Whether a shard may be called `name`: its files must not be the folder's own
    (`errors.jsonl`, `manifest.json`) nor another shard's errors file."""
    return name not in (Path(ERRORS_FILE).stem, Path(MANIFEST_FILE).stem) and not name.endswith(
        Path(ERRORS_SUFFIX).stem
    )


def _moved_shard(manifest: Manifest, digest: str) -> str | None:
    """The name of a finished shard with this content whose input path is gone."""
    for resolved, entry in manifest.inputs.items():
        if entry["sha256"] == digest and manifest.is_done(entry["name"]):
            if not Path(resolved).exists():
                return entry["name"]
    return None


def _progress(pending: list[Shard], progress: bool | None):
    """A tqdm bar over documents; its total is counted (a pass over the inputs) only
    when the bar is shown."""
    from tqdm import tqdm

    shown = sys.stderr.isatty() if progress is None else progress
    total = sum(count_documents(Path(s.path), s.format) for s in pending) if shown else None
    return tqdm(total=total, desc="annotate-corpus", unit="doc", file=sys.stderr, disable=not shown)


def _write(pending, rows, manifest, nlp, formats, summary, bar) -> None:
    """Write the annotated rows shard by shard, recording each finished shard."""
    by_index = {s.index: s for s in pending}
    writer: ShardWriter | None = None
    shard_start = time.perf_counter()
    stats: Counter[str] = Counter()
    restarted: set[str] = set()
    try:
        for row in rows:
            shard = by_index[int(row["shard"])]
            if writer is None:
                writer = ShardWriter(manifest.folder, shard.name, formats)
                shard_start = time.perf_counter()
            errors = json.loads(row["errors"])
            with nlp.memory_zone():  # the chunk's strings are freed once it is written
                docs = docs_from_bytes(bytes(row["docbin"]), nlp.vocab)
                for doc in docs:
                    writer.add(doc)
                    summary.entities += len(ordered_mentions(doc))
                    summary.relations += len(doc._.relations)
            for error in errors:
                writer.add_error({"shard": shard.name, "input": shard.path, **error})
            stats.update(json.loads(row.get("stats") or "{}"))
            worker = str(row.get("worker", ""))
            rss = float(row.get("rss_mb", 0.0))
            summary.worker_peak_rss_mb[worker] = max(rss, summary.worker_peak_rss_mb.get(worker, 0))
            if row.get("restarted"):
                restarted.add(worker)
            bar.update(len(docs) + sum(e["stage"] == "read" for e in errors))
            if row["last"]:
                _finish_shard(writer, shard, manifest, summary, time.perf_counter() - shard_start)
                writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        summary.stats = dict(stats)
        summary.worker_restarts = len(restarted)


def _finish_shard(writer: ShardWriter, shard: Shard, manifest: Manifest, summary, seconds) -> None:
    """Publish a shard and record it -- unless nothing of it could be read or annotated
    (an unreadable file, or every document failing in the model): such a shard is left
    unfinished, so that a rerun tries it again, and is listed in `failed_shards`."""
    errors = writer.errors
    summary.errors += len(errors)
    if writer.documents == 0 and any(
        e["where"] == FILE_WHERE or e["stage"] == "annotate" for e in errors
    ):
        writer.abort()
        summary.failed_shards.append({"shard": shard.name, "input": shard.path, "errors": errors})
        return
    files = writer.commit()
    entry = {
        "input": shard.path,
        "documents": writer.documents,
        "errors": len(errors),
        "seconds": round(seconds, 2),
        "files": files,
    }
    if writer.adjusted:
        entry["adjusted"] = writer.adjusted
    manifest.finish_shard(shard.name, entry)
    summary.documents += writer.documents


def _write_errors(folder: Path, manifest: Manifest) -> None:
    """`errors.jsonl`: the errors of every finished shard of the folder, in input order
    (rebuilt from the shards' own files, so a shard redone after a crash is never
    counted twice, and a rerun over some of the inputs keeps the others' errors)."""
    lines = []
    for entry in manifest.inputs.values():
        done = manifest.shards.get(entry["name"])
        if done and done.get("errors"):
            lines.append((folder / (entry["name"] + ERRORS_SUFFIX)).read_text(encoding="utf8"))
    path = folder / ERRORS_FILE
    if lines:
        atomic_write_text(path, "".join(lines))
    else:
        path.unlink(missing_ok=True)


__all__ = ["ERRORS_FILE", "CorpusRunError", "RunSummary", "annotate_corpus"]
