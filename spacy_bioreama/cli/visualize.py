"""Command `visualize`: the relation view of a DocBin as an HTML page, written to a file
and optionally served (displaCy's conventions: wsgiref's simple server, the URL
printed, Ctrl-C stops). The page itself is built by `display/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._util import app, fail, read_gold, write_text


def serve_html(html: str, port: int, host: str = "0.0.0.0") -> None:
    """Serve `html` on `host:port` until Ctrl-C, as `spacy.displacy.serve` does."""
    from wsgiref import simple_server

    body = html.encode("utf8")

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-type", "text/html; charset=utf-8")])
        return [body]

    try:
        httpd = simple_server.make_server(host, port, wsgi_app)
    except OSError as err:
        raise fail(f"cannot serve on port {port}: {err}") from err
    typer.echo("\nUsing the 'relation' visualizer")
    typer.echo(f"Serving on http://{host}:{port} ...\n")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        typer.echo(f"Shutting down server on port {port}.")
    finally:
        httpd.server_close()


@app.command()
def visualize(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="DocBin (.spacy) with entities and relations.")
    ],
    output: Annotated[Path, typer.Option(help="HTML page to write.")] = Path("relations.html"),
    gold: Annotated[
        Path | None, typer.Option(help="Gold DocBin: show gold vs predicted side by side.")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    serve: Annotated[bool, typer.Option(help="Also serve the page over HTTP.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for --serve.")] = 5000,
) -> None:
    """Write the relation view of INPUT (entities by type, relations as labelled arcs, a
    relation table) as one self-contained HTML page; with --gold, matches, misses and
    false positives are marked."""
    import spacy

    from ..display import render

    nlp = spacy.blank("en")
    docs = read_gold(input_path, nlp.vocab, limit, what="input")
    gold_docs = read_gold(gold, nlp.vocab, what="gold") if gold is not None else None
    try:
        html = render(docs, gold=gold_docs)
    except ValueError as err:  # gold and predictions that do not align
        raise fail(f"{input_path} vs {gold}: {err}") from err
    write_text(output, html)
    if serve:
        serve_html(html, port)
