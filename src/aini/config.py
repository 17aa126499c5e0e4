"""aini.yml: the user's intent as typed models.

Everything else is derived from an `AiniConfig` and the catalog. Validation fails fast and
names the field; unknown keys are refused with the nearest known name, so a typo never
silently turns a service off.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import cron
from .errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(?:{_LABEL}\.)+[a-z][a-z0-9-]{{0,62}}(?<!-)$")
SUBDOMAIN_RE = re.compile(rf"^{_LABEL}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?P<domain>[^@\s]+)$")
_IMAGE_PART = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
# A registry port can follow only the first component, and only before a "/": in
# "repo/name:150107070238" the digits are a tag, not a port.
IMAGE_RE = re.compile(
    rf"^(?P<name>(?:{_IMAGE_PART}(?::[0-9]+)?/)?{_IMAGE_PART}(?:/{_IMAGE_PART})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_CRON_FIELDS = "seconds minutes hours day month weekday".split()


def _cron(fields: int) -> Callable[[str], str]:
    """A validator for a cron expression with `fields` fields (6: seconds first)."""
    names = " ".join(_CRON_FIELDS[-fields:])

    def check(value: str) -> str:
        if len(value.split()) != fields:
            raise ValueError(f"must be a {fields}-field cron expression ({names})")
        return " ".join(value.split())

    return check


def _cidrs(value: list[str]) -> list[str]:
    import ipaddress

    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR such as '203.0.113.0/24'") from None
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_subdomain(value: str | None) -> str | None:
    if value is not None and not SUBDOMAIN_RE.fullmatch(value):
        raise ValueError("must be one DNS label: lowercase letters, digits and '-', at most 63 characters")
    return value


class ServiceOptions(Model):
    enabled: bool = True
    subdomain: str | None = Field(default=None, description="Overrides the catalog's default subdomain.")

    _subdomain = field_validator("subdomain")(_check_subdomain)


class TraefikOptions(Model):
    subdomain: str | None = Field(default=None, description="Where the Traefik dashboard answers (admin UI).")

    _subdomain = field_validator("subdomain")(_check_subdomain)


class VaultOptions(ServiceOptions):
    flavor: Literal["vault", "openbao"] = Field(
        default="vault", description="HashiCorp Vault (BSL) or OpenBao (MPL-2.0); the API is the same."
    )
    public: bool = Field(
        default=True, description="Route vault.<domain> through Traefik (behind the admin password). Off, "
        "Vault has no public address; aini reaches it through SSH on a server, as always.")
    key_shares: int = Field(default=5, ge=1, le=10, description="Unseal key shares made at initialisation.")
    key_threshold: int = Field(default=3, ge=1, le=10, description="Shares needed to unseal.")
    age_recipients: list[str] = Field(
        default_factory=list,
        description="age X25519 recipients (age1..., from age-keygen). When set, the break-glass file is "
        ".aini/breakglass.age, encrypted to them (opened with the identity file named by "
        "AINI_BREAKGLASS_AGE_IDENTITY) instead of .aini/breakglass.enc with a passphrase.",
    )

    @field_validator("age_recipients")
    @classmethod
    def _age_recipients(cls, value: list[str]) -> list[str]:
        if value:
            # A compiled extension: imported only when aini.yml uses it.
            from pyrage import RecipientError, x25519

            for recipient in value:
                try:
                    x25519.Recipient.from_str(recipient)
                except RecipientError:
                    raise ValueError(f"{recipient[:80]!r} is not an age X25519 recipient (age1..., as printed by "
                                     "age-keygen)") from None
        return value

    @model_validator(mode="after")
    def _threshold(self) -> VaultOptions:
        if self.key_threshold > self.key_shares:
            raise ValueError(f"key_threshold ({self.key_threshold}) cannot exceed key_shares ({self.key_shares})")
        return self


class LibreChatOptions(ServiceOptions):
    search: bool = Field(default=True, description="Meilisearch-backed conversation search.")
    registration: bool = Field(
        default=False, description="Let anyone who reaches the site sign up (and spend your API keys)."
    )


class N8nOptions(ServiceOptions):
    database: Literal["sqlite", "postgres"] = Field(
        default="sqlite", description="n8n 2.x supports SQLite and PostgreSQL only (not MariaDB)."
    )
    timezone: str = "Europe/Berlin"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'")
        return value


class S3Storage(Model):
    """Nextcloud primary storage on S3 (Hetzner Object Storage). Decided at install time:
    Nextcloud cannot move existing files between primary storages. The access key and
    secret are secrets: AINI reads them from AINI_SECRET_NEXTCLOUD_S3_KEY / _SECRET
    once and keeps them in the secret store, never in aini.yml."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    host: str = Field(default="fsn1.your-objectstorage.com", pattern=r"^[a-z0-9.-]+$")
    region: str = "fsn1"
    port: int = Field(default=443, ge=1, le=65535)
    ssl: bool = True
    path_style: bool = True
    autocreate: bool = False


