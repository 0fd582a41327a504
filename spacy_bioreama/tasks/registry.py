"""The task families an instruction source can name, by task name.

`UNIT_TASKS` maps each name of `names.TASK_FAMILIES` to the `UnitTask` its module
declares; the instruction builder and its config look tasks up here and never branch
on a task name.
"""

from __future__ import annotations

from . import ner, pair, qa, relation
from .names import NER, PAIR, QA, RE, TASK_FAMILIES
from .units import UnitTask

UNIT_TASKS: dict[str, UnitTask] = {
    NER: ner.UNITS,
    RE: relation.UNITS,
    PAIR: pair.UNITS,
    QA: qa.UNITS,
}
assert tuple(UNIT_TASKS) == TASK_FAMILIES


def unit_task(name: str) -> UnitTask:
    """The `UnitTask` of task family `name` (KeyError names the known ones)."""
    try:
        return UNIT_TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(UNIT_TASKS)}") from None


def tasks_reading(option: str) -> set[str]:
    """The task families whose units read source key `option`."""
    return {name for name, task in UNIT_TASKS.items() if option in task.options}


__all__ = ["UNIT_TASKS", "tasks_reading", "unit_task"]
