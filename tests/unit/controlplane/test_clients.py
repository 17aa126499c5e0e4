"""The control plane's pure parts: request builders as data, the policies AINI writes
(checked with the doubles' own policy engines), the HTTP edge's error handling, and the
break-glass file."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from aini.catalog.core import CONSUL, VAULT
from aini.catalog.model import HealthCheck
from aini.controlplane import ControlPlaneError, Http, Request, consul, vault
from aini.controlplane import breakglass as bg
from aini.errors import AiniError, InputError
from tests.harness.doubles import import_double

vault_api = import_double("vault_api")
consul_api = import_double("consul_api")

SECRET = "sk-unit-VALUE-0123456789abcdef"


# ----------------------------------------------------------------------- Vault builders


def test_init_and_unseal_requests():
    request = vault.init_request(5, 3)
    assert (request.method, request.path, request.body) == ("PUT", "/v1/sys/init",
                                                            {"secret_shares": 5, "secret_threshold": 3})
    assert vault.init_request(1, 1).body == {"secret_shares": 1, "secret_threshold": 1}
    for shares, threshold in ((2, 3), (3, 1), (0, 0), (256, 3)):
        with pytest.raises(InputError):
            vault.init_request(shares, threshold)
    assert vault.unseal_request("abcd").body == {"key": "abcd"}
    assert vault.unseal_reset_request().body == {"reset": True}
    assert set(vault.health_request().ok) >= {200, 429, 501, 503}


def test_kv_requests_address_kv_v2_paths():
    put = vault.kv_put_request("librechat/OPENAI_API_KEY", {"value": SECRET}, cas=0)
    assert (put.method, put.path) == ("POST", "/v1/aini/data/librechat/OPENAI_API_KEY")
    assert put.body == {"data": {"value": SECRET}, "options": {"cas": 0}}
    assert "options" not in vault.kv_put_request("n8n/K", {"value": "v"}).body
    get = vault.kv_get_request("n8n/K", version=3)
    assert get.target == "/v1/aini/data/n8n/K?version=3" and 404 in get.ok
    assert vault.kv_list_request("librechat").path == "/v1/aini/metadata/librechat/"
    assert vault.kv_list_request().path == "/v1/aini/metadata/"
    assert vault.kv_list_request().method == "LIST"
    assert vault.kv_metadata_request("n8n/K", mount="other").path == "/v1/other/metadata/n8n/K"


def test_secret_values_never_show_in_a_requests_repr():
    for request in (vault.kv_put_request("n8n/K", {"value": SECRET}),
                    vault.approle_login_request("role-id-1", SECRET),
                    vault.unseal_request(SECRET)):
        assert SECRET not in repr(request)


@pytest.mark.parametrize("bad", ["", "../etc", "a/../b", "a?b", "a b", "-lead", "a%2fb", "x" * 200])
def test_path_segments_are_validated(bad):
    with pytest.raises(InputError):
        vault.secret_path(bad)


def test_approle_role_is_narrow_and_short_lived():
    request = vault.approle_role_request("aini-deploy", ["aini-deploy"], token_ttl="20m", token_max_ttl="1h",
                                         secret_id_ttl="0")
    assert request.path == "/v1/auth/approle/role/aini-deploy"
    assert request.body["token_policies"] == ["aini-deploy"] and request.body["bind_secret_id"] is True
    assert request.body["token_ttl"] == "20m" and request.body["token_max_ttl"] == "1h"
    assert request.body["secret_id_bound_cidrs"] == request.body["token_bound_cidrs"] == []
    bound = vault.approle_role_request("aini-deploy", ["aini-deploy"], token_ttl="20m", token_max_ttl="1h",
                                       secret_id_ttl="0", bound_cidrs=["10.87.0.1/32"])
    assert bound.body["secret_id_bound_cidrs"] == bound.body["token_bound_cidrs"] == ["10.87.0.1/32"]


def test_enable_kv_asks_for_version_2():
    request = vault.enable_kv_request()
    assert request.path == "/v1/sys/mounts/aini"
    assert request.body["type"] == "kv" and request.body["options"] == {"version": "2"}


# The policies, evaluated by the Vault double's implementation of the documented rules.
def test_the_deploy_policy_reads_and_writes_secrets_and_nothing_else():
    policy = [vault.deploy_policy()]
    assert {"create", "read", "update"} <= vault_api.capabilities(policy, "aini/data/librechat/OPENAI_API_KEY")
    assert "delete" not in vault_api.capabilities(policy, "aini/data/librechat/OPENAI_API_KEY")
    assert "list" in vault_api.capabilities(policy, "aini/metadata/librechat/")
    assert "list" in vault_api.capabilities(policy, "aini/metadata/")
    for path in ("sys/mounts", "sys/policies/acl/aini-deploy", "auth/approle/role/aini-deploy/secret-id",
                 "secret/data/x", "aini/destroy/librechat/K", "aini/metadata/librechat/K-delete"):
        assert vault_api.capabilities(policy, path) <= {"read", "list"}, path
    assert vault_api.capabilities(policy, "sys/mounts") == set()


def test_a_service_policy_reads_only_its_own_folder():
    policy = [vault.service_read_policy("librechat")]
    assert vault_api.capabilities(policy, "aini/data/librechat/CREDS_KEY") == {"read"}
    assert vault_api.capabilities(policy, "aini/data/n8n/N8N_ENCRYPTION_KEY") == set()
    assert vault_api.capabilities(policy, "aini/data/librechatx/K") == set()
    assert vault_api.capabilities(policy, "aini/metadata/librechat/") == {"read", "list"}
    assert vault.service_policy_name("librechat") == "aini-read-librechat"


# ---------------------------------------------------------------------- Consul builders


def test_check_definition_from_the_catalog():
    http = consul.check_definition(VAULT.health, "aini-vault", VAULT.port, "vault")
    assert http == {"Name": "vault health", "HTTP": "http://aini-vault:8200/v1/sys/health",
                    "Interval": VAULT.health.interval, "Timeout": VAULT.health.timeout}
    tcp = consul.check_definition(HealthCheck(None, port=3306), "aini-mariadb", 3306, "mariadb")
    assert tcp["TCP"] == "aini-mariadb:3306" and "HTTP" not in tcp
    assert consul.check_definition(HealthCheck(None), "x", 8080, "x")["TCP"] == "x:8080"  # the service port
    assert consul.check_definition(HealthCheck(None), "x", None, "x") is None
    assert consul.check_definition(HealthCheck(None, port=80, path="/"), "::1", 80, "x")["HTTP"] == "http://[::1]:80/"


def test_service_definition_and_register_request():
    definition = consul.service_definition("consul", "aini-consul", CONSUL.port, CONSUL.health, tags=["aini"],
                                           meta={"group": "consul"})
    assert definition["ID"] == definition["Name"] == "consul" and definition["Port"] == 8500
    assert definition["Check"]["HTTP"] == "http://aini-consul:8500/v1/status/leader"
    assert "DeregisterCriticalServiceAfter" not in definition["Check"]  # a stopped service stays visible
    later = consul.service_definition("x", "h", 1, HealthCheck(None), deregister_critical_after="24h")
    assert later["Check"]["DeregisterCriticalServiceAfter"] == "24h"
    assert "Check" not in consul.service_definition("x", "h", None, None)
    request = consul.register_request(definition)
    assert (request.method, request.target) == ("PUT", "/v1/agent/service/register?replace-existing-checks=true")
    with pytest.raises(InputError):
        consul.service_definition("bad name", "h", 1, None)


def test_consul_kv_requests():
    put = consul.kv_put_request("aini/deploy/web", b"{}", cas=0, flags=7)
    assert (put.method, put.target, put.body) == ("PUT", "/v1/kv/aini/deploy/web?cas=0&flags=7", b"{}")
    assert consul.kv_tree_request("aini/deploy/").target == "/v1/kv/aini/deploy/?recurse=true"
    assert consul.kv_delete_request("aini/", recurse=True).target == "/v1/kv/aini/?recurse=true"
    assert 404 in consul.kv_get_request("aini/x").ok
    for bad in ("/abs", "a/../b", "a b", ""):
        with pytest.raises(InputError):
            consul.key(bad)


def test_health_aggregation_and_the_deploy_record():
    assert consul.aggregate(["passing", "passing"]) == "passing"
    assert consul.aggregate(["passing", "warning"]) == "warning"
    assert consul.aggregate(["warning", "critical", "passing"]) == "critical"
    assert consul.aggregate([]) == "critical"
    key, value = consul.deploy_record("n8n", image="n8n:2", bundle_hash="sha256:1", deployed_at="t", aini_version="v")
    assert key == "aini/deploy/n8n"
    assert json.loads(value) == {"image": "n8n:2", "bundle_hash": "sha256:1", "deployed_at": "t", "aini_version": "v"}


def test_the_deploy_rules_allow_what_a_deploy_does_and_no_more():
    authz = consul_api.Authorizer("deploy", [consul.DEPLOY_RULES], management=False)
    assert authz.allowed("service", "aini-librechat", "write")
    assert authz.allowed("node", "any-node", "read") and not authz.allowed("node", "any-node", "write")
    assert authz.allowed("key", "aini/deploy/librechat", "write")
    assert not authz.allowed("key", "vault/core", "read")
    assert not authz.allowed("acl", "", "read") and not authz.allowed("operator", "", "read")


# ------------------------------------------------------------------------- the HTTP edge


class _Server:
    """A local server answering with a fixed status and body, recording what it got."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None, delay: float = 0):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers))
                time.sleep(delay)
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_errors_are_one_line_and_never_hold_the_token():
    token = "hvs.TOKEN-that-must-not-leak"
    body = json.dumps({"errors": [f"1 error occurred:\n\t* permission denied for {token}\n\n"]}).encode()
    with _Server(403, body) as server, pytest.raises(ControlPlaneError) as info:
        Http("Vault", server.url).send(Request("GET", "/v1/aini/data/x"), {"X-Vault-Token": token})
    message = str(info.value)
    assert info.value.status == 403 and isinstance(info.value, AiniError) and info.value.exit_code == 1
    assert "\n" not in message and token not in message and "[redacted]" in message
    assert message.startswith("Vault GET /v1/aini/data/x: HTTP 403: 1 error occurred: permission denied")


