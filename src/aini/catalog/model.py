"""The typed shape of a catalog entry.

A `ServiceSpec` is one container: an application, a database, a cache or a helper. Entries
that belong together (an application and its databases) share a `group`: the group is one
compose project with its own internal network. Everything AINI renders, checks or reports
about a service is derived from its entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..config import AiniConfig

Alphabet = Literal["hex", "alnum", "urlsafe", "key32"]  # key32: 32 random bytes, base64 (Consul's gossip key)
Role = Literal["proxy", "app", "admin", "database", "cache", "search", "worker", "helper"]
UpdatePolicy = Literal["update", "monitor", "off"]


@dataclass(frozen=True)
class Secret:
    """A secret AINI generates once and keeps. `name` is global: two services that refer
    to the same name share one value (OnlyOffice's JWT secret with Nextcloud)."""

    name: str
    length: int = 32  # characters of the final value
    alphabet: Alphabet = "alnum"
    rotatable: bool = True  # False: rotating it destroys data (e.g. LibreChat CREDS_KEY)
    description: str = ""
    # Read only when the service first creates its data (a database user's password): a new
    # value alone would lock the application out; rotating needs a change inside the service.
    set_at_init: bool = False


@dataclass(frozen=True)
class UserSecret:
    """A secret the user provides (an API key); never generated."""

    name: str
    description: str = ""

    @property
    def env_var(self) -> str:
        """Where `aini render` picks the value up once (argv and aini.yml never hold it)."""
        return f"AINI_SECRET_{self.name.upper()}"


@dataclass(frozen=True)
class Ref:
    """An env value built from a secret: rendered into the 0600 env file, never into compose.
    `template` places the value ("mongodb://u:{}@host/db"); an optional Ref whose user
    secret is not set is left out."""

    secret: str
    template: str = "{}"
    optional: bool = False
    hashed: bool = False  # the secret's bcrypt hash, not the secret (an application checks it)


EnvValue = str | Ref


@dataclass(frozen=True)
class HealthCheck:
    test: tuple[str, ...] | None  # compose CMD/CMD-SHELL form; None: the image's own HEALTHCHECK
    port: int | None = None  # what Consul probes: http://<container>:<port><path>, or TCP without path
    path: str | None = None
    # Docker 20.10 (Debian 12) runs the first check one interval after start: a short
    # interval keeps health-gated deploys quick; more retries keep the same tolerance.
    interval: str = "10s"
    timeout: str = "10s"
    retries: int = 15
    start_period: str = "30s"


@dataclass(frozen=True)
class Login:
    """Who signs in to the service's UI, with which of AINI's secrets (`aini up` lists them)."""

    user: Callable[[AiniConfig], str]
    secret: str


# The admin UIs behind Traefik's basic auth share one user and password.
ADMIN_LOGIN = Login(lambda config: config.admin.user, "admin_password")


@dataclass(frozen=True)
class Route:
    """An HTTPS route through Traefik: <subdomain>.<domain> -> this container's port."""

    subdomain: str
    port: int
    admin: bool = False  # behind the admin authentication
    middlewares: tuple[str, ...] = ()  # extra named middlewares from render/traefik.py
    service: str | None = None  # a Traefik internal service (api@internal) instead of the container
    framed_by: str | None = None  # the service whose pages frame this one; others: same origin only
    public: Callable[[AiniConfig], bool] | None = None  # whether aini.yml routes it (None: always)
    # Traefik reaches it on its group's internal network, which Traefik joins for it; off the
    # shared proxy network, no other application can open a connection to it.
    private: bool = False


@dataclass(frozen=True)
class Volume:
    name: str  # a named volume, or an absolute host path for bind mounts
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class PostDeploy:
    """A shell script run in the service's container (as `user`) each time its group has
    come up healthy: configuration only the running application can apply (an app to
    enable). It must be idempotent, and it reads secrets from the container's environment,
    never from its own text (which is in the manifest and in argv)."""

    script: str
    user: str = "root"
    description: str = ""
    workdir: str = "/"


@dataclass(frozen=True)
class Backup:
    """What a backup must capture: volumes to copy, and a shell command run in the
    container whose stdout is saved as `dump_file` (consistent where a file copy of a live
    database is not). Dump commands read credentials from the container's environment."""

    volumes: tuple[str, ...] = ()
    dump: str | None = None
    dump_file: str | None = None
    restore: str | None = None  # the shell command that reads `dump_file` on stdin and loads it
    # Around the volume copy, for a consistent one: commands run in the container (Nextcloud's
    # maintenance mode), or the container stopped (an SQLite file written while it runs).
    before: str | None = None
    after: str | None = None
    stop: bool = False
    user: str = "root"  # who runs dump, restore, before and after
    # A control plane's snapshot needs a token its container does not hold: the variable dump
    # and restore read it from. AINI sends it as the first line of their stdin (never an argv,
    # never a file); `restore_token` says which: the backups' snapshot token, or Vault's root
    # token from the break-glass file.
    token: str | None = None
    restore_token: Literal["snapshot", "root"] = "snapshot"
    # A control plane's own keys or tokens travel inside its snapshot, so restoring one onto a
    # control plane initialised anew (a new server) needs the break-glass file's retired ones:
    # "keyring" (Vault: the plain restore refuses another cluster's snapshot; `restore_foreign`,
    # forced, takes it and Vault seals until that cluster's keys unseal it) or "acl" (Consul:
    # its ACL tokens become the snapshot's, the management token among them).
    carries: Literal["keyring", "acl"] | None = None
    restore_foreign: str | None = None
    refused_as_foreign: str | None = None  # what the plain restore says of another cluster's snapshot
    # The restore drill's check of a loaded dump: a shell command run in the throwaway copy
    # (credentials from its environment) that prints what it found and fails when the data
    # is not there.
    verify: str | None = None
    # When the throwaway copy accepts the dump, if its health check says so too early (an
    # image whose first-start initialisation runs a temporary server).
    ready: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if bool(self.dump) != bool(self.dump_file) or bool(self.dump) != bool(self.restore):
            raise ValueError("a dump needs its dump_file and its restore command")
        if self.token and not (self.dump and re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.token)):
            raise ValueError("a token is an environment variable's name, for a dump")
        if bool(self.before) != bool(self.after):
            raise ValueError("before and after come in pairs")
        if not bool(self.restore_foreign) == bool(self.refused_as_foreign) == (self.carries == "keyring"):
            raise ValueError("a snapshot that carries its keyring needs its forced restore and the plain one's "
                             "refusal, and only it")


