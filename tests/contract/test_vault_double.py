"""The Vault TEST DOUBLE (tests/harness/images/doubles/vault_api.py) against what the
upstream API documentation says: status codes, error texts and JSON shapes, restart ->
sealed, token rejection and policy enforcement. Raw HTTP on purpose: AINI's own client is
tested against the double elsewhere (test_controlplane_flows.py)."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.doubles import import_double

from .helpers import free_port, start_double_process, stop_double_process



vault_api = import_double("vault_api")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: bytes
    headers: Any

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def errors(self) -> list[str]:
        return self.json["errors"]


def call(url: str, method: str, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("X-Vault-Token", token)
    try:
        with _OPENER.open(request, timeout=10) as r:
            return Answer(r.status, r.read(), r.headers)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), exc.headers)


@pytest.fixture
def vault(tmp_path: Path):
    server = vault_api.serve(tmp_path / "vault-data")
    yield server
    server.stop()


def initialise(url: str, shares: int = 3, threshold: int = 2) -> dict[str, Any]:
    answer = call(url, "PUT", "/v1/sys/init", {"secret_shares": shares, "secret_threshold": threshold})
    assert answer.status == 200, answer.body
    return answer.json


def unseal(url: str, keys: list[str]) -> dict[str, Any]:
    for key in keys:
        status = call(url, "PUT", "/v1/sys/unseal", {"key": key}).json
        if not status["sealed"]:
            return status
    raise AssertionError("still sealed")


def ready(url: str) -> str:
    """Initialised, unsealed, KV v2 at aini/; returns the root token."""
    init = initialise(url)
    unseal(url, init["keys"])
    root = init["root_token"]
    assert call(url, "POST", "/v1/sys/mounts/aini", {"type": "kv", "options": {"version": "2"}}, root).status == 204
    return root


def child_token(url: str, root: str, policies: list[str], **extra: Any) -> str:
    answer = call(url, "POST", "/v1/auth/token/create", {"policies": policies, **extra}, root)
    assert answer.status == 200, answer.body
    return answer.json["auth"]["client_token"]


def write_policy(url: str, root: str, name: str, text: str) -> None:
    answer = call(url, "PUT", f"/v1/sys/policies/acl/{name}", {"policy": text}, root)
    assert answer.status == 204, answer.body


# ---------------------------------------------------------------------------- sys/health
# https://developer.hashicorp.com/vault/api-docs/system/health
# 200 initialised+unsealed+active, 429 unsealed standby, 501 not initialised, 503 sealed;
# standbyok, activecode, standbycode, sealedcode, uninitcode pick other codes; HEAD too.


def test_health_codes_follow_the_vault_state_and_the_query_parameters(vault):
    url = vault.url
    answer = call(url, "GET", "/v1/sys/health")
    assert answer.status == 501
    assert {"initialized": False, "sealed": True, "standby": False}.items() <= answer.json.items()
    assert call(url, "GET", "/v1/sys/health?uninitcode=200").status == 200
    # the catalog's container health check: sealed and uninitialised count as up
    catalog_check = "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200"
    assert call(url, "GET", catalog_check).status == 200

    init = initialise(url)
    answer = call(url, "GET", "/v1/sys/health")
    assert answer.status == 503 and answer.json["initialized"] and answer.json["sealed"]
    assert call(url, "GET", "/v1/sys/health?sealedcode=299").status == 299
    assert call(url, "GET", catalog_check).status == 200
    assert call(url, "HEAD", "/v1/sys/health").status == 503

    unseal(url, init["keys"])
    answer = call(url, "GET", "/v1/sys/health")
    assert answer.status == 200
    assert {"initialized": True, "sealed": False, "standby": False, "version": "1.21.4"}.items() <= answer.json.items()
    assert isinstance(answer.json["server_time_utc"], int) and answer.json["cluster_id"]
    assert call(url, "GET", "/v1/sys/health?activecode=204").status == 204

    vault.double.standby = True  # a test knob: the double plays an HA standby
    assert call(url, "GET", "/v1/sys/health").status == 429
    assert call(url, "GET", "/v1/sys/health?standbyok=true").status == 200
    assert call(url, "GET", "/v1/sys/health?standbycode=288").status == 288
    assert call(url, "GET", "/v1/sys/health?activecode=abc").status == 400


# ---------------------------------------------------------------------------- sys/init
# https://developer.hashicorp.com/vault/api-docs/system/init


def test_init_happens_once_and_returns_the_shares_and_a_root_token(vault):
    url = vault.url
    assert call(url, "GET", "/v1/sys/init").json == {"initialized": False}
    bad = call(url, "PUT", "/v1/sys/init", {"secret_shares": 2, "secret_threshold": 3})
    assert bad.status == 400 and "threshold cannot be larger than shares" in bad.errors[0]
    bad = call(url, "PUT", "/v1/sys/init", {"secret_shares": 3, "secret_threshold": 1})
    assert bad.status == 400

    init = initialise(url, shares=5, threshold=3)
    assert len(init["keys"]) == len(init["keys_base64"]) == 5
    assert [base64.b64decode(b).hex() for b in init["keys_base64"]] == init["keys"]
    assert init["root_token"].startswith("hvs.")
    assert call(url, "GET", "/v1/sys/init").json == {"initialized": True}

    again = call(url, "PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1})
    assert again.status == 400 and again.errors == ["Vault is already initialized"]


# ------------------------------------------------------------------- seal-status, unseal
# https://developer.hashicorp.com/vault/api-docs/system/seal-status
# https://developer.hashicorp.com/vault/api-docs/system/unseal


def test_unseal_counts_distinct_shares_up_to_the_threshold_and_can_be_reset(vault):
    url = vault.url
    before = call(url, "PUT", "/v1/sys/unseal", {"key": "00" * 32})
    assert before.status == 400 and before.errors == ["Vault is not initialized"]
    keys = initialise(url, shares=5, threshold=3)["keys"]

    status = call(url, "GET", "/v1/sys/seal-status").json
    assert {"type": "shamir", "initialized": True, "sealed": True, "t": 3, "n": 5, "progress": 0}.items() <= status.items()
    assert call(url, "PUT", "/v1/sys/unseal", {"key": keys[0]}).json["progress"] == 1
    assert call(url, "PUT", "/v1/sys/unseal", {"key": keys[0]}).json["progress"] == 1  # the same share again
    second = call(url, "PUT", "/v1/sys/unseal", {"key": keys[1]}).json
    assert second["progress"] == 2 and second["sealed"] and second["nonce"]
    reset = call(url, "PUT", "/v1/sys/unseal", {"reset": True}).json
    assert reset["progress"] == 0 and reset["sealed"]

    missing = call(url, "PUT", "/v1/sys/unseal", {})
    assert missing.status == 400
    assert missing.errors == ["'key' must be specified in request body as JSON, or 'reset' set to true"]
    garbage = call(url, "PUT", "/v1/sys/unseal", {"key": "not a key!"})
    assert garbage.status == 400 and garbage.errors == ["'key' must be a valid hex or base64 string"]

    # a wrong share only shows when the threshold is reached (Shamir), and resets progress
    call(url, "PUT", "/v1/sys/unseal", {"key": keys[0]})
    call(url, "PUT", "/v1/sys/unseal", {"key": keys[1]})
    wrong = call(url, "PUT", "/v1/sys/unseal", {"key": "ab" * 33})
    assert wrong.status == 400 and wrong.errors == ["Unseal failed, invalid key"]
    assert call(url, "GET", "/v1/sys/seal-status").json["progress"] == 0

    # base64 shares are accepted too; the threshold's worth unseals
    b64 = [base64.b64encode(bytes.fromhex(k)).decode() for k in keys]
    for key in b64[2:4]:
        assert call(url, "POST", "/v1/sys/unseal", {"key": key}).json["sealed"]
    done = call(url, "POST", "/v1/sys/unseal", {"key": b64[4]}).json
    assert done["sealed"] is False and done["progress"] == 0 and done["cluster_id"]
    assert call(url, "PUT", "/v1/sys/unseal", {"key": keys[0]}).json["sealed"] is False
    assert call(url, "PUT", "/v1/sys/unseal", {"reset": True}).errors == ["vault is unsealed"]


def test_data_is_unreadable_while_sealed_whatever_the_token(vault):
    url = vault.url
    init = initialise(url)
    for token in (None, init["root_token"], "hvs.bogus"):
        answer = call(url, "GET", "/v1/aini/data/librechat/KEY", token=token)
        assert answer.status == 503 and answer.errors == ["Vault is sealed"]
    unseal(url, init["keys"])
    sealed = call(url, "PUT", "/v1/sys/seal", token=init["root_token"])
    assert sealed.status == 204
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=init["root_token"]).status == 503


def test_a_restart_comes_back_sealed_and_the_same_shares_unseal_the_kept_data(tmp_path: Path):
    data_dir = tmp_path / "vault-data"
    first = vault_api.serve(data_dir)
    try:
        init = initialise(first.url)
        unseal(first.url, init["keys"])
        root = init["root_token"]
        call(first.url, "POST", "/v1/sys/mounts/aini", {"type": "kv", "options": {"version": "2"}}, root)
        assert call(first.url, "POST", "/v1/aini/data/n8n/KEY", {"data": {"value": "kept"}}, root).status == 200
    finally:
        first.stop()
    second = vault_api.serve(data_dir)  # a new process on the same volume
    try:
        status = call(second.url, "GET", "/v1/sys/seal-status").json
        assert status["initialized"] is True and status["sealed"] is True and status["progress"] == 0
        assert call(second.url, "GET", "/v1/sys/health").status == 503
        sealed = call(second.url, "GET", "/v1/aini/data/n8n/KEY", token=root)
        assert sealed.status == 503 and sealed.errors == ["Vault is sealed"]
        unseal(second.url, init["keys"][1:])
        answer = call(second.url, "GET", "/v1/aini/data/n8n/KEY", token=root)
        assert answer.status == 200 and answer.json["data"]["data"] == {"value": "kept"}
    finally:
        second.stop()


# --------------------------------------------------------------------------------- tokens
# https://developer.hashicorp.com/vault/api-docs#authentication: X-Vault-Token (or
# Authorization: Bearer); a missing or unknown token is 403 "permission denied".


def test_requests_without_a_valid_token_are_refused(vault):
    url = vault.url
    root = ready(url)
    for token in (None, "hvs.not-a-token", root + "x"):
        answer = call(url, "GET", "/v1/auth/token/lookup-self", token=token)
        assert answer.status == 403 and answer.errors == ["permission denied"], token
    bearer = call(url, "GET", "/v1/auth/token/lookup-self", headers={"Authorization": f"Bearer {root}"})
    assert bearer.status == 200 and bearer.json["data"]["policies"] == ["root"]


# https://developer.hashicorp.com/vault/api-docs/auth/token (create, lookup-self, revoke-self)
def test_token_lookup_ttl_use_count_and_revocation(vault):
    url = vault.url
    root = ready(url)
    short = child_token(url, root, ["default"], ttl="1s")
    data = call(url, "GET", "/v1/auth/token/lookup-self", token=short).json["data"]
    assert data["policies"] == ["default"] and data["creation_ttl"] == 1 and 0 <= data["ttl"] <= 1
    assert data["id"] == short and data["accessor"] and data["renewable"] is True
    time.sleep(1.2)
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=short).status == 403

    twice = child_token(url, root, ["default"], num_uses=2)
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=twice).json["data"]["num_uses"] == 1
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=twice).status == 200
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=twice).status == 403

    gone = child_token(url, root, ["default"])
    assert call(url, "POST", "/v1/auth/token/revoke-self", token=gone).status == 204
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=gone).status == 403


# ------------------------------------------------------------------------------- policies
# https://developer.hashicorp.com/vault/docs/concepts/policies: exact paths, `*` (prefix,
# last character only), `+` (one segment); deny wins; the most specific rule applies.


def test_policies_are_enforced_with_glob_and_segment_wildcards(vault):
    url = vault.url
    root = ready(url)
    for name in ("librechat/KEY", "librechat/deep/KEY", "n8n/KEY", "librechat/LOCKED", "n8n/shared"):
        assert call(url, "POST", f"/v1/aini/data/{name}", {"data": {"v": name}}, root).status == 200
    write_policy(url, root, "reader", """
        # LibreChat's secrets, read only
        path "aini/data/librechat/*" { capabilities = ["read"] }
        path "aini/data/librechat/LOCKED" { capabilities = ["deny"] }
        path "aini/data/+/shared" { capabilities = ["read"] }
        path "aini/metadata/librechat/*" { capabilities = ["list"] }
    """)
    token = child_token(url, root, ["reader"])

    def read(name: str) -> int:
        return call(url, "GET", f"/v1/aini/data/{name}", token=token).status

    assert read("librechat/KEY") == 200
    assert read("librechat/deep/KEY") == 200  # `*` is a prefix match, across segments
    assert read("n8n/KEY") == 403
    assert read("librechat/LOCKED") == 403  # the exact rule wins over the glob
    assert read("n8n/shared") == 200  # `+` is one segment
    denied = call(url, "POST", "/v1/aini/data/librechat/KEY", {"data": {"v": "x"}}, token)
    assert denied.status == 403 and "permission denied" in denied.errors[0]
    assert call(url, "LIST", "/v1/aini/metadata/librechat", token=token).json["data"]["keys"] == [
        "KEY", "LOCKED", "deep/"]
    assert call(url, "LIST", "/v1/aini/metadata/n8n", token=token).status == 403
    assert call(url, "GET", "/v1/sys/mounts", token=token).status == 403

    # priority between globs: the later first wildcard wins over "aini/data/*"
    write_policy(url, root, "broad", 'path "aini/data/*" { capabilities = ["read"] }\n'
                                     'path "aini/data/n8n/*" { capabilities = ["deny"] }')
    broad = child_token(url, root, ["broad"])
    assert call(url, "GET", "/v1/aini/data/librechat/KEY", token=broad).status == 200
    assert call(url, "GET", "/v1/aini/data/n8n/KEY", token=broad).status == 403


def test_documented_priority_rules_pick_the_most_specific_pattern():
    # the documentation's own example: "secret/*" outranks "secret/+/+/foo/*" (rule 3)
    texts = ['path "secret/*" { capabilities = ["read"] }\npath "secret/+/+/foo/*" { capabilities = ["deny"] }']
    assert vault_api.capabilities(texts, "secret/a/b/foo/c") == {"read"}
    # rule 1: the first wildcard later in the path wins
    texts = ['path "secret/*" { capabilities = ["read"] }\npath "secret/team/*" { capabilities = ["update"] }']
    assert vault_api.capabilities(texts, "secret/team/x") == {"update"}
    # rule 2: ending in `*` loses to not ending in it
    texts = ['path "secret/+/x*" { capabilities = ["read"] }\npath "secret/+/xy" { capabilities = ["update"] }']
    assert vault_api.capabilities(texts, "secret/a/xy") == {"update"}
    # the same pattern in two policies: the union of their capabilities
    texts = ['path "secret/a" { capabilities = ["read"] }', 'path "secret/a" { capabilities = ["update"] }']
    assert vault_api.capabilities(texts, "secret/a") == {"read", "update"}
    assert vault_api.pattern_matches("secret/zip-*", "secret/zip-zap/zong")
    assert not vault_api.pattern_matches("secret/bar/*", "secret/bars/zip")
    assert not vault_api.pattern_matches("secret/foo", "secret/food")


def test_policy_api_validates_and_protects_builtins(vault):
    url = vault.url
    root = ready(url)
    bad = call(url, "PUT", "/v1/sys/policies/acl/bad", {"policy": 'path "a/*/b" { capabilities = ["read"] }'}, root)
    assert bad.status == 400 and "failed to parse policy" in bad.errors[0]
    bad = call(url, "PUT", "/v1/sys/policies/acl/bad", {"policy": 'path "a" { capabilities = ["fly"] }'}, root)
    assert bad.status == 400
    write_policy(url, root, "Mixed-Case", 'path "a" { capabilities = ["read"] }')
    assert call(url, "GET", "/v1/sys/policies/acl/mixed-case", token=root).json["data"]["name"] == "mixed-case"
    keys = call(url, "LIST", "/v1/sys/policies/acl", token=root).json["data"]["keys"]
    assert {"default", "root", "mixed-case"} <= set(keys)
    assert call(url, "DELETE", "/v1/sys/policies/acl/default", token=root).status == 400
    assert call(url, "PUT", "/v1/sys/policies/acl/root", {"policy": 'path "a" {capabilities=["read"]}'},
                root).status == 400
    assert call(url, "GET", "/v1/sys/policies/acl/nope", token=root).status == 404


# --------------------------------------------------------------------------- mounts, auth
# https://developer.hashicorp.com/vault/api-docs/system/mounts
# https://developer.hashicorp.com/vault/api-docs/system/auth (root-protected: sudo)


def test_mounts_and_auth_methods(vault):
    url = vault.url
    root = ready(url)
    table = call(url, "GET", "/v1/sys/mounts", token=root).json
    assert table["data"]["aini/"]["type"] == "kv" and table["data"]["aini/"]["options"] == {"version": "2"}
    assert {"sys/", "cubbyhole/", "identity/"} <= set(table["data"])
    again = call(url, "POST", "/v1/sys/mounts/aini", {"type": "kv", "options": {"version": "2"}}, root)
    assert again.status == 400 and again.errors == ["path is already in use at aini/"]
    assert call(url, "POST", "/v1/sys/mounts/v1kv", {"type": "kv"}, root).status == 400  # the double has only v2

    write_policy(url, root, "almost-admin", 'path "sys/auth/*" { capabilities = ["create", "update"] }')
    almost = child_token(url, root, ["almost-admin"])
    assert call(url, "POST", "/v1/sys/auth/approle", {"type": "approle"}, almost).status == 403  # no sudo
    assert call(url, "POST", "/v1/sys/auth/approle", {"type": "approle"}, root).status == 204
    auth = call(url, "GET", "/v1/sys/auth", token=root).json["data"]
    assert auth["approle/"]["type"] == "approle" and auth["token/"]["type"] == "token"
    again = call(url, "POST", "/v1/sys/auth/approle", {"type": "approle"}, root)
    assert again.status == 400 and again.errors == ["path is already in use at auth/approle/"]
    assert call(url, "PUT", "/v1/sys/seal", token=almost).status == 403


# --------------------------------------------------------------------------------- KV v2
# https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2


def test_kv_v2_versions_cas_metadata_and_list(vault):
    url = vault.url
    root = ready(url)
    path = "/v1/aini/data/librechat/OPENAI_API_KEY"
    assert call(url, "GET", path, token=root).status == 404
    first = call(url, "POST", path, {"data": {"value": "one"}, "options": {"cas": 0}}, root).json["data"]
    assert first["version"] == 1 and first["deletion_time"] == "" and first["destroyed"] is False
    assert first["created_time"].endswith("Z")
    lost = call(url, "POST", path, {"data": {"value": "x"}, "options": {"cas": 0}}, root)
    assert lost.status == 400 and lost.errors == ["check-and-set parameter did not match the current version"]
    assert call(url, "POST", path, {"data": {"value": "two"}, "options": {"cas": 1}}, root).json["data"]["version"] == 2

    latest = call(url, "GET", path, token=root).json["data"]
    assert latest["data"] == {"value": "two"} and latest["metadata"]["version"] == 2
    assert call(url, "GET", path + "?version=1", token=root).json["data"]["data"] == {"value": "one"}

    meta = call(url, "GET", "/v1/aini/metadata/librechat/OPENAI_API_KEY", token=root).json["data"]
    assert meta["current_version"] == 2 and meta["oldest_version"] == 1 and set(meta["versions"]) == {"1", "2"}
    assert {"cas_required", "created_time", "updated_time", "max_versions", "delete_version_after"} <= set(meta)

    # soft delete: 404 with the metadata; undelete; destroy
    assert call(url, "DELETE", path, token=root).status == 204
    gone = call(url, "GET", path, token=root)
    assert gone.status == 404 and gone.json["data"]["data"] is None and gone.json["data"]["metadata"]["deletion_time"]
    assert call(url, "POST", "/v1/aini/undelete/librechat/OPENAI_API_KEY", {"versions": [2]}, root).status == 204
    assert call(url, "GET", path, token=root).json["data"]["data"] == {"value": "two"}
    call(url, "POST", "/v1/aini/destroy/librechat/OPENAI_API_KEY", {"versions": [1]}, root)
    destroyed = call(url, "GET", path + "?version=1", token=root)
    assert destroyed.status == 404 and destroyed.json["data"]["metadata"]["destroyed"] is True

    # cas_required on the key; max_versions prunes the oldest
    call(url, "POST", "/v1/aini/metadata/librechat/OPENAI_API_KEY", {"cas_required": True, "max_versions": 2}, root)
    required = call(url, "POST", path, {"data": {"value": "three"}}, root)
    assert required.status == 400 and required.errors == ["check-and-set parameter required for this call"]
    call(url, "POST", path, {"data": {"value": "three"}, "options": {"cas": 2}}, root)
    meta = call(url, "GET", "/v1/aini/metadata/librechat/OPENAI_API_KEY", token=root).json["data"]
    assert set(meta["versions"]) == {"2", "3"} and meta["oldest_version"] == 2

    # LIST: names and folders; GET ?list=true is the same
    call(url, "POST", "/v1/aini/data/librechat/sub/KEY", {"data": {"v": "1"}}, root)
    call(url, "POST", "/v1/aini/data/n8n/KEY", {"data": {"v": "1"}}, root)
    assert call(url, "LIST", "/v1/aini/metadata/", token=root).json["data"]["keys"] == ["librechat/", "n8n/"]
    keys = call(url, "GET", "/v1/aini/metadata/librechat?list=true", token=root).json["data"]["keys"]
    assert keys == ["OPENAI_API_KEY", "sub/"]
    assert call(url, "LIST", "/v1/aini/metadata/nothing", token=root).status == 404

    assert call(url, "DELETE", "/v1/aini/metadata/n8n/KEY", token=root).status == 204
    assert call(url, "GET", "/v1/aini/metadata/n8n/KEY", token=root).status == 404
    assert call(url, "POST", path, {"options": {"cas": 3}}, root).errors == ["no data provided"]


def test_kv_v2_patch_needs_merge_patch_content_type(vault):
    url = vault.url
    root = ready(url)
    path = "/v1/aini/data/app/CONF"
    call(url, "POST", path, {"data": {"a": "1", "b": "2"}}, root)
    assert call(url, "PATCH", path, {"data": {"a": "9"}}, root).status == 415
    patched = call(url, "PATCH", path, {"data": {"a": "9", "b": None}}, root,
                   headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status == 200 and patched.json["data"]["version"] == 2
    assert call(url, "GET", path, token=root).json["data"]["data"] == {"a": "9"}


# -------------------------------------------------------------------------------- AppRole
# https://developer.hashicorp.com/vault/api-docs/auth/approle


def test_approle_login_issues_a_token_with_the_roles_policies_and_ttl(vault):
    url = vault.url
    root = ready(url)
    call(url, "POST", "/v1/sys/auth/approle", {"type": "approle"}, root)
    write_policy(url, root, "deploy", 'path "aini/data/*" { capabilities = ["create", "read", "update"] }')
    role = {"token_policies": ["deploy"], "token_ttl": "60s", "token_max_ttl": "2m", "token_num_uses": 3,
            "secret_id_num_uses": 1}
    assert call(url, "POST", "/v1/auth/approle/role/deployer", role, root).status == 204
    read = call(url, "GET", "/v1/auth/approle/role/deployer", token=root).json["data"]
    assert read["token_ttl"] == 60 and read["token_max_ttl"] == 120 and read["token_policies"] == ["deploy"]
    assert read["bind_secret_id"] is True
    assert call(url, "LIST", "/v1/auth/approle/role", token=root).json["data"]["keys"] == ["deployer"]
    role_id = call(url, "GET", "/v1/auth/approle/role/deployer/role-id", token=root).json["data"]["role_id"]
    issued = call(url, "POST", "/v1/auth/approle/role/deployer/secret-id", {}, root).json["data"]
    assert {"secret_id", "secret_id_accessor", "secret_id_ttl", "secret_id_num_uses"} <= set(issued)
    accessors = call(url, "LIST", "/v1/auth/approle/role/deployer/secret-id", token=root).json["data"]["keys"]
    assert accessors == [issued["secret_id_accessor"]]
    spare = call(url, "POST", "/v1/auth/approle/role/deployer/secret-id", {}, root).json["data"]
    gone = call(url, "POST", "/v1/auth/approle/role/deployer/secret-id-accessor/destroy",
                {"secret_id_accessor": spare["secret_id_accessor"]}, root)
    assert gone.status == 204
    unknown = call(url, "POST", "/v1/auth/approle/role/deployer/secret-id-accessor/destroy",
                   {"secret_id_accessor": spare["secret_id_accessor"]}, root)
    assert unknown.status == 500 and "failed to find accessor entry" in unknown.errors[0]
    assert call(url, "POST", "/v1/auth/approle/login", {"role_id": role_id, "secret_id": spare["secret_id"]}).status == 400

    wrong = call(url, "POST", "/v1/auth/approle/login", {"role_id": role_id, "secret_id": "nope"})
    assert wrong.status == 400 and wrong.errors == ["invalid role or secret ID"]
    login = call(url, "POST", "/v1/auth/approle/login", {"role_id": role_id, "secret_id": issued["secret_id"]})
    assert login.status == 200, login.body
    auth = login.json["auth"]
    assert auth["policies"] == ["default", "deploy"] and auth["lease_duration"] == 60
    assert auth["metadata"] == {"role_name": "deployer"} and auth["renewable"] is True
    token = auth["client_token"]
    # the secret ID had one use
    again = call(url, "POST", "/v1/auth/approle/login", {"role_id": role_id, "secret_id": issued["secret_id"]})
    assert again.status == 400

    assert call(url, "POST", "/v1/aini/data/app/K", {"data": {"v": "1"}}, token).status == 200  # use 1
    assert call(url, "GET", "/v1/sys/mounts", token=token).status == 403  # use 2, outside the policy
    lookup = call(url, "GET", "/v1/auth/token/lookup-self", token=token)  # use 3, the last
    assert lookup.status == 200 and lookup.json["data"]["path"] == "auth/approle/login"
    assert call(url, "GET", "/v1/aini/data/app/K", token=token).status == 403  # used up


def _from(source: str, url: str, path: str, body: Any = None, token: str | None = None, **headers: str) -> int:
    """A request whose connection comes from `source` (any 127/8 address reaches 127.0.0.1)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        conn.request("POST" if body is not None else "GET", path, json.dumps(body) if body is not None else None,
                     {**headers, **({"X-Vault-Token": token} if token else {})})
        return conn.getresponse().status
    finally:
        conn.close()


