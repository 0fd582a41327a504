"""Command-line interface: `python -m spacy_bioreama COMMAND` (or `spacy-bioreama`)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="spacy-bioreama",
    help="Instruction-tuned causal LLMs for biomedical information extraction in spaCy.",
    no_args_is_help=True,
    add_completion=False,
)

DATA_DIR_ENV = "BIOREAMA_DATA_DIR"


def default_data_dir() -> Path:
    """Where the corpora live: $BIOREAMA_DATA_DIR, else ../shared/data next to the repo."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@app.command()
def convert(
    fmt: Annotated[
        str,
        typer.Argument(
            metavar="FORMAT",
            help="pubtator, ncbi-disease, bioc-xml, bioc-json, ddi, gad, euadr, chemprot, pubmedqa",
        ),
    ],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Corpus file or folder.")],
    output_path: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write.")
    ],
) -> None:
    """Convert a corpus to a spaCy DocBin and print what was read (and what was not)."""
    from .corpora import CorpusFormatError
    from .corpora import convert as convert_corpus

    try:
        report = convert_corpus(fmt, input_path, output_path)
    except (CorpusFormatError, FileNotFoundError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output_path}")


@app.command()
def annotate(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="DocBin (.spacy) or .txt")],
    output_path: Annotated[Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write")],
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    pipeline: Annotated[
        Path | None, typer.Option(help="A saved pipeline (overrides --model/--adapter).")
    ] = None,
    tasks: Annotated[str, typer.Option(help="entities,relations or relations")] = (
        "entities,relations"
    ),
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    score: Annotated[
        bool, typer.Option(help="Score against the annotations in INPUT (a DocBin).")
    ] = False,
) -> None:
    """Run `bio_relation_llm` over documents; print throughput, statistics and scores.

    A .txt INPUT holds one document per line. With `--tasks relations` the entities
    already in INPUT are kept and only relations are predicted."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example
    from tqdm import tqdm

    from .scoring import score_bio

    if pipeline is not None:
        nlp = spacy.load(pipeline)
        component = next(c for _, c in nlp.pipeline if c.__class__.__name__ == "BioRelationLLM")
    else:
        nlp = spacy.blank("en")
        component = nlp.add_pipe(
            "bio_relation_llm",
            config={
                "model": model,
                "adapter": adapter,
                "tasks": [t.strip() for t in tasks.split(",") if t.strip()],
                "batch_size": batch_size,
                "device": device,
            },
        )
    if input_path.suffix == ".txt":
        texts = [line.rstrip("\n") for line in input_path.read_text(encoding="utf8").splitlines()]
        gold = [nlp.make_doc(t) for t in texts]
    else:
        gold = list(DocBin().from_disk(input_path).get_docs(nlp.vocab))
    if limit:
        gold = gold[:limit]
    keep_ents = "entities" not in component.tasks
    inputs = [_copy_for_prediction(nlp, doc, keep_ents) for doc in gold]
    _ = component.backend  # load the model before timing
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
    DocBin(docs=predicted, store_user_data=True).to_disk(output_path)
    stats = dict(component.stats)
    summary = {
        "docs": len(predicted),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(predicted) / seconds, 3) if seconds else None,
        "batch_size": batch_size,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stats": stats,
    }
    if score:
        summary["scores"] = score_bio([Example(p, g) for p, g in zip(predicted, gold, strict=True)])
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {output_path}", err=True)


def _copy_for_prediction(nlp, doc, keep_ents: bool):
    """A fresh Doc with the same text (and the gold entities when only relations are
    predicted), so predictions never see gold relations."""
    from .annotation import all_mentions, make_aligned_doc, set_entities

    mentions = all_mentions(doc) if keep_ents else []
    boundaries = [o for s in mentions for o in (s.start_char, s.end_char)]
    new = make_aligned_doc(nlp.make_doc, doc.text, boundaries)
    if mentions:
        set_entities(
            new,
            [
                new.char_span(s.start_char, s.end_char, label=s.label_, kb_id=s.kb_id_)
                for s in mentions
            ],
        )
    return new


@app.command()
def info() -> None:
    """Versions, the embedded model's location and the data directory in use."""
    import spacy
    import torch
    import transformers

    from . import __version__

    typer.echo(f"spacy-bioreama {__version__}")
    typer.echo(
        f"spacy {spacy.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} (cuda: {torch.cuda.is_available()})"
    )
    typer.echo(f"data directory: {default_data_dir()}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