@dataclass(frozen=True)
class Upgrade:
    """What a new version of the image does to the service's data, as data: `aini plan` shows
    each version change with it, and `aini up` refuses, before anything changes, a change the
    data cannot take or AINI cannot carry out yet.

    A major release is named by the first `series` numbers of the version (PostgreSQL 17:
    one; MariaDB 11.8, MongoDB 8.0: two)."""

    series: int = 1
    one_major_at_a_time: bool = False  # a pin that skips a major is refused with the path to take
    downgrade: Literal["allowed", "within-major", "refused"] = "refused"  # onto data a newer one wrote
    major: str = ""  # what a new major does to the data, as the plan says it
    automatic: bool = True  # False: AINI does not do `major` yet, so the change is refused
    by_dump: bool = False  # a new major cannot read the old data: it starts on an empty volume (the old
    #                        files set aside) and takes the dump of the backup taken just before
    source: str = ""  # upstream's word for the rules above

    def __post_init__(self) -> None:
        if self.series < 1 or not self.major:
            raise ValueError("an upgrade rule says what a new major does to the data")


# What an entrypoint that starts as root needs to hand its data to the image's user and
# become that user (chown, then gosu, su-exec or setpriv); nothing else of Docker's default set.
DROPS_TO_USER = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")


@dataclass(frozen=True)
class Privileges:
    """What the container may do, against CIS Docker Benchmark section 5. The default is the
    strictest: every capability dropped (5.3), no new privileges (5.25), a pids limit (5.28);
    a read-only root filesystem (5.12) where the image is known to run so. Anything else is
    an exception, and `why` (required then; the README's table shows it) says what upstream
    needs it for."""

    cap_add: tuple[str, ...] = ()  # added back after dropping all
    default_caps: bool = False  # keep Docker's default set (no cap_drop)
    new_privileges: bool = False  # setuid binaries or file capabilities must work
    read_only: bool = False
    pids: int = 512
    why: str = ""

    @property
    def exceptions(self) -> list[str]:
        return [e for e, on in (("capabilities", bool(self.cap_add) or self.default_caps),
                                ("new privileges", self.new_privileges), ("writable root", not self.read_only)) if on]


