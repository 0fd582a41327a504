"""Instruction-dataset builder: DocBin corpora → JSONL instruction examples + statistics.

`build_instructions(config, output_dir)` reads the DocBins written by
``python -m spacy_bioreama convert``, renders every example with the SAME task modules
the `bio_relation_llm` component parses at inference (`tasks/ner.py`,
`tasks/relation.py`, `tasks/qa.py`), and writes

- ``train.jsonl`` and ``dev.jsonl``: one record per line,
  ``{"id", "task", "corpus", "instruction", "input", "output", "choices"?, "label"?}``
  (`TaskExample.to_record()` plus id, corpus and, for classification tasks, the answer
  label); loadable with ``datasets.load_dataset("json", data_files=...)``;
- ``stats.json``: examples per task, corpus and label, token-length percentiles, the
  too-long count, per-source details (documents, held-out split, negatives, windows)
  and the relation type pairs inference should use (``type_pairs``);
- ``heldout/<source>.dev.spacy``: the documents held out by ``dev_fraction`` (sources
  without a dev file), so that evaluation scores exactly the held-out documents.

It returns a `BuildReport`; ``str(report)`` is a readable table (the CLI prints it).

Config (spaCy / confection ``.cfg``; a dict of the same shape works too)::

    [paths]
    corpus = "corpus"

    [instructions]
    seed = 0                  # every random choice derives from it (see "Determinism")
    max_length = 1024         # prompt (chat template included) + answer tokens
    too_long = "drop"         # "drop" or "keep" examples still longer than max_length
    negative_ratio = 1.0      # RE: sampled "None" pairs per positive pair; null = all
    rationale = false         # REaMA chain of thought for re/pair answers
    rationale_max_sentences = 2
    rationale_negatives = "quote"   # "quote" the pair's sentences, or "none"
    paraphrases = true        # seeded paraphrase per example (template 0 when false)
    shuffle = true            # shuffle train.jsonl (dev.jsonl keeps source order)
    tokenizer = null          # model name/dir whose tokenizer measures lengths
                              # ("default" = embedded SmolLM2); null = whitespace words

    [instructions.sources]

    [instructions.sources.biored_ner]
    task = "ner"              # ner | re | pair | qa
    corpus = "biored"         # corpus name in records and statistics (default: source name)
    train = "${paths.corpus}/biored_train.spacy"
    dev = "${paths.corpus}/biored_dev.spacy"   # or dev_fraction = 0.1 (deterministic)
    labels = null             # ner: entity types; re/pair: relation labels (answer order)
    weight = 1.0              # train mixing weight: <1 subsamples, >1 repeats (new paraphrase)
    max_docs = null           # cap on train documents (seeded subset, corpus order kept)
    max_dev_docs = null
    max_examples = null       # cap on train examples before weighting (seeded subset)
    max_dev_examples = null

Per-source keys only some tasks use: ``label_map`` (re/pair: corpus label → answer word,
e.g. GAD ``{"1": "Association", "0": "None"}``, or as a list of pairs
``[["CPR:3", "Activation"], ...]`` for labels the config parser cannot take as keys
(a ``:`` inside); a label mapped to "None", or a corpus negative label such as
``0``/``False``/``false``, is a negative), ``negative_ratio``
(re/pair: overrides the global one; pair sources keep all their pairs by default),
``type_pairs`` (re: ``["A|B", ...]``; default: the type pairs of the train split's
positive relations), ``rationale`` (re/pair: overrides the global switch), ``context``
(pair: ``"document"`` (default) or ``"sentence"``, the sentence(s) holding the pair, for
multi-sentence documents such as DDI).

Task families
-------------
- ``ner``: one example per document, all configured types (`ner.build_example` with
  ``with_target=True``). A document whose longest prompt + answer exceeds `max_length`
  is cut into windows with `split_windows` (sentence boundaries), shrinking the budget
  until every window fits; one example per window.
- ``re`` (BioRED, BC5CDR): document-level concept pairs, enumerated per window exactly
  as the component does (`collect_concepts`, `candidate_pairs`) and restricted to the
  type pairs of the train split's relations. Every positive pair is kept (target
  `gold_label`); "None" pairs are sampled at `negative_ratio` per positive (per split,
  seeded). A gold label outside the configured labels is dropped and counted.
- ``pair`` (GAD, EU-ADR, ChemProt, DDI): each relation of the corpus is one example,
  negative-labelled ones answered "None"; labels verbalised through `label_map`;
  choices = the positive answer words + "None".
- ``qa`` (PubMedQA): `tasks/qa.py`; documents without an answer are skipped.

Too long: NER and RE documents are windowed so that they fit; what is still longer than
`max_length` (a QA context, a huge NER answer) is counted and, by default, dropped: a
trainer that truncates would cut the answer, which is the only part with a loss.

Splits: a source needs ``train``; dev comes from ``dev`` or ``dev_fraction`` (the
documents with the smallest SHA-256 of their doc id, independent of seed and order, so
every source over the same file holds out the same documents). Training documents whose
doc id also occurs in the dev split are dropped and counted (BC5CDR's training file
contains its development set). Weights, caps and negative sampling apply per split;
weights apply to train only.

Determinism: every random draw comes from its own ``random.Random`` seeded with a string
built from the seed and what it is for (the example id for its paraphrase, the source
and split for negatives), and sets are never iterated into the output, so the same
config gives byte-identical files, whatever the source order or PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..annotations import relations as _relations  # noqa: F401  (registers the Doc extensions)
from ..annotations.labels import (
    BIORED_ENTITY_LABELS,
    BIORED_RELATION_LABELS,
    NEGATIVE_RELATION_LABELS,
)
from ..annotations.spans import all_mentions
from ..tasks import ner, qa
from ..tasks import relation as re_task
from ..tasks.base import TaskExample
from ..tasks.windows import _sentence_ranges, split_windows

TASK_FAMILIES = ("ner", "re", "pair", "qa")
TOO_LONG_ACTIONS = ("drop", "keep")
PAIR_CONTEXTS = ("document", "sentence")
RATIONALE_NEGATIVES = ("quote", "none")
DOC_ID_KEY = "doc_id"
MIN_WINDOW_TOKENS = 32
WINDOW_SHRINK = 0.8

_GLOBAL_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "max_length": 1024,
    "too_long": "drop",
    "negative_ratio": 1.0,
    "rationale": False,
    "rationale_max_sentences": 2,
    "rationale_negatives": "quote",
    "paraphrases": True,
    "shuffle": True,
    "tokenizer": None,
}
_SOURCE_KEYS = {
    "task",
    "corpus",
    "train",
    "dev",
    "dev_fraction",
    "labels",
    "label_map",
    "weight",
    "max_docs",
    "max_dev_docs",
    "max_examples",
    "max_dev_examples",
    "negative_ratio",
    "type_pairs",
    "rationale",
    "context",
}
_TASK_KEYS = {
    "label_map": {"re", "pair"},
    "negative_ratio": {"re", "pair"},
    "type_pairs": {"re"},
    "rationale": {"re", "pair"},
    "context": {"pair"},
    "labels": {"ner", "re", "pair"},
}


# ------------------------------------------------------------------------- config
@dataclass(frozen=True)
class BuildSettings:
    """The ``[instructions]`` section (without its sources)."""

    seed: int = 0
    max_length: int = 1024
    too_long: str = "drop"
    negative_ratio: float | None = 1.0
    rationale: bool = False
    rationale_max_sentences: int = 2
    rationale_negatives: str = "quote"
    paraphrases: bool = True
    shuffle: bool = True
    tokenizer: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    """One ``[instructions.sources.NAME]`` section."""

    name: str
    task: str
    corpus: str
    train: Path
    dev: Path | None = None
    dev_fraction: float = 0.0
    labels: tuple[str, ...] | None = None
    label_map: dict[str, str] | None = None
    weight: float = 1.0
    max_docs: int | None = None
    max_dev_docs: int | None = None
    max_examples: int | None = None
    max_dev_examples: int | None = None
    negative_ratio: float | None = None
    negative_ratio_set: bool = False
    type_pairs: tuple[str, ...] | None = None
    rationale: bool | None = None
    context: str = "document"


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None):
    """Read a ``.cfg`` file (with spaCy-style dotted `overrides`), interpolated."""
    from confection import Config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruction config {os.fspath(path)!r} not found")
    return Config().from_disk(path, overrides=dict(overrides or {}), interpolate=True)


def _plain(config: Any) -> dict[str, Any]:
    """A plain, interpolated dict of a confection Config (or a dict)."""
    try:
        from confection import Config
    except ImportError:  # pragma: no cover - confection comes with spaCy
        Config = None  # type: ignore[assignment]  # noqa: N806
    if Config is not None and isinstance(config, Config) and not config.is_interpolated:
        config = config.interpolate()
    if not isinstance(config, Mapping):
        raise ValueError(f"instruction config must be a mapping, got {type(config).__name__}")
    return json.loads(json.dumps(config, default=str))


def _number(where: str, value: Any, *, minimum: float | None = None, integer: bool = False):
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{where}: must be {kind}{bound}, got {value!r}")
    return int(value) if integer else float(value)


def _optional_count(where: str, value: Any) -> int | None:
    return None if value is None else _number(where, value, minimum=0, integer=True)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: must be true or false, got {value!r}")
    return value


def _choice(where: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{where}: must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: must be a list of non-empty strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: lists a value twice: {list(value)}")
    return tuple(value)


def parse_config(config: Any) -> tuple[BuildSettings, list[SourceConfig]]:
    """Validate a config (confection `Config` or dict) into settings and sources (sorted
    by name). Raises ValueError naming the section and field that is wrong."""
    data = _plain(config)
    section = data.get("instructions")
    if not isinstance(section, Mapping):
        raise ValueError("instruction config: missing the [instructions] section")
    sources_section = section.get("sources")
    unknown = set(section) - set(_GLOBAL_DEFAULTS) - {"sources"}
    if unknown:
        raise ValueError(
            f"[instructions]: unknown setting(s) {sorted(unknown)}; known: "
            f"{sorted(_GLOBAL_DEFAULTS)} and the [instructions.sources.*] sections"
        )
    values = {**_GLOBAL_DEFAULTS, **{k: v for k, v in section.items() if k != "sources"}}
    w = "[instructions]"
    ratio = values["negative_ratio"]
    tokenizer = values["tokenizer"]
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise ValueError(f"{w} tokenizer: must be a model name/path or null, got {tokenizer!r}")
    settings = BuildSettings(
        seed=_number(f"{w} seed", values["seed"], integer=True),
        max_length=_number(f"{w} max_length", values["max_length"], minimum=16, integer=True),
        too_long=_choice(f"{w} too_long", values["too_long"], TOO_LONG_ACTIONS),
        negative_ratio=None if ratio is None else _number(f"{w} negative_ratio", ratio, minimum=0),
        rationale=_bool(f"{w} rationale", values["rationale"]),
        rationale_max_sentences=_number(
            f"{w} rationale_max_sentences",
            values["rationale_max_sentences"],
            minimum=1,
            integer=True,
        ),
        rationale_negatives=_choice(
            f"{w} rationale_negatives", values["rationale_negatives"], RATIONALE_NEGATIVES
        ),
        paraphrases=_bool(f"{w} paraphrases", values["paraphrases"]),
        shuffle=_bool(f"{w} shuffle", values["shuffle"]),
        tokenizer=tokenizer,
    )
    if not isinstance(sources_section, Mapping) or not sources_section:
        raise ValueError("instruction config: no [instructions.sources.NAME] section")
    sources = [_parse_source(name, sources_section[name]) for name in sorted(sources_section)]
    return settings, sources


def _parse_source(name: str, raw: Any) -> SourceConfig:
    w = f"[instructions.sources.{name}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{w}: must be a section, got {raw!r}")
    unknown = set(raw) - _SOURCE_KEYS
    if unknown:
        raise ValueError(f"{w}: unknown field(s) {sorted(unknown)}; known: {sorted(_SOURCE_KEYS)}")
    task = _choice(f"{w} task", raw.get("task"), TASK_FAMILIES)
    for key, tasks in _TASK_KEYS.items():
        if raw.get(key) is not None and task not in tasks:
            raise ValueError(f"{w} {key}: only used by task(s) {sorted(tasks)}, not {task!r}")
    train = raw.get("train")
    if not isinstance(train, str) or not train:
        raise ValueError(f"{w} train: the path of a train DocBin (.spacy) is required")
    dev = raw.get("dev")
    if dev is not None and (not isinstance(dev, str) or not dev):
        raise ValueError(f"{w} dev: must be a DocBin path or null, got {dev!r}")
    fraction = raw.get("dev_fraction")
    if fraction is not None:
        fraction = _number(f"{w} dev_fraction", fraction, minimum=0)
        if fraction >= 1:
            raise ValueError(f"{w} dev_fraction: must be below 1, got {fraction!r}")
        if dev is not None and fraction > 0:
            raise ValueError(f"{w}: give either dev or dev_fraction, not both")
    label_map = raw.get("label_map")
    if label_map is not None:
        if isinstance(label_map, list | tuple) and all(
            isinstance(p, list | tuple) and len(p) == 2 for p in label_map
        ):
            label_map = {str(k): v for k, v in label_map}  # [["CPR:3", "Activation"], ...]
        if not isinstance(label_map, Mapping) or not all(
            isinstance(v, str) and v.strip() for v in label_map.values()
        ):
            raise ValueError(
                f"{w} label_map: must map corpus labels to answer words, as a table "
                f'({{"1": "Association"}}) or a list of pairs ([["CPR:3", "Activation"]])'
            )
        label_map = {str(k): v.strip() for k, v in label_map.items()}
    corpus = raw.get("corpus", name)
    if not isinstance(corpus, str) or not corpus:
        raise ValueError(f"{w} corpus: must be a non-empty name, got {corpus!r}")
    type_pairs = _strings(f"{w} type_pairs", raw.get("type_pairs"))
    if type_pairs is not None:
        try:
            re_task.parse_type_pairs(type_pairs)
        except ValueError as err:
            raise ValueError(f"{w} type_pairs: {err}") from None
    rationale = raw.get("rationale")
    ratio = raw.get("negative_ratio")
    return SourceConfig(
        name=name,
        task=task,
        corpus=corpus,
        train=Path(train),
        dev=Path(dev) if dev is not None else None,
        dev_fraction=fraction or 0.0,
        labels=_strings(f"{w} labels", raw.get("labels")),
        label_map=label_map,
        weight=_number(f"{w} weight", raw.get("weight", 1.0), minimum=0),
        max_docs=_optional_count(f"{w} max_docs", raw.get("max_docs")),
        max_dev_docs=_optional_count(f"{w} max_dev_docs", raw.get("max_dev_docs")),
        max_examples=_optional_count(f"{w} max_examples", raw.get("max_examples")),
        max_dev_examples=_optional_count(f"{w} max_dev_examples", raw.get("max_dev_examples")),
        negative_ratio=None if ratio is None else _number(f"{w} negative_ratio", ratio, minimum=0),
        negative_ratio_set="negative_ratio" in raw,
        type_pairs=type_pairs,
        rationale=None if rationale is None else _bool(f"{w} rationale", rationale),
        context=_choice(f"{w} context", raw.get("context", "document"), PAIR_CONTEXTS),
    )


# -------------------------------------------------------------------- lengths
class LengthCounter:
    """Whitespace-word lengths (no tokenizer): fast, approximate, for tests and drafts.

    `prompt` measures the user message; `answer` the answer plus one end-of-turn token."""

    unit = "whitespace words"

    def text(self, text: str) -> int:
        return len(text.split())

    def prompt(self, example: TaskExample) -> int:
        return len(example.chat_prompt().user.split())

    def answer(self, answer: str) -> int:
        return len(answer.split()) + 1


class BackendLengthCounter(LengthCounter):
    """Lengths from a backend with `count_prompt_tokens` (chat template included) and
    `count_tokens`, e.g. `HFBackend`."""

    def __init__(self, backend: Any, name: str | None = None):
        self.backend = backend
        self.unit = f"tokens ({name or getattr(backend, 'name', type(backend).__name__)})"

    def text(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def prompt(self, example: TaskExample) -> int:
        return self.backend.count_prompt_tokens(example.chat_prompt())

    def answer(self, answer: str) -> int:
        return self.backend.count_tokens(answer) + 1


class TokenizerLengthCounter(LengthCounter):
    """Lengths from a Hugging Face tokenizer, prompts rendered as `HFBackend.render`
    renders them (the chat template when the tokenizer has one)."""

    def __init__(self, tokenizer: Any, name: str | None = None):
        self.tokenizer = tokenizer
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.unit = f"tokens ({name or getattr(tokenizer, 'name_or_path', 'tokenizer')})"

    def text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, example: TaskExample) -> int:
        prompt = example.chat_prompt()
        if self.has_chat_template:
            messages = []
            if prompt.system:
                messages.append({"role": "system", "content": prompt.system})
            messages.append({"role": "user", "content": prompt.user})
            rendered = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        from ..models.hf import PLAIN_PROMPT_FORMAT

        system = f"{prompt.system}\n\n" if prompt.system else ""
        rendered = PLAIN_PROMPT_FORMAT.format(system=system, user=prompt.user)
        return len(self.tokenizer(rendered)["input_ids"])

    def answer(self, answer: str) -> int:
        return self.text(answer) + 1


def make_length_counter(tokenizer: Any = None) -> LengthCounter:
    """A `LengthCounter` for: None (whitespace words), a `LengthCounter`, a backend with
    `count_prompt_tokens`, a Hugging Face tokenizer, or a model name/directory (its
    tokenizer is loaded; "default" = the embedded SmolLM2)."""
    if tokenizer is None:
        return LengthCounter()
    if isinstance(tokenizer, LengthCounter):
        return tokenizer
    if hasattr(tokenizer, "count_prompt_tokens") and hasattr(tokenizer, "count_tokens"):
        return BackendLengthCounter(tokenizer)
    if isinstance(tokenizer, str | os.PathLike):
        from transformers import AutoTokenizer

        from ..models import resolve_model

        location = resolve_model(tokenizer)
        return TokenizerLengthCounter(
            AutoTokenizer.from_pretrained(location), name=os.fspath(tokenizer)
        )
    if callable(tokenizer) and hasattr(tokenizer, "apply_chat_template"):
        return TokenizerLengthCounter(tokenizer)
    raise ValueError(
        f"tokenizer: expected None, a model name/path, a backend or a Hugging Face "
        f"tokenizer, got {type(tokenizer).__name__}"
    )


# ---------------------------------------------------------------------- report
@dataclass
class BuildReport:
    """What `build_instructions` wrote; `stats` is the content of stats.json and
    ``str(report)`` a readable table."""

    output_dir: Path
    files: dict[str, Path]
    stats: dict[str, Any]

    def examples(self, split: str = "train") -> int:
        return self.stats["splits"][split]["examples"]

    def __str__(self) -> str:
        return format_stats(self.stats, self.output_dir)


def _percentiles(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": rank(0.5),
        "p90": rank(0.9),
        "p99": rank(0.99),
        "max": ordered[-1],
    }


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return lines


def format_stats(stats: Mapping[str, Any], output_dir: Path | str | None = None) -> str:
    """The readable summary table of a stats.json dictionary."""
    settings = stats["settings"]
    out = [
        f"Instruction dataset{f' in {output_dir}' if output_dir else ''}: seed "
        f"{settings['seed']}, max_length {settings['max_length']} {stats['length_unit']}, "
        f"too long: {settings['too_long']}, rationale {str(settings['rationale']).lower()}"
    ]
    rows = [["source", "task", "corpus", "docs tr/dev", "examples train", "dev", "too long"]]
    for name, src in stats["sources"].items():
        rows.append(
            [
                name,
                src["task"],
                src["corpus"],
                f"{src['docs']['train']}/{src['docs']['dev']}",
                str(src["examples"]["train"]),
                str(src["examples"]["dev"]),
                str(src["too_long"]["train"] + src["too_long"]["dev"]),
            ]
        )
    splits = stats["splits"]
    rows.append(
        [
            "total",
            "",
            "",
            "",
            str(splits["train"]["examples"]),
            str(splits["dev"]["examples"]),
            str(splits["train"]["too_long"] + splits["dev"]["too_long"]),
        ]
    )
    out += ["", "Sources:", *_table(rows)]
    for split in ("train", "dev"):
        s = splits[split]
        out.append("")
        out.append(
            f"{split}: {s['examples']} examples; per task: "
            + ", ".join(f"{k} {v}" for k, v in s["by_task"].items())
            + "; per corpus: "
            + ", ".join(f"{k} {v}" for k, v in s["by_corpus"].items())
        )
        for task, labels in s["by_label"].items():
            out.append(f"  {task} answers: " + ", ".join(f"{k} {v}" for k, v in labels.items()))
        lrows = [[f"length ({stats['length_unit']})", "p50", "p90", "p99", "max", "mean"]]
        for kind in ("prompt", "answer", "total"):
            p = s["lengths"][kind]
            lrows.append(
                [kind, str(p["p50"]), str(p["p90"]), str(p["p99"]), str(p["max"]), str(p["mean"])]
            )
        out += _table(lrows)
        action = "dropped" if settings["too_long"] == "drop" else "kept"
        out.append(f"  longer than {settings['max_length']}: {s['too_long']} ({action})")
    notes = []
    for name, src in stats["sources"].items():
        details = []
        if src.get("train_docs_in_dev_dropped"):
            details.append(f"{src['train_docs_in_dev_dropped']} train docs also in dev dropped")
        if src.get("dev_split") and src["dev_split"] != "file":
            details.append(f"dev = {src['dev_split']}")
        if "windows" in src and src["windows"]["docs_windowed"]:
            w = src["windows"]
            details.append(f"{w['docs_windowed']} docs cut into {w['windows_of_windowed']} windows")
        if "negatives" in src:
            n = src["negatives"]
            details.append(
                f"negatives train {n['train']['kept']}/{n['train']['available']}, "
                f"dev {n['dev']['kept']}/{n['dev']['available']}"
            )
        if src.get("type_pairs"):
            details.append(f"{len(src['type_pairs'])} type pairs from train")
        for split, counts in src.get("counts", {}).items():
            for key, value in counts.items():
                if value:
                    details.append(f"{split} {key.replace('_', ' ')} {value}")
        if details:
            notes.append(f"  {name}: " + "; ".join(details))
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


# ------------------------------------------------------------------- documents
def _doc_id(doc: Doc, index: int) -> str:
    value = doc.user_data.get(DOC_ID_KEY)
    return str(value) if value is not None else f"#{index}"


def heldout_split(docs: Sequence[Doc], dev_fraction: float) -> tuple[list[Doc], list[Doc]]:
    """(train, dev) for a corpus without a dev file: the ``round(fraction * n)``
    documents with the smallest SHA-256 of their doc id are dev. Independent of seed and
    document order; corpus order is kept inside each part."""
    n_dev = round(dev_fraction * len(docs))
    if n_dev == 0:
        return list(docs), []
    keys = [
        (hashlib.sha256(_doc_id(d, i).encode("utf8")).hexdigest(), i) for i, d in enumerate(docs)
    ]
    dev_index = {i for _, i in sorted(keys)[:n_dev]}
    train = [d for i, d in enumerate(docs) if i not in dev_index]
    dev = [d for i, d in enumerate(docs) if i in dev_index]
    return train, dev


def _subset(items: Sequence[Any], limit: int | None, rng: random.Random) -> list[Any]:
    """At most `limit` items, a seeded sample in the original order."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]