def test_unreachable_and_slow_servers_give_clear_errors():
    with _Server(200, b"") as server:
        dead = server.url
    with pytest.raises(ControlPlaneError, match="cannot be reached") as info:
        Http("Consul", dead, timeout=2).send(Request("GET", "/v1/status/leader"))
    assert info.value.status is None
    with _Server(200, b"{}", delay=1.0) as server, pytest.raises(ControlPlaneError, match=r"no answer within 0\.2 s"):
        Http("Consul", server.url, timeout=0.2).send(Request("GET", "/v1/status/leader"))


def test_redirects_are_not_followed_so_tokens_stay_home():
    with _Server(200, b"{}") as elsewhere, _Server(307, b"", {"Location": elsewhere.url + "/v1/x"}) as server:
        with pytest.raises(ControlPlaneError) as info:
            Http("Vault", server.url).send(Request("GET", "/v1/x"), {"X-Vault-Token": "hvs.secret-token"})
        assert info.value.status == 307 and elsewhere.seen == []


def test_addresses_are_validated():
    for bad in ("vault:8200", "ftp://x", "http://", "http://x/path", "http://x?q=1"):
        with pytest.raises(InputError):
            Http("Vault", bad)
    assert Http("Vault", "https://vault.example.com:8200/").address == "https://vault.example.com:8200"


