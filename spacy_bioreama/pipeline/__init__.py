"""What spaCy runs: the `bio_relation_llm` component and the spacy-llm integration
(registered tasks and model). Built on `tasks` (prompts, parsing) and `models`."""
