"""Small helpers with no biomedical meaning: JSON Lines input, atomic files and hashes,
config settings validation (pydantic schemas, overrides), resource figures, number
formatting and the recorded command line. Imports nothing else of ours."""
