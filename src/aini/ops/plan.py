"""`aini plan`: what `aini up` would do. Offline from aini.yml and the catalog (services,
secrets, memory); with a Hetzner token, the cloud changes and price; with --deployed, what
the deploy step would do on the running stack and Consul's record of the last deploy."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .. import catalog, sizing
from ..backup import scope
from ..catalog.backup import TOOLS
from ..catalog.model import ServiceSpec, subdomain_of
from ..config import AiniConfig
from ..controlplane import registry
from ..controlplane.bootstrap import State
from ..deploy.apply import observe
from ..deploy.plan import DeployPlan
from ..errors import AiniError, InputError, SizingError
from ..infra import hetzner as cloud
from ..project import Project
from ..render import bundle
from ..render.compose import image_ref
from ..store import SecretStore
from .targets import is_hetzner, site_for, tools_for


@dataclass(frozen=True)
class ServiceRow:
    name: str
    group: str
    title: str
    image: str
    url: str | None
    admin: bool
    mem_reservation: int
    mem_limit: int


@dataclass(frozen=True)
class SecretRow:
    name: str
    kind: str  # generated | user
    state: str  # stored | to generate | set | not set (optional) | missing


@dataclass(frozen=True)
class Overview:
    """What `aini plan` shows without connecting anywhere: services, secrets, memory."""

    target: str
    services: list[ServiceRow]
    secrets: list[SecretRow]
    budget: sizing.Budget
    warnings: list[str]


def check_repository(field: str, repository: str) -> None:
    if repository.startswith(("sftp:", "rclone:")):
        raise InputError(f"{field}: {repository.split(':', 1)[0]}: repositories are not supported yet; "
                         "use s3: (Hetzner Object Storage), rest: (a rest-server) or a directory path")


def check(config: AiniConfig) -> list[ServiceSpec]:
    """Checks that need the catalog; raise InputError naming the field. Returns the enabled entries."""
    known = [*catalog.names(), *(tool.name for tool in TOOLS)]
    unknown = sorted(set(config.images.overrides) - set(known))
    if unknown:
        raise InputError(f"images.overrides: unknown service {', '.join(unknown)}; known: {', '.join(known)}")
    check_repository("backup.repository", config.backup.repository or "")
    specs = catalog.enabled(config)
    if config.target.kind == "hetzner":
        fit = sizing.budget(specs, config.target.server_type)
        if not fit.fits:
            family = config.target.server_type.rstrip("0123456789")
            bigger = sizing.smallest_fitting(specs, family)
            heavy = max((s for s in specs if s.role in ("app", "admin")), key=lambda s: s.mem_reservation)
            raise SizingError(
                f"target.server_type: the enabled services reserve {_gib(fit.reserved_mib)} (with the host's "
                f"{_gib(sizing.HOST_RESERVE_MIB)}) but {fit.server_type} has {_gib(fit.ram_mib or 0)}; "
                + (f"choose {bigger} or larger" if bigger else "choose a larger server type")
                + f", or disable {heavy.name} ({_gib(heavy.mem_reservation)})"
            )
    return specs


def check_project(project: Project) -> tuple[list[ServiceSpec], str]:
    """`aini validate`: the enabled entries, and the kind of target they go to."""
    return check(project.config), project.config.target.kind


def overview(config: AiniConfig, stored: set[str]) -> Overview:
    specs = check(config)
    ctx = catalog.context(config)
    rows = [
        ServiceRow(
            name=s.name,
            group=s.group,
            title=s.title,
            image=image_ref(s, ctx),
            url=f"https://{subdomain_of(s, config)}.{config.domain}" if catalog.routed(s, config) else None,
            admin=bool(s.route and s.route.admin),
            mem_reservation=s.mem_reservation,
            mem_limit=s.mem_limit,
        )
        for s in specs
    ]
    needed = _referenced_secrets(specs, ctx)
    secrets = [
        SecretRow(s.name, "generated", "stored" if s.name in stored else "to generate")
        for s in catalog.secrets_for(specs)
    ]
    for user in catalog.user_secrets_for(specs):
        if user.name not in needed:
            continue  # declared by a service but not used by this configuration
        if user.name in stored:
            state = "set"
        else:
            state = "missing" if needed.get(user.name) else "not set (optional)"
        secrets.append(SecretRow(user.name, "user", state))
    server_type = config.target.server_type if config.target.kind == "hetzner" else None
    budget = sizing.budget(specs, server_type)
    warnings = []
    if config.target.kind == "hetzner" and budget.ram_mib is None:
        warnings.append(f"server type {server_type} is not known offline; `aini up` checks it against the Hetzner API")
    if config.target.kind != "hetzner":
        warnings.append("the server's memory is checked on the host at `aini up`")
    if config.tls.staging:
        warnings.append("tls.staging is on: browsers will not trust the certificates")
    return Overview(config.target.kind, rows, secrets, budget, warnings)


def _referenced_secrets(specs: list[ServiceSpec], ctx: catalog.Context) -> dict[str, bool]:
    """Secret name -> whether some enabled service needs it (a non-optional reference)."""
    needed: dict[str, bool] = {}
    for spec in specs:
        for value in spec.env(ctx).values():
            if isinstance(value, catalog.Ref):
                needed[value.secret] = needed.get(value.secret, False) or not value.optional
    return needed


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f} GiB"


def diff_groups(desired: Mapping[str, str], deployed: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """Group -> new | changed | unchanged | removed: the desired bundle's hashes against what
    Consul says was deployed last (None: nothing deployed yet)."""
    deployed = deployed or {}
    rows = [(g, "new" if g not in deployed else "unchanged" if deployed[g] == h else "changed")
            for g, h in desired.items()]
    return rows + [(g, "removed") for g in deployed if g not in desired]


def cloud_plan(project: Project):
    """What would change in Hetzner Cloud, with the price read from the API; None when the
    target is not Hetzner or no token is set (plan never prompts: it must work offline)."""
    config = project.config
    if not is_hetzner(project) or not os.environ.get(cloud.TOKEN_ENV):
        return None
    from hcloud import APIException  # third-party, loaded only when a token is set
    from requests import RequestException

    try:
        client = cloud.connect()
        return cloud.plan(config, cloud.read_offers(client), cloud.read_owned(client, config))
    except (APIException, RequestException) as exc:
        raise cloud.api_error(exc) from None




def deployed_diff(project: Project) -> list[tuple[str, str]]:
    """The rendered bundle's group hashes against Consul's record of the last deploy (reached
    where the stack runs: this engine, or over SSH)."""
    config = project.config
    if not config.services.consul.enabled:
        raise AiniError("services.consul is disabled: there is no deploy record to compare with")
    desired = bundle.manifest_of(_rendered_from_store(project)).hashes()
    token = State.load(project.root).consul_deploy_token
    if not token:
        raise AiniError("this machine has no Consul deploy token for the project yet; run aini up first")
    with site_for(project) as site:
        deployed = registry.deployed_hashes(registry.consul_at(site, token))
    return diff_groups(desired, deployed)


def deploy_preview(project: Project) -> DeployPlan:
    """What `aini up` would do to each group where the stack runs (read-only: the site is
    observed, nothing is changed), from the bundle rendered with the secrets stored here."""
    files = _rendered_from_store(project)
    with site_for(project) as site:
        the_plan = observe(files, site, tools_for(project))
    line = scope.before_update_line(project.config, scope.before_update(project.config,
                                                                         [v.service for v in the_plan.versions]))
    refused = scope.moves_refused(project.config, [v.service for v in the_plan.versions if v.moves])
    notes = tuple(n for n in (line, refused and f"! aini up refuses: {refused}") if n)
    return replace(the_plan, notes=notes) if notes else the_plan


def _rendered_from_store(project: Project) -> bundle.Bundle:
    """The bundle as the last `aini up` from here rendered it; generates nothing."""
    store = SecretStore(project.aini_dir)
    missing = [s.name for s in catalog.secrets_for(check(project.config)) if store.get(s.name) is None]
    if missing:
        raise AiniError(f"secrets not generated yet ({', '.join(missing)}): nothing was deployed from here; run aini up")
    return bundle.render(project.config, store)
