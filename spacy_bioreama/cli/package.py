"""Commands `package` (an installable spaCy pipeline package holding the adapter) and
`info` (versions, the embedded model and the data directory in use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._util import (
    AdapterOption,
    MaxPromptTokensOption,
    NoneThresholdOption,
    app,
    default_data_dir,
    fail,
)


@app.command()
def package(
    output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT_DIR", help="Where to build.")],
    adapter: AdapterOption = None,
    model: Annotated[str, typer.Option(help="Base model name or path (referenced).")] = "default",
    name: Annotated[str, typer.Option(help="Package name (without the en_ prefix).")] = (
        "bioreama"
    ),
    version: Annotated[str, typer.Option()] = "0.1.0",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Build an installable spaCy pipeline package (sdist) holding `bio_relation_llm`
    with the adapter copied in; the base model is referenced, not copied."""
    import importlib

    import spacy

    from .. import __version__

    nlp = spacy.blank("en")
    settings = {"max_prompt_tokens": max_prompt_tokens, "none_threshold": none_threshold}
    try:
        component = nlp.add_pipe(
            "bio_relation_llm",
            config={
                "model": model,
                "adapter": adapter,
                **{k: v for k, v in settings.items() if v is not None},
            },
        )
        component.prepare(load_model=False)  # its folder and records
        if adapter is not None:  # a package must hold a loadable adapter, nothing else
            from ..models.hf_loading import check_adapter_dir

            check_adapter_dir(Path(adapter))
    except (ValueError, OSError) as err:
        raise fail(err) from err
    nlp.meta.update(
        name=name,
        version=version,
        requirements=[f"spacy-bioreama>={__version__}"],
        description="bio_relation_llm: biomedical entities and relations from a LoRA-tuned LM",
    )
    pipeline_dir = output_dir / "pipeline"
    output_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(pipeline_dir)
    spacy_package = importlib.import_module("spacy.cli.package").package
    spacy_package(pipeline_dir, output_dir, name=name, version=version, force=True, silent=False)


@app.command()
def info() -> None:
    """Versions, the embedded model's location and the data directory in use."""
    import spacy
    import torch
    import transformers

    from .. import __version__

    typer.echo(f"spacy-bioreama {__version__}")
    typer.echo(
        f"spacy {spacy.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} (cuda: {torch.cuda.is_available()})"
    )
    typer.echo(f"data directory: {default_data_dir()}")
    from ..models import EmbeddedModelNotInstalled, cache_dir, find_gguf

    try:
        typer.echo(f"embedded model: {find_gguf()}")
    except EmbeddedModelNotInstalled as err:
        typer.echo(f"embedded model: not installed ({err})")
    typer.echo(f"model cache: {cache_dir()}")