def test_client_reprs_hide_tokens():
    client = vault.VaultClient("http://127.0.0.1:1", token=SECRET)
    assert SECRET not in repr(client) and SECRET not in repr(client.with_token(SECRET))
    assert SECRET not in repr(consul.ConsulClient("http://127.0.0.1:1", token=SECRET))
    assert SECRET not in repr(consul.ConsulToken("accessor", SECRET))
    assert SECRET not in repr(vault.AppRoleCredentials("role", SECRET))
    assert SECRET not in repr(vault.InitResult((SECRET,), SECRET, 1, 1))


# ---------------------------------------------------------------------------- break-glass

PASSPHRASE = "correct horse battery staple"
FAST = {"n": 2**14}  # the format's minimum cost, to keep the tests quick
MATERIAL = bg.BreakGlass(vault_unseal_keys=("key-one-" + SECRET, "key-two-" + SECRET),
                         vault_root_token="hvs.ROOT-" + SECRET, consul_bootstrap_token="consul-" + SECRET)


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / ".aini" / bg.FILE_NAME
    bg.save(path, MATERIAL, PASSPHRASE, **FAST)
    return path


def test_round_trip_file_mode_and_no_plaintext_on_disk(tmp_path: Path):
    path = _saved(tmp_path)
    assert path == tmp_path / ".aini" / "breakglass.enc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert bg.load(path, PASSPHRASE) == MATERIAL
    raw = path.read_bytes()
    for value in (*MATERIAL.vault_unseal_keys, MATERIAL.vault_root_token, MATERIAL.consul_bootstrap_token, SECRET):
        assert value.encode() not in raw and base64.b64encode(value.encode()) not in raw
    envelope = json.loads(raw)
    assert envelope["format"] == "aini-breakglass" and envelope["version"] == 1
    assert envelope["kdf"]["name"] == "scrypt" and envelope["cipher"]["name"] == "AES-256-GCM"
    assert sorted(p.name for p in path.parent.iterdir()) == ["breakglass.enc"]  # no temporary file left
    assert SECRET not in repr(MATERIAL)