def test_approle_bound_cidrs_limit_logins_and_the_tokens_they_give(vault):
    url = vault.url
    root = ready(url)
    call(url, "POST", "/v1/sys/auth/approle", {"type": "approle"}, root)
    write_policy(url, root, "deploy", 'path "aini/data/*" { capabilities = ["read"] }')
    role = {"token_policies": ["deploy"], "secret_id_bound_cidrs": ["127.0.0.1/32"], "token_bound_cidrs": "127.0.0.1/32"}
    assert call(url, "POST", "/v1/auth/approle/role/deployer", role, root).status == 204
    read = call(url, "GET", "/v1/auth/approle/role/deployer", token=root).json["data"]
    assert read["secret_id_bound_cidrs"] == ["127.0.0.1/32"] and read["token_bound_cidrs"] == ["127.0.0.1/32"]
    role_id = call(url, "GET", "/v1/auth/approle/role/deployer/role-id", token=root).json["data"]["role_id"]
    secret_id = call(url, "POST", "/v1/auth/approle/role/deployer/secret-id", {}, root).json["data"]["secret_id"]
    login = {"role_id": role_id, "secret_id": secret_id}

    assert _from("127.0.0.2", url, "/v1/auth/approle/login", login) == 400
    # the connection's address counts, not what a header claims
    assert _from("127.0.0.2", url, "/v1/auth/approle/login", login, **{"X-Forwarded-For": "127.0.0.1"}) == 400
    token = call(url, "POST", "/v1/auth/approle/login", login).json["auth"]["client_token"]
    assert _from("127.0.0.1", url, "/v1/auth/token/lookup-self", token=token) == 200
    assert _from("127.0.0.2", url, "/v1/auth/token/lookup-self", token=token) == 403  # stolen token, other host
    assert _from("127.0.0.2", url, "/v1/auth/token/lookup-self", token=root) == 200  # unbound tokens: anywhere


