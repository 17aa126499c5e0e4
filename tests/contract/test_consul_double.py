"""The Consul TEST DOUBLE (tests/harness/images/doubles/consul_api.py) against what the
upstream API documentation says: ACL bootstrap and default deny, the documented JSON
shapes, checks that really run (and turn critical when their target stops), KV."""

from __future__ import annotations

import base64
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.doubles import import_double
from tests.harness.endpoints import HttpEndpoint, TcpEndpoint

from .helpers import free_port, start_double_process, stop_double_process, wait_for
from .test_vault_double import Answer
from .test_vault_double import call as _call

consul_api = import_double("consul_api")

MANAGEMENT = "00000000-0000-0000-0000-000000000001"


def call(url: str, method: str, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    headers = dict(headers or {})
    if token:
        headers["X-Consul-Token"] = token
    return _call(url, method, path, body, headers=headers)



@pytest.fixture
def consul(tmp_path: Path):
    server = consul_api.serve(tmp_path / "consul-data")
    yield server
    server.stop()


def bootstrap(url: str) -> str:
    answer = call(url, "PUT", "/v1/acl/bootstrap")
    assert answer.status == 200, answer.body
    return answer.json["SecretID"]


def token_with_rules(url: str, admin: str, name: str, rules: str) -> str:
    assert call(url, "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}, admin).status == 200
    answer = call(url, "PUT", "/v1/acl/token", {"Description": name, "Policies": [{"Name": name}]}, admin)
    assert answer.status == 200, answer.body
    return answer.json["SecretID"]


def check_status(url: str, token: str, check_id: str) -> str | None:
    checks = call(url, "GET", "/v1/agent/checks", token=token).json
    return checks.get(check_id, {}).get("Status")


# ---------------------------------------------------------------------- status, bootstrap
# https://developer.hashicorp.com/consul/api-docs/status (no ACL needed)
# https://developer.hashicorp.com/consul/api-docs/acl#bootstrap-acls


def test_leader_answers_without_a_token(consul):
    answer = call(consul.url, "GET", "/v1/status/leader")
    assert answer.status == 200 and answer.json == "127.0.0.1:8300"
    assert answer.headers["X-Consul-Default-ACL-Policy"] == "deny"


def test_acl_bootstrap_works_once(consul):
    url = consul.url
    first = call(url, "PUT", "/v1/acl/bootstrap")
    assert first.status == 200
    token = first.json
    assert token["Description"] == "Bootstrap Token (Global Management)"
    assert token["Policies"] == [{"ID": MANAGEMENT, "Name": "global-management"}]
    assert {"AccessorID", "SecretID", "Local", "CreateTime", "Hash", "CreateIndex", "ModifyIndex"} <= set(token)
    second = call(url, "PUT", "/v1/acl/bootstrap")
    assert second.status == 403
    assert second.body.decode().startswith("Permission denied: ACL bootstrap no longer allowed (reset index: ")
    self_ = call(url, "GET", "/v1/acl/token/self", token=token["SecretID"]).json
    assert self_["AccessorID"] == token["AccessorID"]


# --------------------------------------------------------------------------- default deny
# https://developer.hashicorp.com/consul/docs/security/acl: default_policy = "deny"; the
# anonymous token has no rights; reads of lists are filtered, not refused.


def test_anonymous_and_unknown_tokens_are_denied(consul):
    url = consul.url
    admin = bootstrap(url)
    assert call(url, "PUT", "/v1/kv/aini/x", b"1", admin).json is True
    register = {"Name": "web", "Port": 80, "Check": {"TCP": "127.0.0.1:1", "Interval": "10s"}}
    assert call(url, "PUT", "/v1/agent/service/register", register, admin).status == 200

    denied = call(url, "GET", "/v1/kv/aini/x")
    assert denied.status == 403 and denied.body.startswith(b"Permission denied")
    assert b"lacks permission 'key:read'" in denied.body
    assert call(url, "PUT", "/v1/kv/aini/y", b"1").status == 403
    assert call(url, "PUT", "/v1/agent/service/register", {"Name": "evil"}).status == 403
    filtered = call(url, "GET", "/v1/health/service/web")
    assert filtered.status == 200 and filtered.json == []
    assert filtered.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert call(url, "GET", "/v1/agent/services").json == {}
    assert call(url, "GET", "/v1/acl/tokens").status == 403

    unknown = call(url, "GET", "/v1/kv/aini/x", token="6a1f0b8e-0000-4000-8000-000000000000")
    assert unknown.status == 403 and unknown.body.strip() == b"ACL not found"
    # the token may come as a bearer token too
    bearer = call(url, "GET", "/v1/kv/aini/x", headers={"Authorization": f"Bearer {admin}"})
    assert bearer.status == 200


# https://developer.hashicorp.com/consul/docs/security/acl/acl-rules: exact rules beat
# prefix rules, the longest prefix wins, deny wins over grants in other policies.
def test_policy_rules_are_enforced(consul):
    url = consul.url
    admin = bootstrap(url)
    token = token_with_rules(url, admin, "deployer", """
        key_prefix "aini/" { policy = "write" }
        key "aini/locked" { policy = "deny" }
        key_prefix "aini/ro/" { policy = "read" }
        service_prefix "web" { policy = "write" }
        node_prefix "" { policy = "read" }
    """)
    assert call(url, "PUT", "/v1/kv/aini/deploy/web", b"{}", token).json is True
    assert call(url, "PUT", "/v1/kv/other/x", b"1", token).status == 403
    assert call(url, "PUT", "/v1/kv/aini/locked", b"1", token).status == 403
    assert call(url, "PUT", "/v1/kv/aini/ro/x", b"1", token).status == 403
    assert call(url, "PUT", "/v1/agent/service/register", {"Name": "web-2"}, token).status == 200
    db = call(url, "PUT", "/v1/agent/service/register", {"Name": "db"}, token)
    assert db.status == 403 and b"lacks permission 'service:write' on \"db\"" in db.body
    assert call(url, "GET", "/v1/acl/policies", token=token).status == 403

    clash = call(url, "PUT", "/v1/acl/policy", {"Name": "deployer", "Rules": ""}, admin)
    assert clash.status == 500 and b'A Policy with Name "deployer" already exists' in clash.body
    by_name = call(url, "GET", "/v1/acl/policy/name/deployer", token=admin).json
    assert {"ID", "Name", "Description", "Rules", "Hash", "CreateIndex", "ModifyIndex"} <= set(by_name)
    assert call(url, "GET", "/v1/acl/policy/name/nope", token=admin).status == 404
    bad = call(url, "PUT", "/v1/acl/policy", {"Name": "bad", "Rules": 'key_prefix "" { policy = "fly" }'}, admin)
    assert bad.status == 400


# ------------------------------------------------------------------------ services, checks
# https://developer.hashicorp.com/consul/api-docs/agent/service#register-service
# https://developer.hashicorp.com/consul/api-docs/agent/check#register-check: HTTP: 2xx
# passing, 429 warning, else critical; TCP: connect succeeds -> passing, else critical.


def test_checks_run_on_their_interval_and_follow_their_target(consul):
    url = consul.url
    admin = bootstrap(url)
    web, db = HttpEndpoint(), TcpEndpoint()
    try:
        web_def = {"Name": "web", "Address": "127.0.0.1", "Port": web.port, "Tags": ["v1"],
                   "Check": {"HTTP": f"http://127.0.0.1:{web.port}/health", "Interval": "1s", "Timeout": "1s",
                             "DeregisterCriticalServiceAfter": "90m"}}
        db_def = {"Name": "db", "ID": "db-1", "Port": db.port,
                  "Checks": [{"TCP": f"127.0.0.1:{db.port}", "Interval": "1s"}]}
        for definition in (web_def, db_def):
            assert call(url, "PUT", "/v1/agent/service/register", definition, admin).status == 200
        # check IDs: service:<ID>, with :<n> only when a service has several checks
        checks = call(url, "GET", "/v1/agent/checks", token=admin).json
        assert set(checks) == {"service:web", "service:db-1"}
        first = checks["service:web"]
        assert {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
                "ServiceTags", "Type"} <= set(first)
        assert first["Name"] == "Service 'web' check" and first["ServiceTags"] == ["v1"] and first["Type"] == "http"

        wait_for(lambda: check_status(url, admin, "service:web") == "passing")
        wait_for(lambda: check_status(url, admin, "service:db-1") == "passing")
        output = call(url, "GET", "/v1/agent/checks", token=admin).json["service:web"]["Output"]
        assert output.startswith(f"HTTP GET http://127.0.0.1:{web.port}/health: 200 OK Output: ok")

        health = call(url, "GET", "/v1/health/service/web", token=admin).json
        assert len(health) == 1 and set(health[0]) == {"Node", "Service", "Checks"}
        assert health[0]["Service"]["ID"] == "web" and health[0]["Service"]["Port"] == web.port
        assert {c["CheckID"] for c in health[0]["Checks"]} == {"service:web", "serfHealth"}
        assert health[0]["Node"]["Node"] and health[0]["Node"]["Datacenter"]

        web.code = 429
        wait_for(lambda: check_status(url, admin, "service:web") == "warning")
        web.code = 503
        wait_for(lambda: check_status(url, admin, "service:web") == "critical")
        assert call(url, "GET", "/v1/health/service/web?passing", token=admin).json == []
        web.code = 200
        wait_for(lambda: check_status(url, admin, "service:web") == "passing")

        db.stop()  # the container stops: its check turns critical
        wait_for(lambda: check_status(url, admin, "service:db-1") == "critical")
        critical = call(url, "GET", "/v1/health/state/critical", token=admin).json
        assert [c["CheckID"] for c in critical] == ["service:db-1"]
        assert call(url, "GET", "/v1/health/checks/db", token=admin).json[0]["Status"] == "critical"
        web.stop()
        wait_for(lambda: check_status(url, admin, "service:web") == "critical")
        assert "critical" in {c["Status"] for c in call(url, "GET", "/v1/health/state/any", token=admin).json}
    finally:
        for target in (web, db):
            try:
                target.stop()
            except OSError:
                pass


def test_registration_is_validated_and_deregistration_removes_checks(consul):
    url = consul.url
    admin = bootstrap(url)
    no_interval = {"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}}
    answer = call(url, "PUT", "/v1/agent/service/register", no_interval, admin)
    assert answer.status == 400 and answer.body.startswith(b"Invalid check: Interval must be > 0")
    assert call(url, "PUT", "/v1/agent/service/register", {"Port": 1}, admin).status == 400
    ok = {"Name": "x", "Check": {"TCP": "127.0.0.1:1", "Interval": "10s", "Status": "passing"}}
    assert call(url, "PUT", "/v1/agent/service/register", ok, admin).status == 200
    assert check_status(url, admin, "service:x") == "passing"  # the given initial status
    assert call(url, "GET", "/v1/catalog/services", token=admin).json == {"x": []}
    assert call(url, "PUT", "/v1/agent/service/deregister/x", token=admin).status == 200
    assert call(url, "GET", "/v1/agent/checks", token=admin).json == {}
    assert call(url, "GET", "/v1/health/service/x", token=admin).json == []
    assert call(url, "PUT", "/v1/agent/service/deregister/x", token=admin).status == 404


def test_a_service_critical_longer_than_deregister_critical_service_after_is_removed(consul, monkeypatch):
    # Upstream's minimum is one minute (and its reaper runs every 30 s); shrink the
    # double's minimum so the test takes seconds.
    monkeypatch.setattr(consul_api, "MIN_DEREGISTER_AFTER", 0.5)
    url = consul.url
    admin = bootstrap(url)
    dead = TcpEndpoint()
    dead.stop()
    gone = {"Name": "gone", "Check": {"TCP": f"127.0.0.1:{dead.port}", "Interval": "1s",
                                      "DeregisterCriticalServiceAfter": "1s"}}
    kept = {"Name": "kept", "Check": {"TCP": f"127.0.0.1:{dead.port}", "Interval": "1s"}}
    for definition in (gone, kept):
        assert call(url, "PUT", "/v1/agent/service/register", definition, admin).status == 200
    wait_for(lambda: "gone" not in call(url, "GET", "/v1/agent/services", token=admin).json)
    assert check_status(url, admin, "service:kept") == "critical"  # without the setting it stays, critical


def test_a_ttl_check_holds_what_it_was_told_and_turns_critical_when_nobody_tells_it_again(consul):
    """What the scheduled backup reports to (agent/checks/check.go CheckTTL; agent/check
    API docs): updates need service:write on the check's service; an update resets the TTL;
    when it lapses the check is critical, with the last output kept."""
    url = consul.url
    admin = bootstrap(url)
    reader = token_with_rules(url, admin, "reader", 'service_prefix "" { policy = "read" }\n'
                                                     'node_prefix "" { policy = "read" }\n')
    writer = token_with_rules(url, admin, "backup", 'service "aini-backup" { policy = "write" }\n')
    definition = {"Name": "aini-backup", "Check": {"TTL": "2s", "Status": "warning", "Notes": "scheduled backups"}}
    assert call(url, "PUT", "/v1/agent/service/register", definition, admin).status == 200
    assert check_status(url, admin, "service:aini-backup") == "warning"
    update = "/v1/agent/check/update/service:aini-backup"
    assert call(url, "PUT", update, {"Status": "passing", "Output": "saved"}, reader).status == 403
    assert call(url, "PUT", update, {"Status": "fine", "Output": "saved"}, writer).status == 400
    assert call(url, "GET", update, {"Status": "passing"}, writer).status == 405
    assert call(url, "PUT", "/v1/agent/check/update/service:nope", {"Status": "passing"}, admin).status == 404
    assert call(url, "PUT", update, {"Status": "passing", "Output": "run r1: 8 saved"}, writer).status == 200
    assert check_status(url, admin, "service:aini-backup") == "passing"
    time.sleep(1.2)
    assert call(url, "PUT", "/v1/agent/check/pass/service:aini-backup?note=run%20r2", token=writer).status == 200
    time.sleep(1.2)  # 2.4 s after the first update, 1.2 s after the second: the TTL was reset
    assert check_status(url, admin, "service:aini-backup") == "passing"
    wait_for(lambda: check_status(url, admin, "service:aini-backup") == "critical")
    (check,) = call(url, "GET", "/v1/health/checks/aini-backup", token=admin).json
    assert check["Output"] == "TTL expired (last output before timeout follows): run r2"
    http = {"Name": "web", "Check": {"TCP": "127.0.0.1:9", "Interval": "10s"}}
    assert call(url, "PUT", "/v1/agent/service/register", http, admin).status == 200
    assert call(url, "PUT", "/v1/agent/check/pass/service:web", token=admin).status == 500  # not a TTL check


# ------------------------------------------------------------------------------------ KV
# https://developer.hashicorp.com/consul/api-docs/kv


def test_kv_shapes_cas_recurse_keys_and_raw(consul):
    url = consul.url
    admin = bootstrap(url)
    assert call(url, "GET", "/v1/kv/aini/missing", token=admin).status == 404
    assert call(url, "PUT", "/v1/kv/aini/deploy/web?flags=42", b'{"image": "x"}', admin).json is True
    entry = call(url, "GET", "/v1/kv/aini/deploy/web", token=admin).json
    assert len(entry) == 1 and set(entry[0]) == {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"}
    assert entry[0]["Key"] == "aini/deploy/web" and entry[0]["Flags"] == 42
    assert base64.b64decode(entry[0]["Value"]) == b'{"image": "x"}'
    raw = call(url, "GET", "/v1/kv/aini/deploy/web?raw", token=admin)
    assert raw.body == b'{"image": "x"}' and raw.headers["Content-Type"].startswith("text/plain")

    index = entry[0]["ModifyIndex"]
    assert call(url, "PUT", "/v1/kv/aini/deploy/web?cas=0", b"new", admin).json is False
    assert call(url, "PUT", f"/v1/kv/aini/deploy/web?cas={index + 100}", b"new", admin).json is False
    assert call(url, "PUT", f"/v1/kv/aini/deploy/web?cas={index}", b"new", admin).json is True
    after = call(url, "GET", "/v1/kv/aini/deploy/web", token=admin).json[0]
    assert after["ModifyIndex"] > index and after["CreateIndex"] == entry[0]["CreateIndex"]

    call(url, "PUT", "/v1/kv/aini/deploy/n8n", b"", admin)
    call(url, "PUT", "/v1/kv/aini/meta", b"m", admin)
    tree = call(url, "GET", "/v1/kv/aini/deploy/?recurse", token=admin).json
    assert [e["Key"] for e in tree] == ["aini/deploy/n8n", "aini/deploy/web"] and tree[0]["Value"] is None
    assert call(url, "GET", "/v1/kv/aini/?keys&separator=/", token=admin).json == ["aini/deploy/", "aini/meta"]
    assert call(url, "GET", "/v1/kv/aini/?keys", token=admin).json == ["aini/deploy/n8n", "aini/deploy/web",
                                                                        "aini/meta"]
    assert call(url, "DELETE", "/v1/kv/aini/meta?cas=0", token=admin).json is False
    assert call(url, "DELETE", "/v1/kv/aini/deploy/?recurse", token=admin).json is True
    assert call(url, "GET", "/v1/kv/aini/?keys", token=admin).json == ["aini/meta"]


# ---------------------------------------------------------------- persistence, snapshot


def test_state_survives_a_restart_and_checks_run_again(tmp_path: Path):
    data_dir = tmp_path / "consul-data"
    target = HttpEndpoint()
    first = consul_api.serve(data_dir)
    try:
        admin = bootstrap(first.url)
        call(first.url, "PUT", "/v1/kv/aini/x", b"kept", admin)
        check = {"HTTP": f"http://127.0.0.1:{target.port}/", "Interval": "1s"}
        call(first.url, "PUT", "/v1/agent/service/register", {"Name": "web", "Check": check}, admin)
    finally:
        first.stop()
    second = consul_api.serve(data_dir)
    try:
        assert call(second.url, "PUT", "/v1/acl/bootstrap").status == 403
        assert call(second.url, "GET", "/v1/kv/aini/x?raw", token=admin).body == b"kept"
        assert check_status(second.url, admin, "service:web") in ("critical", "passing")  # kept, and ...
        wait_for(lambda: check_status(second.url, admin, "service:web") == "passing")  # ... running again
        snapshot = call(second.url, "GET", "/v1/snapshot", token=admin)
        assert snapshot.status == 200 and json.loads(gzip.decompress(snapshot.body))["kv"]
        # snapshot_endpoint.go: one sense for save and restore, acl = "write" (a snapshot holds every token)
        reader = token_with_rules(second.url, admin, "reader", 'key_prefix "" { policy = "read" }\nacl = "read"')
        assert call(second.url, "GET", "/v1/snapshot", token=reader).status == 403
        snapper = token_with_rules(second.url, admin, "snapper", 'acl = "write"')
        taken = call(second.url, "GET", "/v1/snapshot", token=snapper)
        assert taken.status == 200
        call(second.url, "PUT", "/v1/kv/aini/x", b"changed", admin)
        assert call(second.url, "PUT", "/v1/snapshot", taken.body, reader).status == 403
        assert call(second.url, "PUT", "/v1/snapshot", b"garbage", snapper).status == 500
        assert call(second.url, "PUT", "/v1/snapshot", taken.body, snapper).status == 200
        assert call(second.url, "GET", "/v1/kv/aini/x?raw", token=admin).body == b"kept"
        wait_for(lambda: check_status(second.url, admin, "service:web") == "passing")  # its check runs again
    finally:
        second.stop()
        target.stop()


# ------------------------------------------------------------- the doubles image entrypoint


def test_the_image_entrypoint_serves_the_api_with_the_double_header(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_double_process("consul", tmp_path, port)
    try:
        leader = call(url, "GET", "/v1/status/leader")  # the catalog's container health check
        assert leader.json == "127.0.0.1:8300" and leader.headers["X-Aini-Double"] == "consul"
        assert b"Consul (AINI test double)" in call(url, "GET", "/ui/").body
        admin = bootstrap(url)
        assert call(url, "PUT", "/v1/kv/aini/x", b"1", admin).json is True
    finally:
        stop_double_process(process)
    assert (tmp_path / "consul-double.json").exists()  # the volume keeps the state
    process = start_double_process("consul", tmp_path, port, mode="broken")
    try:
        assert call(url, "GET", "/v1/status/leader").status == 500
    finally:
        stop_double_process(process)
