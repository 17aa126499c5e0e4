"""Where the stack of a project runs: the one place that reads `target.kind`.

The local target's Site is this machine's engine with the deployed copy in `.aini/deployed`;
an ssh or hetzner target's is its server over SSH, as the admin user."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import SshTarget
from ..docker.cmd import Tools
from ..errors import AiniError
from ..infra import hetzner
from ..infra.provision import private_key_of
from ..infra.server import ADMIN_USER, known_hosts, ssh_access
from ..project import Project
from ..sites.base import Site
from ..sites.local import LocalSite, find_tools
from ..sites.ssh import REMOTE_TOOLS, SshAccess, ssh_site


def is_local(project: Project) -> bool:
    return project.config.target.kind == "local"


def is_hetzner(project: Project) -> bool:
    return project.config.target.kind == "hetzner"


def server_access(project: Project) -> SshAccess:
    """How to reach the deployed server: target.host, or the Hetzner server found by label."""
    target = project.config.target
    if isinstance(target, SshTarget):
        return ssh_access(target, project.root)
    if is_hetzner(project):
        address = hetzner.server_ipv4(hetzner.connect(), project.config)
        return SshAccess(address, target.ssh_port, private_key_of(target, project.root),  # type: ignore[union-attr]
                         known_hosts(project.root))
    raise AiniError(f"target '{target.kind}' has no server")


@contextlib.contextmanager
def site_for(project: Project, access: SshAccess | None = None) -> Iterator[Site]:
    """The project's Site, open for the `with` block (a server's SSH master connection is
    closed after it). `access`: the server as just configured, instead of looking it up."""
    if is_local(project):
        yield LocalSite(project.deployed_dir)
        return
    with ssh_site(access or server_access(project), ADMIN_USER) as site:
        yield site


def tools_for(project: Project, compose: bool = True) -> Tools:
    """The docker CLI (and Compose) where the stack runs: found on this machine, or the
    server's, which the host playbook installed."""
    return find_tools(compose) if is_local(project) else REMOTE_TOOLS

