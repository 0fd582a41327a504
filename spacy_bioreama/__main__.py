"""`python -m spacy_bioreama` runs the command-line interface."""

from .cli import main

main()
