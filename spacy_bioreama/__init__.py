"""spacy-bioreama: instruction-tuned causal LLMs (LoRA) for biomedical IE in spaCy."""

from .annotations.relations import Relation, register_extensions

__version__ = "0.1.0"
__all__ = ["Relation", "register_extensions", "__version__"]
