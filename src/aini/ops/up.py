"""`aini up`: on the local target, the local certificates and the stack on this engine; on
a server, provision it (hetzner), configure it with the host playbook, deploy the stack."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..catalog import backup as backup_catalog
from ..config import SshTarget
from ..deploy.apply import DEFAULT_WAIT, DeployResult
from ..docker.cmd import Tools
from ..docker.engine import DEFAULT_PULL_TIMEOUT
from ..errors import InputError
from ..infra import localca, provision, server
from ..infra.ansible import Progress
from ..infra.server import ADMIN_USER, UpOptions, UpResult
from ..project import Project
from ..sites.local import write_in_place
from .backup import repository_env, schedule_on
from .plan import check
from .stack import deploy_stack
from .targets import is_hetzner, is_local, site_for, tools_for

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console


def up(project: Project, options: UpOptions = UpOptions(), progress: Progress | None = None,
       console: Console | None = None) -> UpResult:
    """Everything `aini up` does for a server: provision, configure, deploy."""
    config = project.config
    target = config.target
    former: tuple[int, ...] = ()
    if is_hetzner(project):
        hetzner = target
        provisioned = provision.provision(config, project.root, ADMIN_USER, progress)
        # The new server is an ssh target from here on: cloud-init made the admin user, and
        # a server built from an image without cloud-init still takes root with the key.
        target = SshTarget(kind="ssh", host=provisioned.ipv4, port=hetzner.ssh_port, user="root",  # type: ignore[union-attr]
                           ssh_key=str(provision.private_key_of(hetzner, project.root)))  # type: ignore[arg-type]
        former = provisioned.former_ssh_ports
    if is_local(project):
        raise InputError("target 'local' is deployed by aini.ops.up.up_local, not configured over SSH")
    assert isinstance(target, SshTarget)
    if options.deploy:
        check(config)  # bad input stops us before the host is touched
        if backup_catalog.enabled(config):
            repository_env(project)  # the repository's credentials too: the deploy ends by scheduling backups
    configured = server.configure_ssh_host(target, project.root, options, progress, former_ports=former)
    if former:
        # sshd has moved and answered on the new port: only now may the Cloud Firewall close the old one.
        provision.close_former_ssh_ports(config, project.root, ADMIN_USER, progress)
    if not options.deploy:
        return configured
    result = deploy_server(project, server.ssh_access(target, project.root), wait_timeout=options.wait_timeout,
                           console=console)
    groups = {g.group: {"action": g.action, "reason": g.reason, "seconds": round(g.seconds, 1)}
              for g in result.groups}
    return replace(configured, deployed={"groups": groups, "seconds": round(result.seconds, 1)})


def deploy_server(project: Project, access=None, *, wait_timeout: int | None = None,
                  console: Console | None = None) -> DeployResult:
    """Render the bundle here (secrets stay on this machine and in Vault) and deploy it on the
    server; then its backup timer (backup.schedule) put in place."""
    from rich.console import Console  # third-party, only when a deploy runs

    console = console or Console(stderr=True)
    with site_for(project, access) as site:
        result = deploy_stack(project, site, tools=tools_for(project), wait_timeout=wait_timeout or DEFAULT_WAIT,
                              console=console)
        schedule_on(project, site, console.print)  # after the deploy: it made the snapshot tokens
        return result


LOCAL_TLS = ("traefik/certs/local.crt", "traefik/certs/local.key")  # written beside the bundle, kept by its syncs


@dataclass(frozen=True)
class _Text:
    content: str
    private: bool = False


def write_local_tls(deploy_dir: Path, certs) -> list[str]:
    """Put the local CA's certificate where the rendered Traefik configuration expects it
    (traefik/certs/, mounted at /etc/traefik/certs). Returns the paths written (relative to
    deploy_dir), for `deploy(keep=...)`: they are not part of the rendered bundle."""
    sync = dict(zip(LOCAL_TLS, (_Text(certs.cert.read_text()), _Text(certs.key.read_text(), private=True))))
    for rel, file in sync.items():
        path = deploy_dir / rel
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_in_place(path, file.content.encode(), file.private)
    return list(sync)


def up_local(project: Project, *, wait_timeout: int = DEFAULT_WAIT, pull_timeout: float = DEFAULT_PULL_TIMEOUT,
             console: Console | None = None, tools: Tools | None = None, passphrase=None) -> DeployResult:
    """`aini up` for `target.kind: local`: make the local certificates, deploy the stack."""
    from rich.console import Console  # third-party, only when a deploy runs

    config = project.config
    if not is_local(project):
        raise InputError(f"target.kind is '{config.target.kind}': up_local deploys only the local target")
    console = console or Console(stderr=True)
    keep: list[str] = []
    if config.tls_challenge == "local":
        certs = localca.ensure(project.ca_dir, config.domain, localca.hostnames(config))
        project.deployed_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keep += write_local_tls(project.deployed_dir, certs)
        if certs.ca_created:
            console.print(f"Created a local CA for {config.domain}.")
    with site_for(project) as site:
        result = deploy_stack(project, site, tools=tools or tools_for(project), wait_timeout=wait_timeout,
                              pull_timeout=pull_timeout, keep=tuple(keep), console=console, passphrase=passphrase)
    if config.tls_challenge == "local":
        console.print(localca.trust_hint(certs))
    if backup_catalog.enabled(config):
        console.print("backup.schedule runs on servers; here, aini backup runs when you run it (or from your crontab).")
    return result


def up_any(project: Project, options: UpOptions, progress: Progress | None = None) -> DeployResult | UpResult:
    """`aini up` wherever aini.yml says: a DeployResult on the local target, else an UpResult."""
    if is_local(project):
        return up_local(project, wait_timeout=options.wait_timeout or DEFAULT_WAIT)
    return up(project, options, progress)


def redeploy(project: Project) -> DeployResult:
    """The stack deployed again where it runs (after a secret changed): only the groups
    whose files changed are touched."""
    return up_local(project) if is_local(project) else deploy_server(project)
