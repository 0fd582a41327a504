"""Default label schema: BioRED's entity types, relation types and the entity type
pairs its relations connect (counted on BioRED train; see docs/architecture.md)."""

BIORED_ENTITY_LABELS = (
    "GeneOrGeneProduct",
    "DiseaseOrPhenotypicFeature",
    "ChemicalEntity",
    "OrganismTaxon",
    "SequenceVariant",
    "CellLine",
)

BIORED_RELATION_LABELS = (
    "Association",
    "Positive_Correlation",
    "Negative_Correlation",
    "Bind",
    "Cotreatment",
    "Comparison",
    "Drug_Interaction",
    "Conversion",
)

# Type pairs of the 4,178 BioRED train relations (counts in comments).
BIORED_TYPE_PAIRS = (
    "DiseaseOrPhenotypicFeature|GeneOrGeneProduct",  # 1045
    "ChemicalEntity|DiseaseOrPhenotypicFeature",  # 812
    "GeneOrGeneProduct|GeneOrGeneProduct",  # 792
    "ChemicalEntity|GeneOrGeneProduct",  # 621
    "DiseaseOrPhenotypicFeature|SequenceVariant",  # 538
    "ChemicalEntity|ChemicalEntity",  # 308
    "ChemicalEntity|SequenceVariant",  # 49
    "SequenceVariant|SequenceVariant",  # 12
    "GeneOrGeneProduct|SequenceVariant",  # 1
)

# Labels the pair-classification corpora use for "no relation" (GAD/EU-ADR "0",
# ChemProt "False", DDI "false"). Readers keep such pairs as relations so that no
# annotation is lost; the scorer and the training targets treat them as negatives.
NEGATIVE_RELATION_LABELS = frozenset({"0", "false", "False", "None"})
