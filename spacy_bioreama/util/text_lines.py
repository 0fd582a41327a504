"""Text files read line by line (corpora, JSON Lines): each line decoded on its own, so
that a decoding error names its line, and a byte order mark dropped."""

from __future__ import annotations

# A UTF-8 byte order mark is an encoding mark, not text: readers drop it, so that it
# never shifts the offsets of the first document (found by tests/test_reader_fuzz.py).
UTF8_BOM = "\ufeff"


def decode_utf8_line(raw: bytes, lineno: int) -> str:
    """One raw line of a file read line by line, as text (a BOM opening line 1 dropped).
    Not UTF-8: a UnicodeDecodeError whose `reason` callers put beside the line number
    (decoding a whole file would name a byte offset of a buffer, not a line)."""
    text = raw.decode("utf-8")
    return text.removeprefix(UTF8_BOM) if lineno == 1 else text
