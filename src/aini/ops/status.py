"""`aini status`: one row per deployed service — container state, health, restarts, URL
and the certificate its host presents — and a verdict.

The same split as the deploy step: aini.docker.engine builds the docker argv lists and
parses their output, `assess` decides per service (pure: it is given `now`). The edges are
thin: `check_certificates` does the TLS handshakes (concurrent, each bounded), `collect`
runs the docker commands through a Runner — the local one, or an SSH-wrapping one for a
remote target — and aini.cli.tables / `StatusReport.to_dict` present the result.

No secret is read: `docker inspect` is asked for named fields only (never Config.Env, which
holds the values of the env files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .. import catalog
from ..backup import scope as backup_scope
from ..backup import record
from ..catalog.networks import FIXED_IPS
from ..config import AiniConfig
from ..controlplane import registry
from ..controlplane.bootstrap import State
from ..controlplane.vault import VaultClient
from ..deploy.record import DEPLOYED_MANIFEST, parse_deployed
from ..docker.cmd import Runner, Tools
from ..docker.engine import Container, inspect_cmd, parse_ids, parse_inspect, status_cmd
from ..errors import AiniError, InputError
from ..project import DEPLOYED_DIR, Project, private_dir
from ..sites.local import find_tools, run_cmd
from .targets import is_local, site_for, tools_for

CERT_TIMEOUT = 3.0  # seconds per host: connect and handshake together
CERT_WORKERS = 16
CERT_WARN_DAYS = 14  # ACME renews 30 days before expiry: fewer days left means renewal fails
STARTING_GRACE = 120.0  # seconds a container may report "starting" before it counts as failing
NOTHING_DEPLOYED = "nothing deployed yet; run aini up"



# ------------------------------------------------------------------------ data




@dataclass(frozen=True)
class Expected:
    """A service the deployed manifest says should run; `host` when Traefik routes to it."""

    service: str
    group: str
    host: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class CertInfo:
    """The leaf certificate a host presented (not verified), or why there was none."""

    host: str
    not_after: dt.datetime | None = None
    issuer: str | None = None
    names: tuple[str, ...] = ()
    error: str | None = None

    def days_left(self, now: dt.datetime) -> int | None:
        if self.not_after is None:
            return None
        return int((self.not_after - now).total_seconds() // 86400)

    @property
    def names_host(self) -> bool:
        return names_match(self.host, self.names)


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    group: str
    state: str  # the container's state, or "missing"
    health: str | None
    restarts: int | None
    url: str | None
    cert_expires: str | None  # ISO 8601, UTC
    cert_days_left: int | None
    cert_issuer: str | None
    ok: bool
    reason: str  # why not ok; on an ok row, a note (or "")
    consul: str | None = None  # Consul's check: passing | warning | critical; None: not registered/read
    backup: str | None = None  # its last good backup, or why it is a problem; None: not backed up

    def to_dict(self) -> dict:
        return {
            "service": self.service, "group": self.group, "state": self.state, "health": self.health,
            "restarts": self.restarts, "url": self.url, "cert_expires": self.cert_expires,
            "cert_days_left": self.cert_days_left, "cert_issuer": self.cert_issuer, "ok": self.ok,
            "reason": self.reason, "consul": self.consul, "backup": self.backup,
        }


@dataclass(frozen=True)
class StatusReport:
    project: str
    services: tuple[ServiceStatus, ...]
    checked_at: dt.datetime
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.services) and all(s.ok for s in self.services)

    @property
    def failing(self) -> list[ServiceStatus]:
        return [s for s in self.services if not s.ok]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
            "project": self.project,
            "services": [s.to_dict() for s in self.services],
        }


# ------------------------------------------------------------------------ commands








# ------------------------------------------------------------------------ parsing










def parse_certificate(der: bytes, host: str) -> CertInfo:
    """Expiry, issuer CN and DNS names of a DER certificate. ValueError if unreadable."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(issuer_cn[0].value) if issuer_cn else (cert.issuer.rfc4514_string() or None)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return CertInfo(host, cert.not_valid_after_utc, issuer, names)


def names_match(host: str, names: Iterable[str]) -> bool:
    """Whether a certificate naming `names` is valid for `host` (a wildcard covers one label)."""
    host = host.lower().rstrip(".")
    parent = host.split(".", 1)[1] if "." in host else None
    for name in names:
        name = name.lower().rstrip(".")
        if name == host or (name.startswith("*.") and parent is not None and name[2:] == parent):
            return True
    return False


