"""Building the pipeline a command runs, from a picklable description.

`PipelineSpec` says which pipeline to build: a saved or packaged one (`path`), or a
blank English one around `bio_relation_llm` with `model` + `adapter`, plus component
settings to override. The CLI builds from it in-process; `annotate-corpus` ships it to
each Ray worker, which builds the same pipeline there. `fingerprint` identifies what
decides the annotations (the pipeline's files or the model name, the adapter's
content, the settings), so that a resumed run never mixes two pipelines' output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spacy.language import Language

from .component import BioRelationLLM


@dataclass(frozen=True)
class PipelineSpec:
    """Which pipeline to build. With `path`, the saved pipeline there (its component's
    settings replaced by `settings`); otherwise `model` + `adapter` with `tasks`,
    `batch_size`, `device` and `settings` (None values are left at the defaults)."""

    path: str | None = None
    model: str = "default"
    adapter: str | None = None
    tasks: tuple[str, ...] = ("entities", "relations")
    batch_size: int = 8
    device: str = "auto"
    settings: dict[str, Any] = field(default_factory=dict)

    def overrides(self) -> dict[str, Any]:
        """The settings that are set (None values dropped)."""
        return {k: v for k, v in self.settings.items() if v is not None}

    def build(self) -> tuple[Language, BioRelationLLM]:
        """The pipeline and its `bio_relation_llm` component (the model loads on first
        use). A missing pipeline or a setting out of range raises ValueError."""
        import spacy

        settings = self.overrides()
        if self.path is not None:
            if not Path(self.path).is_dir():
                raise ValueError(f"pipeline {self.path} not found (a folder saved by nlp.to_disk)")
            nlp = spacy.load(self.path)
            component = find_component(nlp)
            if component is None:
                raise ValueError(f"{self.path} has no bio_relation_llm component")
            return nlp, component.configure(**settings)
        nlp = spacy.blank("en")
        component = nlp.add_pipe(
            "bio_relation_llm",
            config={
                "model": self.model,
                "adapter": self.adapter,
                "tasks": list(self.tasks),
                "batch_size": self.batch_size,
                "device": self.device,
                **settings,
            },
        )
        return nlp, component

    def build_tokenizer(self) -> Language:
        """The pipeline without its components: what turns text into Docs, as the full
        pipeline would (for readers that must not load the model)."""
        import spacy

        if self.path is None:
            return spacy.blank("en")
        config = spacy.util.load_config(Path(self.path) / "config.cfg")
        return spacy.load(self.path, exclude=list(config["nlp"]["pipeline"]))

    def fingerprint(self, component: BioRelationLLM) -> dict[str, Any]:
        """What decides the annotations, with one `sha256` over it: the pipeline folder's
        files (when `path`), the base model's identity, the adapter's content, every
        component setting that changes an answer, and the kind of device ("cpu" or
        "cuda": GPU kernels and bf16 change scores and can change greedy answers). The
        batch size is left out: it changes speed, and scores only at float precision."""
        identity: dict[str, Any] = {
            "model": model_identity(component.model),
            "adapter_sha256": folder_sha256(component.adapter) if component.adapter else None,
            "settings": {key: _plain(getattr(component, key)) for key in ANSWER_SETTINGS}
            # settings added later count only when set, so older fingerprints still match
            | {
                key: _plain(getattr(component, key))
                for key, default in LATER_ANSWER_SETTINGS.items()
                if getattr(component, key) != default
            }
            # The engine changes answers; "hf" is left out so that fingerprints made
            # before there was a choice still match.
            | ({"backend": component.backend_name} if component.backend_name != "hf" else {}),
            # llama.cpp runs on the CPU whatever `device` says
            "device": "cpu"
            if component.backend_name == "llama_cpp"
            else device_kind(component.device),
        }
        if self.path is not None:
            identity["pipeline_sha256"] = folder_sha256(self.path)
        blob = json.dumps(identity, sort_keys=True).encode()
        return {"sha256": hashlib.sha256(blob).hexdigest(), **identity}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for manifests)."""
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data


# component settings that change what is predicted (batch size and device do not)
ANSWER_SETTINGS = (
    "tasks",
    "entity_labels",
    "relation_labels",
    "relation_type_pairs",
    "max_new_tokens",
    "max_prompt_tokens",
    "max_pairs_per_window",
    "max_pairs_per_doc",
    "relation_threshold",
    "none_threshold",
)


# answer settings added after fingerprints were first recorded, with their defaults
LATER_ANSWER_SETTINGS = {
    "ner_copy_constraint": False,
    "relation_prompt": "auto",
    "ner_window_tokens": None,
    "relation_answer": "auto",
    "ner_prompt": "auto",
}


def find_component(nlp: Language) -> BioRelationLLM | None:
    """The pipeline's `bio_relation_llm` component, or None."""
    return next((c for _, c in nlp.pipeline if isinstance(c, BioRelationLLM)), None)


def folder_sha256(path: str | Path) -> str:
    """One sha256 over a file or a folder's files (relative names and contents, sorted),
    so that a changed, added or removed file changes it."""
    from ..util.files import sha256_file

    root = Path(path).expanduser()
    if root.is_file():
        return sha256_file(root)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def model_identity(model: str) -> dict[str, Any]:
    """A base model's identity: its name, plus for a local folder the sha256 of its
    config and tokenizer files and the names and sizes of its weight files (hashing
    gigabytes of weights on every run would cost more than it protects)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"name": model}
    small = {}
    weights = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        name = file.relative_to(path).as_posix()
        if file.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
            weights[name] = file.stat().st_size
        else:
            from ..util.files import sha256_file

            small[name] = sha256_file(file)
    return {"name": str(path.resolve()), "files_sha256": small, "weights_bytes": weights}


def device_kind(device: str) -> str:
    """ "cpu" or "cuda": what `device` ("auto", "cpu", "cuda", "cuda:1") runs on here."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


__all__ = [
    "ANSWER_SETTINGS",
    "PipelineSpec",
    "device_kind",
    "find_component",
    "folder_sha256",
    "model_identity",
]
