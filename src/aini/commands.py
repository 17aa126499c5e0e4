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


def show_plan(config: AiniConfig, project_dir: Path, as_json: bool) -> None:
    store = SecretStore(project_dir / STORE_DIR)
    result = make(config, set(store.names()))
    if as_json:
        print(json.dumps(asdict(result) | {"fits": result.budget.fits}, indent=2, sort_keys=True))
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
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow")
