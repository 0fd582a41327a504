"""The instruction-build config: the ``[instructions]`` settings and one
``[instructions.sources.NAME]`` section per source, validated into `BuildSettings` and
`SourceConfig`.

Each section is declared once, as a pydantic model below (types, defaults and ranges in
one place: ``extra="forbid"``, strict types, as `util.settings` declares settings), and
validated from that declaration. Which task reads which per-source key comes from the
task table (`tasks.registry`). A bad key or value raises ValueError naming the section
and the field: ``[instructions.sources.gad] weight: must be a number >= 0, got -1``,
``[instructions.sources.x]: unknown field(s) ['wieght']; ... Did you mean 'weight'?``.

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
    calibration_fraction = 0.0  # train documents held back (by doc id hash) for `calibrate`
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
``0``/``False``/``false``, is a negative; ner: corpus entity type → answer type, e.g.
BC5CDR ``{"Chemical": "ChemicalEntity", "Disease": "DiseaseOrPhenotypicFeature"}``, so
that another corpus's mentions train BioRED's answers), ``negative_ratio``
(re/pair: overrides the global one; pair sources keep all their pairs by default),
``type_pairs`` (re: ``["A|B", ...]``; default: the type pairs of the train split's
positive relations), ``rationale`` (re/pair: overrides the global switch), ``context``
(pair: ``"document"`` (default) or ``"sentence"``, the sentence(s) holding the pair, for
multi-sentence documents such as DDI), ``relation_prompt`` (re: ``"named"`` (default),
``"marked"``, ``"sentence"`` or ``"typed"``; see `tasks/relation.py`), ``ner_prompt``
(ner: ``"all_types"`` (default), one prompt for every type, or ``"per_type"``, one
prompt per type sharing the text prefix; see `tasks/ner.py`).
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from ..tasks import ner
from ..tasks.names import NER, TASK_FAMILIES
from ..tasks.ner import DEFAULT_NER_PROMPT, NER_PROMPTS
from ..tasks.pair import PAIR_CONTEXTS
from ..tasks.registry import tasks_reading
from ..tasks.relation import DEFAULT_RELATION_PROMPT, RELATION_PROMPTS, parse_type_pairs
from ..util.settings import SETTINGS_MODEL_CONFIG, did_you_mean

TOO_LONG_ACTIONS = ("drop", "keep")
RATIONALE_NEGATIVES = ("quote", "none")
# the task-specific source keys, in the order the config checks them
_TASK_KEYS = {
    key: tasks_reading(key)
    for key in (
        "label_map",
        "negative_ratio",
        "type_pairs",
        "rationale",
        "context",
        "relation_prompt",
        "ner_prompt",
        "labels",
    )
}
# SourceConfig fields that are not config keys
_DERIVED = ("name",)


def _integral(value: Any) -> Any:
    """An integral float (``2.0``) as the int a count field takes."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]
Number = Annotated[float, Field(allow_inf_nan=False)]


