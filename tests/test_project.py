"""project.yml as weasel reads it: the workflows a user runs must be able to start.

Weasel substitutes `${vars.*}` through confection, which joins two adjacent list items
that are each only a variable into one string ("a, b"): such a dependency never exists,
and the step stops with "Missing dependency" after hours of earlier steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from weasel.util import load_project_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project() -> dict:
    return load_project_config(REPO)


def test_every_workflow_step_is_a_command(project):
    names = {command["name"] for command in project["commands"]}
    missing = {
        workflow: [step for step in steps if step not in names]
        for workflow, steps in project["workflows"].items()
    }
    assert {w: steps for w, steps in missing.items() if steps} == {}


def test_every_dependency_and_output_is_one_path(project):
    joined = [
        (command["name"], key, path)
        for command in project["commands"]
        for key in ("deps", "outputs", "outputs_no_cache")
        for path in command.get(key, [])
        if "," in path or "${" in path
    ]
    assert joined == []


def test_config_dependencies_are_in_the_repository(project):
    # deps under configs/ are shipped files: a step naming a missing one cannot start
    missing = [
        (command["name"], path)
        for command in project["commands"]
        for path in command.get("deps", [])
        if path.startswith("configs/") and not (REPO / path).is_file()
    ]
    assert missing == []
