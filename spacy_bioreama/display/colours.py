"""Fixed colours and short names for entity and relation labels in the relation view.

BioRED's six entity types and eight relation types get fixed colours, so a label looks
the same on every page and screenshot; any other label gets a deterministic colour from
a hash of its name (stable across runs and machines, unlike Python's `hash`)."""

from __future__ import annotations

import colorsys
import hashlib

ENTITY_COLOURS: dict[str, str] = {
    "GeneOrGeneProduct": "#7aecec",
    "DiseaseOrPhenotypicFeature": "#fea3a3",
    "ChemicalEntity": "#bfe1a0",
    "OrganismTaxon": "#f9d380",
    "SequenceVariant": "#d4b4f5",
    "CellLine": "#c9c9c9",
}

ENTITY_SHORT: dict[str, str] = {
    "GeneOrGeneProduct": "Gene",
    "DiseaseOrPhenotypicFeature": "Disease",
    "ChemicalEntity": "Chemical",
    "OrganismTaxon": "Organism",
    "SequenceVariant": "Variant",
    "CellLine": "CellLine",
}

RELATION_COLOURS: dict[str, str] = {
    "Association": "#4a6fa5",
    "Positive_Correlation": "#2e8b57",
    "Negative_Correlation": "#c0392b",
    "Bind": "#8e44ad",
    "Cotreatment": "#d35400",
    "Comparison": "#7f8c8d",
    "Drug_Interaction": "#b7950b",
    "Conversion": "#16a085",
}

RELATION_SHORT: dict[str, str] = {
    "Association": "Assoc",
    "Positive_Correlation": "Pos",
    "Negative_Correlation": "Neg",
    "Bind": "Bind",
    "Cotreatment": "Cotreat",
    "Comparison": "Compare",
    "Drug_Interaction": "DrugInt",
    "Conversion": "Convert",
}


def _hashed_colour(label: str, lightness: float, saturation: float) -> str:
    """A colour whose hue comes from the MD5 of `label` (deterministic)."""
    hue = int(hashlib.md5(label.encode("utf8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def entity_colour(label: str) -> str:
    """The background colour of an entity label: fixed for BioRED's, hashed otherwise
    (light, so black text stays readable on it)."""
    return ENTITY_COLOURS.get(label) or _hashed_colour(label, 0.8, 0.7)


def relation_colour(label: str) -> str:
    """The stroke colour of a relation label: fixed for BioRED's, hashed otherwise
    (dark, so a thin arc shows on white)."""
    return RELATION_COLOURS.get(label) or _hashed_colour(label, 0.38, 0.6)


def entity_short(label: str) -> str:
    """The short name shown on an entity's chip (the label itself when unknown)."""
    return ENTITY_SHORT.get(label, label)


def relation_short(label: str) -> str:
    """The short name shown on a relation arc (the label itself when unknown)."""
    return RELATION_SHORT.get(label, label)
