"""The use cases: what each command does, from aini.yml to a result. The only layer that
knows where the stack runs (targets.py); below it, code is handed a Site and Tools."""

from __future__ import annotations

from pathlib import Path

from ..catalog.checks import load
from ..project import Project


def load_project(config_path: Path) -> Project:
    """aini.yml read and validated (ConfigError otherwise), with its directory as the root."""
    return Project(load(config_path), config_path.resolve().parent)
