"""`aini status`: one row per deployed service — container state, health, restarts, URL
and the certificate its host presents — and a verdict.

The same split as the deploy step: `status_cmd` and `inspect_cmd` build docker argv lists,
the `parse_*` functions read their output, `assess` decides per service (pure: it is given
`now`). The edges are thin: `check_certificates` does the TLS handshakes (concurrent,
each bounded), `collect` runs the docker commands through a Runner — the local one, or an
SSH-wrapping one for a remote target — and `render_table` / `StatusReport.to_dict` present
the result.

No secret is read: `docker inspect` is asked for named fields only (never Config.Env, which
holds the values of the env files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .deploy import DEPLOYED_DIR, Cmd, Runner, Tools, load_deployed, run_cmd
from .errors import AiniError, InputError

if TYPE_CHECKING:
    from rich.console import Console

    from .config import AiniConfig

CERT_TIMEOUT = 3.0  # seconds per host: connect and handshake together
CERT_WORKERS = 16
CERT_WARN_DAYS = 14  # ACME renews 30 days before expiry: fewer days left means renewal fails
STARTING_GRACE = 120.0  # seconds a container may report "starting" before it counts as failing
NOTHING_DEPLOYED = "nothing deployed yet; run aini up"

# One JSON object per container; named fields only (Config.Env holds secret values).
# The whole .State object: Docker's templates fail on .State.Health for a container without
# a health check ("map has no entry for key"), so health is read from it in Python.
INSPECT_FORMAT = (
    '{"id":{{json .Id}},"name":{{json .Name}},"state":{{json .State}},'
    '"restarts":{{json .RestartCount}},'
    '"group":{{json (index .Config.Labels "aini.group")}},'
    '"service":{{json (index .Config.Labels "aini.service")}}}'
)


# ------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    group: str
    service: str
    state: str  # running, exited, restarting, created, paused, dead
    health: str | None  # healthy, unhealthy, starting; None: no health check
    restarts: int = 0
    started_at: dt.datetime | None = None
    exit_code: int | None = None


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

    def to_dict(self) -> dict:
        return {
            "service": self.service, "group": self.group, "state": self.state, "health": self.health,
            "restarts": self.restarts, "url": self.url, "cert_expires": self.cert_expires,
            "cert_days_left": self.cert_days_left, "cert_issuer": self.cert_issuer, "ok": self.ok,
            "reason": self.reason, "consul": self.consul,
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


def status_cmd(tools: Tools, project: str) -> Cmd:
    """The project's containers, running or not (IDs; `inspect_cmd` reads the rest)."""
    return Cmd((*tools.docker, "ps", "--all", "--no-trunc", "--filter", f"label=aini.project={project}",
                "--format", "{{.ID}}"), timeout=30)


def inspect_cmd(tools: Tools, ids: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "inspect", "--type", "container", "--format", INSPECT_FORMAT, *ids), timeout=30)


def docker_tools() -> Tools:
    """The docker CLI only: status needs no Compose."""
    docker = os.environ.get("AINI_DOCKER") or shutil.which("docker")
    if not docker:
        raise AiniError("the docker CLI is not installed; install Docker (apt-get install docker.io)")
    return Tools((docker,), ())


# ------------------------------------------------------------------------ parsing


def parse_ids(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if re.fullmatch(r"[0-9a-f]{12,64}", line.strip())]


def parse_inspect(stdout: str) -> list[Container]:
    """`docker inspect --format INSPECT_FORMAT` output; lines that are not such objects are
    skipped (a container removed between `ps` and `inspect` simply is not there)."""
    result = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        name = str(row.get("name") or "").lstrip("/")
        state = row.get("state") if isinstance(row.get("state"), dict) else {}
        health = state.get("Health") if isinstance(state.get("Health"), dict) else {}
        result.append(Container(
            id=str(row.get("id") or ""),
            name=name,
            group=str(row.get("group") or ""),
            service=str(row.get("service") or "") or name,
            state=str(state.get("Status") or "unknown"),
            health=health.get("Status") or None,
            restarts=_int(row.get("restarts")) or 0,
            started_at=parse_time(state.get("StartedAt")),
            exit_code=_int(state.get("ExitCode")),
        ))
    return result


