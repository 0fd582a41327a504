"""Command-line interface: `python -m spacy_bioreama COMMAND` (or `spacy-bioreama`).

As in spaCy: `_util.py` holds the typer `app` and what the commands share; each command
module imports `app` from there and registers its commands on import, so this package
only has to import them (no module imports back from here)."""

# The import order is the order of `--help`: the flow (convert ... package), then the
# measuring commands.
# isort: off
from . import corpus, train, evaluate, package  # noqa: F401  (each registers its commands)
from . import export  # noqa: F401  (corpus writers: export)
from . import benchmark, results, scoring  # noqa: F401
from . import visualize  # noqa: F401  (the relation view)

# isort: on
from ._util import app, main

__all__ = ["app", "main"]
