"""The command line: thin Typer commands (workspace.py, secrets.py), each delegating to one
use case in aini.ops; app.py holds what they share, tables.py the Rich tables."""

from __future__ import annotations

from . import workspace  # noqa: F401, I001 - they register their commands on the app, in --help's order
from . import backup, secrets  # noqa: F401, I001
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
