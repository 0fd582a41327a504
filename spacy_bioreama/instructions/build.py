"""Instruction-dataset builder: DocBin corpora → JSONL instruction examples + statistics.

`build_instructions(config, output_dir)` reads the DocBins written by
``python -m spacy_bioreama convert``, renders every example with the SAME task modules
the `bio_relation_llm` component parses at inference (`tasks/ner.py`,
`tasks/relation.py`, `tasks/pair.py`, `tasks/qa.py`), and writes

- ``train.jsonl`` and ``dev.jsonl``: one record per line,
  ``{"id", "task", "corpus", "instruction", "input", "output", "choices"?, "label"?}``
  (`TaskExample.to_record()` plus id, corpus and, for classification tasks, the answer
  label); loadable with ``datasets.load_dataset("json", data_files=...)``;
- ``stats.json``: examples per task, corpus and label, token-length percentiles, the
  too-long count, per-source details (documents, held-out split, negatives, windows)
  and the relation type pairs inference should use (``type_pairs``);
- ``heldout/<source>.dev.spacy``: the documents held out by ``dev_fraction`` (sources
  without a dev file), so that evaluation scores exactly the held-out documents;
- ``heldout/<source>.calibration.spacy``: training documents held back by
  ``calibration_fraction`` (no example is built from them), on which `calibrate` picks
  the adapter's relation threshold, so that dev is never used to tune it.

It returns a `BuildReport`; ``str(report)`` is a readable table (the CLI prints it).

The config (``[instructions]`` and its ``[instructions.sources.NAME]`` sections) is
described in `instructions/config.py`. The builder loads each source's documents and
asks the source's task for its units (`tasks.registry.UNIT_TASKS`: `tasks/units.py`
describes the interface); it never branches on a task name.

Task families
-------------
- ``ner``: one example per document, all configured types (`ner.build_example` with
  ``with_target=True``). A document whose longest prompt + answer exceeds `max_length`
  is cut into windows with `split_windows` (sentence boundaries), shrinking the budget
  until every window fits; one example per window (with ``ner_prompt = "per_type"``,
  one per window and type).
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
import os
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..annotations import relations as _relations  # noqa: F401  (registers the Doc extensions)
from ..annotations.doc_ids import DOC_ID_KEY, doc_id
from ..corpora.base import CorpusFormatError, read_docbin
from ..tasks.registry import unit_task
from ..tasks.relation import sample_negatives
from ..tasks.units import SourcePlan, Unit, UnitContext, UnitTask
from ..util.settings import did_you_mean
from .config import BuildSettings, SourceConfig, load_config, parse_config
from .lengths import LengthCounter, make_length_counter
from .stats import BuildReport, split_stats

SPLITS = ("train", "dev")

Records = dict[str, list[dict[str, Any]]]


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
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    records: Records = {split: [] for split in SPLITS}
    source_stats: dict[str, Any] = {}
    heldout_files: dict[str, Path] = {}
    store = _DocStore()
    for src in sources:
        info, split_records, heldout = _build_source(src, builder, store)
        source_stats[src.name] = info
        for split in SPLITS:
            records[split].extend(split_records[split])
        for part, docs in heldout.items():
            path = output_dir / "heldout" / f"{src.name}.{part}.spacy"
            path.parent.mkdir(parents=True, exist_ok=True)
            DocBin(docs=docs, store_user_data=True).to_disk(path)
            key = src.name if part == "dev" else f"{src.name}.{part}"
            heldout_files[key] = path
            info["heldout_docbin" if part == "dev" else f"{part}_docbin"] = path.relative_to(
                output_dir
            ).as_posix()

    if settings.shuffle:
        _rng(settings.seed, "shuffle").shuffle(records["train"])
    renamed = _rename_duplicate_ids(records)
    files = _write_records(records, output_dir)
    stats = _build_stats(settings, counter, records, source_stats, renamed)
    stats_path = output_dir / "stats.json"
    stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    files["stats"] = stats_path
    files.update({f"heldout:{k}": v for k, v in heldout_files.items()})
    return BuildReport(output_dir, files, stats)


def _rename_duplicate_ids(records: Records) -> int:
    """Disambiguate ids that occur more than once (a corpus with repeated doc ids),
    deterministically (``id~train1`` ...); returns how many ids were repeated."""
    ids = Counter(r["id"] for split in records.values() for r in split)
    duplicated = sorted(i for i, n in ids.items() if n > 1)
    if duplicated:
        seen: Counter = Counter()
        for split in SPLITS:
            for r in records[split]:
                if ids[r["id"]] > 1:
                    seen[r["id"]] += 1
                    r["id"] = f"{r['id']}~{split}{seen[r['id']]}"
    return len(duplicated)


def _write_records(records: Records, output_dir: Path) -> dict[str, Path]:
    """``train.jsonl`` and ``dev.jsonl``, without the builder's private fields."""
    files = {}
    for split in SPLITS:
        path = output_dir / f"{split}.jsonl"
        with path.open("w", encoding="utf8", newline="\n") as f:
            for r in records[split]:
                record = {k: v for k, v in r.items() if not k.startswith("_")}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        files[split] = path
    return files


