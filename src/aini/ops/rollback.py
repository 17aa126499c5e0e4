"""`aini rollback GROUP`: a group back to its deploy before the last change, where the stack
runs. The next `aini up` deploys aini.yml's version again, so a rollback holds until then."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import catalog
from ..controlplane import registry
from ..controlplane.bootstrap import State
from ..deploy.apply import DEFAULT_WAIT, GroupResult, roll_back
from ..deploy.record import DEPLOYED_MANIFEST, parse_deployed
from ..deploy.rollback import DataBack
from ..errors import AiniError
from ..project import Project
from ..sites.base import Site
from ..store import SecretStore
from . import confirm_project
from .backup import put_back
from .targets import is_local, site_for, tools_for
from .up import LOCAL_TLS

if TYPE_CHECKING:
    from rich.console import Console


def rollback(project: Project, name: str, *, confirm: str | None = None, ask: Callable[[str], str],
             wait_timeout: int | None = None, console: Console) -> GroupResult:
    """A group whose data a newer version migrated goes back with the data of the backup taken
    before that update, after the project name is typed: what was written since is lost."""
    secrets = [*SecretStore(project.aini_dir).values(), *State.load(project.root).values()]
    keep = LOCAL_TLS if is_local(project) and project.config.tls_challenge == "local" else ()
    with site_for(project) as site:
        def with_data(group: str, run: str, fresh: Sequence[str]) -> DataBack:
            confirm_project(project.config.project, confirm, ask,
                            f"{group}'s data was migrated by the version it runs: going back restores it to the "
                            f"backup taken before that update (run {run}), and what was written since is lost.",
                            "nothing was rolled back")
            return DataBack(run, functools.partial(put_back, project, site, run, group, console.print, fresh))

        result = roll_back(site, name, secrets, tools=tools_for(project), wait_timeout=wait_timeout or DEFAULT_WAIT,
                           keep=keep, console=console, data_back=with_data)
        _tell_consul(project, site, console)
        return result


def _tell_consul(project: Project, site: Site, console: Console) -> None:
    """Consul's deploy records name what runs after the rollback (each record's history keeps
    the version it left); if Consul cannot be told, the next aini up tells it."""
    token = State.load(project.root).consul_deploy_token
    if not token or not any(s.name == "consul" for s in catalog.enabled(project.config)):
        return
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        registry.sync(registry.consul_at(site, token), project.config, parse_deployed(site.read(DEPLOYED_MANIFEST)) or {},
                      now)
    except AiniError as exc:
        console.print(f"[yellow]! Consul's deploy records still name the version left ({exc}); "
                      "the next aini up rewrites them[/yellow]")