def test_default_cost_is_the_documented_one():
    envelope = json.loads(bg.encrypt(MATERIAL, PASSPHRASE))
    assert (envelope["kdf"]["n"], envelope["kdf"]["r"], envelope["kdf"]["p"]) == (2**17, 8, 1)


def test_a_wrong_passphrase_is_named_as_such(tmp_path: Path):
    path = _saved(tmp_path)
    with pytest.raises(bg.BreakGlassError, match="^wrong passphrase for ") as info:
        bg.load(path, PASSPHRASE + "!")
    assert info.value.exit_code == 1 and SECRET not in str(info.value)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "format-version-swap"])
def test_a_tampered_file_is_refused(tmp_path: Path, field: str):
    path = _saved(tmp_path)
    envelope = json.loads(path.read_text())
    if field == "ciphertext":
        data = bytearray(base64.b64decode(envelope["ciphertext"]))
        data[5] ^= 0x01
        envelope["ciphertext"] = base64.b64encode(bytes(data)).decode()
    elif field == "nonce":
        envelope["cipher"]["nonce"] = base64.b64encode(b"\0" * 12).decode()
    else:
        envelope["cipher"]["extra"] = "attacker"  # any header change breaks the authenticated data
    path.write_text(json.dumps(envelope))
    with pytest.raises(bg.BreakGlassError, match="damaged or was tampered with"):
        bg.load(path, PASSPHRASE)


def test_garbage_other_versions_and_absurd_costs_are_refused_cheaply(tmp_path: Path):
    path = _saved(tmp_path)
    envelope = json.loads(path.read_text())
    cases = {b"not json": "damaged", json.dumps({**envelope, "version": 2}).encode(): "format version 2",
             json.dumps({**envelope, "format": "x"}).encode(): "not an AINI break-glass file",
             json.dumps({**envelope, "kdf": {**envelope["kdf"], "n": 2**30}}).encode(): "damaged"}
    for data, message in cases.items():
        with pytest.raises(bg.BreakGlassError, match=message):
            bg.decrypt(data, PASSPHRASE)


def test_a_file_readable_by_others_or_missing_is_refused(tmp_path: Path):
    path = _saved(tmp_path)
    path.chmod(0o644)
    with pytest.raises(InputError, match="chmod 600"):
        bg.load(path, PASSPHRASE)
    with pytest.raises(bg.BreakGlassError, match="does not exist"):
        bg.load(tmp_path / "nothing.enc", PASSPHRASE)


def test_passphrase_sources():
    assert bg.passphrase_from_env({bg.ENV_PASSPHRASE: PASSPHRASE}) == PASSPHRASE
    assert bg.passphrase_from_env({}) is None and bg.passphrase_from_env({bg.ENV_PASSPHRASE: ""}) is None
    answers = iter([PASSPHRASE, PASSPHRASE])
    assert bg.passphrase_from_prompt(confirm=True, prompt=lambda _: next(answers)) == PASSPHRASE
    answers = iter([PASSPHRASE, PASSPHRASE + "x"])
    with pytest.raises(InputError, match="differ"):
        bg.passphrase_from_prompt(confirm=True, prompt=lambda _: next(answers))
    with pytest.raises(InputError, match="at least 12"):
        bg.passphrase_from_prompt(confirm=True, prompt=lambda _: "short")
    assert bg.passphrase_from_prompt(confirm=False, prompt=lambda _: "short") == "short"  # opening is not creating
    with pytest.raises(InputError):
        bg.encrypt(MATERIAL, "short", **FAST)


def test_the_prompt_needs_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - closed with the test process
    with pytest.raises(InputError, match=bg.ENV_PASSPHRASE):
        bg.passphrase_from_prompt(confirm=False)
