"""What a deploy tells Consul once the stack is up: which services it probes, and what is
deployed.

Pure builders decide (`registrations`, `unprobed`, `records`); `sync` is the one thin
executor, and `health` and `deployed_hashes` are the reads `aini status` and `aini plan`
need. Everything comes from the catalog and the bundle's manifest, never from the env
files: the KV records hold images, hashes, times and versions only, never a secret.

Consul joins the proxy network and every group's internal network (render/compose.py),
so it reaches every container that listens. A container with no port (nextcloud-cron,
watchtower) is checked through Netdata's read-only Docker API (socket-proxy):
`GET /containers/<name>/top` answers 200 while the container runs and 409 when it does
not. Without socket-proxy those are listed as `unprobed` with the reason, as is Consul
itself, and the deploy reports them. The price of that reach: a compromised Consul could
talk to every database and read the Docker API (containers' environments included); its
ACLs are on, default deny.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import catalog
from ..catalog.model import HealthCheck, ServiceSpec
from ..errors import AiniError
from ..render.compose import internal_networks
from ..catalog.networks import FIXED_IPS
from . import Request
from .consul import (
    BACKUP_SERVICE,
    KV_PREFIX,
    ConsulClient,
    ConsulError,
    Health,
    backup_service_definition,
    deploy_record,
    register_request,
    service_definition,
)

if TYPE_CHECKING:
    from ..config import AiniConfig
    from ..sites.base import Site

TAG = "aini"  # every service AINI registers carries it: what is not wanted any more is found by it
RECORDS = f"{KV_PREFIX}deploy/"  # deploy_record's keys
MANIFEST_KEY = f"{RECORDS}_manifest"  # "_" cannot start a service name: never a service's record
FINGERPRINT = "aini_definition"  # Meta key: a digest of the registered definition

INTERNAL = "on no network Consul joins"
NO_PORT = "no port to probe, and the read-only Docker API (socket-proxy, with netdata) is off"
DOCKER_API = "socket-proxy"  # the catalog entry whose Docker API tells whether a container runs
# A Consul server registers itself as the service "consul" (serf health); the leader keeps
# that entry on the server port, so an agent registration with the same ID would fight it.
SELF = "Consul reports its own health (service 'consul')"

# container name and port -> where Consul reaches them; tests map containers to 127.0.0.1
Resolve = Callable[[str, int], tuple[str, int]]


def same_place(host: str, port: int) -> tuple[str, int]:
    """Production: Docker DNS resolves the container name on the shared network."""
    return host, port


@dataclass(frozen=True)
class Registration:
    name: str  # the catalog name, the Consul service name and ID
    address: str
    port: int | None
    check: HealthCheck  # port resolved; HTTP when it has a path, else TCP
    tags: tuple[str, ...]
    meta: Mapping[str, str] = field(default_factory=dict)  # group, image, bundle_hash, aini_version
    check_address: str | None = None  # where the check probes, when not the service's address

    def definition(self) -> dict[str, Any]:
        """The agent's register payload, with a digest of itself in Meta: re-registering
        resets a check to critical until it runs again (hashicorp/consul#5114), so `sync`
        registers only what changed."""
        body = service_definition(self.name, self.address, self.port, self.check, tags=self.tags, meta=self.meta,
                                  check_address=self.check_address)
        body["Meta"][FINGERPRINT] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return body


@dataclass(frozen=True)
class Unprobed:
    name: str
    reason: str


@dataclass(frozen=True)
class SyncResult:
    registered: tuple[str, ...]  # new or changed registrations; unchanged ones are left alone
    deregistered: tuple[str, ...]
    kv_written: int
    kv_deleted: int
    unprobed: tuple[Unprobed, ...]


# ----------------------------------------------------------------------- pure builders


def _why_unprobed(spec: ServiceSpec, specs: list[ServiceSpec]) -> str | None:
    if spec.name == "consul":
        return SELF
    if (spec.health.port or spec.port) is None:
        return None if any(s.name == DOCKER_API for s in specs) else NO_PORT
    if spec.route is None and spec.group not in internal_networks(catalog.groups(specs)):
        return INTERNAL  # neither on the proxy network nor on an internal one (Consul joins those)
    return None


def unprobed(config: AiniConfig) -> list[Unprobed]:
    """Enabled services Consul cannot probe, with the reason; in deploy order."""
    specs = catalog.enabled(config)
    return [Unprobed(s.name, reason) for s in specs if (reason := _why_unprobed(s, specs))]


def running_check(spec: ServiceSpec, docker_api_port: int) -> HealthCheck:
    """Is the container running, asked of the read-only Docker API."""
    return HealthCheck(None, port=docker_api_port, path=f"/containers/{spec.container}/top",
                       interval=spec.health.interval, timeout=spec.health.timeout)


def registrations(config: AiniConfig, manifest: Mapping[str, Any], resolve: Resolve = same_place) -> list[Registration]:
    """One registration per enabled service Consul can probe, in deploy order. `manifest`
    is the bundle's manifest.json, parsed: images and hashes are what was rendered."""
    result = []
    specs = catalog.enabled(config)
    for spec in specs:
        if _why_unprobed(spec, specs):
            continue
        group = _group(manifest, spec)
        meta = {"group": spec.group, "image": group["images"][spec.name], "bundle_hash": group["hash"],
                "aini_version": manifest["aini_version"]}
        probe = spec.health.port or spec.port
        if probe is None:
            api = catalog.by_name(DOCKER_API)
            api_host, api_port = resolve(api.container, api.port)  # type: ignore[arg-type]  # it has one
            result.append(Registration(spec.name, spec.container, None, running_check(spec, api_port),
                                       (TAG, spec.group), meta, check_address=api_host))
            continue
        host, probe_port = resolve(spec.container, probe)
        port = resolve(spec.container, spec.port)[1] if spec.port else None
        result.append(Registration(spec.name, host, port, replace(spec.health, port=probe_port),
                                   (TAG, spec.group), meta))
    return result


def _group(manifest: Mapping[str, Any], spec: ServiceSpec) -> Mapping[str, Any]:
    group = manifest["groups"].get(spec.group)
    if group is None or spec.name not in group["services"]:
        raise AiniError(f"the bundle has no service {spec.name}: render it again from this aini.yml")
    return group


def records(manifest: Mapping[str, Any], deployed_at: str) -> dict[str, bytes]:
    """Consul KV: one record per service in the manifest plus the manifest's summary, all
    stamped `deployed_at` (`sync` keeps a stored record's older time when nothing else in
    it changed). Built from named manifest fields only (images, hashes, order, version): the manifest's
    file list and post-deploy scripts are left out, and nothing here reads an env file."""
    version = manifest["aini_version"]
    entries = dict(
        deploy_record(service, image=group["images"][service], bundle_hash=group["hash"],
                      deployed_at=deployed_at, aini_version=version)
        for group in (manifest["groups"][g] for g in manifest["order"])
        for service in group["services"]
    )
    summary = {"order": list(manifest["order"]), "groups": {g: manifest["groups"][g]["hash"] for g in manifest["order"]},
               "aini_version": version, "deployed_at": deployed_at}
    entries[MANIFEST_KEY] = json.dumps(summary, sort_keys=True).encode()
    return entries


def consul_at(site: Site, token: str | None = None, timeout: float = 10.0) -> ConsulClient:
    """Consul where the stack runs: its fixed address on the site's Docker network (this
    engine's, or the server's through an SSH forward)."""
    return ConsulClient(site.endpoint(FIXED_IPS["consul"], catalog.by_name("consul").port), token=token,
                        timeout=timeout)


def agent_services_request() -> Request:
    """The local agent's services (consul.py has no builder for it); ACLs filter the list."""
    return Request("GET", "/v1/agent/services")


HISTORY = 5  # former deploys a service's record keeps: image, bundle hash, when


def _unchanged(stored: bytes | None, wanted: bytes) -> bool:
    """Byte-identical, or the same record but for `deployed_at` and its history: the time of
    a change is kept, so a deploy that changes nothing writes nothing."""
    if stored is None:
        return False
    if stored == wanted:
        return True
    try:
        old, new = json.loads(stored), json.loads(wanted)
    except ValueError:
        return False
    if not isinstance(old, dict):
        return False
    for record in (old, new):
        record.pop("deployed_at", None)
        record.pop("history", None)
    return old == new


def with_history(stored: bytes | None, wanted: bytes) -> bytes:
    """A service's new record carrying its former deploys, newest first: the stored one joins
    them when its image or bundle hash differs from the new one's (a rollback adds one too)."""
    try:
        old = json.loads(stored) if stored is not None else None
    except ValueError:
        old = None
    if not isinstance(old, dict):
        return wanted
    new = json.loads(wanted)
    history = [h for h in old.get("history") or () if isinstance(h, dict)]
    former = {k: old.get(k) for k in ("image", "bundle_hash", "deployed_at")}
    if (former["image"], former["bundle_hash"]) != (new.get("image"), new.get("bundle_hash")):
        history = [former, *history]
    if history:
        new["history"] = history[:HISTORY]
    return json.dumps(new, sort_keys=True).encode()


# ----------------------------------------------------------------------------- executor


def sync(client: ConsulClient, config: AiniConfig, manifest: Mapping[str, Any], deployed_at: str,
         resolve: Resolve = same_place) -> SyncResult:
    """Make Consul match the deploy: register what changed, deregister AINI's services that
    are no longer wanted, write the KV records that changed and drop stale ones. Safe to
    re-run after a crash at any point: each step compares with what Consul holds."""
    wanted = registrations(config, manifest, resolve)
    present = client._call(agent_services_request()).json() or {}  # same package: one token path
    registered = []
    for r in wanted:
        definition = r.definition()
        if (present.get(r.name) or {}).get("Meta", {}).get(FINGERPRINT) == definition["Meta"][FINGERPRINT]:
            continue
        client._call(register_request(definition))
        registered.append(r.name)
    names = {r.name for r in wanted}
    deregistered = sorted(sid for sid, s in present.items() if TAG in (s.get("Tags") or []) and sid not in names)
    for sid in deregistered:
        client.deregister_service(sid)

    stored = client.kv_tree(RECORDS)
    entries = records(manifest, deployed_at)
    # per-service records first, the summary last: the summary never claims more than is written
    written = 0
    for key in sorted(entries, key=lambda k: k == MANIFEST_KEY):
        if not _unchanged(stored.get(key), entries[key]):
            client.kv_put(key, entries[key] if key == MANIFEST_KEY else with_history(stored.get(key), entries[key]))
            written += 1
    stale = sorted(set(stored) - set(entries))
    for key in stale:
        client.kv_delete(key)
    return SyncResult(tuple(registered), tuple(deregistered), written, len(stale), tuple(unprobed(config)))


def ensure_backup_service(client: ConsulClient, ttl_seconds: int, schedule: str) -> bool:
    """The scheduled backup's TTL check registered, unless it already is with this TTL: a
    re-registration would reset what the last run reported. True when it registered."""
    definition = backup_service_definition(ttl_seconds, schedule)
    present = (client._call(agent_services_request()).json() or {}).get(BACKUP_SERVICE)
    if present is not None and (present.get("Meta") or {}).get("schedule") == schedule:
        return False
    client._call(register_request(definition))
    return True


def remove_backup_service(client: ConsulClient) -> None:
    if BACKUP_SERVICE in (client._call(agent_services_request()).json() or {}):
        client.deregister_service(BACKUP_SERVICE)


def health(client: ConsulClient, names: Iterable[str]) -> dict[str, Health]:
    """Each service's worst check. A name Consul does not know is "critical": pass the
    registered names (not `unprobed` ones)."""
    return {n: client.service_health(n) for n in names}


def deployed_hashes(client: ConsulClient) -> dict[str, str] | None:
    """Group -> bundle hash of the last deploy Consul knows of; None before the first one."""
    raw = client.kv_get(MANIFEST_KEY)
    if raw is None:
        return None
    try:
        return dict(json.loads(raw)["groups"])
    except (ValueError, KeyError, TypeError):
        message = f"Consul key {MANIFEST_KEY} is not an AINI deploy summary; the next `aini up` rewrites it"
    raise ConsulError(message)
