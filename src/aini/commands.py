"""What the CLI commands do, as plain functions (the CLI only parses flags and prints)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import catalog
from .config import AiniConfig
from .plan import check, make
from .render import bundle
from .secrets import STORE_DIR, SecretStore


@dataclass(frozen=True)
class RenderResult:
    out: Path
    files: int
    groups: dict[str, str]
    generated: list[str]
    imported: list[str]


def prepare_secrets(config: AiniConfig, project_dir: Path) -> tuple[SecretStore, list[str], list[str]]:
    specs = check(config)
    store = SecretStore(project_dir / STORE_DIR)
    generated = store.ensure(catalog.secrets_for(specs))
    imported = store.import_from_env(catalog.user_secrets_for(specs))
    return store, generated, imported


def render_bundle(config: AiniConfig, project_dir: Path, out: Path) -> RenderResult:
    store, generated, imported = prepare_secrets(config, project_dir)
    files = bundle.render(config, store)
    store.save()  # before the bundle: every value in it must be recoverable from the store
    bundle.write(files, out)
    manifest = json.loads(files[bundle.MANIFEST].content)
    groups = {name: group["hash"] for name, group in manifest["groups"].items()}
    return RenderResult(out.resolve(), len(files), groups, generated, imported)


def cloud_plan(config: AiniConfig):
    """What would change in Hetzner Cloud, with the price read from the API; None when the
    target is not Hetzner or no token is set (plan never prompts: it must work offline)."""
    import os

    from . import cloud

    if config.target.kind != "hetzner" or not os.environ.get(cloud.TOKEN_ENV):
        return None
    from hcloud import APIException
    from requests import RequestException

    try:
        client = cloud.connect()
        return cloud.plan(config, cloud.read_offers(client), cloud.read_owned(client, config))
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None


def euros(gross: str) -> str:
    from decimal import ROUND_HALF_UP, Decimal

    return f"€{Decimal(gross).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def deployed_diff(config: AiniConfig, project_dir: Path) -> list[tuple[str, str]]:
    """The rendered bundle's group hashes against Consul's record of the last deploy (reached
    where the stack runs: this engine, or over SSH)."""
    from .controlplane import registry
    from .controlplane.bootstrap import State
    from .errors import AiniError
    from .plan import diff_groups
    from .vaultops import open_site

    if not config.services.consul.enabled:
        raise AiniError("services.consul is disabled: there is no deploy record to compare with")
    store = SecretStore(project_dir / STORE_DIR)
    missing = [s.name for s in catalog.secrets_for(check(config)) if store.get(s.name) is None]
    if missing:
        raise AiniError(f"secrets not generated yet ({', '.join(missing)}): nothing was deployed from here; run aini up")
    manifest = json.loads(bundle.render(config, store)[bundle.MANIFEST].content)
    token = State.load(project_dir).consul_deploy_token
    if not token:
        raise AiniError("this machine has no Consul deploy token for the project yet; run aini up first")
    with open_site(config, project_dir) as site:
        deployed = registry.deployed_hashes(registry.consul_at(site, token))
    return diff_groups({g: info["hash"] for g, info in manifest["groups"].items()}, deployed)


def show_plan(config: AiniConfig, project_dir: Path, as_json: bool, deployed: bool = False) -> None:
    store = SecretStore(project_dir / STORE_DIR)
    result = make(config, set(store.names()))
    infra = cloud_plan(config)
    diff = deployed_diff(config, project_dir) if deployed else None
    if as_json:
        extra = {"fits": result.budget.fits, "cloud": asdict(infra) if infra else None,
                 "deployed": dict(diff) if diff is not None else None}
        print(json.dumps(asdict(result) | extra, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    services = Table(title=f"Services on target '{result.target}'", title_justify="left")
    for column in ("service", "image", "url", "MiB res/max"):
        services.add_column(column, overflow="fold")
    for row in result.services:
        url = (row.url or "-") + (" (admin)" if row.admin else "")
        image = row.image.removeprefix("docker.io/").removeprefix("library/")
        services.add_row(row.name, image, url, f"{row.mem_reservation}/{row.mem_limit}")
    console.print(services)
    secrets = Table(title="Secrets (names only)", title_justify="left")
    secrets.add_column("name")
    secrets.add_column("kind")
    secrets.add_column("state")
    for s in result.secrets:
        secrets.add_row(s.name, s.kind, s.state)
    console.print(secrets)
    b = result.budget
    if b.ram_mib:
        console.print(
            f"Memory: {b.reserved_mib} MiB reserved (incl. host) of {b.ram_mib} MiB on {b.server_type}; "
            f"headroom {b.headroom_mib} MiB."
        )
    else:
        console.print(f"Memory: {b.reserved_mib} MiB reserved (incl. host).")
    if diff is not None:
        groups = Table(title="Against the last deploy (Consul's record)", title_justify="left")
        groups.add_column("group")
        groups.add_column("state")
        for group, state in diff:
            groups.add_row(group, state)
        console.print(groups)
    if infra:
        changes = Table(title=f"Hetzner Cloud ({infra.server_type} in {infra.location})", title_justify="left")
        for column in ("action", "resource", "name", "detail"):
            changes.add_column(column)
        for change in infra.changes:
            changes.add_row(change.action, change.kind, change.name, change.detail)
        console.print(changes)
        if infra.dns_records:
            console.print(f"DNS: A/AAAA for {', '.join(infra.dns_records)}")
        console.print(f"Price: {euros(infra.monthly_gross)} per month for the server (incl. VAT, from the Hetzner API).")
    elif config.target.kind == "hetzner":
        console.print("Cloud changes and price: set HCLOUD_TOKEN to read them from the Hetzner API.")
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow")


def destroy(config: AiniConfig, confirm: str | None, keep_volume: bool, keep_primary_ip: bool, ask, say) -> list:
    """Remove the project's labelled Hetzner resources after a typed confirmation."""
    from hcloud import APIException
    from requests import RequestException

    from . import cloud
    from .errors import InputError

    if config.target.kind != "hetzner":
        raise InputError(f"aini destroy removes Hetzner Cloud resources; target kind '{config.target.kind}' has none")
    keep = ({"volume"} if keep_volume else set()) | ({"primary_ip"} if keep_primary_ip else set())
    try:
        client = cloud.connect()
        owned = cloud.read_owned(client, config)
        if not owned:
            say(f"Nothing labelled {cloud.selector(config)} exists; nothing to remove.")
            return []
        for item in owned:
            say(f"  {'keep  ' if item.kind in keep else 'remove'} {item.kind} {item.name}")
        answer = confirm if confirm is not None else ask(f"Type the project name '{config.project}' to remove these")
        if answer != config.project:
            raise InputError("confirmation did not match the project name; nothing was removed")
        return cloud.destroy(client, config, keep, say)
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None
