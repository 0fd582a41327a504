"""LoRA instruction tuning of a causal LM (transformers Trainer + PEFT), driven by a
config file: settings, data encoding, the run directory and checkpoints, the trainer and
the `train` entry point (`python -m spacy_bioreama.training CONFIG --output DIR`)."""