# ------------------------------------------------------------------ what should run


def expected_services(deployed: Mapping, config: AiniConfig) -> list[Expected]:
    """The services of the deployed manifest, in deploy order, with their URL when routed
    (the catalog context's URL: https://<subdomain>.<domain>, with the port when the local
    target's Traefik is not on 443)."""
    ctx = catalog.context(config)
    groups = deployed.get("groups") or {}
    order = [g for g in deployed.get("order") or [] if g in groups]
    order += [g for g in groups if g not in order]
    result = []
    for group in order:
        for name in groups[group].get("services") or []:
            try:
                spec = catalog.by_name(name)
            except KeyError:  # deployed by another AINI version
                spec = None
            if spec is not None and catalog.routed(spec, ctx.config):
                result.append(Expected(name, group, ctx.fqdn(name), ctx.url(name) + "/"))
            else:
                result.append(Expected(name, group))
    return result


def tls_endpoint(config: AiniConfig) -> tuple[str, int] | None:
    """Where to reach Traefik's HTTPS port: the local target's bind address and https_port;
    None elsewhere (each host on 443, through DNS)."""
    target = config.target
    if target.kind != "local":
        return None
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(target.bind, target.bind)
    return address, target.https_port


# ------------------------------------------------------------------------ deciding


def assess(
    expected: Sequence[Expected],
    containers: Sequence[Container],
    certs: Mapping[str, CertInfo],
    now: dt.datetime,
    starting_grace: float = STARTING_GRACE,
) -> list[ServiceStatus]:
    """One row per expected service, then one per container of the project that the
    deployed manifest does not list (a group whose last deploy failed, a leftover)."""
    by_service: dict[str, Container] = {}
    for c in containers:
        kept = by_service.get(c.service)
        if kept is None or (kept.state != "running" and c.state == "running"):
            by_service[c.service] = c
    rows = []
    for e in expected:
        container = by_service.pop(e.service, None)
        rows.append(_row(e, container, certs.get(e.host) if e.host else None, now, starting_grace))
    for c in sorted(by_service.values(), key=lambda c: (c.group, c.service)):
        rows.append(_row(Expected(c.service, c.group), c, None, now, starting_grace,
                         note="not in the deployed manifest"))
    return rows


def _row(e: Expected, c: Container | None, cert: CertInfo | None, now: dt.datetime, grace: float,
         note: str = "") -> ServiceStatus:
    ok, reasons = container_verdict(c, now, grace)
    cert_ok, cert_reason = cert_verdict(cert, now)
    # Problems first, notes after: the first words of a failing row say why it fails.
    problems = ([] if ok else reasons) + ([] if cert_ok else [cert_reason])
    notes = (reasons if ok else []) + ([cert_reason] if cert_ok and cert_reason else []) + ([note] if note else [])
    ok = ok and cert_ok
    reason = "; ".join([*problems, *notes])
    days = cert.days_left(now) if cert else None
    return ServiceStatus(
        service=e.service,
        group=e.group or (c.group if c else ""),
        state=c.state if c else "missing",
        health=c.health if c else None,
        restarts=c.restarts if c else None,
        url=e.url,
        cert_expires=cert.not_after.isoformat(timespec="seconds") if cert and cert.not_after else None,
        cert_days_left=days,
        cert_issuer=cert.issuer if cert else None,
        ok=ok,
        reason=reason,
    )


def container_verdict(c: Container | None, now: dt.datetime, grace: float = STARTING_GRACE) -> tuple[bool, list[str]]:
    """(ok, reasons): running and healthy (or without a health check) is ok."""
    if c is None:
        return False, ["no container"]
    if c.state == "running":
        if c.health in (None, "healthy"):
            return True, []
        if c.health == "unhealthy":
            return False, ["health check failing"]
        if c.health == "starting":
            age = (now - c.started_at).total_seconds() if c.started_at else None
            if age is not None and age > grace:
                return False, [f"health check still starting after {_duration(age)}"]
            return True, ["health check starting"]
        return False, [f"health {c.health}"]
    if c.state == "restarting":
        return False, [f"restarting (restarted {c.restarts} times)"]
    if c.state == "exited":
        code = f" with code {c.exit_code}" if c.exit_code is not None else ""
        return False, [f"exited{code}"]
    if c.state == "created":
        return False, ["created but never started"]
    return False, [c.state]