def _strings(value: Any) -> tuple[str, ...] | None:
    """A list of distinct non-empty strings, as a tuple."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of non-empty strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"lists a value twice: {list(value)}")
    return tuple(value)


def _path(value: Any) -> Any:
    if isinstance(value, str) and value:
        return Path(value)
    return value


class BuildSettings(BaseModel):
    """The ``[instructions]`` section (without its sources)."""

    model_config = SETTINGS_MODEL_CONFIG

    seed: Integer = 0
    max_length: Integer = Field(1024, ge=16)
    too_long: Literal[TOO_LONG_ACTIONS] = "drop"
    negative_ratio: Number | None = Field(1.0, ge=0)
    rationale: bool = False
    rationale_max_sentences: Integer = Field(2, ge=1)
    rationale_negatives: Literal[RATIONALE_NEGATIVES] = "quote"
    paraphrases: bool = True
    shuffle: bool = True
    tokenizer: str | None = None


class SourceConfig(BaseModel):
    """One ``[instructions.sources.NAME]`` section (`name` is NAME; `corpus` defaults
    to it)."""

    model_config = SETTINGS_MODEL_CONFIG

    name: str
    task: Literal[TASK_FAMILIES]
    train: Annotated[Path, BeforeValidator(_path)] = Field(
        description="the path of a train DocBin (.spacy)"
    )
    dev: Annotated[Path, BeforeValidator(_path)] | None = None
    dev_fraction: Number = Field(0.0, ge=0, lt=1)
    calibration_fraction: Number = Field(0.0, ge=0, lt=1)
    label_map: dict[str, str] | None = None
    corpus: str = Field(min_length=1)
    type_pairs: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    weight: Number = Field(1.0, ge=0)
    max_docs: Integer | None = Field(None, ge=0)
    max_dev_docs: Integer | None = Field(None, ge=0)
    max_examples: Integer | None = Field(None, ge=0)
    max_dev_examples: Integer | None = Field(None, ge=0)
    negative_ratio: Number | None = Field(None, ge=0)
    rationale: bool | None = None
    context: Literal[PAIR_CONTEXTS] = "document"
    relation_prompt: Literal[RELATION_PROMPTS] = DEFAULT_RELATION_PROMPT
    ner_prompt: Literal[NER_PROMPTS] = DEFAULT_NER_PROMPT

    @property
    def negative_ratio_set(self) -> bool:
        """Whether the section sets ``negative_ratio`` (null included: keep all)."""
        return "negative_ratio" in self.model_fields_set

    @field_validator("dev_fraction", "calibration_fraction", mode="before")
    @classmethod
    def _no_fraction(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> tuple[str, ...] | None:
        return _strings(value)

    @field_validator("type_pairs", mode="before")
    @classmethod
    def _type_pairs(cls, value: Any) -> tuple[str, ...] | None:
        pairs = _strings(value)
        if pairs is not None:
            parse_type_pairs(pairs)
        return pairs

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map(cls, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if isinstance(value, list | tuple) and all(
            isinstance(p, list | tuple) and len(p) == 2 for p in value
        ):
            value = {str(k): v for k, v in value}  # [["CPR:3", "Activation"], ...]
        if not isinstance(value, Mapping) or not all(
            isinstance(v, str) and v.strip() for v in value.values()
        ):
            raise ValueError(
                "must map corpus labels to answer words, as a table "
                '({"1": "Association"}) or a list of pairs ([["CPR:3", "Activation"]])'
            )
        return {str(k): v.strip() for k, v in value.items()}

    @model_validator(mode="after")
    def _one_dev(self) -> SourceConfig:
        if self.dev is not None and self.dev_fraction > 0:
            raise ValueError("give either dev or dev_fraction, not both")
        return self

    @model_validator(mode="after")
    def _readable_types(self) -> SourceConfig:
        """NER targets name types on answer lines: each must read back (`ner._LINE`)."""
        if self.task == NER:
            ner.check_type_names(self.labels or (), "labels")
            ner.check_type_names(list((self.label_map or {}).values()), "label_map")
        return self


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None):
    """Read a ``.cfg`` file (with spaCy-style dotted `overrides`), interpolated."""
    from confection import Config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruction config {os.fspath(path)!r} not found")
    return Config().from_disk(path, overrides=dict(overrides or {}), interpolate=True)


def parse_config(config: Any) -> tuple[BuildSettings, list[SourceConfig]]:
    """Validate a config (confection `Config` or dict) into settings and sources (sorted
    by name). Raises ValueError naming the section and field that is wrong."""
    data = _plain(config)
    section = data.get("instructions")
    if not isinstance(section, Mapping):
        raise ValueError("instruction config: missing the [instructions] section")
    values = {k: v for k, v in section.items() if k != "sources"}
    _check_keys(
        "[instructions]",
        values,
        list(BuildSettings.model_fields),
        "setting(s)",
        " and the [instructions.sources.*] sections",
    )
    settings = _validate("[instructions]", BuildSettings, values)
    sources_section = section.get("sources")
    if not isinstance(sources_section, Mapping) or not sources_section:
        raise ValueError("instruction config: no [instructions.sources.NAME] section")
    sources = [_parse_source(name, sources_section[name]) for name in sorted(sources_section)]
    return settings, sources


def _parse_source(name: str, raw: Any) -> SourceConfig:
    where = f"[instructions.sources.{name}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be a section, got {raw!r}")
    keys = [k for k in SourceConfig.model_fields if k not in _DERIVED]
    _check_keys(where, raw, keys, "field(s)")
    source = _validate(where, SourceConfig, {"name": name, "corpus": name, **raw})
    for key, tasks in _TASK_KEYS.items():
        if raw.get(key) is not None and source.task not in tasks:
            raise ValueError(
                f"{where} {key}: only used by task(s) {sorted(tasks)}, not {source.task!r}"
            )
    return source


def _plain(config: Any) -> dict[str, Any]:
    """A plain, interpolated dict of a confection Config (or a dict)."""
    from confection import Config

    if isinstance(config, Config) and not config.is_interpolated:
        config = config.interpolate()
    if not isinstance(config, Mapping):
        raise ValueError(f"instruction config must be a mapping, got {type(config).__name__}")
    return json.loads(json.dumps(config, default=str))


def _check_keys(
    where: str, values: Mapping[str, Any], known: list[str], noun: str, more: str = ""
) -> None:
    """Refuse keys the model does not declare (with a "Did you mean" hint)."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"{where}: unknown {noun} {unknown}; known: {sorted(known)}{more}."
            + did_you_mean(unknown[0], known, n=2)
        )


