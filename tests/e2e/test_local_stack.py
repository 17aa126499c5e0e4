"""The whole default stack on the local target, deployed by aini's deploy step, checked
from outside through Traefik over HTTPS with the local CA.

The tests run in file order against one deployed stack (module fixture); each leaves the
stack healthy for the next.
"""
from __future__ import annotations

import io
import json
import os
import time

import pytest
from rich.console import Console

from aini import catalog
from aini.deploy import DeployError
from aini.errors import AiniError
from tests.e2e.stack import Stack
from tests.harness import stack_images

pytestmark = pytest.mark.sandbox

# service -> (path, text its own answer contains). Doubles also name themselves in the
# X-Aini-Double header; the real ones (Traefik, n8n, Netdata) answer with their own APIs.
ANSWERS = {
    "traefik": ("/api/version", '"Version":"3.7.15"'),
    "consul": ("/v1/status/leader", "127.0.0.1:8300"),
    "vault": ("/ui/", "Vault (AINI test double)"),
    "librechat": ("/health", "OK"),
    "n8n": ("/healthz", '"status":"ok"'),
    "nextcloud": ("/status.php", '"installed": true'),
    "onlyoffice": ("/healthcheck", "true"),
    "netdata": ("/api/v1/info", '"version"'),
}
REAL = {"traefik", "n8n", "netdata"}


def routed(stack: Stack) -> list:
    return [s for s in catalog.enabled(stack.config) if s.route]


def test_every_service_answers_over_https_with_the_local_ca(stack: Stack):
    specs = routed(stack)
    assert {s.name for s in specs} == set(ANSWERS), "a routed service has no e2e check"
    for spec in specs:
        host = stack.host(spec.name)
        path, marker = ANSWERS[spec.name]
        # The certificate chain is verified against the local CA by the client context.
        r = stack.wait_https(host, path, auth=stack.admin() if spec.route.admin else None)
        assert marker in r.text, f"{host}{path}: {r.status} {r.text[:200]}"
        assert host in r.peer_names
        if spec.name not in REAL:
            assert r.headers["X-Aini-Double"] == spec.name


def test_http_redirects_to_https(stack: Stack):
    for spec in routed(stack):
        host = stack.host(spec.name)
        r = stack.http(host, "/some/path?x=1")
        assert r.status in (301, 308), (host, r.status)
        # The HTTPS port is not 443 here, so the redirect must name it (target.https_port).
        assert r.headers["Location"] == f"https://{host}:{stack.https_port}/some/path?x=1"


def test_hsts_on_every_route(stack: Stack):
    for spec in routed(stack):
        path, _ = ANSWERS[spec.name]
        r = stack.https(stack.host(spec.name), path, auth=stack.admin() if spec.route.admin else None)
        assert r.headers["Strict-Transport-Security"] == "max-age=15552000; includeSubDomains"


def test_admin_uis_need_the_admin_credentials(stack: Stack):
    admins = [s for s in routed(stack) if s.route.admin]
    assert {s.name for s in admins} == {"traefik", "consul", "vault", "netdata"}
    user, password = stack.admin()
    for spec in admins:
        host, (path, _) = stack.host(spec.name), ANSWERS[spec.name]
        assert stack.https(host, path).status == 401
        assert stack.https(host, path, auth=(user, password + "x")).status == 401
        r = stack.https(host, path, auth=(user, password))
        assert r.status == 200, (host, r.status)
        assert "Authorization" not in r.text  # removeHeader: backends never see credentials


def test_unknown_host_has_no_route(stack: Stack):
    # No certificate names it either: check the chain only, then the answer.
    r = stack.https("nothing-here.localhost", "/", check_hostname=False)
    assert r.status == 404


def test_mariadb_has_the_nextcloud_database_and_user(stack: Stack):
    password = stack.store.get("nextcloud_db_password")
    query = ("SELECT CURRENT_USER(), @@GLOBAL.tx_isolation, @@GLOBAL.character_set_server, "
             "(SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'nextcloud')")

    def as_nextcloud(pw: str):
        # The password reaches the client through the environment of `docker exec`, not argv.
        return stack.docker_run("exec", "-e", "MYSQL_PWD", "aini-mariadb", "mariadb", "-unextcloud",
                                "-h127.0.0.1", "-N", "-e", query, env={**os.environ, "MYSQL_PWD": pw})

    r = as_nextcloud(password)
    assert r.returncode == 0, r.stderr
    # The user and database of the rendered env, and the catalog's server arguments.
    assert r.stdout.split() == ["nextcloud@%", "READ-COMMITTED", "utf8mb4", "1"]
    r = as_nextcloud(password + "x")
    assert r.returncode != 0 and "Access denied" in r.stderr


def test_onlyoffice_connector_is_enabled_and_configured_without_a_secret_in_files(stack: Stack):
    occ = ("exec", "--user", "www-data", "--workdir", "/var/www/html", "aini-nextcloud")
    apps = json.loads(stack.docker_cmd(*occ, "php", "occ", "app:list", "--output=json"))
    assert "onlyoffice" in apps["enabled"]
    # The step ran once, installing then enabling (the double's occ keeps a log of calls).
    log = stack.docker_cmd(*occ, "cat", ".aini-double-occ.log").splitlines()
    assert log[:3] == ["app:list --output=json", "app:install onlyoffice", "app:enable onlyoffice"]
    config = stack.docker_cmd(*occ, "cat", "config/onlyoffice.config.php")
    assert "getenv('AINI_ONLYOFFICE_JWT_SECRET')" in config
    assert stack.store.get("onlyoffice_jwt_secret") not in config
    env = stack.docker_cmd("exec", "aini-nextcloud", "printenv", "AINI_ONLYOFFICE_URL")
    assert env.strip() == f"https://{stack.host('onlyoffice')}:{stack.https_port}/"


