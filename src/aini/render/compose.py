"""One compose project per group: the application, its databases on the group's own
internal network, and only the web-facing container on the proxy network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..catalog import by_name
from ..catalog.model import Ref
from ..catalog.networks import FIXED_IPS, PROXY_DYNAMIC, PROXY_NETWORK, PROXY_SUBNET

if TYPE_CHECKING:
    from ..catalog.model import Context, EnvValue, Privileges, ServiceSpec, Tool
    from ..config import Images

WATCHTOWER_ENABLE = "com.centurylinklabs.watchtower.enable"
WATCHTOWER_MONITOR = "com.centurylinklabs.watchtower.monitor-only"
# Consul probes every service, so it alone joins every group's internal network. It
# forwards nothing between them: each group still reaches only its own members.
_JOINS_EVERY_NETWORK = {"consul"}
# Containers without a route that still need the proxy network: Nextcloud's cron runs the
# OnlyOffice connector's daily check (it calls OnlyOffice, which lives there) and reaches
# S3, while an internal network has no way out. Databases never join it.
_JOINS_PROXY = {"nextcloud-cron"}


def image_ref(spec: ServiceSpec, ctx: Context) -> str:
    return pinned_ref(spec, ctx.config.images)


def pinned_ref(spec: ServiceSpec | Tool, images: Images) -> str:
    """The pinned image, through the user's mirror or per-container override if any."""
    if spec.name in images.overrides:
        return images.overrides[spec.name]
    if images.mirror:
        path = spec.image.split("/", 1)[1]  # drop the registry host, keep the repository path
        return f"{images.mirror}/{path}:{spec.version}"
    return spec.pinned


def split_env(spec: ServiceSpec, ctx: Context) -> tuple[dict[str, str], dict[str, EnvValue]]:
    """Plain values go into compose; values built from secrets go into the 0600 env file."""
    plain: dict[str, str] = {}
    secret: dict[str, EnvValue] = {}
    for key, value in spec.env(ctx).items():
        (secret if isinstance(value, Ref) else plain)[key] = value
    return plain, secret


def internal_networks(groups: Mapping[str, Sequence[ServiceSpec]]) -> dict[str, str]:
    """Group -> its internal network, for each group of more than one container or with a
    private route. The deploy creates them before any group (so Consul, deployed early, can
    join them all); compose files refer to them as external."""
    return {g: f"aini-{g}" for g, members in groups.items() if len(members) > 1 or any(map(_private, members))}


def _private(spec: ServiceSpec) -> bool:
    return spec.route is not None and spec.route.private


def _joins(spec: ServiceSpec, ctx: Context, internal: Mapping[str, str]) -> list[str]:
    """The other groups whose internal networks this container joins: Consul all of them
    (to probe), Traefik those with a private route (to serve it)."""
    if spec.name in _JOINS_EVERY_NETWORK:
        return [g for g in internal if g != spec.group]
    if spec.name == "traefik":
        private = {s.group for s in ctx.entries.values() if ctx.on(s.name) and _private(s)}
        return [g for g in internal if g in private and g != spec.group]
    return []


def service(spec: ServiceSpec, ctx: Context, group: list[ServiceSpec], has_env_file: bool,
            internal: Mapping[str, str]) -> dict:
    plain, _ = split_env(spec, ctx)
    svc: dict = {"image": image_ref(spec, ctx), "container_name": spec.container, "restart": "unless-stopped"}
    if spec.entrypoint:
        svc["entrypoint"] = list(spec.entrypoint)
    if spec.command:
        svc["command"] = list(spec.command)
    if has_env_file:
        svc["env_file"] = [f"{spec.name}.env"]
    if plain:
        svc["environment"] = dict(sorted(plain.items()))
    mounts = [*spec.volumes, *(spec.files.mounts_for(ctx) if spec.files else ())]
    if mounts:
        svc["volumes"] = [f"{v.name}:{v.target}{':ro' if v.read_only else ''}" for v in mounts]
    if spec.extra.get("ports"):
        svc["ports"] = _ports(list(spec.extra["ports"]), ctx)  # type: ignore[arg-type]
    for key in ("user", "pid"):
        if key in spec.extra:
            svc[key] = spec.extra[key]
    svc.update(_privileges(spec.privileges))
    networks = _networks_of(spec, group, _joins(spec, ctx, internal))
    if networks:
        svc["networks"] = networks
    deps = {d: {"condition": "service_healthy"} for d in spec.depends_on if ctx.on(d) and _healthy_dep(d)}
    if deps:
        svc["depends_on"] = deps
    h = spec.health
    if h.test or h.port is not None:
        # Without `test` the daemon keeps the image's own HEALTHCHECK command and takes only
        # the timing: Netdata's image checks every 60 s, so its first check would come a minute late.
        svc["healthcheck"] = {
            **({"test": list(h.test)} if h.test else {}),
            "interval": h.interval,
            "timeout": h.timeout,
            "retries": h.retries,
            "start_period": h.start_period,
        }
    svc["mem_reservation"] = f"{spec.mem_reservation}m"
    svc["mem_limit"] = f"{spec.mem_limit}m"
    svc["labels"] = _labels(spec, ctx)
    return svc