# ------------------------------------------------------------- the doubles image entrypoint


def test_the_image_entrypoint_serves_the_api_and_a_process_restart_seals(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_double_process("vault", tmp_path, port)
    try:
        # what the catalog's health check and the e2e route check ask for
        health = call(url, "GET", "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200")
        assert health.status == 200 and health.headers["X-Aini-Double"] == "vault"
        ui = call(url, "GET", "/ui/")
        assert ui.status == 200 and b"Vault (AINI test double)" in ui.body
        init = initialise(url)
        unseal(url, init["keys"])
        assert call(url, "GET", "/v1/sys/health").status == 200
    finally:
        log = stop_double_process(process)
    assert init["root_token"] not in log and init["keys"][0] not in log
    process = start_double_process("vault", tmp_path, port)
    try:
        assert call(url, "GET", "/v1/sys/health").status == 503  # a new process: sealed again
        assert call(url, "GET", "/v1/sys/seal-status").json["initialized"] is True
    finally:
        stop_double_process(process)


def test_the_image_entrypoint_in_broken_mode_fails_its_health_endpoint(tmp_path: Path):
    port = free_port()
    process = start_double_process("vault", tmp_path, port, mode="broken")
    try:
        assert call(f"http://127.0.0.1:{port}", "GET", "/v1/sys/health").status == 500
    finally:
        stop_double_process(process)


# ------------------------------------------------------------------ raft snapshot, the CLI
# api-docs/system/storage/raft: GET sys/storage/raft/snapshot needs `read` (not root-
# protected); POST sys/storage/raft/snapshot[-force] needs `update`, the body is the snapshot,
# and without -force a snapshot of another cluster is refused. api-docs/auth/token: only root
# (or sudo) creates periodic or orphan tokens; renew-self puts a periodic token back to its period.


def test_a_snapshot_needs_read_on_its_path_and_a_restore_update(vault):
    url = vault.url
    root = ready(url)
    write_policy(url, root, "snap", 'path "sys/storage/raft/snapshot" { capabilities = ["read"] }')
    snap = child_token(url, root, ["snap"])
    other = child_token(url, root, ["default"])
    assert call(url, "GET", "/v1/sys/storage/raft/snapshot", token=other).status == 403
    taken = call(url, "GET", "/v1/sys/storage/raft/snapshot", token=snap)
    assert taken.status == 200 and taken.headers["Content-Type"] == "application/octet-stream"
    assert call(url, "POST", "/v1/sys/storage/raft/snapshot", taken.body, snap).status == 403  # read is not update

    assert call(url, "PUT", "/v1/aini/data/kept", {"data": {"v": "after"}}, root).status == 200
    assert call(url, "POST", "/v1/sys/storage/raft/snapshot", b"not a snapshot", root).status == 400
    assert call(url, "POST", "/v1/sys/storage/raft/snapshot", taken.body, root).status == 204
    assert call(url, "GET", "/v1/aini/data/kept", token=root).status == 404  # back to before the write


def test_a_snapshot_of_another_cluster_needs_force_and_then_that_clusters_unseal_keys(tmp_path: Path):
    servers = [vault_api.serve(tmp_path / name) for name in ("a", "b")]
    try:
        inits = [initialise(s.url) for s in servers]
        for server, init in zip(servers, inits):
            unseal(server.url, init["keys"])
        roots = [init["root_token"] for init in inits]
        taken = call(servers[0].url, "GET", "/v1/sys/storage/raft/snapshot", token=roots[0]).body
        refused = call(servers[1].url, "POST", "/v1/sys/storage/raft/snapshot", taken, roots[1])
        assert refused.status == 400 and refused.errors[0] == (  # logical_system_raft.go, Shamir
            "could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the "
            "snapshot-force API to bypass this check")
        assert call(servers[1].url, "POST", "/v1/sys/storage/raft/snapshot-force", taken, roots[1]).status == 204
        # vault/raft.go raftSnapshotRestoreCallback: the keyring is another's, a Shamir node seals itself.
        assert call(servers[1].url, "GET", "/v1/sys/seal-status").json["sealed"] is True
        assert call(servers[1].url, "GET", "/v1/auth/token/lookup-self", token=roots[0]).status == 503
        call(servers[1].url, "PUT", "/v1/sys/unseal", {"key": inits[1]["keys"][0]})
        wrong = call(servers[1].url, "PUT", "/v1/sys/unseal", {"key": inits[1]["keys"][1]})
        assert wrong.status == 400 and "invalid key" in wrong.errors[0]  # its own keys no longer open it
        unseal(servers[1].url, inits[0]["keys"])
        assert call(servers[1].url, "GET", "/v1/auth/token/lookup-self", token=roots[0]).status == 200
        assert call(servers[1].url, "GET", "/v1/auth/token/lookup-self", token=roots[1]).status == 403
    finally:
        for s in servers:
            s.stop()


def test_periodic_tokens_are_root_only_and_renew_to_their_period(vault):
    url = vault.url
    root = ready(url)
    periodic = child_token(url, root, ["default"], period="2s", no_parent=True)
    data = call(url, "GET", "/v1/auth/token/lookup-self", token=periodic).json["data"]
    assert data["period"] == 2 and data["renewable"] is True
    for _ in range(3):  # outlives its period while renewed
        time.sleep(1.2)
        assert call(url, "PUT", "/v1/auth/token/renew-self", {}, periodic).status == 200
    time.sleep(2.2)
    assert call(url, "GET", "/v1/auth/token/lookup-self", token=periodic).status == 403
    write_policy(url, root, "creator", 'path "auth/token/create" { capabilities = ["create", "update"] }')
    plain = child_token(url, root, ["creator"])
    assert call(url, "POST", "/v1/auth/token/create", {"policies": ["default"]}, plain).status == 200
    refused = call(url, "POST", "/v1/auth/token/create", {"policies": ["default"], "period": "1h"}, plain)
    assert refused.status == 400 and "root or sudo" in refused.errors[0]


def _cli(url: str | None, token: str, *args: str, stdin: bytes = b"", name: str = "vault"):
    """The CLI double as the image runs it: python3 vault_cli.py, VAULT_* or BAO_* from the env."""
    import os
    import subprocess
    import sys
    prefix = "BAO" if name == "bao" else "VAULT"
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", f"{prefix}_TOKEN": token,
           **({"AINI_DOUBLE_CLI": "bao"} if name == "bao" else {}), **({f"{prefix}_ADDR": url} if url else {})}
    cli = Path(__file__).parents[1] / "harness" / "images" / "doubles" / "vault_cli.py"
    return subprocess.run([sys.executable, str(cli), *args], input=stdin, capture_output=True, env=env, timeout=60)


def test_the_cli_double_saves_to_stdout_restores_from_stdin_and_needs_an_http_address(vault):
    url = vault.url
    root = ready(url)
    saved = _cli(url, root, "operator", "raft", "snapshot", "save", "/dev/stdout")
    direct = call(url, "GET", "/v1/sys/storage/raft/snapshot", token=root).body
    assert saved.returncode == 0 and gzip.decompress(saved.stdout) == gzip.decompress(direct)
    assert _cli(url, root, "operator", "raft", "snapshot", "restore", "/dev/stdin", stdin=saved.stdout).returncode == 0
    assert _cli(url, root, "operator", "raft", "snapshot", "save").returncode == 1  # exactly one argument
    assert _cli(None, root, "token", "renew").returncode == 2  # the default address is https://127.0.0.1:8200
    bao = _cli(url, root, "operator", "raft", "snapshot", "save", "/dev/stdout", name="bao")
    assert bao.returncode == 0 and bao.stdout
    assert _cli(url, "wrong", "operator", "raft", "snapshot", "save", "/dev/stdout").returncode == 2