def test_second_deploy_recreates_nothing(stack: Stack, figures):
    before = stack.containers()
    assert before and all(state == "running" for _, state in before.values())
    start = time.monotonic()
    result = stack.up()
    seconds = time.monotonic() - start
    assert result.touched == []
    assert stack.containers() == before
    figures({"deploy_noop_seconds": round(seconds, 2)})
    assert seconds < 20


def test_unhealthy_service_fails_naming_it_and_others_stay_up(stack: Stack, figures):
    before = stack.containers()
    broken = json.loads(json.dumps(stack.data))
    broken["images"]["overrides"]["onlyoffice"] = stack_images.double_image("onlyoffice", mode="broken")
    out = io.StringIO()
    start = time.monotonic()
    with pytest.raises(DeployError) as info:
        stack.up(broken, wait_timeout=45, console=Console(file=out, width=200))
    figures({"deploy_failure_seconds": round(time.monotonic() - start, 1)})
    err = info.value
    message = str(err)
    assert err.exit_code == 1 and err.group == "onlyoffice" and err.containers == ["aini-onlyoffice"]
    assert "aini-onlyoffice" in message
    assert "returned error: 500" in message  # its last health check (curl -f)
    assert "onlyoffice-double: config JWT_SECRET=***" in message  # its logs, scrubbed
    secret = stack.store.get("onlyoffice_jwt_secret")
    assert secret not in message and secret not in out.getvalue()
    after = stack.containers()
    for name, (cid, state) in before.items():
        if name != "aini-onlyoffice":
            assert after[name] == (cid, "running"), name
    # The same command with the cause fixed: only the failed group is deployed again.
    result = stack.up()
    assert result.touched == ["onlyoffice"]
    stack.wait_https(stack.host("onlyoffice"), "/healthcheck")


def test_missing_image_stops_before_touching_anything(stack: Stack):
    before = stack.containers()
    data = json.loads(json.dumps(stack.data))
    # A registry on a closed loopback port: the pull fails at once, no traffic leaves.
    data["images"]["overrides"]["watchtower"] = "127.0.0.1:9/aini-e2e/not-built:1.0"
    with pytest.raises(AiniError) as info:
        stack.up(data, pull_timeout=60)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "watchtower: 127.0.0.1:9/aini-e2e/not-built:1.0" in message
    assert "images:" in message and "mirror:" in message and "overrides:" in message
    assert stack.containers() == before


N8N_OWNER = {"email": "owner@example.com", "firstName": "Aini", "lastName": "E2E", "password": "E2e-passw0rd!"}
BROWSER = {"browser-id": "aini-e2e", "Content-Type": "application/json"}


def _n8n_login(stack: Stack) -> str:
    host = stack.host("n8n")
    body = json.dumps({"emailOrLdapLoginId": N8N_OWNER["email"], "password": N8N_OWNER["password"]}).encode()
    r = stack.https(host, "/rest/login", method="POST", body=body, headers=BROWSER)
    assert r.status == 200, r.text[:300]
    return r.cookie()


def test_n8n_workflow_survives_a_restart_of_its_group(stack: Stack):
    host = stack.host("n8n")
    r = stack.https(host, "/rest/owner/setup", method="POST", body=json.dumps(N8N_OWNER).encode(), headers=BROWSER)
    assert r.status == 200, r.text[:300]
    cookie = r.cookie()
    workflow = {"name": "aini-e2e-workflow", "nodes": [], "connections": {}, "settings": {}, "active": False}
    r = stack.https(host, "/rest/workflows", method="POST", body=json.dumps(workflow).encode(),
                    headers={**BROWSER, "Cookie": cookie})
    assert r.status == 200, r.text[:300]
    workflow_id = json.loads(r.body)["data"]["id"]

    # Containers gone (volumes kept), then the same deploy command brings them back.
    assert stack.compose("n8n", "down").returncode == 0
    old = stack.containers()
    assert "aini-n8n" not in old
    result = stack.up()
    assert result.touched == ["n8n"]
    stack.wait_https(host, "/healthz")
    r = stack.https(host, "/rest/workflows", headers={**BROWSER, "Cookie": _n8n_login(stack)})
    assert r.status == 200, r.text[:300]
    names = {w["id"]: w["name"] for w in json.loads(r.body)["data"]}
    assert names.get(workflow_id) == "aini-e2e-workflow"


def test_disabled_service_has_no_route(stack: Stack):
    before = stack.containers()
    data = json.loads(json.dumps(stack.data))
    data["services"] = {"onlyoffice": {"enabled": False}}
    result = stack.up(data)
    actions = {g.group: g.action for g in result.groups}
    assert actions["onlyoffice"] == "down"
    assert actions["nextcloud"] == "up"  # its OnlyOffice settings are gone
    after = stack.containers()
    assert "aini-onlyoffice" not in after
    assert after["aini-traefik"] == before["aini-traefik"]  # routes reload live, no restart
    host = f"office.{stack.config.domain}"
    stack.wait_https(host, "/healthcheck", ok=lambda r: r.status == 404, check_hostname=False)
    # The certificate no longer names it either (issued again for the routes that remain).
    r = stack.wait_https(stack.host("librechat"), "/health", ok=lambda r: host not in r.peer_names)
    assert stack.host("librechat") in r.peer_names
    volumes = stack.docker_cmd("volume", "ls", "--format", "{{.Name}}").split()
    assert "aini-onlyoffice-data" in volumes  # data outlives a disabled service
