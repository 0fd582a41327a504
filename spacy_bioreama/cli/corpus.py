"""Commands on corpora: `convert` (corpus file → DocBin), `annotate` (run the component
over documents) and `demo` (annotate BioRED dev abstracts and show the result)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Annotated

import typer

from ._util import (
    DATA_DIR_ENV,
    AdapterOption,
    BatchSizeOption,
    DeviceOption,
    MaxPromptTokensOption,
    ModelOption,
    NoneThresholdOption,
    TasksOption,
    app,
    build_pipeline,
    default_data_dir,
    fail,
    read_gold,
    run_pipeline,
)


@app.command()
def convert(
    fmt: Annotated[
        str,
        typer.Argument(
            metavar="FORMAT",
            help="pubtator, ncbi-disease, bioc-xml, bioc-json, ddi, gad, euadr, chemprot, "
            "pubmedqa, brat (a folder of .txt/.ann), jsonl",
        ),
    ],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Corpus file or folder.")],
    output_path: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write.")
    ],
) -> None:
    """Convert a corpus to a spaCy DocBin and print what was read (and what was not)."""
    from ..corpora import CorpusFormatError
    from ..corpora import convert as convert_corpus

    try:
        report = convert_corpus(fmt, input_path, output_path)
    except (CorpusFormatError, FileNotFoundError, ValueError) as err:
        raise fail(err) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output_path}")


@app.command()
def annotate(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="DocBin (.spacy) or .txt")],
    output_path: Annotated[Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write")],
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            help="A saved pipeline; its settings replace --model/--adapter/--tasks/--device."
        ),
    ] = None,
    tasks: TasksOption = "entities,relations",
    batch_size: BatchSizeOption = 8,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    device: DeviceOption = "auto",
    score: Annotated[
        bool, typer.Option(help="Score against the annotations in INPUT (a DocBin).")
    ] = False,
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Run `bio_relation_llm` over documents; print throughput, statistics and scores.

    A .txt INPUT holds one document per line. With `--tasks relations` the entities
    already in INPUT are kept and only relations are predicted."""
    from spacy.tokens import DocBin

    nlp, component = build_pipeline(
        pipeline,
        model,
        adapter,
        tasks,
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
    )
    if input_path.suffix == ".txt":
        texts = input_path.read_text(encoding="utf8").splitlines()
        gold = [nlp.make_doc(t) for t in (texts[:limit] if limit else texts)]
    else:
        gold = read_gold(input_path, nlp.vocab, limit, what="input")
    predicted, summary = run_pipeline(nlp, component, gold, batch_size, score)
    DocBin(docs=predicted, store_user_data=True).to_disk(output_path)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {output_path}", err=True)


@app.command()
def demo(
    limit: Annotated[int, typer.Option(min=1, help="Number of BioRED dev abstracts.")] = 10,
    batch_size: BatchSizeOption = 8,
    data_dir: Annotated[
        Path | None,
        typer.Option(help=f"Corpora folder (default ${DATA_DIR_ENV} or ../shared/data)"),
    ] = None,
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    device: DeviceOption = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
) -> None:
    """The main job: annotate BioRED dev abstracts with the embedded model (or yours),
    show the first document's entities and relations, then throughput and scores."""
    from ..annotations.doc_ids import doc_id
    from ..corpora import read

    source = (data_dir or default_data_dir()) / "biored" / "Dev.PubTator"
    if not source.exists():
        raise fail(f"{source} not found; set ${DATA_DIR_ENV} or --data-dir to the corpora folder")
    nlp, component = build_pipeline(
        None,
        model,
        adapter,
        "entities,relations",
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
    )
    gold = list(islice(read("pubtator", source, make_doc=nlp.make_doc), limit))
    if not gold:
        raise fail(f"no documents in {source}")
    predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=True)
    first = predicted[0]
    typer.echo(f"document {doc_id(gold[0], '0')}: {first.text[:200]}...")
    typer.echo("entities:")
    for ent in first.ents:
        typer.echo(f"  {ent.label_:<28} {ent.text!r}")
    typer.echo("relations:")
    for rel in first._.relations:
        typer.echo(
            f"  {rel.head_span(first).text!r} --{rel.label}--> {rel.tail_span(first).text!r}"
            f"  (confidence {rel.score:.2f})"
        )
    scores = summary["scores"]
    typer.echo(
        f"BioRED dev, {len(gold)} documents, model={model}, adapter={adapter}: "
        f"NER F1 {scores['ents_f']:.3f}, RE F1 (pair + type, end to end) "
        f"{scores['rel_micro_f']:.3f}"
    )
    typer.echo(json.dumps(summary, indent=2))
