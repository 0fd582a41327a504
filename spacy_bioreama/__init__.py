"""spacy-bioreama: instruction-tuned causal LLMs (LoRA) for biomedical IE in spaCy."""

__version__ = "0.1.0"

from .annotations.relations import Relation, register_extensions  # noqa: E402
from .evaluation import scorers as _scorers  # noqa: E402, F401  (registers the spaCy scorers)

__all__ = ["Relation", "register_extensions", "__version__"]


def __getattr__(name: str):
    """`spacy_bioreama.render` (the relation view), imported on first access only."""
    if name == "render":
        from .display import render

        return render
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
