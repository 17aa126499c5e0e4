"""What `aini up` does with Vault once its group runs: initialise it on the first run, unseal
it after a restart, keep the deploy's AppRole, and make Vault the home of every secret.

Where things live:
- the unseal key shares, Vault's root token and Consul's bootstrap token: only in the
  operator's break-glass file, never on the server: `.aini/breakglass.enc` (a passphrase from
  AINI_BREAKGLASS_PASSPHRASE or a prompt) or, with `services.vault.age_recipients`,
  `.aini/breakglass.age` (see breakglass.py);
- the deploy's AppRole (role_id + secret_id) and Consul deploy token: `.aini/controlplane.json`
  (0600), narrower than the root token, which is not used after bootstrap;
- every generated secret and user key: Vault KV v2 at `aini/<owner service>/<name>`. The
  local store is the working copy a render reads; on each deploy Vault wins where the two
  differ, and what Vault lacks is written to it (cas=0, so two deploys never overwrite).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AiniError, InputError
from ..project import ensure_private, private_dir, write_private
from . import breakglass
from .breakglass import AgeKey, Key, Passphrase
from .vault import AppRoleCredentials, VaultClient, VaultError

if TYPE_CHECKING:
    from ..catalog.model import ServiceSpec
    from .consul import ConsulClient
    from ..config import AiniConfig
    from ..store import SecretStore

STATE_FILE = "controlplane.json"
VAULT_PORT = 8200
CONSUL_PORT = 8500
KEY_SHARES = 5
KEY_THRESHOLD = 3


class SealedError(AiniError):
    """Vault is sealed and the break-glass file holds no unseal keys (exit 1)."""


# ------------------------------------------------------------------------ local state


@dataclass
class State:
    """`.aini/controlplane.json`: credentials narrower than the break-glass material."""

    approle_role_id: str | None = None
    approle_secret_id: str | None = None
    consul_deploy_token: str | None = None
    consul_deploy_accessor: str | None = None
    vault_snapshot_token: str | None = None  # backups: a Vault raft snapshot, nothing else
    consul_snapshot_token: str | None = None  # backups: Consul snapshots (acl = "write", see consul.py)

    @classmethod
    def load(cls, project_dir: Path) -> State:
        path = private_dir(project_dir) / STATE_FILE
        if not path.is_file():
            return cls()
        if path.stat().st_mode & 0o077:
            raise InputError(f"{path} is readable by others; run: chmod 600 {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise AiniError(f"{path} is damaged; remove it and run aini up again (it is re-created "
                            "from the break-glass file)") from None
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    def save(self, project_dir: Path) -> None:
        write_private(ensure_private(private_dir(project_dir)) / STATE_FILE, json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n")

    def snapshot_token(self, group: str) -> str | None:
        """The token a backup of this control-plane group (the catalog's) takes its snapshot with."""
        return {"vault": self.vault_snapshot_token, "consul": self.consul_snapshot_token}.get(group)

    @property
    def approle(self) -> AppRoleCredentials | None:
        if self.approle_role_id and self.approle_secret_id:
            return AppRoleCredentials(self.approle_role_id, self.approle_secret_id)
        return None

    def values(self) -> list[str]:
        return [v for v in (self.approle_secret_id, self.consul_deploy_token) if v]


def key_for(config: AiniConfig, *, environ: Mapping[str, str] = os.environ,
            prompt: Callable[..., str] | None = None) -> Key:
    """The break-glass form aini.yml asks for: age to its recipients, else a passphrase."""
    recipients = tuple(config.services.vault.age_recipients)
    return AgeKey(recipients, environ) if recipients else Passphrase(environ, prompt)


def load_material(project_dir: Path, key: Key) -> breakglass.BreakGlass:
    path = breakglass.material_path(project_dir, key)
    if not path.exists():
        return breakglass.BreakGlass()
    return key.open(breakglass.read(path), str(path))


def save_material(project_dir: Path, material: breakglass.BreakGlass, key: Key) -> None:
    path = breakglass.material_path(project_dir, key)
    breakglass.write(path, key.seal(material, new=not path.exists()))


# ------------------------------------------------------------------------------ Vault


@dataclass
class VaultOutcome:
    initialised: bool = False
    unsealed: bool = False
    bootstrapped: bool = False


def ensure_vault(client: VaultClient, project_dir: Path, services: Iterable[str], key: Key,
                 say: Callable[[str], None] = lambda _: None,
                 shares: int = KEY_SHARES, threshold: int = KEY_THRESHOLD,
                 bound_cidrs: Iterable[str] = ()) -> tuple[VaultClient, VaultOutcome]:
    """Vault initialised, unsealed and bootstrapped; returns a client holding a short-lived
    deploy token (AppRole), never the root token."""
    outcome = VaultOutcome()
    state = State.load(project_dir)
    health = client.health()
    if health.state == "uninitialized":
        key.ready(new=not breakglass.material_path(project_dir, key).exists())  # before anything irreversible
        result = client.init(shares, threshold)
        material = load_material(project_dir, key).replace(
            vault_unseal_keys=result.keys, vault_root_token=result.root_token)
        # Written before the keys are used: a crash after init must not lose the only copy.
        save_material(project_dir, material, key)
        say(f"Vault initialised ({shares} key shares, threshold {threshold}); the unseal keys and root token "
            f"are in {breakglass.material_path(project_dir, key)} (encrypted), nowhere else.")
        outcome.initialised = True
        state = State()  # an AppRole of an earlier Vault is meaningless now
        health = client.health()
    if health.state == "sealed":
        material = load_material(project_dir, key)
        if not material.vault_unseal_keys:
            raise SealedError(f"Vault is sealed and {breakglass.material_path(project_dir, key)} holds no unseal keys")
        client.unseal(material.vault_unseal_keys)
        outcome.unsealed = True
        say("Vault unsealed.")
    client.wait_active()
    deploy_client = None
    if state.approle is not None:
        try:
            deploy_client = client.login_approle(state.approle)
        except AiniError:
            deploy_client = None  # revoked or from another Vault: bootstrap again
    if deploy_client is None:
        creds = client.bootstrap(root_token(project_dir, key, "Vault has no AppRole for AINI here"), services,
                                 bound_cidrs=bound_cidrs)
        state.approle_role_id, state.approle_secret_id = creds.role_id, creds.secret_id
        state.save(project_dir)
        outcome.bootstrapped = True
        deploy_client = client.login_approle(creds)
    if not (state.vault_snapshot_token and client.with_token(state.vault_snapshot_token).token_valid()):
        state.vault_snapshot_token = client.snapshot_token(
            root_token(project_dir, key, "Vault has no snapshot token for AINI's backups"))
        state.save(project_dir)
    return deploy_client, outcome


def root_token(project_dir: Path, key: Key, why: str) -> str:
    """Vault's root token from the break-glass file: bootstrap and restores only."""
    material = load_material(project_dir, key)
    if not material.vault_root_token:
        raise AiniError(f"{why} and {breakglass.material_path(project_dir, key)} holds no root token; restore "
                        ".aini/ from your backup")
    return material.vault_root_token


def vault_back(client: VaultClient, project_dir: Path, key: Key) -> None:
    """After a forced restore of another Vault's snapshot (onto a new server) Vault is sealed
    and opens only with that Vault's keys: one of the break-glass file's retired sets, tried
    newest first. They become current again; AINI's AppRole and snapshot token in
    controlplane.json were the replaced Vault's, so they go (aini up makes new ones)."""
    material = load_material(project_dir, key)
    for index in reversed(range(len(material.retired_vaults))):
        client.reset_unseal()
        try:
            client.unseal(material.retired_vaults[index][0])
        except VaultError:
            continue
        save_material(project_dir, material.vault_back(index), key)
        state = State.load(project_dir)
        state.approle_role_id = state.approle_secret_id = state.vault_snapshot_token = None
        state.save(project_dir)
        client.wait_active()
        return
    raise AiniError("Vault holds the restored snapshot but is sealed, and no unseal keys in "
                    f"{breakglass.material_path(project_dir, key)} open it (it was another project's snapshot?)")


def consul_back(client: ConsulClient, project_dir: Path, key: Key) -> bool:
    """After a restore of Consul's snapshot its ACL tokens are the snapshot's. When the
    management token in the break-glass file is no longer one of them, the retired token that
    is becomes current again and AINI's deploy and snapshot tokens go (aini up makes new ones).
    True when that happened."""
    material = load_material(project_dir, key)
    if material.consul_bootstrap_token and client.with_token(material.consul_bootstrap_token).token_valid():
        return False
    for index in reversed(range(len(material.retired_consuls))):
        if client.with_token(material.retired_consuls[index]).token_valid():
            save_material(project_dir, material.consul_back(index), key)
            state = State.load(project_dir)
            state.consul_deploy_token = state.consul_deploy_accessor = state.consul_snapshot_token = None
            state.save(project_dir)
            return True
    raise AiniError("Consul holds the restored snapshot, and no management token in "
                    f"{breakglass.material_path(project_dir, key)} is one of its tokens")


def unseal(client: VaultClient, project_dir: Path, key: Key) -> bool:
    """`aini vault unseal`: True when it was sealed and now is not."""
    health = client.health()
    if health.state == "uninitialized":
        raise AiniError("Vault is not initialised yet; run aini up")
    if health.state != "sealed":
        return False
    material = load_material(project_dir, key)
    if not material.vault_unseal_keys:
        raise AiniError(f"{breakglass.material_path(project_dir, key)} holds no unseal keys")
    client.unseal(material.vault_unseal_keys)
    client.wait_active()
    return True


# ---------------------------------------------------------------------------- secrets


def secret_paths(specs: Iterable[ServiceSpec]) -> dict[str, str]:
    """Secret name -> its KV path `<owner>/<name>`; the owner is the first enabled service
    that declares it (OnlyOffice's JWT secret lives with Nextcloud, which comes first)."""
    paths: dict[str, str] = {}
    for spec in specs:
        for secret in (*spec.secrets, *spec.user_secrets):
            paths.setdefault(secret.name, f"{spec.name}/{secret.name}")
    return paths


@dataclass
class SyncResult:
    pushed: list[str] = field(default_factory=list)  # names written to Vault (it lacked them)
    pulled: list[str] = field(default_factory=list)  # names whose local value Vault replaced


def sync_secrets(client: VaultClient, store: SecretStore, specs: Iterable[ServiceSpec],
                 extra: Mapping[str, str] | None = None) -> SyncResult:
    """Vault and the local store agree afterwards: what Vault lacks is pushed, what differs is
    taken from Vault. `extra`: secrets of no service (the backup repository's) -> KV path."""
    result = SyncResult()
    for name, path in {**secret_paths(specs), **(extra or {})}.items():
        local = store.get(name)
        stored = client.kv_get(path)
        remote = (stored or {}).get("value")
        if remote is None:
            if local is not None:
                client.kv_put(path, {"value": local}, cas=0 if stored is None else None)
                result.pushed.append(name)
        elif remote != local:
            store.adopt(name, remote)
            result.pulled.append(name)
    return result


def put_secret(client: VaultClient, store: SecretStore, specs: Iterable[ServiceSpec], name: str, value: str) -> None:
    """`aini secrets set/rotate`: Vault first (the source of truth), then the working copy."""
    path = secret_paths(specs).get(name)
    if path is None:
        raise InputError(f"no enabled service uses the secret {name}")
    store.adopt(name, value)  # validates the value before anything is written
    client.kv_put(path, {"value": value})


__all__ = ["KEY_SHARES", "KEY_THRESHOLD", "AgeKey", "Key", "Passphrase", "SealedError", "State", "SyncResult",
           "ensure_vault", "key_for", "load_material", "put_secret", "root_token", "save_material", "secret_paths", "sync_secrets",
           "unseal"]
