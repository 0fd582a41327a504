"""`export`: a DocBin (gold or predicted) → PubTator, BioC XML/JSON, brat or JSON Lines,
relations included; `convert` reads each format back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._util import app, fail, read_gold


@app.command("export")
def export(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="DocBin (.spacy) to export.")],
    output_path: Annotated[
        Path,
        typer.Argument(metavar="OUTPUT", help="File to write (a folder for --format brat)."),
    ],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="pubtator, bioc-xml, bioc-json, brat or jsonl"),
    ] = "jsonl",
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
) -> None:
    """Write the documents of a DocBin (entities, concept ids and relations) in a corpus
    format; print what was written. `convert FORMAT OUTPUT x.spacy` reads it back."""
    import spacy

    from ..export import FORMATS, export_docs

    if fmt not in FORMATS:
        raise fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    docs = read_gold(input_path, spacy.blank("en").vocab, limit, what="input")
    try:
        report = export_docs(docs, output_path, fmt)
    except (OSError, ValueError) as err:
        raise fail(err) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output_path}", err=True)