def cert_verdict(cert: CertInfo | None, now: dt.datetime) -> tuple[bool, str]:
    """(ok, reason) for the certificate a routed host presented; (True, "") when not checked."""
    if cert is None:
        return True, ""
    if cert.error:
        return False, f"TLS: {cert.error}"
    days = cert.days_left(now)
    if cert.not_after is not None and cert.not_after <= now:
        return False, f"certificate expired on {cert.not_after:%Y-%m-%d}"
    if not cert.names_host:
        return False, f"certificate does not name {cert.host} (issuer {cert.issuer or '?'})"
    if days is not None and days < CERT_WARN_DAYS:
        return True, f"certificate expires in {days} days"
    return True, ""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# ------------------------------------------------------------------------ doing


def fetch_certificate(host: str, endpoint: tuple[str, int] | None, timeout: float = CERT_TIMEOUT) -> CertInfo:
    """A TLS handshake with SNI `host` to `endpoint` (default host:443); the leaf
    certificate is read, not verified. Failures are reported in the result, never raised."""
    address = endpoint or (host, 443)
    where = f"{address[0]}:{address[1]}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(address, timeout=timeout) as raw:
            raw.settimeout(max(0.01, deadline - time.monotonic()))
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except ConnectionRefusedError:
        return CertInfo(host, error=f"connection refused at {where}")
    except TimeoutError:
        return CertInfo(host, error=f"no TLS answer from {where} within {timeout:g} s")
    except ssl.SSLError as exc:
        return CertInfo(host, error=f"handshake with {where} failed ({exc.reason or type(exc).__name__})")
    except (OSError, UnicodeError) as exc:  # no route, unknown host name, an IDNA-invalid name
        why = getattr(exc, "strerror", None) or type(exc).__name__
        return CertInfo(host, error=f"cannot connect to {where} ({why})")
    if not der:
        return CertInfo(host, error=f"{where} presented no certificate")
    try:
        return parse_certificate(der, host)
    except ValueError:
        return CertInfo(host, error=f"{where} presented an unreadable certificate")


def check_certificates(hosts: Iterable[str], endpoint: tuple[str, int] | None,
                       timeout: float = CERT_TIMEOUT) -> dict[str, CertInfo]:
    """`fetch_certificate` for every host, concurrently: the whole check takes about one
    timeout, not one per host."""
    hosts = sorted(set(hosts))
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(CERT_WORKERS, len(hosts)), thread_name_prefix="aini-tls") as pool:
        results = pool.map(lambda h: fetch_certificate(h, endpoint, timeout), hosts)
        return dict(zip(hosts, results, strict=True))


def read_containers(tools: Tools, project: str, run: Runner) -> list[Container]:
    r = run(status_cmd(tools, project))
    if r.returncode != 0:
        raise AiniError(f"the Docker engine does not answer: {r.stderr.strip()[:300] or 'docker ps failed'}")
    ids = parse_ids(r.stdout)
    if not ids:
        return []
    r = run(inspect_cmd(tools, ids))
    containers = parse_inspect(r.stdout)
    if r.returncode != 0 and not containers and "No such" not in r.stderr:
        raise AiniError(f"docker inspect failed: {r.stderr.strip()[:300]}")
    return containers


def collect(
    config: AiniConfig,
    project_dir: Path,
    run: Runner = run_cmd,
    tools: Tools | None = None,
    endpoint: tuple[str, int] | None = None,
    *,
    deploy_dir: Path | None = None,
    read_deployed: Callable[[], dict | None] | None = None,
    now: dt.datetime | None = None,
    cert_timeout: float = CERT_TIMEOUT,
) -> StatusReport:
    """Read what runs (through `run`) and what each routed host presents (at `endpoint`,
    default: where the local target's Traefik listens), and assess every service.

    A remote target passes an SSH-wrapping runner, its deployed manifest's directory and its
    server's address as the endpoint."""
    started = time.monotonic()
    if read_deployed is not None:
        deployed = read_deployed()
    else:
        path = (deploy_dir or private_dir(project_dir) / DEPLOYED_DIR) / DEPLOYED_MANIFEST
        deployed = parse_deployed(path.read_text(encoding="utf-8") if path.is_file() else None)
    if deployed is None:
        raise AiniError(NOTHING_DEPLOYED)
    expected = expected_services(deployed, config)
    endpoint = endpoint or tls_endpoint(config)
    hosts = [e.host for e in expected if e.host]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aini-certs") as pool:
        certs_future = pool.submit(check_certificates, hosts, endpoint, cert_timeout)  # meanwhile: docker
        containers = read_containers(tools or find_tools(compose=False), config.project, run)
        certs = certs_future.result()
    if not expected and not containers:
        raise AiniError(NOTHING_DEPLOYED)
    now = now or dt.datetime.now(dt.UTC)
    rows = assess(expected, containers, certs, now)
    return StatusReport(config.project, tuple(rows), now, time.monotonic() - started)


