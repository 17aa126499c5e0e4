"""The catalog: every service and database AINI can deploy, one entry each, in deploy order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core import CONSUL, OPENBAO, TRAEFIK, VAULT
from .librechat import LIBRECHAT, MEILISEARCH, MONGODB
from .model import Context, Ref, Secret, ServiceSpec, UserSecret, routed, subdomain_of
from .n8n import N8N, N8N_POSTGRES
from .nextcloud import MARIADB, NEXTCLOUD, NEXTCLOUD_CRON, ONLYOFFICE, REDIS
from .ops import NETDATA, SOCKET_PROXY, WATCHTOWER

if TYPE_CHECKING:
    from ..config import AiniConfig

CATALOG: tuple[ServiceSpec, ...] = (
    TRAEFIK,
    CONSUL,
    VAULT,
    OPENBAO,
    MONGODB,
    MEILISEARCH,
    LIBRECHAT,
    N8N_POSTGRES,
    N8N,
    MARIADB,
    REDIS,
    NEXTCLOUD,
    NEXTCLOUD_CRON,
    ONLYOFFICE,
    SOCKET_PROXY,
    NETDATA,
    WATCHTOWER,
)
_BY_NAME = {spec.name: spec for spec in CATALOG}


def by_name(name: str) -> ServiceSpec:
    return _BY_NAME[name]


def names() -> list[str]:
    return list(_BY_NAME)


def enabled(config: AiniConfig) -> list[ServiceSpec]:
    return [spec for spec in CATALOG if spec.enabled(config)]


VAULTS = ("vault", "openbao")  # the same place in the stack; services.vault.flavor picks one


def vault_of(specs: list[ServiceSpec]) -> ServiceSpec | None:
    """The enabled Vault (or OpenBao) among `specs`, if any."""
    return next((s for s in specs if s.name in VAULTS), None)


def context(config: AiniConfig) -> Context:
    return Context(config, frozenset(spec.name for spec in enabled(config)), _BY_NAME)


def groups(specs: list[ServiceSpec]) -> dict[str, list[ServiceSpec]]:
    """Group name -> its entries, in deploy order (a group deploys where its first entry stands)."""
    result: dict[str, list[ServiceSpec]] = {}
    for spec in specs:
        result.setdefault(spec.group, []).append(spec)
    return result


def logins(config: AiniConfig) -> list[tuple[str, str, str, str]]:
    """(title, URL, login, the command that shows the password) of every UI AINI made a user for."""
    ctx, specs = context(config), enabled(config)
    owner = {s.name: spec.name for spec in CATALOG for s in spec.secrets}

    def shown(secret: str) -> str:
        if vault_of(specs) is None:  # no Vault: the project's own store is the only copy
            return f"{secret} in .aini/secrets.json"
        return f"aini secrets get {owner[secret]} {secret} --show"

    return [(spec.title, ctx.url(spec.name) + "/", spec.login.user(config), shown(spec.login.secret))
            for spec in specs if spec.login and routed(spec, config)]


def secrets_for(specs: list[ServiceSpec]) -> list[Secret]:
    """Generated secrets the enabled services need, each once (shared names are one secret)."""
    seen: dict[str, Secret] = {}
    for spec in specs:
        for secret in spec.secrets:
            seen.setdefault(secret.name, secret)
    return list(seen.values())


def user_secrets_for(specs: list[ServiceSpec]) -> list[UserSecret]:
    seen: dict[str, UserSecret] = {}
    for spec in specs:
        for secret in spec.user_secrets:
            seen.setdefault(secret.name, secret)
    return list(seen.values())


__all__ = [
    "CATALOG",
    "Context",
    "Ref",
    "Secret",
    "ServiceSpec",
    "UserSecret",
    "by_name",
    "context",
    "enabled",
    "groups",
    "names",
    "secrets_for",
    "routed",
    "subdomain_of",
    "user_secrets_for",
]