def _privileges(p: Privileges) -> dict:
    keys: dict = {} if p.default_caps else {"cap_drop": ["ALL"]}
    if p.cap_add:
        keys["cap_add"] = list(p.cap_add)
    if not p.new_privileges:
        keys["security_opt"] = ["no-new-privileges:true"]
    if p.read_only:
        keys["read_only"] = True
    keys["pids_limit"] = p.pids
    return keys


def _ports(ports: list[str], ctx: Context) -> list[str]:
    """On the local target, Traefik listens where aini.yml says (loopback by default)."""
    target = ctx.config.local_target
    if target is None:
        return ports
    host = {"80": target.http_port, "443": target.https_port}
    bind = f"[{target.bind}]" if ":" in target.bind else target.bind
    return [f"{bind}:{host[p.split(':')[-1]]}:{p.split(':')[-1]}" for p in ports]


def _healthy_dep(name: str) -> bool:
    return by_name(name).health.test is not None or by_name(name).health.port is not None


def _networks_of(spec: ServiceSpec, group: list[ServiceSpec], joins: list[str]) -> dict:
    networks: dict = {}
    if len(group) > 1 or _private(spec):
        networks["internal"] = {}
    if (spec.route and not _private(spec)) or spec.name in _JOINS_PROXY:
        networks["proxy"] = {"ipv4_address": FIXED_IPS[spec.name]} if spec.name in FIXED_IPS else {}
    networks.update({_joined(g): {} for g in joins})
    return networks


def _joined(group: str) -> str:
    return f"{group}-internal"


def _labels(spec: ServiceSpec, ctx: Context) -> dict[str, str]:
    labels = {
        "aini.project": ctx.config.project,
        "aini.group": spec.group,
        "aini.service": spec.name,
        WATCHTOWER_ENABLE: "false" if spec.update == "off" else "true",
    }
    if spec.update == "monitor":
        labels[WATCHTOWER_MONITOR] = "true"
    return labels


def volume_name(volume: str) -> str:
    """The Docker volume behind a catalog volume (one name on every engine: backups find it)."""
    return f"aini-{volume}"


def project(group_name: str, specs: list[ServiceSpec], ctx: Context, env_files: set[str],
            internal: Mapping[str, str]) -> dict:
    """`internal`: every enabled group's internal network (internal_networks)."""
    doc: dict = {
        "name": f"aini-{group_name}",
        "services": {s.name: service(s, ctx, specs, s.name in env_files, internal) for s in specs},
    }
    # Volumes and networks carry the project label too: `docker volume ls --filter` finds
    # exactly what a project owns (backups, destroy, tests' teardown).
    owner = {"aini.project": ctx.config.project}
    networks: dict = {}
    if group_name in internal:
        # internal (created so by the deploy): no route to the outside; databases are
        # reachable only from their group (and Consul's probes).
        networks["internal"] = {"name": internal[group_name], "external": True}
    networks.update({_joined(g): {"name": internal[g], "external": True} for s in specs for g in _joins(s, ctx, internal)})
    if any((s.route and not _private(s)) or s.name in _JOINS_PROXY for s in specs):
        if group_name == "traefik":
            ipam = {"config": [{"subnet": PROXY_SUBNET, "ip_range": PROXY_DYNAMIC}]}
            networks["proxy"] = {"name": PROXY_NETWORK, "ipam": ipam, "labels": owner}
        else:
            networks["proxy"] = {"name": PROXY_NETWORK, "external": True}
    if networks:
        doc["networks"] = networks
    volumes = sorted({v.name for s in specs for v in s.volumes if not v.name.startswith(("/", "./"))})
    if volumes:
        doc["volumes"] = {v: {"name": volume_name(v), "labels": owner} for v in volumes}
    return literal(doc)


def literal(value):
    """`value` with every `$` doubled: Compose interpolates `${X}` from the environment it runs
    in, and values from aini.yml (a schedule, a region) are data, never references."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    return value
