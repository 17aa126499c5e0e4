"""`aini secrets list|get|set|rotate` and `aini vault unseal`: Vault reached where the stack
runs (this engine's network, or an SSH forward to the server), with the deploy's AppRole.

Values come in on stdin or a hidden prompt, never argv; they go out only to Vault, the 0600
working copy and the env files. `set` and `rotate` redeploy: only the groups whose env
files hold the secret change hash, so only those are touched.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass

from .. import catalog
from ..catalog.model import Ref, ServiceSpec
from ..catalog.networks import FIXED_IPS
from ..config import AiniConfig
from ..controlplane.bootstrap import State, key_for, put_secret, secret_paths
from ..controlplane.bootstrap import unseal as unseal_vault
from ..controlplane.vault import VaultClient
from ..errors import AiniError, InputError
from ..project import Project
from ..sites.base import Site
from ..store import generate
from .render import prepare_secrets
from .targets import site_for


@dataclass(frozen=True)
class SecretRef:
    service: str  # the service named on the command line
    name: str  # the store's and Vault's name
    kind: str  # generated | user
    rotatable: bool
    env: tuple[str, ...]  # env variables of the service that carry it


def _env_names(spec: ServiceSpec, config: AiniConfig, name: str) -> tuple[str, ...]:
    env = spec.env(catalog.context(config))
    return tuple(sorted(k for k, v in env.items() if isinstance(v, Ref) and v.secret == name))


def secrets_of(config: AiniConfig, service: str | None = None) -> list[SecretRef]:
    specs = catalog.enabled(config)
    if service is not None:
        specs = [s for s in specs if s.name == service]
        if not specs:
            names = ", ".join(s.name for s in catalog.enabled(config))
            raise InputError(f"no enabled service '{service}'; enabled: {names}")
    refs = []
    for spec in specs:
        for secret in spec.secrets:
            refs.append(SecretRef(spec.name, secret.name, "generated", secret.rotatable,
                                  _env_names(spec, config, secret.name)))
        for user in spec.user_secrets:
            refs.append(SecretRef(spec.name, user.name, "user", True, _env_names(spec, config, user.name)))
    return refs


def resolve(config: AiniConfig, service: str, key: str) -> SecretRef:
    """KEY is the secret's name or an env variable of the service that carries it, in any case
    (OPENAI_API_KEY, openai_api_key, CREDS_KEY)."""
    refs = secrets_of(config, service)
    wanted = key.lower()
    for ref in refs:
        if ref.name.lower() == wanted or wanted in (e.lower() for e in ref.env):
            return ref
    known = ", ".join(sorted({e for r in refs for e in r.env} | {r.name.upper() for r in refs})) or "none"
    raise InputError(f"{service} has no secret {key}; its secrets: {known}")


def read_value(name: str, prompt=getpass.getpass) -> str:
    """From stdin when it is not a terminal (a pipe, a file), else a hidden prompt."""
    if not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = prompt(f"Value for {name} (hidden): ")
    if not value:
        raise InputError(f"no value given for {name}")
    return value


def vault_spec(config: AiniConfig) -> ServiceSpec:
    spec = catalog.vault_of(catalog.enabled(config))
    if spec is None:
        raise InputError("services.vault is disabled: secrets live only in .aini/secrets.json")
    return spec


def vault_at(site: Site, config: AiniConfig) -> VaultClient:
    spec = vault_spec(config)
    return VaultClient(site.endpoint(FIXED_IPS[spec.name], spec.port))


def deploy_client(site: Site, project: Project):
    client = vault_at(site, project.config)
    if client.health().state == "sealed":
        raise AiniError("Vault is sealed; run: aini vault unseal")
    creds = State.load(project.root).approle
    if creds is None:
        raise AiniError("this machine has no Vault AppRole for the project yet; run aini up first")
    return client.login_approle(creds)


def unseal(project: Project, passphrase=None) -> bool:
    with site_for(project) as site:
        return unseal_vault(vault_at(site, project.config), project.root, passphrase or key_for(project.config))


def get(project: Project, service: str, key: str) -> str:
    ref = resolve(project.config, service, key)
    with site_for(project) as site:
        client = deploy_client(site, project)
        stored = client.kv_get(secret_paths(catalog.enabled(project.config))[ref.name])
    if not stored or "value" not in stored:
        raise AiniError(f"{ref.name} is not set in Vault")
    return stored["value"]


def listing(project: Project) -> list[dict]:
    """Names, kinds, where they are used and whether Vault holds a value: never a value."""
    refs = secrets_of(project.config)
    paths = secret_paths(catalog.enabled(project.config))
    with site_for(project) as site:
        client = deploy_client(site, project)
        present = {name: client.kv_metadata(path) is not None for name, path in paths.items()}
    return [{"service": r.service, "name": r.name, "kind": r.kind, "env": list(r.env), "rotatable": r.rotatable,
             "in_vault": present.get(r.name, False)} for r in refs]


def put(project: Project, ref: SecretRef, value: str) -> None:
    store, _generated, _imported = prepare_secrets(project)
    with site_for(project) as site:
        put_secret(deploy_client(site, project), store, catalog.enabled(project.config), ref.name, value)
    store.save()


def rotate_value(config: AiniConfig, ref: SecretRef, force: bool) -> str:
    if ref.kind != "generated":
        raise InputError(f"{ref.name} is provided by you, not generated: use aini secrets set")
    if not ref.rotatable and not force:
        raise InputError(f"{ref.name} must not be rotated: data encrypted with it becomes unreadable "
                         "(add --force if you accept that)")
    secret = next(s for s in catalog.by_name(ref.service).secrets if s.name == ref.name)
    if secret.set_at_init:
        raise InputError(f"{ref.name} is stored inside {ref.service}'s data when it is first created; a new value "
                         "alone would lock it out, and changing it inside the service is not automated yet")
    return generate(secret)


__all__ = ["SecretRef", "get", "listing", "put", "read_value", "resolve", "rotate_value",
           "secrets_of", "unseal"]
