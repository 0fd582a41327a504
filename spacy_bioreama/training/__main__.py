"""`python -m spacy_bioreama.training CONFIG --output DIR` (and `accelerate launch -m ...`)."""

import sys

from .run import main

sys.exit(main())
