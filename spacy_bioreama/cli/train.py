"""Commands that make an adapter: `build-instructions` (DocBins → instruction JSONL) and
`train` (LoRA fine-tuning). Both take extra `--section.key value` config overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._util import OVERRIDES, app, fail


@app.command("build-instructions", context_settings=OVERRIDES)
def build_instructions_command(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Instruction config (.cfg).")],
    output: Annotated[Path, typer.Option(help="Folder for train/dev JSONL and stats.")] = Path(
        "training/instructions"
    ),
    model: Annotated[
        str | None, typer.Option(help="Measure lengths with this model's tokenizer.")
    ] = None,
) -> None:
    """Build the instruction dataset from DocBin corpora (extra `--section.key value`
    options override the config, as in spaCy)."""
    from ..instructions import build_instructions, load_config
    from ..util.settings import parse_overrides

    try:
        cfg = load_config(config, parse_overrides(ctx.args))
        report = build_instructions(cfg, output, tokenizer=model)
    except (FileNotFoundError, ValueError) as err:
        raise fail(err) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output}", err=True)


@app.command(context_settings=OVERRIDES)
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Training config (.cfg).")],
    output: Annotated[Path, typer.Option(help="Run folder (checkpoints, log, adapter/).")],
    force: Annotated[
        bool, typer.Option(help="Start afresh even if OUTPUT holds another run.")
    ] = False,
) -> None:
    """LoRA fine-tuning. Extra `--section.key value` options override the config
    (e.g. `--training.max_steps 3`); running the same command again resumes."""
    from ..training import OutputDirConflict
    from ..training import train as run_training
    from ..util.settings import parse_overrides

    try:
        result = run_training(config, output, parse_overrides(ctx.args), force=force)
    except (FileNotFoundError, ValueError, OutputDirConflict) as err:
        raise fail(err) from err
    typer.echo(str(result))
