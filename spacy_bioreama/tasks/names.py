"""Task names, defined once.

Two kinds of name, both plain strings that configs and records carry:

* the instruction task families, the ``task`` of every `TaskExample`, instruction record
  and ``[instructions.sources.*]`` section: `NER`, `RE`, `PAIR`, `QA`;
* the `bio_relation_llm` component's ``tasks`` setting: `TASK_ENTITIES` (named entity
  recognition) and `TASK_RELATIONS` (relation extraction).
"""

from __future__ import annotations

NER = "ner"
RE = "re"
PAIR = "pair"
QA = "qa"
TASK_FAMILIES = (NER, RE, PAIR, QA)

TASK_ENTITIES = "entities"
TASK_RELATIONS = "relations"
COMPONENT_TASKS = (TASK_ENTITIES, TASK_RELATIONS)

__all__ = [
    "COMPONENT_TASKS",
    "NER",
    "PAIR",
    "QA",
    "RE",
    "TASK_ENTITIES",
    "TASK_FAMILIES",
    "TASK_RELATIONS",
]