def parse_time(value: object) -> dt.datetime | None:
    """Docker's RFC 3339 time with nanoseconds; None for its zero time ("never")."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


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
    from . import catalog

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
            if spec is not None and spec.route is not None:
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
    from .secrets import STORE_DIR

    started = time.monotonic()
    if read_deployed is not None:
        deployed = read_deployed()
    else:
        deployed = load_deployed(deploy_dir or project_dir / STORE_DIR / DEPLOYED_DIR)
    if deployed is None:
        raise AiniError(NOTHING_DEPLOYED)
    expected = expected_services(deployed, config)
    endpoint = endpoint or tls_endpoint(config)
    hosts = [e.host for e in expected if e.host]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aini-certs") as pool:
        certs_future = pool.submit(check_certificates, hosts, endpoint, cert_timeout)  # meanwhile: docker
        containers = read_containers(tools or docker_tools(), config.project, run)
        certs = certs_future.result()
    if not expected and not containers:
        raise AiniError(NOTHING_DEPLOYED)
    now = now or dt.datetime.now(dt.UTC)
    rows = assess(expected, containers, certs, now)
    return StatusReport(config.project, tuple(rows), now, time.monotonic() - started)


# ------------------------------------------------------------------------ showing


def render_table(report: StatusReport, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Project '{report.project}' at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC",
                  title_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("group")
    table.add_column("state")
    table.add_column("health")
    table.add_column("restarts", justify="right")
    table.add_column("url", overflow="fold")
    table.add_column("certificate", overflow="fold")
    table.add_column("status", overflow="fold")
    for s in report.services:
        if s.cert_days_left is not None:
            cert = f"{s.cert_days_left} days ({escape(s.cert_issuer or '?')})"
        else:
            cert = "-"
        verdict = "[green]ok[/green]" if s.ok else "[red]FAIL[/red]"
        status = f"{verdict} {escape(s.reason)}" if s.reason else verdict
        state_style = "green" if s.state == "running" else "red"
        table.add_row(
            escape(s.service), escape(s.group), f"[{state_style}]{escape(s.state)}[/{state_style}]",
            escape(s.health or "-"), "-" if s.restarts is None else str(s.restarts), escape(s.url or "-"),
            cert, status,
        )
    console.print(table)
    failing = report.failing
    if failing:
        names = ", ".join(s.service for s in failing)
        console.print(f"[red]{len(failing)} of {len(report.services)} services not healthy: {escape(names)}[/red]")
    else:
        console.print(f"[green]All {len(report.services)} services healthy[/green] "
                      f"(checked in {report.seconds:.1f} s).")


VAULT_STATES = {
    "sealed": "Vault is sealed (services keep running); run: aini vault unseal",
    "uninitialized": "Vault is not initialised; run: aini up",
}


def overlay_control_plane(report: StatusReport, vault_state: str | None,
                          consul: Mapping[str, str] | None) -> StatusReport:
    """Rows with what the control plane knows: Vault's seal state on its row, Consul's
    verdict on every registered service (a critical check fails the row)."""
    from dataclasses import replace

    from . import catalog

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


def read_control_plane(config: AiniConfig, project_dir: Path, site) -> tuple[str | None, dict[str, str] | None]:
    """Vault's state and Consul's checks, each None when not enabled or not reachable (the
    container rows already say why)."""
    from . import catalog
    from .render.networks import FIXED_IPS

    specs = catalog.enabled(config)
    names = {s.name for s in specs}
    vault_state = consul = None
    vault = catalog.vault_of(specs)
    if vault:
        from .controlplane.vault import VaultClient

        with contextlib.suppress(AiniError):
            vault_state = VaultClient(site.endpoint(FIXED_IPS[vault.name], vault.port), timeout=3).health().state
    if "consul" in names:
        from .controlplane import registry
        from .controlplane.bootstrap import State

        token = State.load(project_dir).consul_deploy_token
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


def show_status(config: AiniConfig, project_dir: Path, as_json: bool, console: Console | None = None,
                connect: str | None = None) -> int:
    """`aini status`: print the report; 0 when every service is healthy, else 1.
    A server's containers are read over SSH; its certificates at its address on 443, or
    at `connect` (HOST:PORT) when Traefik is reached another way (no DNS yet, a tunnel)."""
    from .deploy import DEPLOYED_MANIFEST, parse_deployed
    from .vaultops import open_site

    endpoint = parse_endpoint(connect) if connect else None
    with open_site(config, project_dir) as site:
        tools = None
        if config.target.kind != "local":
            from .remote import REMOTE_TOOLS

            tools, endpoint = REMOTE_TOOLS, endpoint or (site.access.host, 443)  # type: ignore[attr-defined]
        report = collect(config, project_dir, site.run, tools, endpoint,
                         read_deployed=lambda: parse_deployed(site.read(DEPLOYED_MANIFEST)))
        report = overlay_control_plane(report, *read_control_plane(config, project_dir, site))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        from rich.console import Console

        render_table(report, console or Console())
    return 0 if report.ok else 1
