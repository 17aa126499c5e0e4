"""The OnlyOffice Document Server TEST DOUBLE (tests/harness/images/doubles/
onlyoffice_double.py, behind double.py as the image runs it) against upstream: with JWT on
(the default) the command and conversion services refuse a request without a valid token,
and a document whose host resolves to a private address is not fetched unless
ALLOW_PRIVATE_IP_ADDRESS=true (sources in the module's docstring).

The tokens here are signed by the test's own HS256 code, not the double's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .helpers import free_port

DOUBLE = Path(__file__).parents[1] / "harness" / "images" / "doubles" / "double.py"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict, secret: str) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing = f"{head}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())}"


def hs256_claims(token: str, secret: str) -> dict | None:
    head, body, mac = token.split(".")
    want = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) if want == mac else None


class Double:
    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The secret reaches the process through its environment, as in the container.
        full = {**{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "ALLOW_"))},
                "AINI_DOUBLE": "onlyoffice", "AINI_DOUBLE_HOST": "127.0.0.1", "AINI_DOUBLE_PORT": str(self.port),
                "PYTHONDONTWRITEBYTECODE": "1", **env}
        self.process = subprocess.Popen([sys.executable, str(DOUBLE)], env=full,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise AssertionError(self.process.stdout.read().decode())
                time.sleep(0.05)

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[str, str]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.headers["Content-Type"], r.read().decode()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=10)
        return out.decode()


@pytest.fixture
def secret() -> str:
    return secrets.token_hex(24)


@pytest.fixture
def start():
    started: list[Double] = []

    def _start(**env: str) -> Double:
        started.append(Double(env))
        return started[-1]

    yield _start
    for double in started:
        if double.process.poll() is None:
            double.stop()


class Storage:
    """A storage server on 127.0.0.1 (a private address), recording what reached it."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"PK\x05\x06")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/apps/onlyoffice/empty"


@pytest.fixture
def storage():
    s = Storage()
    yield s
    s.server.shutdown()


COMMAND = "/coauthoring/CommandService.ashx"


def test_jwt_is_on_by_default_and_the_command_service_refuses_a_missing_or_wrong_token(start, secret):
    oo = start(JWT_SECRET=secret)  # no JWT_ENABLED: upstream's default is true
    version = {"c": "version"}
    assert json.loads(oo.post(COMMAND, version)[1]) == {"error": 6}
    wrong = hs256({"payload": version}, secret + "x")
    assert json.loads(oo.post(COMMAND, version, {"Authorization": f"Bearer {wrong}"})[1]) == {"error": 6}
    assert json.loads(oo.post(COMMAND, version, {"Authorization": hs256({"payload": version}, secret)})[1]) \
        == {"error": 6}  # the header needs its "Bearer " prefix
    assert json.loads(oo.post(COMMAND, {**version, "token": hs256(version, secret + "x")})[1]) == {"error": 6}
    good = json.loads(oo.post(COMMAND, version, {"Authorization": f"Bearer {hs256({'payload': version}, secret)}"})[1])
    assert good["error"] == 0 and good["version"].startswith("9.")
    assert json.loads(oo.post(COMMAND, {**version, "token": hs256(version, secret)})[1])["error"] == 0
    expired = hs256({"payload": version, "exp": int(time.time()) - 60}, secret)
    assert json.loads(oo.post(COMMAND, version, {"Authorization": f"Bearer {expired}"})[1]) == {"error": 6}
    assert secret not in oo.stop()


def test_the_conversion_service_refuses_a_request_without_a_valid_token(start, secret, storage):
    oo = start(JWT_SECRET=secret, ALLOW_PRIVATE_IP_ADDRESS="true")
    body = {"async": False, "url": storage.url, "outputtype": "docx", "filetype": "docx", "key": "k1"}
    kind, xml = oo.post("/ConvertService.ashx", body)
    assert kind.startswith("text/xml") and "<Error>-8</Error>" in xml
    kind, answer = oo.post("/ConvertService.ashx", body, {"Accept": "application/json"})
    assert kind == "application/json" and json.loads(answer) == {"error": -8}
    assert json.loads(oo.post("/converter", {**body, "token": hs256(body, secret[::-1])})[1]) == {"error": -8}
    assert storage.seen == []  # refused before any download


def test_a_private_storage_address_is_refused_unless_allowed(start, secret, storage):
    body = {"async": False, "url": storage.url, "outputtype": "docx", "filetype": "docx", "key": "k2"}
    signed = {"Authorization": f"Bearer {hs256({'payload': body}, secret)}"}
    oo = start(JWT_SECRET=secret)
    assert "<Error>-4</Error>" in oo.post("/ConvertService.ashx", body, signed)[1]
    assert storage.seen == []
    assert "DNS lookup 127.0.0.1(family:4, host:127.0.0.1) is not allowed. Because, It is private IP address." \
        in oo.stop()

    allowed = start(JWT_SECRET=secret, ALLOW_PRIVATE_IP_ADDRESS="true")
    xml = allowed.post("/ConvertService.ashx", body, signed)[1]
    assert "<EndConvert>True</EndConvert>" in xml, xml
    # The download carried the Document Server's own token for the URL (outbox JWT).
    (fetch,) = storage.seen
    claims = hs256_claims(fetch["Authorization"].removeprefix("Bearer "), secret)
    assert claims == {"payload": {"url": storage.url}}
    result_url = xml.split("<FileUrl>")[1].split("</FileUrl>")[0]
    with urllib.request.urlopen(result_url, timeout=10) as r:
        assert r.read() == b"PK\x05\x06"


def test_a_meta_address_is_refused_even_with_private_addresses_allowed(start, secret):
    body = {"url": "http://0.0.0.0:9/x.docx", "outputtype": "docx", "key": "k3"}
    oo = start(JWT_SECRET=secret, ALLOW_PRIVATE_IP_ADDRESS="true")
    answer = oo.post("/converter", body, {"Authorization": f"Bearer {hs256({'payload': body}, secret)}"})[1]
    assert json.loads(answer) == {"error": -4}
    assert "Because, It is meta IP address." in oo.stop()


def test_the_health_check_answers_without_a_token(start, secret):
    oo = start(JWT_SECRET=secret)
    with urllib.request.urlopen(oo.url + "/healthcheck", timeout=10) as r:
        assert r.read() == b"true"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(oo.url + "/cache/files/data/nothing/output.docx", timeout=10)
