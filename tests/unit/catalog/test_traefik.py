"""The rendered Traefik configuration, loaded by the real Traefik binary on 127.0.0.1.

Only what a container mount would change is translated: the entrypoints' addresses (the
container binds :80/:443), and the container paths /etc/traefik and /letsencrypt. The ACME
CA is pointed at a closed local port, so no request leaves this machine.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from aini.render import bundle
from aini.store import SecretStore

from ..conftest import config_of, seed_store
from ..tools import free_port, venv_binary

EXPECTED_ROUTERS = {"traefik", "consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata"}
ADMIN = {"traefik", "consul", "vault", "netdata"}


class Traefik:
    def __init__(self, root: Path, store: SecretStore):
        self.web, self.websecure, self.ping = free_port(), free_port(), free_port()
        self.password = store.get("admin_password")
        traefik_dir = root / "traefik"
        static = yaml.safe_load((traefik_dir / "traefik.yml").read_text())
        static["entryPoints"]["web"]["address"] = f"127.0.0.1:{self.web}"
        static["entryPoints"]["websecure"]["address"] = f"127.0.0.1:{self.websecure}"
        static["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{self.ping}"
        static["providers"]["file"]["directory"] = str(traefik_dir / "dynamic.host")
        static["certificatesResolvers"]["le"]["acme"]["storage"] = str(root / "acme.json")
        dynamic = traefik_dir / "dynamic.host"
        dynamic.mkdir()
        for path in (traefik_dir / "dynamic").iterdir():
            (dynamic / path.name).write_text(path.read_text().replace("/etc/traefik/users", str(traefik_dir / "users")))
        (root / "static.yml").write_text(yaml.safe_dump(static))
        self.log = root / "traefik.log"
        self.proc = subprocess.Popen(
            [venv_binary("traefik"), f"--configFile={root / 'static.yml'}"],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def get(self, host: str, path: str, port: int | None = None, auth: bool = False, tls: bool = True):
        port = port or self.websecure
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # ACME cannot issue here; the default certificate answers
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Host": host}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"admin:{self.password}".encode()).decode()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response, body

    def wait(self, deadline: float = 20.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"traefik exited: {self.log.read_text()[-2000:]}")
            try:
                response, body = self.get("traefik.example.com", "/api/http/routers", auth=True)
                if response.status == 200 and len(json.loads(body)) >= len(EXPECTED_ROUTERS):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"traefik did not serve its API in {deadline}s: {self.log.read_text()[-2000:]}")

    def api(self, path: str):
        response, body = self.get("traefik.example.com", path, auth=True)
        assert response.status == 200, path
        return json.loads(body)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def traefik(tmp_path_factory):
    root = tmp_path_factory.mktemp("traefik")
    store = seed_store(root / ".aini")
    config = config_of(tls={"acme_server": f"https://127.0.0.1:{free_port()}/dir"})
    bundle.write(bundle.render(config, store), root / "bundle")
    server = Traefik(root / "bundle", store)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def test_every_router_service_and_middleware_is_loaded_without_error(traefik):
    routers = {r["name"].removesuffix("@file"): r for r in traefik.api("/api/http/routers") if r["provider"] == "file"}
    assert set(routers) == EXPECTED_ROUTERS
    for name, router in routers.items():
        assert router["status"] == "enabled" and not router.get("error"), (name, router)
        assert "security-headers@file" in router["middlewares"]
        assert ("admin-auth@file" in router["middlewares"]) == (name in ADMIN), name
    services = {s["name"] for s in traefik.api("/api/http/services")}
    assert {f"{n}@file" for n in EXPECTED_ROUTERS - {"traefik"}} <= services
    middlewares = {m["name"]: m for m in traefik.api("/api/http/middlewares")}
    assert {"security-headers@file", "admin-auth@file", "nextcloud-dav@file", "dashboard-root@file"} <= set(middlewares)
    assert all(m["status"] == "enabled" and not m.get("error") for m in middlewares.values())
    overview = traefik.api("/api/overview")["http"]
    for kind in ("routers", "services", "middlewares"):
        assert overview[kind]["errors"] == 0 and overview[kind]["warnings"] == 0, (kind, overview[kind])


def test_http_redirects_to_https(traefik):
    response, _ = traefik.get("chat.example.com", "/c/new", port=traefik.web, tls=False)
    assert response.status in (301, 308)
    # The port shows because the test binds websecure to a free port instead of 443.
    assert response.getheader("Location") == f"https://chat.example.com:{traefik.websecure}/c/new"


def test_admin_uis_need_the_admin_password(traefik):
    for host in ("traefik.example.com", "consul.example.com", "vault.example.com", "netdata.example.com"):
        response, _ = traefik.get(host, "/")
        assert response.status == 401, host
        assert response.getheader("Strict-Transport-Security", "").startswith("max-age=15552000")
    response, _ = traefik.get("traefik.example.com", "/api/version", auth=True)
    assert response.status == 200
    response, _ = traefik.get("traefik.example.com", "/", auth=True)
    assert response.status in (302, 307) and response.getheader("Location").endswith("/dashboard/")


def test_app_routes_carry_security_headers_and_dav_redirects(traefik):
    response, _ = traefik.get("cloud.example.com", "/.well-known/caldav")
    assert response.status in (301, 308)
    assert response.getheader("Location") == "https://cloud.example.com/remote.php/dav/"
    assert response.getheader("Strict-Transport-Security", "").startswith("max-age=15552000")
    # No backend runs here: Traefik answers 502 from the route, not 404 (which means no route).
    response, _ = traefik.get("chat.example.com", "/")
    assert response.status == 502
    response, _ = traefik.get("nothing.example.com", "/")
    assert response.status == 404
