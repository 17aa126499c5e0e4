"""The deploy of a whole stack, the same for the local engine and a server: the control
plane first, then Vault made the home of every secret, then the applications rendered from
what Vault holds, then Consul told what runs.

    render (local working copy) -> deploy groups up to Vault's -> init/unseal/AppRole ->
    sync secrets with Vault -> render again -> deploy everything (unchanged groups skip) ->
    register services and deploy records in Consul
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import catalog
from ..backup import record, scope
from ..catalog import backup as backup_catalog
from ..catalog.networks import FIXED_IPS
from ..controlplane import registry
from ..controlplane.bootstrap import State, ensure_vault, key_for, load_material, save_material, sync_secrets
from ..controlplane.vault import VaultClient
from ..deploy.apply import DEFAULT_WAIT, DeployResult, deploy, ensure_images, refuse_version_changes
from ..docker.cmd import Tools
from ..docker.engine import DEFAULT_PULL_TIMEOUT, source_address_cmd
from ..errors import AiniError, InputError
from ..project import Project
from ..render import bundle
from ..sites.base import Site
from .backup import before_update, opened, verify
from .render import prepare_secrets

if TYPE_CHECKING:
    from rich.console import Console

CONSUL_AGREE_SECONDS = 30


@dataclass
class StackResult(DeployResult):
    vault: dict = field(default_factory=dict)  # initialised/unsealed/bootstrapped, secrets pushed/pulled
    consul: dict = field(default_factory=dict)


def _merge(first: DeployResult, second: DeployResult) -> StackResult:
    done = {g.group: g for g in first.groups if g.action != "skip"}
    groups = [done.get(g.group, g) if g.action == "skip" else g for g in second.groups]
    return StackResult(groups=groups, seconds=first.seconds + second.seconds)


def deploy_stack(project: Project, site: Site, *, tools: Tools, wait_timeout: int = DEFAULT_WAIT,
                 pull_timeout: float = DEFAULT_PULL_TIMEOUT, keep: tuple[str, ...] = (), console: Console,
                 passphrase=None) -> StackResult:
    config, project_dir = project.config, project.root
    if site.read(record.JOURNAL) is not None and backup_catalog.enabled(config):
        with opened(project, console.print, site):  # its maintenance mode and stopped containers undone first
            pass
    store, _generated, _imported = prepare_secrets(project)
    specs = catalog.enabled(config)
    files = bundle.render(config, store)
    store.save()
    changes = refuse_version_changes(files, site, tools)  # a refusal stops us before anything is pulled
    for change in changes:
        console.print(change.line())
    refused = scope.moves_refused(config, [c.service for c in changes if c.moves])
    if refused:
        raise InputError(f"refused before anything changed:\n  - {refused}")
    manifest = bundle.manifest_of(files)
    # Every image before anything starts: a missing application image must not be found
    # only after Vault was initialised, nor after the backup before an update.
    ensure_images(tools, manifest.images(), manifest, site.run, pull_timeout, console)
    data_back = before_update(project, site, changes, console.print)
    common = {"tools": tools, "wait_timeout": wait_timeout, "pull_timeout": pull_timeout, "keep": keep,
              "console": console, "data_back": data_back,
              "verify": functools.partial(verify, project, site, say=console.print)}
    vault_spec = catalog.vault_of(specs)
    if vault_spec is None:  # no Vault: the local store stays the only home of the secrets
        result = deploy(files, site, store.values(), **common)
        return StackResult(groups=result.groups, seconds=result.seconds)

    order = manifest.order
    core = order[: order.index(vault_spec.group) + 1]
    first = deploy(files, site, store.values(), only=core, **common)

    key = passphrase or key_for(config)  # the break-glass file's: a passphrase or age recipients
    vault_address = FIXED_IPS[vault_spec.name]
    client = VaultClient(site.endpoint(vault_address, vault_spec.port))
    options = config.services.vault
    # The deploy's AppRole works only from where deploys reach Vault: this host, or the
    # server's own address (the SSH forward starts there), never from a container.
    deploy_client, outcome = ensure_vault(client, project_dir, [s.name for s in specs], key,
                                          say=console.print, shares=options.key_shares,
                                          threshold=options.key_threshold,
                                          bound_cidrs=(f"{_source_address(site, vault_address, vault_spec.port)}/32",))
    synced = sync_secrets(deploy_client, store, specs, backup_catalog.vault_paths(config))
    store.save()
    if synced.pulled:
        console.print(f"Took {len(synced.pulled)} secret(s) from Vault: {', '.join(synced.pulled)}.")
    files = bundle.render(config, store)
    store.save()  # a hash derived from a value Vault gave (n8n's owner password) is kept too
    secrets = [*store.values(), *State.load(project_dir).values()]
    result = _merge(first, deploy(files, site, secrets, **common))
    result.vault = {"initialised": outcome.initialised, "unsealed": outcome.unsealed,
                    "bootstrapped": outcome.bootstrapped, "pushed": len(synced.pushed),
                    "pulled": len(synced.pulled)}
    if any(s.name == "consul" for s in specs):
        result.consul = _consul(project, site, files, key, console)
    return result


def _source_address(site: Site, address: str, port: int) -> str:
    r = site.run(source_address_cmd(address, port))
    try:
        return str(ipaddress.ip_address(r.stdout.strip()))
    except ValueError:
        output = (r.stderr or r.stdout).strip()[:300]
    raise AiniError(f"cannot tell which address reaches Vault at {address}: {output}")


def _consul(project: Project, site: Site, files, key, console: Console) -> dict:
    """ACLs bootstrapped once (the management token into the break-glass file), a deploy
    token kept in .aini/controlplane.json, services registered, deploy records written."""
    config, project_dir = project.config, project.root
    client = registry.consul_at(site)
    state = State.load(project_dir)
    # A token Consul does not know (its data was lost, or replaced by a snapshot's) is made anew.
    if not (state.consul_deploy_token and state.consul_snapshot_token
            and all(client.with_token(t).token_valid() for t in (state.consul_deploy_token,
                                                                  state.consul_snapshot_token))):
        token = client.acl_bootstrap()
        if token is not None:
            save_material(project_dir, load_material(project_dir, key).replace(
                consul_bootstrap_token=token.secret_id), key)
            console.print("Consul ACLs bootstrapped; the management token is in the break-glass file.")
            management = token.secret_id
        else:
            management = load_material(project_dir, key).consul_bootstrap_token
            if not management:
                raise AiniError("Consul's ACLs were bootstrapped before but the break-glass file has no token; "
                                "restore .aini/ from your backup")
        management_client = client.with_token(management)
        deploy_token = management_client.ensure_deploy_token()
        state.consul_deploy_token, state.consul_deploy_accessor = deploy_token.secret_id, deploy_token.accessor_id
        state.consul_snapshot_token = management_client.ensure_snapshot_token().secret_id
        state.save(project_dir)
    else:
        client.with_token(state.consul_snapshot_token).ensure_policies()
    manifest = bundle.manifest_of(files).document  # Consul's records are built from the JSON as written
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    deploy_client = client.with_token(state.consul_deploy_token)
    synced = registry.sync(deploy_client, config, manifest, now)
    # A new registration is critical until its first check ran: wait (bounded) until Consul
    # agrees with Docker's health checks, so `aini status` right after `aini up` is true.
    probed = [r.name for r in registry.registrations(config, manifest)]
    deadline = time.monotonic() + CONSUL_AGREE_SECONDS
    while True:
        critical = sorted(n for n, h in registry.health(deploy_client, probed).items() if h == "critical")
        if not critical or time.monotonic() > deadline:
            break
        time.sleep(1)
    if critical:
        console.print(f"[yellow]Consul's checks are still critical for: {', '.join(critical)}[/yellow]")
    return {"critical": critical,"registered": list(synced.registered), "deregistered": list(synced.deregistered),
            "kv_written": synced.kv_written, "unprobed": [u.name for u in synced.unprobed]}


__all__ = ["StackResult", "deploy_stack"]