class NextcloudOptions(ServiceOptions):
    s3: S3Storage | None = None
    upload_limit: str = Field(default="10G", pattern=r"^[0-9]+[KMG]$")


class WatchtowerOptions(Model):
    enabled: bool = True
    schedule: str = Field(default="0 0 4 * * *", description="6-field cron (seconds first), host time.")

    _schedule = field_validator("schedule")(_cron(6))


class Services(Model):
    traefik: TraefikOptions = TraefikOptions()
    consul: ServiceOptions = ServiceOptions()
    vault: VaultOptions = VaultOptions()
    librechat: LibreChatOptions = LibreChatOptions()
    n8n: N8nOptions = N8nOptions()
    nextcloud: NextcloudOptions = NextcloudOptions()
    onlyoffice: ServiceOptions = ServiceOptions()
    netdata: ServiceOptions = ServiceOptions()
    watchtower: WatchtowerOptions = WatchtowerOptions()


class HetznerTarget(Model):
    kind: Literal["hetzner"] = "hetzner"
    server_type: str = Field(default="cx33", pattern=r"^[a-z]+[0-9]+$")
    location: str = Field(default="fsn1", pattern=r"^[a-z]+[0-9]*$")
    image: str = Field(default="debian-12", pattern=r"^(debian|ubuntu)-[0-9.]+$")
    ssh_keys: list[str] = Field(
        default=["~/.ssh/id_ed25519.pub"], min_length=1, max_length=10, description="Public key files."
    )
    ssh_from: list[str] = Field(
        default=[], max_length=20, description="CIDRs allowed to reach SSH; empty means anywhere."
    )
    ssh_port: int = Field(default=22, ge=1, le=65535, description="The port sshd listens on.")
    volume_gb: int | None = Field(
        default=None, ge=10, le=10240, description="A Hetzner volume for service data, kept across rebuilds."
    )
    primary_ip: bool = Field(default=False, description="Keep the server's IPv4 address across rebuilds.")
    dns_zone: str | None = Field(
        default=None, description="Manage A/AAAA records for every enabled subdomain in this Hetzner DNS zone."
    )

    _ssh_from = field_validator("ssh_from")(_cidrs)


class SshTarget(Model):
    kind: Literal["ssh"]
    # Never a leading '-': ssh would read it as an option (-oProxyCommand=...).
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:][A-Za-z0-9.:-]*$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_key: str = Field(default="~/.ssh/id_ed25519", description="Private key file.")


class LocalTarget(Model):
    kind: Literal["local"]
    bind: str = Field(
        default="127.0.0.1", description="The address Traefik listens on; 127.0.0.1 keeps the stack off the network."
    )
    http_port: int = Field(default=80, ge=1, le=65535)
    https_port: int = Field(default=443, ge=1, le=65535)

    @field_validator("bind")
    @classmethod
    def _address(cls, value: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address such as '127.0.0.1'") from None
        return value


Target = Annotated[HetznerTarget | SshTarget | LocalTarget, Field(discriminator="kind")]


class Tls(Model):
    challenge: Literal["http", "dns", "local"] | None = Field(
        default=None,
        description="ACME HTTP-01, Hetzner DNS-01 (HETZNER_API_TOKEN) or a local CA; "
        "defaults to 'local' on the local target and 'http' elsewhere.",
    )
    staging: bool = Field(default=False, description="Use Let's Encrypt's staging CA (untrusted certificates).")
    acme_server: str | None = Field(
        default=None, pattern=r"^https://[^\s]+$", description="A custom ACME directory URL (overrides staging)."
    )
    acme_ca: str | None = Field(
        default=None,
        description="PEM file with the CA certificate(s) that sign the ACME server's own HTTPS endpoint "
        "(a private ACME CA such as step-ca or Pebble); relative to aini.yml's directory.",
    )
    # The certificates read from acme_ca when aini.yml is loaded, so rendering reads no file.
    _acme_ca_pem: str | None = PrivateAttr(default=None)

    @field_validator("acme_ca")
    @classmethod
    def _ca_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # Absent from info.data when acme_server itself was invalid: that error is enough.
        if "acme_server" in info.data and info.data["acme_server"] is None:
            raise ValueError("only applies to a private ACME server: set tls.acme_server or remove tls.acme_ca")
        base = (info.context or {}).get("base_dir") or Path.cwd()
        try:
            path = Path(base) / Path(value).expanduser()  # an absolute path replaces the base
        except RuntimeError:  # ~user of an unknown user
            raise ValueError(f"{value!r}: no such home directory; give an absolute path") from None
        _ca_certificates(path)
        return str(path)

    # Reads the file a second time: only here can the content be kept (a field validator has no
    # model yet), and only there do errors name tls.acme_ca rather than tls.
    @model_validator(mode="after")
    def _load_ca(self) -> Tls:
        if self.acme_ca is not None:
            self._acme_ca_pem = _ca_certificates(Path(self.acme_ca))
        return self

    @property
    def acme_ca_pem(self) -> str | None:
        """The CA certificate(s) of acme_ca, PEM blocks only (never a private key)."""
        return self._acme_ca_pem


MAX_CA_BYTES = 1024 * 1024
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")


def _ca_certificates(path: Path) -> str:
    """The certificate blocks of a PEM file, or a ValueError that says what to fix."""
    hint = "point it at the PEM file with the CA certificate of your ACME server's HTTPS endpoint"
    try:
        if not path.is_file():
            raise ValueError(f"{path} is not a file; {hint}")
        with path.open("rb") as file:
            data = file.read(MAX_CA_BYTES)  # bounded: /proc-like files report size 0
        if len(data) >= MAX_CA_BYTES:
            raise ValueError(f"{path} is 1 MiB or larger; {hint}")
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not PEM text; {hint}") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror}); {hint}") from None
    if "PRIVATE KEY-----" in text:
        # The bundle file is not private: a key in it would be copied in the clear.
        raise ValueError(f"{path} holds a private key; give only the CA certificate(s)")
    blocks = _PEM_CERT_RE.findall(text)
    if not blocks:
        raise ValueError(f"{path} holds no '-----BEGIN CERTIFICATE-----' block; {hint}")
    return "".join(block.replace("\r\n", "\n") + "\n" for block in blocks)


