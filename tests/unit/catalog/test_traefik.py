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

from tests.harness.acme import make_listener_tls

from ..conftest import config_of, seed_store
from ..tools import free_port, venv_binary

EXPECTED_ROUTERS = {"traefik", "consul", "vault", "librechat", "n8n", "nextcloud", "onlyoffice", "netdata"}
ADMIN = {"traefik", "consul", "vault", "netdata"}


class SniConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 naming `server_name` in SNI, as a browser of that host does."""

    def __init__(self, server_name: str, port: int, context: ssl.SSLContext):
        super().__init__("127.0.0.1", port, timeout=5, context=context)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


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
        # ACME cannot issue here and sniStrict serves no default certificate: one for the test domain.
        self.ca, cert, key = make_listener_tls(root / "test-tls", ips=(), names=["*.example.com"])
        (dynamic / "test-certificate.yml").write_text(yaml.safe_dump(
            {"tls": {"certificates": [{"certFile": str(cert), "keyFile": str(key)}]}}))
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
            conn = SniConnection(host, port, ssl.create_default_context(cafile=str(self.ca)))
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

    def wait(self, ready=None, deadline: float = 20.0) -> None:
        """Until `ready()` (default: the API lists every router) or Traefik exits; a start that
        never gets there is a failure to start, not a figure."""
        ready = ready or self._routers_loaded
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"traefik exited: {self.log.read_text()[-2000:]}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"traefik did not come up: {self.log.read_text()[-2000:]}")

    def _routers_loaded(self) -> bool:
        response, body = self.get("traefik.example.com", "/api/http/routers", auth=True)
        return response.status == 200 and len(json.loads(body)) >= len(EXPECTED_ROUTERS)

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
        assert response.getheader("Strict-Transport-Security", "") == "max-age=63072000; includeSubDomains"
    response, _ = traefik.get("traefik.example.com", "/api/version", auth=True)
    assert response.status == 200
    response, _ = traefik.get("traefik.example.com", "/", auth=True)
    assert response.status in (302, 307) and response.getheader("Location").endswith("/dashboard/")


def test_app_routes_carry_security_headers_and_dav_redirects(traefik):
    response, _ = traefik.get("cloud.example.com", "/.well-known/caldav")
    assert response.status in (301, 308)
    assert response.getheader("Location") == "https://cloud.example.com/remote.php/dav/"
    assert response.getheader("Strict-Transport-Security", "") == "max-age=63072000; includeSubDomains"
    # No backend runs here: Traefik answers 502 from the route, not 404 (which means no route).
    response, _ = traefik.get("chat.example.com", "/")
    assert response.status == 502
    response, _ = traefik.get("nothing.example.com", "/")
    assert response.status == 404


def _handshake(traefik, server_name: str | None, ciphers: str | None = None,
               version: ssl.TLSVersion | None = None) -> str:
    """The negotiated cipher, or the error that refused the handshake."""
    import socket

    context = ssl.create_default_context(cafile=str(traefik.ca))
    context.check_hostname = False
    if ciphers:
        context.set_ciphers(ciphers)
    if version:
        context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", traefik.websecure), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.cipher()[0]
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused: {exc}"


def test_tls_is_mozilla_intermediate_and_a_client_naming_no_host_of_ours_gets_no_certificate(traefik):
    assert _handshake(traefik, "chat.example.com", "ECDHE-ECDSA-AES128-GCM-SHA256",
                      ssl.TLSVersion.TLSv1_2) == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert _handshake(traefik, "chat.example.com", version=ssl.TLSVersion.TLSv1_3) == "TLS_AES_128_GCM_SHA256"
    for cbc in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"):
        assert _handshake(traefik, "chat.example.com", cbc, ssl.TLSVersion.TLSv1_2).startswith("refused"), cbc
    assert _handshake(traefik, None).startswith("refused")  # no SNI: not Traefik's default certificate
    assert _handshake(traefik, "elsewhere.example.org").startswith("refused")


def test_frames_are_same_origin_but_nextcloud_may_frame_onlyoffice(traefik):
    response, _ = traefik.get("chat.example.com", "/")
    assert response.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert response.getheader("X-XSS-Protection") is None  # OWASP: absent (or 0)
    assert "geolocation=()" in response.getheader("Permissions-Policy", "")
    response, _ = traefik.get("office.example.com", "/")
    assert response.getheader("X-Frame-Options") is None
    assert response.getheader("Content-Security-Policy") == "frame-ancestors 'self' https://cloud.example.com"


def test_admin_uis_answer_only_the_allowed_networks_and_vault_may_have_no_route(tmp_path):
    root = tmp_path / "traefik"
    store = seed_store(root / ".aini")
    config = config_of(tls={"acme_server": f"https://127.0.0.1:{free_port()}/dir"},
                       admin={"allow_from": ["192.0.2.0/24", "2001:db8::/32"]},
                       services={"vault": {"public": False}})
    bundle.write(bundle.render(config, store), root / "bundle")
    server = Traefik(root / "bundle", store)
    try:
        # The API is behind the allow-list here: the routes are loaded once an app's route
        # answers (502: no backend here).
        server.wait(lambda: server.get("chat.example.com", "/")[0].status == 502)
        for host in ("traefik.example.com", "consul.example.com", "netdata.example.com"):
            assert server.get(host, "/", auth=True)[0].status == 403, host  # 127.0.0.1 is not allowed
        assert server.get("vault.example.com", "/", auth=True)[0].status == 404  # no route at all
        assert server.get("cloud.example.com", "/")[0].status == 502  # the apps are not admin UIs
    finally:
        server.stop()


def test_a_vault_without_a_public_route_has_no_name_anywhere():
    from aini.infra import localca

    assert "vault.example.com" in localca.hostnames(config_of())
    assert "vault.example.com" not in localca.hostnames(config_of(services={"vault": {"public": False}}))
