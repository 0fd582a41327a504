"""Measuring: metric functions and the registered spaCy scorers, scoring DocBins and
instruction records, baselines, the throughput benchmark and the results page.

Above `pipeline`: it runs the component; the component names its scorer by registry
name only (`spacy_bioreama.bio_scorer.v1`, resolved through the spacy_scorers entry
point), so nothing below imports from here."""