class Admin(Model):
    user: str = Field(default="admin", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    allow_from: list[str] = Field(
        default=[], max_length=50, description="CIDRs from which the admin UIs (Traefik, Consul, Vault, Netdata) "
        "answer at all; others get 403 before the password is asked. Empty means anywhere.")

    _allow_from = field_validator("allow_from")(_cidrs)


class Retention(Model):
    daily: int = Field(default=7, ge=0, le=366)
    weekly: int = Field(default=4, ge=0, le=520)
    monthly: int = Field(default=6, ge=0, le=240)


class Backup(Model):
    repository: str | None = Field(
        default=None,
        max_length=1000,
        pattern=r"^(s3:|sftp:|rest:|rclone:|/)\S+$",
        description="A restic repository (s3:, sftp:, rest:, rclone: or an absolute path); none disables backups.",
    )
    schedule: str = Field(default="30 3 * * *", max_length=200, description="5-field cron, host time.")
    retention: Retention = Retention()
    notify_url: str | None = Field(
        default=None, max_length=2000, pattern=r"^https?://[^\s]+$",
        description="Where a scheduled backup that failed POSTs a JSON report (a webhook); kept root-only on the server.",
    )
    recovery_kit: bool = Field(
        default=True,
        description="Keep aini.yml and .aini/ in the repository too, readable with the break-glass passphrase, so "
                    "`aini recover` can rebuild this project from the repository alone (see the README).",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parsed = cron.parse(value)  # ValueError names the field
        if parsed.longest_gap(dt.datetime(2026, 1, 1)) is None:
            raise ValueError("runs less than twice in eight weeks; back up at least monthly")
        return " ".join(value.split())


class Images(Model):
    mirror: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$",
        description="A registry (and path) that mirrors every upstream image, e.g. 'registry.example.com/hub'.",
    )
    overrides: dict[str, str] = Field(
        default={}, max_length=64, description="Per-container image references, e.g. {'n8n': 'my/n8n:2.40.7'}."
    )

    @field_validator("overrides")
    @classmethod
    def _pinned(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            match = IMAGE_RE.fullmatch(ref)
            if not match:
                raise ValueError(f"{name}: {ref!r} is not an image reference")
            if not (match["tag"] or match["digest"]) or match["tag"] == "latest":
                raise ValueError(f"{name}: pin an exact version (name:1.2.3 or @sha256:...), never 'latest'")
        return value


class AiniConfig(Model):
    project: str = Field(
        default="aini", pattern=r"^[a-z][a-z0-9-]{0,30}$", description="Names and labels cloud resources."
    )
    domain: str = Field(description="Every service gets <subdomain>.<domain>.")
    email: str = Field(description="ACME account and admin contact.")
    target: Target = HetznerTarget()
    tls: Tls = Tls()
    admin: Admin = Admin()
    backup: Backup = Backup()
    images: Images = Images()
    services: Services = Services()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if len(value) > 200 or not (value == "localhost" or DOMAIN_RE.fullmatch(value)):
            raise ValueError("must be a lowercase domain name such as 'example.com'")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        match = EMAIL_RE.fullmatch(value)
        if not match or not DOMAIN_RE.fullmatch(match["domain"].lower()):
            raise ValueError("must be an email address such as 'admin@example.com'")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> AiniConfig:
        local = self.target.kind == "local"
        if self.tls.challenge == "local" and not local:
            raise ValueError("tls.challenge 'local' only works with target.kind 'local'; use 'http' or 'dns'")
        if local and self.tls.challenge not in (None, "local"):
            raise ValueError("the local target cannot answer ACME challenges; set tls.challenge to 'local'")
        zone = getattr(self.target, "dns_zone", None)
        if zone and not (self.domain == zone or self.domain.endswith("." + zone)):
            raise ValueError(f"target.dns_zone '{zone}' does not contain the domain '{self.domain}'")
        if self.domain == "localhost" and not local:
            raise ValueError("domain 'localhost' only works with target.kind 'local'")
        if self.services.onlyoffice.enabled and not self.services.nextcloud.enabled:
            raise ValueError("services.onlyoffice needs services.nextcloud: enable Nextcloud or disable OnlyOffice")
        return self  # what needs the catalog (subdomains in use) is aini.catalog.checks

    @property
    def tls_challenge(self) -> str:
        return self.tls.challenge or ("local" if self.target.kind == "local" else "http")

    @property
    def local_target(self) -> LocalTarget | None:
        """The local target (its bind address and ports), or None when the stack runs on a server."""
        return self.target if isinstance(self.target, LocalTarget) else None

    @property
    def https_port(self) -> int:
        """Where browsers reach Traefik's HTTPS: the local target's https_port, else 443."""
        return self.target.https_port if isinstance(self.target, LocalTarget) else 443


# --- loading -------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases (alias bombs) and without duplicate keys (silent overrides)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: YAML anchors and aliases are not supported in aini.yml")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            if key in seen:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: duplicate key {str(key)[:40]!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"file is larger than {MAX_CONFIG_BYTES // 1024} KiB; aini.yml is a short file"])
    if _too_deep(text):
        raise ConfigError(source, ["the document is nested too deeply"])
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except RecursionError:
        raise ConfigError(source, ["the document is nested too deeply"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {_yaml_reason(exc)}"]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty; run 'aini init' to write one"])
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping of keys such as 'domain:' and 'email:'"])
    return data


MAX_DEPTH = 32


def _too_deep(text: str) -> bool:
    """PyYAML parses nesting recursively: hostile depth costs seconds before it fails, so
    refuse it up front (brackets inside quoted strings count too; aini.yml has none)."""
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return any(len(line) - len(line.lstrip(" ")) > 4 * MAX_DEPTH for line in text.splitlines())


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        where = exc.problem_mark or exc.context_mark
        line = f"line {where.line + 1}: " if where else ""
        return f"{line}{exc.problem or exc.context}"
    return str(exc).splitlines()[0][:200]


def validate_data(data: dict[str, Any], source: str, base_dir: Path | None = None) -> AiniConfig:
    """`base_dir` is where relative paths in aini.yml start (its directory; else the current one)."""
    try:
        return AiniConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors(include_input=False)][:20]) from None
    except RecursionError:
        raise ConfigError(source, ["the document is nested too deeply"]) from None


