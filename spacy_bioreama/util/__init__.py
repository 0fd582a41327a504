"""Small helpers with no biomedical meaning (JSON Lines input, atomic files, resource
figures, number formatting, the recorded command line). Imports nothing else of ours."""
