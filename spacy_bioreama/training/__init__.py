"""LoRA instruction tuning of a causal LM (transformers Trainer + PEFT), driven by a
config file: settings (`config`), data encoding (`data`), the run directory and
checkpoints (`rundir`), the trainer (`trainer`) and the `train` entry point (`run`;
``python -m spacy_bioreama.training CONFIG --output DIR``)."""

from ..instructions.records import TrainingDataError, read_instruction_jsonl
from .config import (
    ModelSettings,
    PathSettings,
    TrainConfig,
    TrainConfigError,
    TrainingSettings,
    load_train_config,
    make_lora_config,
    parse_overrides,
)
from .data import (
    IGNORE_INDEX,
    DataStats,
    EncodedExample,
    PadCollator,
    SeededSampler,
    TokenizedDataset,
    encode_record,
    encode_records,
    make_collator,
)
from .result import TrainResult
from .run import main, train
from .rundir import OutputDirConflict, checkpoint_problem, find_resume_checkpoint
from .trainer import answer_logits_model, answer_only_loss, resolve_precision

__all__ = [
    "IGNORE_INDEX",
    "DataStats",
    "EncodedExample",
    "ModelSettings",
    "OutputDirConflict",
    "PadCollator",
    "PathSettings",
    "SeededSampler",
    "TokenizedDataset",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainingDataError",
    "TrainingSettings",
    "answer_logits_model",
    "answer_only_loss",
    "checkpoint_problem",
    "encode_record",
    "encode_records",
    "find_resume_checkpoint",
    "load_train_config",
    "main",
    "make_collator",
    "make_lora_config",
    "parse_overrides",
    "read_instruction_jsonl",
    "resolve_precision",
    "train",
]