@dataclass(frozen=True)
class Tool:
    """An image AINI runs for a task rather than as a service (restic for backups): pinned
    like a service's, and replaced by the same `images.mirror` / `images.overrides`."""

    name: str
    image: str
    version: str

    @property
    def pinned(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass(frozen=True)
class Files:
    """Extra bundle files this service mounts: path in the group's directory -> content."""

    render: Callable[[Context], Mapping[str, str]]
    mounts: tuple[Volume, ...] | Callable[[Context], tuple[Volume, ...]] = ()

    def mounts_for(self, ctx: Context) -> tuple[Volume, ...]:
        return self.mounts(ctx) if callable(self.mounts) else self.mounts


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    group: str
    title: str
    role: Role
    image: str  # repository without tag, e.g. "docker.io/library/traefik"
    version: str  # the exact tag
    description: str
    upstream: str
    port: int | None
    health: HealthCheck
    mem_reservation: int  # MiB
    mem_limit: int  # MiB
    enabled: Callable[[AiniConfig], bool]
    env: Callable[[Context], Mapping[str, EnvValue]] = lambda ctx: {}
    secrets: tuple[Secret, ...] = ()
    user_secrets: tuple[UserSecret, ...] = ()
    volumes: tuple[Volume, ...] = ()
    files: Files | None = None
    depends_on: tuple[str, ...] = ()
    route: Route | None = None
    login: Login | None = None
    backup: Backup = Backup()
    upgrade: Upgrade | None = None  # None: no rule; a new version is just deployed
    update: UpdatePolicy = "update"
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    privileges: Privileges = Privileges()
    extra: Mapping[str, object] = field(default_factory=dict)  # compose keys with no catalog meaning (pid, user)
    post_deploy: Callable[[Context], tuple[PostDeploy, ...]] = lambda ctx: ()

    @property
    def container(self) -> str:
        return f"aini-{self.name}"

    @property
    def pinned(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass(frozen=True)
class Context:
    """What an entry's env/files functions may read: the config and the derived wiring."""

    config: AiniConfig
    enabled: frozenset[str]
    entries: Mapping[str, ServiceSpec]  # the whole catalog by name, in deploy order

    def host(self, name: str) -> str:
        return self.entries[name].container

    def subdomain(self, name: str) -> str:
        return subdomain_of(self.entries[name], self.config)

    def fqdn(self, name: str) -> str:
        return f"{self.subdomain(name)}.{self.config.domain}"

    def url(self, name: str) -> str:
        """What a browser opens: the local target may serve HTTPS on another port."""
        port = f":{self.config.https_port}" if self.config.https_port != 443 else ""
        return f"https://{self.fqdn(name)}{port}"

    def on(self, name: str) -> bool:
        return name in self.enabled


def routed(spec: ServiceSpec, config: AiniConfig) -> bool:
    """Traefik routes `spec` (when it is enabled): it has a route aini.yml did not turn off."""
    return spec.route is not None and (spec.route.public is None or spec.route.public(config))


def subdomain_of(spec: ServiceSpec, config: AiniConfig) -> str:
    """The user's `services.<group>.subdomain`, else the catalog's default."""
    if spec.route is None:
        raise ValueError(f"{spec.name} has no route")
    options = getattr(config.services, spec.group, None)
    return getattr(options, "subdomain", None) or spec.route.subdomain