class _DocStore:
    """DocBins loaded once per path (several sources may read the same file)."""

    def __init__(self) -> None:
        self.vocab = Vocab()
        self._docs: dict[Path, list[Doc]] = {}

    def load(self, path: Path) -> list[Doc]:
        key = path.resolve()
        if key not in self._docs:
            self._docs[key] = list(DocBin().from_disk(path).get_docs(self.vocab))
        return self._docs[key]


# ------------------------------------------------------------------------ units
@dataclass
class _Unit:
    """One example before rendering: `make(rng)` renders it (instruction drawn from rng)."""

    id: str
    label: str | None
    make: Callable[[random.Random | None], TaskExample]
    negative: bool = False


class _FixedPick:
    """Stands in for a Random in `pick_instruction`: always template `index`."""

    def __init__(self, index: int):
        self.index = index

    def randrange(self, n: int) -> int:
        return min(self.index, n - 1)


def _rng(seed: int, *parts: Any) -> random.Random:
    return random.Random("/".join([str(seed), *map(str, parts)]))


def _ordered_labels(seen: Iterable[str], schema: Sequence[str]) -> tuple[str, ...]:
    seen = set(seen)
    return tuple([label for label in schema if label in seen] + sorted(seen - set(schema)))


def _type_pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


class _Builder:
    def __init__(self, settings: BuildSettings, counter: LengthCounter, progress: bool | None):
        self.settings = settings
        self.counter = counter
        self.progress = progress
        self._overhead: dict[tuple[str, tuple[str, ...]], int] = {}

    # -- helpers ---------------------------------------------------------------
    def bar(self, items: Sequence[Any], desc: str, unit: str) -> Iterable[Any]:
        """`items` with a tqdm bar on stderr (None: only when stderr is a terminal)."""
        if self.progress is False:
            return items
        from tqdm import tqdm

        return tqdm(
            items,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            leave=False,
            disable=None if self.progress is None else False,
        )

    def _docs(self, docs: list[Doc], desc: str) -> Iterable[tuple[int, Doc]]:
        return enumerate(self.bar(docs, desc, "doc"))

    def _longest_template(self, key: str, templates: Sequence[str], make) -> int:
        """Index of the template giving the longest prompt (cached per task and labels)."""
        if (key, tuple(templates)) not in self._overhead:
            lengths = [self.counter.prompt(make(_FixedPick(i))) for i in range(len(templates))]
            self._overhead[(key, tuple(templates))] = max(
                range(len(lengths)), key=lambda i: lengths[i]
            )
        return self._overhead[(key, tuple(templates))]

    def fit_windows(
        self, doc: Doc, worst: Callable[[tuple[int, int]], int], stats: Counter
    ) -> list[tuple[int, int]]:
        """The whole document if its worst-case example fits `max_length`, else the
        windows of `split_windows` at a budget shrunk until every window fits."""
        limit = self.settings.max_length
        full = (0, len(doc.text))
        if not doc.text.strip():
            return []
        full_len = worst(full)
        if full_len <= limit:
            return [full]
        budget = limit - (full_len - self.counter.text(doc.text))
        windows = [full]
        while budget >= MIN_WINDOW_TOKENS:
            windows = split_windows(doc, self.counter.text, budget)
            if all(worst(w) <= limit for w in windows):
                break
            budget = int(budget * WINDOW_SHRINK)
        if len(windows) > 1:
            stats["docs_windowed"] += 1
            stats["windows_of_windowed"] += len(windows)
        return windows

    # -- NER ---------------------------------------------------------------------
    def ner_units(self, src: SourceConfig, docs: list[Doc], labels, split, stats) -> list[_Unit]:
        index = self._longest_template(
            "ner/" + ",".join(labels),
            ner.INSTRUCTIONS,
            lambda r: ner.build_example(Doc(Vocab()), labels, rng=r),
        )
        units = []
        for i, doc in self._docs(docs, f"{src.name} {split}"):
            doc_id = _doc_id(doc, i)

            def worst(window, doc=doc):
                ex = ner.build_example(doc, labels, window, with_target=True, rng=_FixedPick(index))
                return self.counter.prompt(ex) + self.counter.answer(ex.output)

            windows = self.fit_windows(doc, worst, stats)
            for k, window in enumerate(windows):
                uid = f"{src.name}/{doc_id}" + (f"/w{k + 1}" if len(windows) > 1 else "")
                units.append(
                    _Unit(
                        uid,
                        None,
                        lambda rng, doc=doc, window=window: ner.build_example(
                            doc, labels, window, with_target=True, rng=rng
                        ),
                    )
                )
            stats["windows"] += len(windows)
        return units

    # -- relations -------------------------------------------------------------------
    def _answer(self, doc, head, tail, label, window, rationale: bool) -> str:
        if not rationale:
            return label
        return re_task.render_rationale(
            doc,
            head,
            tail,
            label,
            window,
            max_sentences=self.settings.rationale_max_sentences,
            quote_negatives=self.settings.rationale_negatives == "quote",
        )

    def re_units(
        self,
        src: SourceConfig,
        docs: list[Doc],
        labels: tuple[str, ...],
        allowed: set[frozenset[str]],
        split: str,
        stats: Counter,
        rationale: bool,
    ) -> list[_Unit]:
        choices = re_task.answer_choices(labels)
        longest_choice = max(choices, key=len)
        nobody = re_task.Concept("", "", "", (0, 0))
        index = self._longest_template(
            "re/" + ",".join(labels),
            re_task.INSTRUCTIONS,
            lambda r: re_task.build_example(Doc(Vocab()), nobody, nobody, labels, rng=r),
        )
        units = []
        for i, doc in self._docs(docs, f"{src.name} {split}"):
            doc_id = _doc_id(doc, i)

            def worst(window, doc=doc):
                pairs = re_task.candidate_pairs(re_task.collect_concepts(doc, window), allowed)
                if not pairs:
                    return 0
                head, tail = max(pairs, key=lambda p: len(p[0].name) + len(p[1].name))
                ex = re_task.build_example(doc, head, tail, labels, window, rng=_FixedPick(index))
                answer = self.counter.answer(longest_choice)
                if rationale:
                    sentences = sorted(
                        (
                            self.counter.text(doc.text[a:b])
                            for a, b in _sentence_ranges(doc)
                            if a < window[1] and window[0] < b
                        ),
                        reverse=True,
                    )
                    answer += sum(sentences[: self.settings.rationale_max_sentences]) + 8
                return self.counter.prompt(ex) + answer

            windows = self.fit_windows(doc, worst, stats)
            stats["windows"] += len(windows)
            for k, window in enumerate(windows):
                concepts = re_task.collect_concepts(doc, window)
                for head, tail in re_task.candidate_pairs(concepts, allowed):
                    label = re_task.gold_label(doc, head, tail)
                    if src.label_map is not None:
                        label = src.label_map.get(label, label)
                    if label != re_task.NO_RELATION and label not in labels:
                        stats["pairs_with_label_outside_labels_dropped"] += 1
                        continue
                    uid = f"{src.name}/{doc_id}/{head.concept_id}/{tail.concept_id}" + (
                        f"/w{k + 1}" if len(windows) > 1 else ""
                    )
                    units.append(
                        _Unit(
                            uid,
                            label,
                            self._re_maker(doc, head, tail, labels, window, label, rationale),
                            negative=label == re_task.NO_RELATION,
                        )
                    )
            # positives this split's docs hold, whether or not a candidate pair covers them
            stats["gold_relations"] += sum(
                1 for r in doc._.relations if r.label not in NEGATIVE_RELATION_LABELS
            )
        return units

    def _re_maker(self, doc, head, tail, labels, window, label, rationale, family="re"):
        answer = self._answer(doc, head, tail, label, window, rationale)

        def make(rng):
            ex = re_task.build_example(doc, head, tail, labels, window, target=answer, rng=rng)
            return ex if family == ex.task else replace(ex, task=family)

        return make

    # -- pair classification -----------------------------------------------------------
    def pair_units(
        self, src: SourceConfig, docs: list[Doc], labels, split, stats, rationale: bool
    ) -> list[_Unit]:
        units = []
        for i, doc in self._docs(docs, f"{src.name} {split}"):
            doc_id = _doc_id(doc, i)
            by_offsets = {(s.start, s.end): s for s in all_mentions(doc)}
            rels = doc._.relations
            if not rels:
                stats["docs_without_pair"] += 1
            for n, rel in enumerate(rels):
                head_span, tail_span = by_offsets.get(rel.head), by_offsets.get(rel.tail)
                if head_span is None or tail_span is None:
                    stats["pairs_without_mentions_dropped"] += 1
                    continue
                head = re_task.Concept(rel.head_id, head_span.label_, head_span.text, rel.head)
                tail = re_task.Concept(rel.tail_id, tail_span.label_, tail_span.text, rel.tail)
                label = _verbalise(src, rel.label, doc_id)
                if label != re_task.NO_RELATION and label not in labels:
                    stats["pairs_with_label_outside_labels_dropped"] += 1
                    continue
                window = None
                if src.context == "sentence":
                    window = _pair_sentences(doc, head_span, tail_span)
                uid = f"{src.name}/{doc_id}" + (f"/p{n + 1}" if len(rels) > 1 else "")
                units.append(
                    _Unit(
                        uid,
                        label,
                        self._re_maker(doc, head, tail, labels, window, label, rationale, "pair"),
                        negative=label == re_task.NO_RELATION,
                    )
                )
        return units

    # -- QA ----------------------------------------------------------------------------
    def qa_units(self, src: SourceConfig, docs: list[Doc], split, stats) -> list[_Unit]:
        units = []
        for i, doc in self._docs(docs, f"{src.name} {split}"):
            answer = doc.user_data.get(qa.ANSWER_KEY)
            question = doc.user_data.get(qa.QUESTION_KEY)
            if answer not in qa.CHOICES or not isinstance(question, str) or not question.strip():
                stats["docs_without_question_or_answer"] += 1
                continue
            units.append(
                _Unit(
                    f"{src.name}/{_doc_id(doc, i)}",
                    answer,
                    lambda rng, doc=doc: qa.build_example(doc, with_target=True, rng=rng),
                )
            )
        return units


