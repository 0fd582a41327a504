"""Corpus-scale annotation: annotate-corpus's sources, outputs, manifest and engines.

`annotate_corpus` reads input shards as a stream (`sources`), cuts them into chunks
(`chunks`), annotates them in this process or on Ray Data (`engines`), writes each
shard's files atomically (`outputs`) and records finished shards in `manifest.json`
(`manifest`), so that a rerun finishes what an interrupted one started.
"""

from .chunks import ChunkAnnotator, Shard, read_chunks
from .engines import ENGINES, EngineSettings
from .manifest import MANIFEST_FILE, Manifest, ManifestMismatch
from .outputs import OUTPUT_FORMATS, ShardWriter
from .run import ERRORS_FILE, CorpusRunError, RunSummary, annotate_corpus
from .sources import INPUT_FORMATS, SourceItem, expand_inputs, iter_source

__all__ = [
    "ENGINES",
    "ERRORS_FILE",
    "INPUT_FORMATS",
    "MANIFEST_FILE",
    "OUTPUT_FORMATS",
    "ChunkAnnotator",
    "CorpusRunError",
    "EngineSettings",
    "Manifest",
    "ManifestMismatch",
    "RunSummary",
    "Shard",
    "ShardWriter",
    "SourceItem",
    "annotate_corpus",
    "expand_inputs",
    "iter_source",
    "read_chunks",
]
