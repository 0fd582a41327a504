"""`manifest.json`: what an output folder holds, so a rerun can finish it, not mix it.

The manifest records the pipeline's fingerprint (`PipelineSpec.fingerprint`), the output
formats, every input shard (path, format, sha256, output name) and, for each finished
shard, its counts, timings and the hashes of its published files. A shard enters
`shards` only after its files are in place (`ShardWriter.commit`), and the manifest is
rewritten atomically each time, so a run killed at any moment leaves a manifest that
tells the truth. A rerun skips the finished shards; a different pipeline, other
formats or a changed input of a finished shard is refused (`ManifestMismatch`) unless
the user starts over with `--force`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..util.files import atomic_write_json

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class ManifestMismatch(ValueError):
    """The output folder holds annotations made with another pipeline, other formats or
    other inputs."""


@dataclass
class Manifest:
    """The manifest of one output folder (see the module docstring)."""

    folder: Path
    pipeline: dict[str, Any]
    formats: list[str]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by resolved path
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)  # finished, by name
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """Where the manifest lives."""
        return self.folder / MANIFEST_FILE

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        """The manifest in `folder`, or None where there is none. An unreadable one is
        a `ManifestMismatch` (the folder's state is unknown)."""
        path = folder / MANIFEST_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf8"))
            if data.get("version") != MANIFEST_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {MANIFEST_VERSION}")
            return cls(
                folder=folder,
                pipeline=data["pipeline"],
                formats=list(data["formats"]),
                inputs=dict(data.get("inputs", {})),
                shards=dict(data.get("shards", {})),
                runs=list(data.get("runs", [])),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ManifestMismatch(
                f"{path} cannot be read ({err}); use --force to start over"
            ) from err

    def check_compatible(self, pipeline: dict[str, Any], formats: list[str]) -> None:
        """Refuse to add to annotations made with another pipeline or other formats."""
        if self.pipeline.get("sha256") != pipeline.get("sha256"):
            changed = [
                key
                for key in sorted(set(self.pipeline) | set(pipeline))
                if key != "sha256" and self.pipeline.get(key) != pipeline.get(key)
            ]
            raise ManifestMismatch(
                f"{self.folder} holds annotations made with another pipeline (changed: "
                f"{', '.join(changed) or 'fingerprint'}); use --force to start over, or "
                "another --output"
            )
        if sorted(self.formats) != sorted(formats):
            raise ManifestMismatch(
                f"{self.folder} was written with formats {sorted(self.formats)}, not "
                f"{sorted(formats)}; use --force to start over, or another --output"
            )

    def shard_name(self, resolved: str) -> str | None:
        """The output name an input was given by an earlier run, if any."""
        entry = self.inputs.get(resolved)
        return None if entry is None else entry["name"]

    def check_input(self, resolved: str, sha256: str) -> None:
        """Refuse an input whose content changed after its shard was finished."""
        entry = self.inputs.get(resolved)
        if entry is None or entry["name"] not in self.shards:
            return
        if entry["sha256"] != sha256:
            raise ManifestMismatch(
                f"{resolved} changed since it was annotated into {self.folder} (sha256 "
                f"{entry['sha256'][:12]}… → {sha256[:12]}…); use --force to start over"
            )

    def add_input(self, resolved: str, entry: dict[str, Any]) -> None:
        """Record an input shard (path, format, sha256, bytes, name)."""
        self.inputs[resolved] = entry

    def is_done(self, name: str) -> bool:
        """Whether the shard's outputs are complete."""
        return name in self.shards

    def finish_shard(self, name: str, entry: dict[str, Any]) -> None:
        """Record a published shard and save the manifest."""
        self.shards[name] = entry
        self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        atomic_write_json(
            self.path,
            {
                "version": MANIFEST_VERSION,
                "pipeline": self.pipeline,
                "formats": self.formats,
                "inputs": self.inputs,
                "shards": self.shards,
                "runs": self.runs,
            },
        )


__all__ = ["MANIFEST_FILE", "Manifest", "ManifestMismatch"]