def _verbalise(src: SourceConfig, label: str, doc_id: str) -> str:
    """A pair corpus label as the answer word: through `label_map` (which must cover
    every label it meets), corpus negatives to "None"."""
    if src.label_map is not None:
        if label not in src.label_map:
            raise ValueError(
                f"[instructions.sources.{src.name}] label_map: corpus label {label!r} "
                f"(document {doc_id}) has no entry; mapped: {sorted(src.label_map)}"
            )
        label = src.label_map[label]
        return re_task.NO_RELATION if label.lower() == re_task.NO_RELATION.lower() else label
    return re_task.NO_RELATION if label in NEGATIVE_RELATION_LABELS else label


def _pair_sentences(doc: Doc, head: Any, tail: Any) -> tuple[int, int]:
    """Character range from the first to the last sentence touching either mention."""
    spans = [(head.start_char, head.end_char), (tail.start_char, tail.end_char)]
    touching = [(a, b) for a, b in _sentence_ranges(doc) if any(s < b and a < e for s, e in spans)]
    if not touching:
        return (0, len(doc.text))
    start, end = min(a for a, _ in touching), max(b for _, b in touching)
    while end > start and doc.text[end - 1].isspace():
        end -= 1
    while start < end and doc.text[start].isspace():
        start += 1
    return (start, end)


