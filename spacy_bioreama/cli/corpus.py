"""Commands on corpora: `convert` (corpus file → DocBin), `annotate` (run the component
over documents), `annotate-corpus` (a whole collection, resumable, locally or on Ray)
and `demo` (annotate BioRED dev abstracts and show the result)."""

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
    pipeline_spec,
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
    except (CorpusFormatError, OSError, ValueError) as err:  # OSError: a folder, no access
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
        if score:
            raise fail(f"{input_path}: a .txt file has no annotations to --score against")
        gold = _text_lines(nlp, input_path, limit)
    else:
        gold = read_gold(input_path, nlp.vocab, limit, what="input")
    predicted, summary = run_pipeline(nlp, component, gold, batch_size, score)
    DocBin(docs=predicted, store_user_data=True).to_disk(output_path)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {output_path}", err=True)


def _text_lines(nlp, path: Path, limit: int) -> list:
    """One Doc per line of the UTF-8 file `path` (split on "\\n" only, as every reader;
    doc id ``<stem>-<line>``, as annotate-corpus gives); unreadable: a clear error."""
    from ..annotations.doc_ids import DOC_ID_KEY
    from ..corpora import CorpusFormatError
    from ..corpora.base import read_text, split_lines

    try:
        lines = split_lines(read_text(path))
    except (CorpusFormatError, OSError) as err:
        raise fail(err) from err
    docs = []
    for lineno, text in enumerate(lines[:limit] if limit else lines, 1):
        doc = nlp.make_doc(text)
        doc.user_data[DOC_ID_KEY] = f"{path.stem}-{lineno}"
        docs.append(doc)
    return docs


@app.command("annotate-corpus")
def annotate_corpus_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Files, folders or glob patterns: PubTator, BioC XML (.xml), BioC JSON "
            "(.json), JSON Lines (.jsonl) or plain text (one document per line).",
        ),
    ],
    output: Annotated[Path, typer.Option(help="Output folder (created; reruns resume it).")],
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Also write pubtator, bioc-xml, bioc-json or docbin (repeat or comma-separate); "
            "JSON Lines is always written.",
        ),
    ] = None,
    engine: Annotated[str, typer.Option(help="local (in-process) or ray (Ray Data)")] = "local",
    num_workers: Annotated[int, typer.Option(min=1, help="Ray workers (actors).")] = 1,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (e.g. auto); default: start a local Ray."),
    ] = None,
    cpus_per_worker: Annotated[
        int | None,
        typer.Option(
            min=1, help="CPUs and torch threads per Ray worker (default: cores / workers)."
        ),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Documents per unit of work.")] = 16,
    input_format: Annotated[
        str | None, typer.Option(help="Format of every input (default: detected per file).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Discard what OUTPUT holds and start over.")] = False,
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="A saved or packaged pipeline (replaces --model/--adapter/--tasks)."),
    ] = None,
    tasks: TasksOption = "entities,relations",
    batch_size: BatchSizeOption = 8,
    device: DeviceOption = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Annotate a whole collection: one JSON Lines file (and any --format) per input shard,
    a manifest.json, and errors.jsonl for documents that could not be read or annotated.

    Rerunning the same command skips the finished shards; a different pipeline or a
    changed input is refused (use --force to start over)."""
    from ..corpus_annotation import CorpusRunError, EngineSettings, ManifestMismatch
    from ..corpus_annotation import annotate_corpus as run

    if engine == "local" and (num_workers != 1 or address or cpus_per_worker):
        raise fail("--num-workers, --address and --cpus-per-worker need --engine ray")
    formats = [f.strip() for value in (fmt or []) for f in value.split(",") if f.strip()]
    spec = pipeline_spec(
        pipeline,
        model,
        adapter,
        tasks,
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
    )
    settings = EngineSettings(engine, num_workers, address, cpus_per_worker, chunk_size)
    try:
        summary = run(
            inputs,
            output,
            spec,
            formats=formats,
            engine=settings,
            input_format=input_format,
            force=force,
        )
    except (CorpusRunError, ManifestMismatch, ImportError, ValueError) as err:
        raise fail(err) from err
    typer.echo(json.dumps(summary.to_dict(), indent=2))
    typer.echo(f"wrote {output}", err=True)
    if summary.failed_shards:
        names = ", ".join(f["shard"] for f in summary.failed_shards)
        raise fail(
            f"{len(summary.failed_shards)} shard(s) could not be read or annotated ({names}); "
            "see failed_shards above, fix the cause and rerun to finish them"
        )


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
