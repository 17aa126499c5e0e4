"""A command as data: what to run, with its time limit. Built by pure functions here and in
aini.docker.compose/engine, executed in one place: a Site (this machine, or a server over SSH)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cmd:
    """One command as data: argv, working directory, time limit."""

    argv: tuple[str, ...]
    timeout: float = 120.0
    cwd: str | None = None


@dataclass(frozen=True)
class Tools:
    docker: tuple[str, ...]  # e.g. ("docker",)
    compose: tuple[str, ...]  # ("/…/docker-compose",) or ("docker", "compose")


Runner = Callable[[Cmd], subprocess.CompletedProcess]