# ------------------------------------------------------------------------ build
def _check_paths(sources: Sequence[SourceConfig]) -> None:
    for src in sources:
        for split, path in (("train", src.train), ("dev", src.dev)):
            if path is not None and not path.is_file():
                raise FileNotFoundError(
                    f"[instructions.sources.{src.name}] {split}: DocBin {os.fspath(path)!r} "
                    f"not found (write it with `python -m spacy_bioreama convert FORMAT INPUT "
                    f"{os.fspath(path)}`)"
                )


def _entity_labels(docs: Iterable[Doc]) -> tuple[str, ...]:
    return _ordered_labels(
        (s.label_ for doc in docs for s in all_mentions(doc)), BIORED_ENTITY_LABELS
    )


def _train_type_pairs(docs: Iterable[Doc]) -> tuple[Counter, int]:
    """Entity type pairs of the positive relations (unordered, "A|B"), counted over the
    concept pairs `gold_label` labels positive; and how many positive relations no
    concept pair covers."""
    pairs: Counter = Counter()
    uncovered = 0
    for doc in docs:
        positives = [r for r in doc._.relations if r.label not in NEGATIVE_RELATION_LABELS]
        if not positives:
            continue
        concepts = re_task.collect_concepts(doc)
        covered = set()
        for head, tail in re_task.candidate_pairs(concepts, set()):
            if re_task.gold_label(doc, head, tail) != re_task.NO_RELATION:
                pairs[_type_pair_key(head.label, tail.label)] += 1
                covered.add(frozenset((head.concept_id, tail.concept_id)))
        uncovered += sum(1 for r in positives if frozenset((r.head_id, r.tail_id)) not in covered)
    return pairs, uncovered


