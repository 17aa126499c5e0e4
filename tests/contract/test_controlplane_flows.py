"""AINI's control-plane clients (src/aini/controlplane) run their flows against the
in-process TEST DOUBLES. The same flow functions run against the real images in
test_controlplane_upstream.py, so what passes here is what AINI expects of upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aini.catalog.model import HealthCheck
from aini.controlplane.consul import ConsulClient, ConsulError, deploy_record
from aini.controlplane.vault import (
    AppRoleCredentials,
    VaultClient,
    VaultError,
    audit_devices_request,
    enable_audit_request,
)
from tests.harness.doubles import import_double
from tests.harness.endpoints import HttpEndpoint, TcpEndpoint

from .helpers import wait_for

vault_api = import_double("vault_api")
consul_api = import_double("consul_api")

SECRET = "sk-flow-test-VALUE-9f8e7d6c5b4a"
SERVICES = ["librechat", "n8n", "nextcloud"]



# -------------------------------------------------------------------------------- Vault


def vault_flow(address: str) -> AppRoleCredentials:
    """init -> unseal (stopping at the threshold) -> bootstrap (twice) -> AppRole login ->
    KV with the deploy token, denied outside its policy."""
    client = VaultClient(address, timeout=10)
    assert client.health().state == "uninitialized"
    init = client.init(shares=3, threshold=2)
    assert len(init.keys) == 3 and init.root_token not in repr(init)
    with pytest.raises(VaultError, match="already initialised"):
        client.init(shares=3, threshold=2)
    assert client.health().state == "sealed"

    given: list[str] = []
    status = client.unseal(given.append(k) or k for k in init.keys)
    assert not status.sealed and len(given) == 2  # the threshold's worth, the third key stays home
    assert client.wait_active(timeout=30).state == "active"

    old = client.bootstrap(init.root_token, SERVICES)
    creds = client.bootstrap(init.root_token, SERVICES)  # idempotent: same role, a new secret ID
    assert old.role_id == creds.role_id and old.secret_id != creds.secret_id
    with pytest.raises(VaultError):  # the earlier one is destroyed: an old copy logs in no more
        client.login_approle(old)

    deploy = client.login_approle(creds)
    info = deploy.lookup_self()
    assert "aini-deploy" in info.policies and "root" not in info.policies
    assert 0 < info.ttl <= 20 * 60
    assert deploy.kv_put("librechat/OPENAI_API_KEY", {"value": SECRET}) == 1
    assert deploy.kv_put("librechat/OPENAI_API_KEY", {"value": SECRET + "2"}, cas=1) == 2
    assert deploy.kv_get("librechat/OPENAI_API_KEY") == {"value": SECRET + "2"}
    assert deploy.kv_get("librechat/OPENAI_API_KEY", version=1) == {"value": SECRET}
    assert deploy.kv_get("librechat/NOT_THERE") is None
    assert deploy.kv_list("librechat") == ["OPENAI_API_KEY"] and deploy.kv_list() == ["librechat/"]
    meta = deploy.kv_metadata("librechat/OPENAI_API_KEY")
    assert meta is not None and meta.current_version == 2 and set(meta.versions) == {1, 2}
    assert deploy.kv_metadata("n8n/NONE") is None
    with pytest.raises(VaultError, match="no handler"):  # a missing mount is an error, not "no secret"
        VaultClient(address, token=init.root_token, mount="nomount").kv_get("x/y")

    # outside the deploy policy: other mounts, sys/, a root-protected path
    for denied in (lambda: deploy.for_mount("secret").kv_get("anything"),
                   lambda: deploy.for_mount("secret").kv_put("anything", {"value": SECRET}),
                   deploy.raft_snapshot):
        with pytest.raises(VaultError) as info_:
            denied()
        assert info_.value.status == 403
        assert SECRET not in str(info_.value) and init.root_token not in str(info_.value)
    # a lost check-and-set is a clear error, not an overwrite
    with pytest.raises(VaultError, match="check-and-set"):
        deploy.kv_put("librechat/OPENAI_API_KEY", {"value": "late"}, cas=1)

    deploy.revoke_self()
    with pytest.raises(VaultError) as revoked:
        deploy.lookup_self()
    assert revoked.value.status == 403
    return creds


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[str]:
    """The Vault double's address (reached from 127.0.0.1)."""
    server = vault_api.serve(tmp_path / "vault")
    yield server.url
    server.stop()


