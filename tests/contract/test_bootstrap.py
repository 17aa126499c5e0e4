"""`aini up`'s Vault step (aini.controlplane.bootstrap) against the in-process Vault TEST
DOUBLE: first run, a restart (sealed), secrets made Vault's, break-glass handling."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
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


def _raft(url: str, token: str, restore: bytes | None = None, force: bool = False) -> bytes:
    """A raft snapshot taken (GET) or restored (POST): what the vault CLI in the container does."""
    path = "/v1/sys/storage/raft/snapshot" + ("-force" if force else "")
    request = urllib.request.Request(url + path, data=restore, method="POST" if restore else "GET",
                                     headers={"X-Vault-Token": token})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def test_a_new_vault_retires_the_old_keys_and_a_forced_restore_of_the_old_snapshot_brings_them_back(tmp_path, project):
    """Recovery onto a new server: `aini up` initialises a new Vault (the earlier keys are
    retired in the break-glass file, not overwritten); the earlier Vault's snapshot, forced in,
    seals it; vault_back unseals it with the retired keys and makes them current again."""
    key = bootstrap.Passphrase(environ=PASSPHRASE)
    old_server, new_server = vault_api.serve(tmp_path / "old"), vault_api.serve(tmp_path / "new")
    try:
        client, _ = bootstrap.ensure_vault(VaultClient(old_server.url), project, ["n8n"], key)
        client.kv_put("n8n/marker", {"value": "from the old server"})
        old = bootstrap.load_material(project, key)
        snapshot = _raft(old_server.url, old.vault_root_token)

        bootstrap.ensure_vault(VaultClient(new_server.url), project, ["n8n"], key)
        new = bootstrap.load_material(project, key)
        assert new.vault_unseal_keys != old.vault_unseal_keys
        assert new.retired_vaults == ((old.vault_unseal_keys, old.vault_root_token),)
        raw = (project / ".aini" / "breakglass.enc").read_text()
        assert old.vault_root_token not in raw  # retired keys are as encrypted as the current ones

        fresh = VaultClient(new_server.url)
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _raft(new_server.url, new.vault_root_token, snapshot)
        _raft(new_server.url, new.vault_root_token, snapshot, force=True)
        assert fresh.health().state == "sealed"
        bootstrap.vault_back(fresh, project, key)
        assert fresh.health().state == "active"
        back = bootstrap.load_material(project, key)
        assert (back.vault_unseal_keys, back.vault_root_token) == (old.vault_unseal_keys, old.vault_root_token)
        assert back.retired_vaults == ((new.vault_unseal_keys, new.vault_root_token),)  # they open the safety backup
        assert bootstrap.State.load(project).approle is None  # the replaced Vault's: aini up makes a new one
        client, outcome = bootstrap.ensure_vault(fresh, project, ["n8n"], key)
        assert outcome.bootstrapped and client.kv_get("n8n/marker") == {"value": "from the old server"}
    finally:
        old_server.stop()
        new_server.stop()


def test_a_restored_vault_that_no_kept_key_opens_is_an_error_that_says_so(tmp_path, project):
    key = bootstrap.Passphrase(environ=PASSPHRASE)
    servers = [vault_api.serve(tmp_path / n) for n in ("a", "b")]
    try:
        bootstrap.ensure_vault(VaultClient(servers[0].url), project / "a", [], key)
        bootstrap.ensure_vault(VaultClient(servers[1].url), project, [], key)
        snapshot = _raft(servers[0].url, bootstrap.load_material(project / "a", key).vault_root_token)
        _raft(servers[1].url, bootstrap.load_material(project, key).vault_root_token, snapshot, force=True)
        with pytest.raises(AiniError, match="no unseal keys in .* open it"):
            bootstrap.vault_back(VaultClient(servers[1].url), project, key)
    finally:
        for s in servers:
            s.stop()


def test_a_restored_consul_snapshot_brings_back_its_management_token(tmp_path, project):
    """Consul's snapshot carries its ACL tokens: restored onto a Consul bootstrapped anew, the
    retired management token is the one that works, and becomes current again."""
    from aini.controlplane.consul import ConsulClient

    consul_api = import_double("consul_api")
    key = bootstrap.Passphrase(environ=PASSPHRASE)
    old_server, new_server = consul_api.serve(tmp_path / "old"), consul_api.serve(tmp_path / "new")
    try:
        old_token = ConsulClient(old_server.url).acl_bootstrap()
        bootstrap.save_material(project, breakglass.BreakGlass(consul_bootstrap_token=old_token.secret_id), key)
        bootstrap.State(consul_deploy_token="old-deploy", consul_snapshot_token="old-snap").save(project)
        new_token = ConsulClient(new_server.url).acl_bootstrap()
        bootstrap.save_material(project, bootstrap.load_material(project, key).replace(
            consul_bootstrap_token=new_token.secret_id), key)
        assert bootstrap.load_material(project, key).retired_consuls == (old_token.secret_id,)
        new = ConsulClient(new_server.url)
        assert bootstrap.consul_back(new, project, key) is False  # nothing restored yet: the current token works

        snapshot = urllib.request.urlopen(urllib.request.Request(
            old_server.url + "/v1/snapshot", headers={"X-Consul-Token": old_token.secret_id}), timeout=30).read()
        urllib.request.urlopen(urllib.request.Request(new_server.url + "/v1/snapshot", data=snapshot, method="PUT",
                                                      headers={"X-Consul-Token": new_token.secret_id}), timeout=30)
        assert bootstrap.consul_back(new, project, key) is True
        back = bootstrap.load_material(project, key)
        assert (back.consul_bootstrap_token, back.retired_consuls) == (old_token.secret_id, (new_token.secret_id,))
        state = bootstrap.State.load(project)
        assert (state.consul_deploy_token, state.consul_snapshot_token) == (None, None)  # aini up makes new ones
    finally:
        old_server.stop()
        new_server.stop()


def test_a_snapshot_token_of_an_earlier_aini_gets_this_versions_policy_without_the_break_glass_token(tmp_path):
    """Deployments from before the scheduled runs reported to Consul have a snapshot policy
    without `service "aini-backup"`: aini up brings it up to date with the snapshot token."""
    from aini.controlplane import consul
    from aini.controlplane.consul import ConsulClient

    server = import_double("consul_api").serve(tmp_path / "consul")
    try:
        management = ConsulClient(server.url).with_token(ConsulClient(server.url).acl_bootstrap().secret_id)
        management.ensure_policy(consul.SNAPSHOT_POLICY, 'acl = "write"\n', "AINI backups: snapshots")
        snapshot = ConsulClient(server.url).with_token(management.ensure_token(consul.SNAPSHOT_TOKEN,
                                                                               [consul.SNAPSHOT_POLICY]).secret_id)
        management.ensure_deploy_token()
        snapshot.ensure_policies()
        rules = {name: management._call(consul.policy_by_name_request(name)).json()["Rules"]
                 for name in (consul.SNAPSHOT_POLICY, consul.DEPLOY_POLICY)}
        assert rules == {consul.SNAPSHOT_POLICY: consul.SNAPSHOT_RULES, consul.DEPLOY_POLICY: consul.DEPLOY_RULES}
        assert ConsulClient(server.url).with_token("not-a-token").token_valid() is False
        assert snapshot.token_valid() is True
    finally:
        server.stop()
