"""`aini rollback GROUP`: a group back to its deploy before the last change, where the stack
runs. The next `aini up` deploys aini.yml's version again, so a rollback holds until then."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..controlplane.bootstrap import State
from ..deploy.apply import DEFAULT_WAIT, GroupResult, roll_back
from ..project import Project
from ..store import SecretStore
from .targets import is_local, site_for, tools_for
from .up import LOCAL_TLS

if TYPE_CHECKING:
    from rich.console import Console


def rollback(project: Project, name: str, *, wait_timeout: int | None = None, console: Console) -> GroupResult:
    secrets = [*SecretStore(project.aini_dir).values(), *State.load(project.root).values()]
    keep = LOCAL_TLS if is_local(project) and project.config.tls_challenge == "local" else ()
    with site_for(project) as site:
        return roll_back(site, name, secrets, tools=tools_for(project), wait_timeout=wait_timeout or DEFAULT_WAIT, keep=keep,
                         console=console)