# ------------------------------------------------------------------------ showing




VAULT_STATES = {
    "sealed": "Vault is sealed (services keep running); run: aini vault unseal",
    "uninitialized": "Vault is not initialised; run: aini up",
}


def overlay_control_plane(report: StatusReport, vault_state: str | None,
                          consul: Mapping[str, str] | None) -> StatusReport:
    """Rows with what the control plane knows: Vault's seal state on its row, Consul's
    verdict on every registered service (a critical check fails the row)."""
    rows = []
    for row in report.services:
        if row.service in catalog.VAULTS and vault_state in VAULT_STATES:
            row = replace(row, ok=False, reason=VAULT_STATES[vault_state])
        verdict = (consul or {}).get(row.service)
        if verdict is not None:
            row = replace(row, consul=verdict)
            if verdict == "critical" and row.ok:
                row = replace(row, ok=False, reason="Consul's health check is critical")
        rows.append(row)
    return replace(report, services=tuple(rows))


def overlay_backups(report: StatusReport, config: AiniConfig, text: str | None,
                    journal: str | None = None) -> StatusReport:
    """Rows with the site's backup record: the last good backup of each service that keeps
    data; a failed last run or a backup older than two periods of backup.schedule fails the row.
    A journal left on the site (a run under way or killed) is named on its groups' rows."""
    saved = {i.service for i in backup_scope.items(config)}
    verdicts = record.verdicts(record.parse(text), saved, config.backup.schedule, report.checked_at)
    left = record.parse_journal(journal)
    groups = {s.name: s.group for s in catalog.enabled(config)}
    rows = []
    for row in report.services:
        if row.service in verdicts:
            ok, note = verdicts[row.service]
            if left is not None and groups.get(row.service) in left.groups:
                note = f"{note}; {record.interrupted_note(left)}"
            row = replace(row, backup=note)
            if not ok and row.ok:
                row = replace(row, ok=False, reason=note)
        rows.append(row)
    return replace(report, services=tuple(rows))


def read_control_plane(project: Project, site) -> tuple[str | None, dict[str, str] | None]:
    """Vault's state and Consul's checks, each None when not enabled or not reachable (the
    container rows already say why)."""
    config = project.config
    specs = catalog.enabled(config)
    names = {s.name for s in specs}
    vault_state = consul = None
    vault = catalog.vault_of(specs)
    if vault:
        with contextlib.suppress(AiniError):
            vault_state = VaultClient(site.endpoint(FIXED_IPS[vault.name], vault.port), timeout=3).health().state
    if "consul" in names:
        token = State.load(project.root).consul_deploy_token
        if token:
            with contextlib.suppress(AiniError):
                client = registry.consul_at(site, token, timeout=3)
                skipped = {u.name for u in registry.unprobed(config)}
                consul = registry.health(client, sorted(names - skipped))
    return vault_state, consul


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--connect: {text!r} is not HOST:PORT (e.g. 203.0.113.7:443)")
    return host.strip("[]"), int(port)


def report(project: Project, connect: str | None = None) -> StatusReport:
    """`aini status`: what runs, what each routed host presents, what the control plane says.
    A server's containers are read over SSH; its certificates at its address on 443, or
    at `connect` (HOST:PORT) when Traefik is reached another way (no DNS yet, a tunnel)."""
    endpoint = parse_endpoint(connect) if connect else None
    with site_for(project) as site:
        if not is_local(project):
            endpoint = endpoint or (site.access.host, 443)  # type: ignore[attr-defined]
        result = collect(project.config, project.root, site.run, tools_for(project, compose=False), endpoint,
                         read_deployed=lambda: parse_deployed(site.read(DEPLOYED_MANIFEST)))
        result = overlay_control_plane(result, *read_control_plane(project, site))
        if project.config.backup.repository:
            result = overlay_backups(result, project.config, site.read(record.FILE), site.read(record.JOURNAL))
        return result