def _weighted(units: list[_Unit], weight: float, rng: random.Random) -> list[tuple[_Unit, int]]:
    """(unit, copy) pairs: `int(weight)` copies of every unit plus a seeded sample of
    ``round(frac * n)`` units for the fractional part (copy numbers count from 0)."""
    whole = int(weight)
    extra = round((weight - whole) * len(units))
    copies = [(u, c) for u in units for c in range(whole)]
    if extra:
        copies += [(units[i], whole) for i in sorted(rng.sample(range(len(units)), extra))]
    return copies


def build_instructions(
    config: Any,
    output_dir: str | os.PathLike,
    *,
    tokenizer: Any = None,
    progress: bool | None = None,
) -> BuildReport:
    """Build the instruction dataset described by `config` (a confection `Config`, a
    dict of the same shape, or a path to a ``.cfg``) into `output_dir`.

    `tokenizer` measures lengths: None uses the config's ``tokenizer`` setting (whitespace
    words when that is null too); else a model name/directory, an `HFBackend` (any object
    with `count_prompt_tokens` and `count_tokens`), a Hugging Face tokenizer or a
    `LengthCounter`. `progress`: tqdm bars on stderr (None: only when stderr is a
    terminal). Returns a `BuildReport` (``str(report)`` is the summary table)."""
    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    settings, sources = parse_config(config)
    _check_paths(sources)
    counter = make_length_counter(tokenizer if tokenizer is not None else settings.tokenizer)
    builder = _Builder(settings, counter, progress)
    store = _DocStore()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    records: dict[str, list[dict[str, Any]]] = {"train": [], "dev": []}
    source_stats: dict[str, Any] = {}
    type_pairs_out: dict[str, list[str]] = {}
    heldout_files: dict[str, Path] = {}
    for src in sources:
        info, split_records, heldout = _build_source(src, settings, builder, store)
        source_stats[src.name] = info
        for split in records:
            records[split].extend(split_records[split])
        if info.get("type_pairs") is not None:
            type_pairs_out[src.name] = list(info["type_pairs"])
        if heldout:
            path = output_dir / "heldout" / f"{src.name}.dev.spacy"
            path.parent.mkdir(parents=True, exist_ok=True)
            DocBin(docs=heldout, store_user_data=True).to_disk(path)
            heldout_files[src.name] = path
            info["heldout_docbin"] = path.relative_to(output_dir).as_posix()

    if settings.shuffle:
        _rng(settings.seed, "shuffle").shuffle(records["train"])
    ids = Counter(r["id"] for split in records.values() for r in split)
    duplicated = sorted(i for i, n in ids.items() if n > 1)
    if duplicated:  # a corpus with repeated doc ids: disambiguate, deterministically
        seen: Counter = Counter()
        for split in ("train", "dev"):
            for r in records[split]:
                if ids[r["id"]] > 1:
                    seen[r["id"]] += 1
                    r["id"] = f"{r['id']}~{split}{seen[r['id']]}"

    files = {}
    for split in ("train", "dev"):
        path = output_dir / f"{split}.jsonl"
        with path.open("w", encoding="utf8", newline="\n") as f:
            for r in records[split]:
                record = {k: v for k, v in r.items() if not k.startswith("_")}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        files[split] = path
    stats = {
        "settings": {
            "seed": settings.seed,
            "max_length": settings.max_length,
            "too_long": settings.too_long,
            "negative_ratio": settings.negative_ratio,
            "rationale": settings.rationale,
            "rationale_max_sentences": settings.rationale_max_sentences,
            "rationale_negatives": settings.rationale_negatives,
            "paraphrases": settings.paraphrases,
            "shuffle": settings.shuffle,
        },
        "length_unit": counter.unit,
        "splits": {split: _split_stats(records[split]) for split in ("train", "dev")},
        "sources": source_stats,
        "type_pairs": type_pairs_out,
        "duplicate_ids_renamed": len(duplicated),
    }
    for split in ("train", "dev"):
        stats["splits"][split]["too_long"] = sum(
            s["too_long"][split] for s in source_stats.values()
        )
    stats_path = output_dir / "stats.json"
    stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    files["stats"] = stats_path
    files.update({f"heldout:{k}": v for k, v in heldout_files.items()})
    return BuildReport(output_dir, files, stats)


