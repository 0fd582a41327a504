"""Adapter file hashes recorded when a pipeline is saved and checked when it is loaded.

A packaged pipeline travels: it is copied, unpacked, shared. `to_disk` / `to_bytes`
record the sha256 of every adapter file in the component's settings; `from_disk` /
`from_bytes` compare them with the files found, so an adapter altered, truncated or
swapped after saving is refused with a message naming the file, before any weights load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from ..util.files import sha256_file

# settings.json key holding {relative file name: sha256}
HASHES_KEY = "adapter_sha256"


class AdapterIntegrityError(ValueError):
    """A saved pipeline's adapter files differ from the hashes recorded at saving."""


def adapter_hashes(folder: str | Path) -> dict[str, str]:
    """{relative POSIX name: sha256} of every file under `folder`, sorted by name."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {f.relative_to(root).as_posix(): sha256_file(f) for f in files}


def bytes_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """`adapter_hashes` of an adapter held in memory ({name: content}, as `to_bytes`)."""
    return {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)}


def check_hashes(found: Mapping[str, str], recorded: Mapping[str, str], where: str) -> None:
    """Raise `AdapterIntegrityError` naming every changed, missing or added file."""
    problems = []
    for name, digest in recorded.items():
        if name not in found:
            problems.append(f"{name} is missing")
        elif found[name] != digest:
            problems.append(
                f"{name} was altered (sha256 {found[name][:12]}..., saved as {digest[:12]}...)"
            )
    problems += [f"{name} was added" for name in found if name not in recorded]
    if problems:
        raise AdapterIntegrityError(
            f"bio_relation_llm: the adapter in {where} is not the one the pipeline was saved "
            f"with: {'; '.join(problems)}. Restore the original files or save the pipeline "
            "again (nlp.to_disk) from a trusted adapter."
        )


__all__ = [
    "HASHES_KEY",
    "AdapterIntegrityError",
    "adapter_hashes",
    "bytes_hashes",
    "check_hashes",
]
