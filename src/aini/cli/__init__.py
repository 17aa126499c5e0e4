"""The command line: thin Typer commands (workspace.py, secrets.py), each delegating to one
use case in aini.ops; app.py holds what they share, tables.py the Rich tables."""

from __future__ import annotations

from . import secrets, workspace  # noqa: F401 - they register their commands on the app
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