def test_vault_flow_against_the_double(vault):
    vault_flow(vault)


def test_the_bootstrap_gives_vault_an_audit_device_and_its_log_holds_no_token(vault, capfd):
    client = VaultClient(vault, timeout=10)
    init = client.init(shares=1, threshold=1)
    client.unseal(init.keys)
    client.bootstrap(init.root_token, ["n8n"])
    client.bootstrap(init.root_token, ["n8n"])  # again: the device is there, not made twice
    devices = client.with_token(init.root_token)._call(audit_devices_request()).json()["data"]
    assert devices["stdout/"]["type"] == "file" and devices["stdout/"]["options"] == {"file_path": "stdout"}
    log = capfd.readouterr().out
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"operation": "create", "path": "sys/policies/acl/aini-read-n8n"} in [line["request"] for line in lines]
    assert all(line["auth"]["client_token"].startswith("hmac-sha256:") for line in lines if line["auth"]["client_token"])
    assert init.root_token not in log


def test_openbaos_declared_audit_device_is_kept_and_none_is_made_through_the_api(tmp_path: Path):
    declared = {"stdout": {"type": "file", "description": "", "options": {"file_path": "stdout"}, "local": False}}
    server = vault_api.serve(tmp_path / "bao", api_audit=False, declared_audit=declared)
    try:
        client = VaultClient(server.url, timeout=10)
        init = client.init(shares=1, threshold=1)
        client.unseal(init.keys)
        client.bootstrap(init.root_token, ["n8n"])  # would fail if it tried the API
        root = client.with_token(init.root_token)
        with pytest.raises(VaultError, match="declarative"):
            root._call(enable_audit_request("other"))
    finally:
        server.stop()


def test_unseal_after_a_restart_with_the_stored_keys(tmp_path: Path):
    first = vault_api.serve(tmp_path / "vault")
    try:
        client = VaultClient(first.url)
        init = client.init(shares=5, threshold=3)
        client.unseal(init.keys)
        creds = client.bootstrap(init.root_token, ["n8n"])
        client.login_approle(creds).kv_put("n8n/KEY", {"value": SECRET})
    finally:
        first.stop()
    second = vault_api.serve(tmp_path / "vault")  # the host rebooted
    try:
        client = VaultClient(second.url)
        assert client.health().state == "sealed"
        with pytest.raises(VaultError) as sealed:
            client.login_approle(creds)
        assert sealed.value.status == 503
        with pytest.raises(VaultError, match="still sealed: 2 of 3"):
            client.unseal(init.keys[:2])
        client.unseal(init.keys[2:])  # progress was kept: one more share is enough
        assert client.login_approle(creds).kv_get("n8n/KEY") == {"value": SECRET}
    finally:
        second.stop()


def test_the_deploy_approle_is_bound_to_the_address_deploys_come_from(vault):
    client = VaultClient(vault)
    init = client.init(shares=1, threshold=1)
    client.unseal(init.keys)
    elsewhere = client.bootstrap(init.root_token, ["n8n"], bound_cidrs=["10.87.0.1/32"])
    with pytest.raises(VaultError, match="unauthorized by CIDR restrictions") as refused:
        client.login_approle(elsewhere)
    assert elsewhere.secret_id not in str(refused.value)
    here = client.bootstrap(init.root_token, ["n8n"], bound_cidrs=["127.0.0.1/32"])  # the role is updated
    client.login_approle(here).kv_put("n8n/KEY", {"value": SECRET})


def test_wrong_unseal_keys_are_reported_without_the_keys(vault):
    client = VaultClient(vault)
    real = client.init(shares=3, threshold=2)
    fake = ["ab" * 33, "cd" * 33]
    with pytest.raises(VaultError, match="invalid key") as bad:
        client.unseal(fake)
    assert bad.value.status == 400 and not any(k in str(bad.value) for k in fake + list(real.keys))


# ------------------------------------------------------------------------------- Consul


