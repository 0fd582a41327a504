"""Adapter file hashes recorded when a pipeline is saved and checked when it is loaded.

A packaged pipeline travels: it is copied, unpacked, shared. `to_disk` / `to_bytes`
record the sha256 of every adapter file in the component's settings; `from_disk` /
`from_bytes` compare them with the files found, so an adapter altered, truncated or
swapped after saving is refused with a message naming the file, before any weights load.
This catches damage and mix-ups, not an attacker (who can rewrite the hashes beside the
files): the safety boundary against untrusted files is safetensors-only loading.
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


def _hashed(name: str) -> bool:
    """Files the check covers: not hidden ones (``.gitattributes``, a hub download's
    ``.cache/``), which `spacy package` leaves out of the package it builds."""
    return not any(part.startswith(".") for part in name.split("/"))


def adapter_hashes(folder: str | Path) -> dict[str, str]:
    """{relative POSIX name: sha256} of every (not hidden) file under `folder`, sorted."""
    root = Path(folder)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return {name: sha256_file(root / name) for name in names if _hashed(name)}


def bytes_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """`adapter_hashes` of an adapter held in memory ({name: content}, as `to_bytes`)."""
    return {
        name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files) if _hashed(name)
    }


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