def _split_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_task = Counter(r["task"] for r in records)
    by_corpus = Counter(r["corpus"] for r in records)
    by_label: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        if "label" in r:
            by_label[r["task"]][r["label"]] += 1
        elif r["task"] == ner.TASK_NAME:
            for label, _form in r["_mentions"]:
                by_label["ner (entity forms)"][label] += 1
    return {
        "examples": len(records),
        "by_task": dict(sorted(by_task.items())),
        "by_corpus": dict(sorted(by_corpus.items())),
        "by_label": {
            task: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
            for task, c in sorted(by_label.items())
        },
        "lengths": {
            kind: _percentiles([r[f"_{kind}_len"] for r in records])
            for kind in ("prompt", "answer", "total")
        },
    }


def _build_source(
    src: SourceConfig, settings: BuildSettings, builder: _Builder, store: _DocStore
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[Doc]]:
    where = f"[instructions.sources.{src.name}]"
    seed = settings.seed
    all_train = store.load(src.train)
    heldout: list[Doc] = []
    if src.dev is not None:
        train, dev = list(all_train), store.load(src.dev)
        dev_split = "file"
    elif src.dev_fraction > 0:
        train, dev = heldout_split(all_train, src.dev_fraction)
        heldout = dev
        dev_split = f"{src.dev_fraction:g} of train (held out by doc id hash)"
    else:
        train, dev, dev_split = list(all_train), [], None
    # only real ids: documents without one get positional names that may coincide
    dev_ids = {str(d.user_data[DOC_ID_KEY]) for d in dev if d.user_data.get(DOC_ID_KEY)}
    before = len(train)
    if dev_ids:
        train = [d for d in train if str(d.user_data.get(DOC_ID_KEY)) not in dev_ids]
    dropped_in_dev = before - len(train)
    train = _subset(train, src.max_docs, _rng(seed, src.name, "train", "docs"))
    dev = _subset(dev, src.max_dev_docs, _rng(seed, src.name, "dev", "docs"))
    if not train:
        raise ValueError(f"{where} train: no documents in {os.fspath(src.train)!r}")

    info: dict[str, Any] = {
        "task": src.task,
        "corpus": src.corpus,
        "train_path": os.fspath(src.train),
        "dev_path": os.fspath(src.dev) if src.dev is not None else None,
        "dev_split": dev_split,
        "docs": {"train": len(train), "dev": len(dev)},
        "train_docs_in_dev_dropped": dropped_in_dev,
        "weight": src.weight,
    }
    if heldout:
        info["dev_doc_ids"] = [_doc_id(d, i) for i, d in enumerate(heldout)]
    rationale = settings.rationale if src.rationale is None else src.rationale
    counts: dict[str, Counter] = {"train": Counter(), "dev": Counter()}
    units: dict[str, list[_Unit]] = {}

    if src.task == "ner":
        labels = src.labels or _entity_labels(train)
        if not labels:
            raise ValueError(f"{where} labels: the train split has no entity mentions")
        info["labels"] = list(labels)
        for split, docs in (("train", train), ("dev", dev)):
            units[split] = builder.ner_units(src, docs, labels, split, counts[split])
    elif src.task == "re":
        found, uncovered = _train_type_pairs(train)
        if src.type_pairs is not None:
            type_pairs = list(src.type_pairs)
        else:
            type_pairs = [k for k, _ in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))]
            if not type_pairs:
                raise ValueError(
                    f"{where}: the train split has no positive relation between two "
                    "annotated concepts, so no type pairs can be derived; set type_pairs"
                )
        allowed = re_task.parse_type_pairs(type_pairs)
        seen_labels = {
            (src.label_map or {}).get(r.label, r.label)
            for d in train
            for r in d._.relations
            if r.label not in NEGATIVE_RELATION_LABELS
        } - {re_task.NO_RELATION}
        labels = src.labels or _ordered_labels(seen_labels, BIORED_RELATION_LABELS)
        info.update(
            labels=list(labels),
            label_map=src.label_map,
            type_pairs=type_pairs,
            type_pair_counts=dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))),
            train_positive_relations_without_concept_pair=uncovered,
        )
        for split, docs in (("train", train), ("dev", dev)):
            units[split] = builder.re_units(
                src, docs, labels, allowed, split, counts[split], rationale
            )
    elif src.task == "pair":
        if src.labels is not None:
            labels = src.labels
        elif src.label_map is not None:
            words = [w for w in src.label_map.values() if w.lower() != "none"]
            labels = tuple(dict.fromkeys(words))
        else:
            labels = tuple(
                sorted(
                    {r.label for d in train for r in d._.relations} - set(NEGATIVE_RELATION_LABELS)
                )
            )
        info.update(labels=list(labels), label_map=src.label_map, context=src.context)
        for split, docs in (("train", train), ("dev", dev)):
            units[split] = builder.pair_units(src, docs, labels, split, counts[split], rationale)
    else:
        info["choices"] = list(qa.CHOICES)
        for split, docs in (("train", train), ("dev", dev)):
            units[split] = builder.qa_units(src, docs, split, counts[split])

    # negatives (re: global ratio by default; pair: all unless the source sets a ratio)
    if src.task in ("re", "pair"):
        if src.negative_ratio_set:
            ratio = src.negative_ratio
        else:
            ratio = settings.negative_ratio if src.task == "re" else None
        info["negative_ratio"] = ratio
        info["negatives"] = {}
        for split in ("train", "dev"):
            pos = [u for u in units[split] if not u.negative]
            neg = [u for u in units[split] if u.negative]
            keep = set(
                re_task.sample_negatives(neg, len(pos), ratio, _rng(seed, src.name, split, "neg"))
            )
            kept_ids = {id(neg[i]) for i in keep}
            units[split] = [u for u in units[split] if not u.negative or id(u) in kept_ids]
            info["negatives"][split] = {
                "positives": len(pos),
                "available": len(neg),
                "kept": len(keep),
            }

    units["train"] = _subset(units["train"], src.max_examples, _rng(seed, src.name, "train", "ex"))
    units["dev"] = _subset(units["dev"], src.max_dev_examples, _rng(seed, src.name, "dev", "ex"))
    copies = {
        "train": _weighted(units["train"], src.weight, _rng(seed, src.name, "weight")),
        "dev": [(u, 0) for u in units["dev"]],
    }
    out: dict[str, list[dict[str, Any]]] = {"train": [], "dev": []}
    too_long = {"train": 0, "dev": 0}
    for split in ("train", "dev"):
        for unit, copy in builder.bar(copies[split], f"{src.name} {split} render", "ex"):
            uid = unit.id if copy == 0 else f"{unit.id}#{copy + 1}"
            rng = _rng(seed, uid, "instruction") if settings.paraphrases else None
            example = unit.make(rng)
            prompt_len = builder.counter.prompt(example)
            answer_len = builder.counter.answer(example.output or "")
            if prompt_len + answer_len > settings.max_length:
                too_long[split] += 1
                if settings.too_long == "drop":
                    continue
            record: dict[str, Any] = {"id": uid, "task": example.task, "corpus": src.corpus}
            record.update(example.to_record())
            if unit.label is not None:
                record["label"] = unit.label
            record["_prompt_len"] = prompt_len
            record["_answer_len"] = answer_len
            record["_total_len"] = prompt_len + answer_len
            if example.task == ner.TASK_NAME:
                record["_mentions"] = ner.parse_answer(example.output or "", labels).mentions
            out[split].append(record)
    info["examples"] = {split: len(out[split]) for split in out}
    info["too_long"] = too_long
    if src.task in ("ner", "re"):
        info["windows"] = {
            key: sum(counts[split].pop(key, 0) for split in counts)
            for key in ("windows", "docs_windowed", "windows_of_windowed")
        }
    info["counts"] = {split: dict(sorted(c.items())) for split, c in counts.items()}
    return info, out, heldout


__all__ = [
    "BackendLengthCounter",
    "BuildReport",
    "BuildSettings",
    "LengthCounter",
    "SourceConfig",
    "TokenizerLengthCounter",
    "build_instructions",
    "format_stats",
    "heldout_split",
    "load_config",
    "make_length_counter",
    "parse_config",
]
