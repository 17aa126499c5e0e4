"""`aini up`'s Vault step (aini.controlplane.bootstrap) against the in-process Vault TEST
DOUBLE: first run, a restart (sealed), secrets made Vault's, break-glass handling."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from aini import catalog
from aini.catalog import backup as backup_catalog
from aini.config import validate_data
from aini.controlplane import bootstrap, breakglass
from aini.controlplane.vault import VaultClient, VaultError
from aini.errors import AiniError, InputError
from aini.store import SecretStore
from tests.harness.doubles import import_double
from tests.unit.conftest import config_of

vault_api = import_double("vault_api")
PASSPHRASE = {"AINI_BREAKGLASS_PASSPHRASE": "contract-test-passphrase"}


def specs():
    config = validate_data({"domain": "example.com", "email": "a@example.com"}, "t")
    return catalog.enabled(config)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    store = SecretStore(tmp_path / ".aini")
    store.ensure(catalog.secrets_for(specs()))
    store.save()
    return tmp_path


def test_first_run_initialises_keeps_material_encrypted_and_deploys_with_an_approle(tmp_path, project):
    server = vault_api.serve(tmp_path / "vault")
    try:
        said: list[str] = []
        client, outcome = bootstrap.ensure_vault(VaultClient(server.url), project, [s.name for s in specs()],
                                                 bootstrap.Passphrase(environ=PASSPHRASE), said.append)
        assert (outcome.initialised, outcome.unsealed, outcome.bootstrapped) == (True, True, True)
        material = breakglass.load(project / ".aini" / "breakglass.enc", PASSPHRASE["AINI_BREAKGLASS_PASSPHRASE"])
        assert len(material.vault_unseal_keys) == 5 and material.vault_root_token
        raw = (project / ".aini" / "breakglass.enc").read_text()
        assert material.vault_root_token not in raw and all(k not in raw for k in material.vault_unseal_keys)
        state = json.loads((project / ".aini" / "controlplane.json").read_text())
        assert material.vault_root_token not in json.dumps(state)
        assert (project / ".aini" / "controlplane.json").stat().st_mode & 0o777 == 0o600
        assert not any(material.vault_root_token in line for line in said)
        assert "aini-deploy" in client.lookup_self().policies  # not the root token

        store = SecretStore(project / ".aini")
        result = bootstrap.sync_secrets(client, store, specs())
        assert "n8n_encryption_key" in result.pushed and result.pulled == []
        assert client.kv_get("n8n/n8n_encryption_key") == {"value": store.get("n8n_encryption_key")}
        assert client.kv_get("nextcloud/onlyoffice_jwt_secret")  # a shared secret lives with its first user
        assert bootstrap.sync_secrets(client, store, specs()).pushed == []  # nothing new the second time

        # The backup repository's password belongs to no service: it is kept under backup/.
        with_backup = config_of(backup={"repository": "/var/backups/aini"})
        store.ensure(backup_catalog.secrets(with_backup))
        extra = backup_catalog.vault_paths(with_backup)
        assert extra == {"restic_password": "backup/restic_password"}
        assert bootstrap.sync_secrets(client, store, specs(), extra).pushed == ["restic_password"]
        assert client.kv_get("backup/restic_password") == {"value": store.get("restic_password")}

        # Vault wins: a value changed there (another operator's `aini secrets set`) is adopted here.
        client.kv_put("librechat/librechat_jwt_secret", {"value": "a" * 64})
        pulled = bootstrap.sync_secrets(client, store, specs())
        assert pulled.pulled == ["librechat_jwt_secret"] and store.get("librechat_jwt_secret") == "a" * 64

        # A second `aini up`: nothing initialised, nothing bootstrapped, the same AppRole.
        _client, again = bootstrap.ensure_vault(VaultClient(server.url), project, ["n8n"],
                                                bootstrap.Passphrase(environ={}))
        assert (again.initialised, again.unsealed, again.bootstrapped) == (False, False, False)

        # The backups' snapshot token: a raft snapshot and nothing else, renewable, kept in
        # .aini/; a lapsed one is replaced by the next `aini up` (from the root token).
        kept = bootstrap.State.load(project).vault_snapshot_token
        snapper = VaultClient(server.url, token=kept)
        assert snapper.raft_snapshot() and snapper.lookup_self().policies == ("aini-snapshot", "default")
        with pytest.raises(VaultError) as denied:
            snapper.kv_get("n8n/n8n_encryption_key")
        assert denied.value.status == 403
        snapper.revoke_self()
        bootstrap.ensure_vault(VaultClient(server.url), project, ["n8n"], bootstrap.Passphrase(environ=PASSPHRASE))
        renewed = bootstrap.State.load(project).vault_snapshot_token
        assert renewed != kept and VaultClient(server.url, token=renewed).raft_snapshot()
    finally:
        server.stop()


def test_after_a_restart_vault_is_sealed_and_only_the_passphrase_opens_it(tmp_path, project):
    first = vault_api.serve(tmp_path / "vault")
    try:
        bootstrap.ensure_vault(VaultClient(first.url), project, ["n8n"], bootstrap.Passphrase(environ=PASSPHRASE))
    finally:
        first.stop()
    second = vault_api.serve(tmp_path / "vault")  # the server rebooted
    try:
        client = VaultClient(second.url)
        assert client.health().state == "sealed"
        with pytest.raises(InputError, match="AINI_BREAKGLASS_PASSPHRASE"):  # no terminal, no variable
            bootstrap.unseal(client, project, bootstrap.Passphrase(environ={}))
        with pytest.raises(AiniError, match="wrong passphrase"):
            bootstrap.unseal(client, project, bootstrap.Passphrase(environ={
                "AINI_BREAKGLASS_PASSPHRASE": "not-the-right-one"}))
        assert client.health().state == "sealed"
        assert bootstrap.unseal(client, project, bootstrap.Passphrase(environ=PASSPHRASE)) is True
        assert client.health().state == "active"
        assert bootstrap.unseal(client, project, bootstrap.Passphrase(environ=PASSPHRASE)) is False
    finally:
        second.stop()


def test_a_new_passphrase_must_be_long_enough(tmp_path, project):
    server = vault_api.serve(tmp_path / "vault")
    try:
        with pytest.raises(AiniError, match="12"):
            bootstrap.ensure_vault(VaultClient(server.url), project, ["n8n"],
                                   bootstrap.Passphrase(environ={"AINI_BREAKGLASS_PASSPHRASE": "short"}))
        assert VaultClient(server.url).health().state == "uninitialized"  # nothing irreversible happened
    finally:
        server.stop()


def test_put_secret_writes_vault_then_the_working_copy(tmp_path, project):
    server = vault_api.serve(tmp_path / "vault")
    try:
        client, _ = bootstrap.ensure_vault(VaultClient(server.url), project, ["librechat"],
                                           bootstrap.Passphrase(environ=PASSPHRASE))
        store = SecretStore(project / ".aini")
        bootstrap.put_secret(client, store, specs(), "openai_api_key", "sk-test-123456789")
        assert client.kv_get("librechat/openai_api_key") == {"value": "sk-test-123456789"}
        assert store.get("openai_api_key") == "sk-test-123456789"
        with pytest.raises(InputError, match="quote or line break"):
            bootstrap.put_secret(client, store, specs(), "openai_api_key", "bad'value")
        assert client.kv_get("librechat/openai_api_key") == {"value": "sk-test-123456789"}
        with pytest.raises(InputError, match="no enabled service"):
            bootstrap.put_secret(client, store, specs(), "nope", "x")
    finally:
        server.stop()