def load_config(path: Path) -> AiniConfig:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["no such file; run 'aini init' here, or pass -c/--config FILE"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read it ({exc.strerror})"]) from None
    return validate_data(parse_yaml(text, source), source, path.resolve().parent)


def _describe(err: dict[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    field = _field_path(err["loc"])
    if err["type"] == "extra_forbidden":
        known = _known_keys(err["loc"][:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"{field}: unknown key{hint}"
    if err["type"] == "union_tag_invalid":
        return f"{field}.kind: must be one of 'hetzner', 'ssh', 'local'"
    if err["type"] == "union_tag_not_found":
        return f"{field}.kind: missing; set it to 'hetzner', 'ssh' or 'local'"
    message = err["msg"].removeprefix("Value error, ")[:300]
    return f"{field}: {message}" if field else message  # checks across fields name their fields


_TAGS = {"hetzner", "ssh", "local"}


def _field_path(loc: tuple[Any, ...]) -> str:
    # The discriminator value pydantic puts into the location is not a key the user wrote.
    parts = [str(p) for i, p in enumerate(loc) if not (i and loc[i - 1] == "target" and p in _TAGS)]
    return ".".join(parts)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = AiniConfig
    for part in loc:
        if isinstance(part, str) and part in _TAGS and model is not AiniConfig:
            model = {"hetzner": HetznerTarget, "ssh": SshTarget, "local": LocalTarget}[part]
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = _model_of(fields[part].annotation)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Annotated:
        return _model_of(get_args(annotation)[0])
    members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(members) == 1:
        return members[0]
    return object if members else None  # a tagged union: resolved by the tag in the location


def json_schema() -> dict[str, Any]:
    schema = AiniConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aini.yml"
    return schema