@pytest.fixture
def targets() -> Iterator[dict[str, HttpEndpoint | TcpEndpoint]]:
    made = health_endpoints()
    yield made
    for target in made.values():
        try:
            target.stop()
        except OSError:
            pass


def health_endpoints() -> dict[str, HttpEndpoint | TcpEndpoint]:
    """Two web services with /health, one database port."""
    def health(path: str) -> int:
        return 200 if path == "/health" else 404

    return {"chat": HttpEndpoint(health), "flows": HttpEndpoint(health), "db": TcpEndpoint()}


def consul_flow(address: str, targets: dict[str, HttpEndpoint | TcpEndpoint], host: str = "127.0.0.1") -> None:
    """bootstrap (twice) -> deploy policy and token -> register 3 services with checks ->
    passing -> stop one -> critical -> a deploy record in KV."""
    anonymous = ConsulClient(address, timeout=10)
    assert anonymous.leader()
    boot = anonymous.acl_bootstrap()
    assert boot is not None and boot.secret_id not in repr(boot)
    assert anonymous.acl_bootstrap() is None  # already bootstrapped: the stored token stands
    admin = anonymous.with_token(boot.secret_id)
    token = admin.ensure_deploy_token()
    assert admin.ensure_deploy_token().accessor_id == token.accessor_id  # found again, not duplicated
    deploy = anonymous.with_token(token.secret_id)

    with pytest.raises(ConsulError) as denied:
        anonymous.kv_put("aini/deploy/x", "1")
    assert denied.value.status == 403

    interval = {"interval": "1s", "timeout": "2s"}
    checks = {"chat": HealthCheck(None, port=targets["chat"].port, path="/health", **interval),
              "flows": HealthCheck(None, port=targets["flows"].port, path="/health", **interval),
              "db": HealthCheck(None, port=targets["db"].port, **interval)}
    for name, check in checks.items():
        deploy.register_service(f"aini-{name}", host, targets[name].port, check, tags=["aini"])
    wait_for(lambda: all(deploy.service_health(f"aini-{n}") == "passing" for n in checks), 30)

    targets["db"].stop()  # the container stops
    wait_for(lambda: deploy.service_health("aini-db") == "critical", 30)
    assert deploy.service_health("aini-chat") == deploy.service_health("aini-flows") == "passing"
    assert anonymous.service_health("aini-chat") == "critical"  # filtered away: nothing to vouch for

    key, value = deploy_record("chat", image="registry/librechat:v0.8.8", bundle_hash="sha256:abc",
                               deployed_at="2026-11-25T12:00:00Z", aini_version="0.1.0")
    assert deploy.kv_put(key, value) is True
    assert deploy.kv_get(key) == value and json.loads(value)["image"] == "registry/librechat:v0.8.8"
    assert deploy.kv_tree("aini/deploy/") == {key: value}
    assert deploy.kv_put(key, b"other", cas=0) is False  # cas=0: only when new
    assert deploy.kv_get("aini/deploy/nothing") is None
    with pytest.raises(ConsulError) as outside:
        deploy.kv_put("elsewhere/x", "1")
    assert outside.value.status == 403 and token.secret_id not in str(outside.value)

    deploy.deregister_service("aini-flows")
    assert deploy.service_health("aini-flows") == "critical"  # not registered
    assert deploy.kv_delete("aini/deploy/", recurse=True) is True and deploy.kv_tree("aini/deploy/") == {}


def test_consul_flow_against_the_double(tmp_path: Path, targets):
    server = consul_api.serve(tmp_path / "consul")
    try:
        consul_flow(server.url, targets)
    finally:
        server.stop()


def test_a_bad_consul_token_is_an_error_without_the_token(tmp_path: Path):
    server = consul_api.serve(tmp_path / "consul")
    try:
        bogus = "0f0e0d0c-0b0a-4000-8000-0a0b0c0d0e0f"
        with pytest.raises(ConsulError) as bad:
            ConsulClient(server.url, token=bogus).kv_get("aini/x")
        assert bad.value.status == 403 and "ACL not found" in str(bad.value) and bogus not in str(bad.value)
    finally:
        server.stop()