def _validate(where: str, model_cls: type[Any], values: Mapping[str, Any]) -> Any:
    """`model_cls` from `values`; its first validation error as a ValueError that names
    the section and field."""
    try:
        return model_cls.model_validate(dict(values))
    except ValidationError as err:
        raise ValueError(_describe(where, model_cls, err.errors()[0])) from None


def _describe(where: str, model_cls: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One pydantic error as ``[section] field: must be ..., got ...``."""
    loc = error.get("loc") or ()
    kind = error.get("type", "")
    message = str(error.get("ctx", {}).get("error", error.get("msg", "")))
    if not loc:
        return f"{where}: {message}"
    key = str(loc[0])
    field = model_cls.model_fields[key]
    if kind == "value_error":
        return f"{where} {key}: {message}"
    if kind == "missing":
        if field.description:
            return f"{where} {key}: {field.description} is required"
        return f"{where} {key}: must be {_expected(field)} (required)"
    return f"{where} {key}: must be {_expected(field)}, got {error.get('input')!r}"


_KIND_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    Path: "a path",
    dict: "a table",
    tuple: "a list",
}
_BOUNDS = (
    (annotated_types.Ge, ">=", "ge"),
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Le, "<=", "le"),
    (annotated_types.Lt, "<", "lt"),
)


def _expected(field: FieldInfo) -> str:
    """What a field takes, in words: ``an integer >= 16``, ``one of drop, keep``,
    ``a number >= 0 or null``."""
    annotation = field.annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    kinds, nullable = [], False
    for arg in members or (annotation,):
        if get_origin(arg) is Annotated:
            arg = get_args(arg)[0]
        if arg is type(None):
            nullable = True
        elif get_origin(arg) is Literal:
            kinds.append("one of " + ", ".join(map(str, get_args(arg))))
        elif arg is str and any(isinstance(m, annotated_types.MinLen) for m in field.metadata):
            kinds.append("a non-empty string")
        else:
            kinds.append(_KIND_WORDS.get(arg, getattr(arg, "__name__", str(arg))))
    bounds = [
        f"{op} {getattr(item, attr):g}"
        for item in field.metadata
        for cls, op, attr in _BOUNDS
        if isinstance(item, cls)
    ]
    text = " or ".join(kinds) + (" " + " and ".join(bounds) if bounds else "")
    return text + (" or null" if nullable else "")


__all__ = ["BuildSettings", "SourceConfig", "load_config", "parse_config"]