def _build_stats(
    settings: BuildSettings,
    counter: LengthCounter,
    records: Records,
    source_stats: dict[str, Any],
    renamed: int,
) -> dict[str, Any]:
    """The content of ``stats.json``."""
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
        "splits": {split: split_stats(records[split]) for split in SPLITS},
        "sources": source_stats,
        "type_pairs": {
            name: list(info["type_pairs"])
            for name, info in source_stats.items()
            if info.get("type_pairs") is not None
        },
        "duplicate_ids_renamed": renamed,
    }
    for split in SPLITS:
        stats["splits"][split]["too_long"] = sum(
            s["too_long"][split] for s in source_stats.values()
        )
    return stats


# ------------------------------------------------------------------- documents
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


def _doc_id(doc: Doc, index: int) -> str:
    """The doc id, or ``#index`` (its position) for a document without one."""
    return doc_id(doc, default=f"#{index}")


def _subset(items: Sequence[Any], limit: int | None, rng: random.Random) -> list[Any]:
    """At most `limit` items, a seeded sample in the original order."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _rng(seed: int, *parts: Any) -> random.Random:
    """The random source for one purpose: seeded with the seed and the purpose."""
    return random.Random("/".join([str(seed), *map(str, parts)]))


def _where(src: SourceConfig) -> str:
    return f"[instructions.sources.{src.name}]"


class _DocStore:
    """DocBins loaded once per path (several sources may read the same file)."""

    def __init__(self) -> None:
        self.vocab = Vocab()
        self._docs: dict[Path, list[Doc]] = {}

    def load(self, path: Path, where: str) -> list[Doc]:
        """The documents of `path`; not a DocBin: a ValueError naming `where` and it."""
        key = path.resolve()
        if key not in self._docs:
            try:
                self._docs[key] = read_docbin(path, self.vocab)
            except CorpusFormatError as err:
                raise ValueError(f"{where}: {err}") from err
        return self._docs[key]


def _check_paths(sources: Sequence[SourceConfig]) -> None:
    for src in sources:
        for split, path in (("train", src.train), ("dev", src.dev)):
            if path is not None and not path.is_file():
                raise FileNotFoundError(
                    f"{_where(src)} {split}: DocBin {os.fspath(path)!r} "
                    f"not found (write it with `python -m spacy_bioreama convert FORMAT INPUT "
                    f"{os.fspath(path)}`)"
                )


def _load_splits(
    src: SourceConfig, store: _DocStore, seed: int
) -> tuple[list[Doc], list[Doc], dict[str, list[Doc]], dict[str, Any]]:
    """The source's (train, dev, held-out) documents, after dropping train documents
    that are also in dev and applying the document caps; and the ``stats.json`` entries
    that describe them. Held-out parts by name: ``dev`` (by ``dev_fraction``) and
    ``calibration`` (by ``calibration_fraction``: training documents no example is built
    from, on which `calibrate` chooses the adapter's ``none_threshold``)."""
    all_train = store.load(src.train, f"{_where(src)} train")
    heldout: dict[str, list[Doc]] = {}
    if src.dev is not None:
        train, dev = list(all_train), store.load(src.dev, f"{_where(src)} dev")
        dev_split = "file"
    elif src.dev_fraction > 0:
        train, dev = heldout_split(all_train, src.dev_fraction)
        heldout["dev"] = dev
        dev_split = f"{src.dev_fraction:g} of train (held out by doc id hash)"
    else:
        train, dev, dev_split = list(all_train), [], None
    # only real ids: documents without one get positional names that may coincide
    dev_ids = {doc_id(d) for d in dev if d.user_data.get(DOC_ID_KEY)}
    before = len(train)
    if dev_ids:
        train = [d for d in train if str(doc_id(d)) not in dev_ids]
    dropped_in_dev = before - len(train)
    # after the dev documents are gone: a calibration document is never a dev document
    if src.calibration_fraction > 0:
        n_train = len(train)
        train, calibration = heldout_split(train, src.calibration_fraction)
        if calibration:
            heldout["calibration"] = calibration
        elif n_train:
            raise ValueError(
                f"{_where(src)} calibration_fraction: {src.calibration_fraction:g} of "
                f"{n_train} train documents holds none out; raise it or set it to 0"
            )
    train = _subset(train, src.max_docs, _rng(seed, src.name, "train", "docs"))
    dev = _subset(dev, src.max_dev_docs, _rng(seed, src.name, "dev", "docs"))
    if not train:
        held = {part: len(docs) for part, docs in heldout.items()}
        raise ValueError(
            f"{_where(src)} train: no documents left of the {len(all_train)} in "
            f"{os.fspath(src.train)!r} (also in dev: {dropped_in_dev}, held out: {held}, "
            f"max_docs: {src.max_docs})"
        )
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
    for part, docs in heldout.items():
        info[f"{part}_doc_ids"] = [_doc_id(d, i) for i, d in enumerate(docs)]
    if "calibration" in heldout:
        info["docs"]["calibration"] = len(heldout["calibration"])
    return train, dev, heldout, info


def _check_label_map_keys(src: SourceConfig, task: UnitTask, store: _DocStore) -> None:
    """A ValueError for ``label_map`` keys that name no label of the source's train and
    dev files (`UnitTask.label_keys`): a typo would leave those annotations unrenamed
    (an NER mention stays in the text, taught as no entity). The whole files are read,
    not the documents kept, so a rare type that ``max_docs`` leaves out is no error."""
    if not src.label_map or task.label_keys is None:
        return
    docs = list(store.load(src.train, f"{_where(src)} train"))
    if src.dev is not None:
        docs += store.load(src.dev, f"{_where(src)} dev")
    seen = {key for doc in docs for key in task.label_keys(doc)}
    unmatched = sorted(set(src.label_map) - seen)
    if unmatched:
        raise ValueError(
            f"{_where(src)} label_map: {unmatched} name no label of its train/dev files "
            f"(they have {sorted(seen)}).{did_you_mean(unmatched[0], seen)}"
        )


# ------------------------------------------------------------------------ units
def _weighted(units: list[Unit], weight: float, rng: random.Random) -> list[tuple[Unit, int]]:
    """(unit, copy) pairs: `int(weight)` copies of every unit plus a seeded sample of
    ``round(frac * n)`` units for the fractional part (copy numbers count from 0)."""
    whole = int(weight)
    extra = round((weight - whole) * len(units))
    copies = [(u, c) for u in units for c in range(whole)]
    if extra:
        copies += [(units[i], whole) for i in sorted(rng.sample(range(len(units)), extra))]
    return copies


def _negative_ratio(src: SourceConfig, task: UnitTask, settings: BuildSettings) -> float | None:
    """The source's ``negative_ratio``, else the task's default (the global ratio, or
    None: keep every negative)."""
    if src.negative_ratio_set:
        return src.negative_ratio
    return settings.negative_ratio if task.negatives == "global" else None


def _sample_negatives(
    units: dict[str, list[Unit]], ratio: float | None, src: SourceConfig, seed: int
) -> dict[str, dict[str, int]]:
    """Keep a seeded sample of each split's "None" units (in place); returns the counts
    ``stats.json`` records per split."""
    counts = {}
    for split in SPLITS:
        pos = [u for u in units[split] if not u.negative]
        neg = [u for u in units[split] if u.negative]
        keep = set(sample_negatives(neg, len(pos), ratio, _rng(seed, src.name, split, "neg")))
        kept_ids = {id(neg[i]) for i in keep}
        units[split] = [u for u in units[split] if not u.negative or id(u) in kept_ids]
        counts[split] = {"positives": len(pos), "available": len(neg), "kept": len(keep)}
    return counts


class _Builder:
    """What every source's build shares: the settings, the length counter, the
    progress bars and the task-template lengths measured so far."""

    def __init__(self, settings: BuildSettings, counter: LengthCounter, progress: bool | None):
        self.settings = settings
        self.counter = counter
        self.progress = progress
        self.template_cache: dict[tuple[str, tuple[str, ...]], int] = {}

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

    def units(
        self,
        task: UnitTask,
        src: SourceConfig,
        plan: SourcePlan,
        split: str,
        docs: list[Doc],
        stats: Counter,
    ) -> list[Unit]:
        """The units the source's task makes of `docs` (one split)."""
        settings = self.settings
        context = UnitContext(
            where=_where(src),
            split=split,
            plan=plan,
            measure=self.counter,
            max_length=settings.max_length,
            stats=stats,
            rationale=settings.rationale if src.rationale is None else src.rationale,
            rationale_max_sentences=settings.rationale_max_sentences,
            quote_negatives=settings.rationale_negatives == "quote",
            template_cache=self.template_cache,
        )
        units: list[Unit] = []
        for i, doc in enumerate(self.bar(docs, f"{src.name} {split}", "doc")):
            units.extend(task.make_units(doc, _doc_id(doc, i), src, context))
        return units

    def render(
        self,
        task: UnitTask,
        src: SourceConfig,
        plan: SourcePlan,
        split: str,
        copies: list[tuple[Unit, int]],
    ) -> tuple[list[dict[str, Any]], int]:
        """The records of one split's (unit, copy) pairs, with a seeded paraphrase each,
        and how many were longer than ``max_length`` (dropped unless ``too_long`` keeps)."""
        settings = self.settings
        records, too_long = [], 0
        for unit, copy in self.bar(copies, f"{src.name} {split} render", "ex"):
            uid = unit.id if copy == 0 else f"{unit.id}#{copy + 1}"
            rng = _rng(settings.seed, uid, "instruction") if settings.paraphrases else None
            example = unit.make(rng)
            prompt_len = self.counter.prompt(example)
            answer_len = self.counter.answer(example.output or "")
            if prompt_len + answer_len > settings.max_length:
                too_long += 1
                if settings.too_long == "drop":
                    continue
            record: dict[str, Any] = {"id": uid, "task": example.task, "corpus": src.corpus}
            record.update(example.to_record())
            if unit.label is not None:
                record["label"] = unit.label
            record["_prompt_len"] = prompt_len
            record["_answer_len"] = answer_len
            record["_total_len"] = prompt_len + answer_len
            if task.tally is not None:
                record["_tally"] = (task.tally_name, task.tally(example.output or "", plan.labels))
            records.append(record)
        return records, too_long


def _build_source(
    src: SourceConfig, builder: _Builder, store: _DocStore
) -> tuple[dict[str, Any], Records, dict[str, list[Doc]]]:
    """One source's records per split, its ``stats.json`` entry and its held-out
    documents."""
    seed = builder.settings.seed
    train, dev, heldout, info = _load_splits(src, store, seed)
    task = unit_task(src.task)
    _check_label_map_keys(src, task, store)
    plan = task.plan(train, src, _where(src))
    info.update(plan.info)
    counts: dict[str, Counter] = {split: Counter() for split in SPLITS}
    units = {
        split: builder.units(task, src, plan, split, docs, counts[split])
        for split, docs in (("train", train), ("dev", dev))
    }
    if task.negatives is not None:
        ratio = _negative_ratio(src, task, builder.settings)
        info["negative_ratio"] = ratio
        info["negatives"] = _sample_negatives(units, ratio, src, seed)

    units["train"] = _subset(units["train"], src.max_examples, _rng(seed, src.name, "train", "ex"))
    units["dev"] = _subset(units["dev"], src.max_dev_examples, _rng(seed, src.name, "dev", "ex"))
    copies = {
        "train": _weighted(units["train"], src.weight, _rng(seed, src.name, "weight")),
        "dev": [(u, 0) for u in units["dev"]],
    }
    out: Records = {}
    too_long: dict[str, int] = {}
    for split in SPLITS:
        out[split], too_long[split] = builder.render(task, src, plan, split, copies[split])
    info["examples"] = {split: len(out[split]) for split in out}
    info["too_long"] = too_long
    if not out["train"] and src.weight > 0:  # weight 0 switches a source off on purpose
        if not units["train"]:
            seen = {k: v for k, v in counts["train"].items() if v}
            why = f"labels, label_map or the caps leave no example; seen: {seen}"
        elif not copies["train"]:
            why = f"weight {src.weight:g} keeps no copy of its {len(units['train'])} examples"
        else:
            why = f"all {too_long['train']} are longer than max_length"
        raise ValueError(f"{_where(src)}: no train examples from {len(train)} documents ({why})")
    if task.windowed:
        info["windows"] = {
            key: sum(counts[split].pop(key, 0) for split in counts)
            for key in ("windows", "docs_windowed", "windows_of_windowed")
        }
    info["counts"] = {split: dict(sorted(c.items())) for split, c in counts.items()}
    return info, out, heldout


__all__ = ["build_instructions", "heldout_split"]
