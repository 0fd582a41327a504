"""What the commands share, in spaCy's pattern: the typer `app` every command module
registers on, shared options, building and running a pipeline, and the error and
output helpers. The commands live in one module per group (`corpus`, `train`,
`evaluate`, `package`, `benchmark`, `results`, `scoring`); `cli/__init__.py` imports
them, and each imports `app` from here, so nothing imports back."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="spacy-bioreama",
    help="Instruction-tuned causal LLMs for biomedical information extraction in spaCy.",
    no_args_is_help=True,
    add_completion=False,
)

DATA_DIR_ENV = "BIOREAMA_DATA_DIR"
# context settings of commands that take extra `--section.key value` config overrides
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}

ModelOption = Annotated[str, typer.Option(help="Base model name or path.")]
AdapterOption = Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda")]
BatchSizeOption = Annotated[int, typer.Option(min=1)]
TasksOption = Annotated[str, typer.Option(help="entities,relations or relations")]
MaxPromptTokensOption = Annotated[
    int | None,
    typer.Option(
        min=192,
        help="Longest prompt in tokens; documents are cut into windows that fit. Match the "
        "instruction set's max_length for a tuned adapter (default: the component's 1024).",
    ),
]
NoneThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="A pair is related when P(None) is below this (default: the adapter's "
        "calibrated threshold from `calibrate`, else 0.5); 1.0 relates every candidate pair.",
    ),
]


def default_data_dir() -> Path:
    """Where the corpora live: $BIOREAMA_DATA_DIR, else ../shared/data next to the repo."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    repo = Path(__file__).resolve().parents[2]  # spacy_bioreama/cli/_util.py -> the checkout
    return repo.parent / "shared" / "data"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (0 where the platform cannot tell)."""
    from ..util.resources import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def fail(message: Any) -> typer.Exit:
    """Print `error: message` in red on stderr; the Exit(1) to raise (`raise fail(...)`),
    so every command reports a bad input the same way, without a traceback."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def read_gold(path: Path, vocab, limit: int = 0, what: str = "gold") -> list:
    """The first `limit` documents (0 = all) of the DocBin at `path`
    (`evaluation.docbins.load_gold`); a missing, unreadable or empty file is a clear
    error (`fail`) naming it."""
    from ..evaluation.docbins import ScoringInputError, load_gold

    try:
        return load_gold(path, vocab, limit, what)
    except ScoringInputError as err:
        raise fail(err) from err


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` (making its folder) and say so on stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf8")
    typer.echo(f"wrote {path}", err=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`write_text` of `data` as indented JSON (the metrics files)."""
    write_text(path, json.dumps(data, indent=2))


def build_pipeline(pipeline, model, adapter, tasks, batch_size, device, **settings):
    """A pipeline holding `bio_relation_llm`: loaded from `pipeline`, or a blank English
    one around `model` + `adapter` (`pipeline.loading.PipelineSpec`), its adapter records
    read; the model loads in `load_model`, once the cheap inputs are checked. `settings`
    (None = keep) override component settings such as `max_prompt_tokens` and
    `none_threshold`, checked as the factory checks them. A value out of range or a
    missing or damaged adapter is a clear error, not a traceback on the first batch."""
    try:
        nlp, component = pipeline_spec(
            pipeline, model, adapter, tasks, batch_size, device, **settings
        ).build()
        return nlp, component.prepare(load_model=False)
    except (ValueError, OSError) as err:
        raise fail(err) from err


def load_model(component) -> None:
    """Load the component's model now: an unknown model, an adapter that does not fit
    it, a bad device or a missing extra is a clear error before any document runs."""
    try:
        component.prepare(load_model=True)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err


def pipeline_spec(pipeline, model, adapter, tasks, batch_size, device, **settings):
    """The `PipelineSpec` of the shared pipeline options."""
    from ..pipeline.loading import PipelineSpec

    return PipelineSpec(
        path=None if pipeline is None else str(pipeline),
        model=model,
        adapter=None if adapter is None else str(adapter),
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        batch_size=batch_size,
        device=device,
        settings=settings,
    )


def other_entity_components(nlp, component) -> list[str]:
    """Names of the pipeline's components, besides `component`, that write doc.ents
    (a spaCy ner before `bio_relation_llm` in a hybrid pipeline)."""
    return [
        name
        for name, pipe in nlp.pipeline
        if pipe is not component and "doc.ents" in nlp.get_pipe_meta(name).assigns
    ]


def run_pipeline(nlp, component, gold, batch_size: int, score: bool):
    """Annotate fresh copies of `gold`; return predictions and a summary with docs/s,
    peak RSS, the component's parse statistics and (optionally) scores."""
    from spacy.training import Example
    from tqdm import tqdm

    from ..annotations.spans import copy_for_prediction
    from ..evaluation.scorers import score_bio
    from ..tasks.names import TASK_ENTITIES

    # gold entities are the input only when nothing in the pipeline predicts entities
    keep_ents = TASK_ENTITIES not in component.tasks and not other_entity_components(nlp, component)
    inputs = [copy_for_prediction(nlp.make_doc, doc, keep_ents) for doc in gold]
    load_model(component)  # before timing
    start = time.perf_counter()
    predicted = list(
        tqdm(
            nlp.pipe(inputs, batch_size=batch_size),
            total=len(inputs),
            desc="annotate",
            unit="doc",
            file=sys.stderr,
        )
    )
    seconds = time.perf_counter() - start
    summary = {
        "docs": len(predicted),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(predicted) / seconds, 3) if seconds else None,
        "batch_size": batch_size,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stats": dict(component.stats),
    }
    if score:
        from ..evaluation.bootstrap import ENTITY_KEYS, RELATION_KEYS, intervals

        examples = [Example(p, g) for p, g in zip(predicted, gold, strict=True)]
        summary["scores"] = score_bio(examples)
        keys = RELATION_KEYS if keep_ents else ENTITY_KEYS + RELATION_KEYS
        summary["scores"]["intervals"] = intervals(examples, keys)
    return predicted, summary


def main() -> None:
    """The console script (`spacy-bioreama`) and `python -m spacy_bioreama`."""
    app()
