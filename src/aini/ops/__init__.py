"""The use cases: what each command does, from aini.yml to a result. The only layer that
knows where the stack runs (targets.py); below it, code is handed a Site and Tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..catalog.checks import load
from ..errors import InputError
from ..project import Project


def load_project(config_path: Path) -> Project:
    """aini.yml read and validated (ConfigError otherwise), with its directory as the root."""
    return Project(load(config_path), config_path.resolve().parent, config_path.resolve())


def confirm_project(name: str, given: str | None, ask: Callable[[str], str], question: str, nothing: str) -> None:
    """A destructive command goes on only when the project name is typed (or given with
    --confirm); otherwise InputError "confirmation did not match the project name; <nothing>"."""
    answer = given if given is not None else ask(f"{question} Type the project name '{name}'")
    if answer != name:
        raise InputError(f"confirmation did not match the project name; {nothing}")
