#!/usr/bin/env python3
"""AINI's TEST DOUBLES for upstream services that cannot be obtained here.

Never shipped, never in src/: users get the real, pinned upstream images. Each double
answers its upstream's health endpoint and port (what the catalog's health checks and
Traefik routes use) with a body that names the service and says it is a double, and
behaves like its upstream where the deploy depends on it:

- it refuses to start without the environment its upstream requires (so a missing env
  file shows up as a crash, as it would upstream);
- it does not listen before the services it depends on accept TCP connections (LibreChat
  waits for MongoDB, Nextcloud for MariaDB and Redis), so wiring across internal
  networks is exercised.

Vault and Consul serve the full API slice AINI calls, from vault_api.py and consul_api.py
beside this file (TEST DOUBLES too, written from the upstream API documentation), with
their state in the container's volume (`AINI_DOUBLE_DATA` overrides the directory).

`AINI_DOUBLE` names the service; `AINI_DOUBLE_MODE=broken` makes the health endpoint fail
forever and logs the environment carelessly (to prove the deploy step scrubs secrets
from the logs it shows). `AINI_DOUBLE_HOST`/`AINI_DOUBLE_PORT` move the listener (tests
that run this file directly, outside a container).
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVICE = os.environ.get("AINI_DOUBLE", "")
MODE = os.environ.get("AINI_DOUBLE_MODE", "normal")
TITLES = {
    "librechat": "LibreChat",
    "mongodb": "MongoDB",
    "meilisearch": "Meilisearch",
    "nextcloud": "Nextcloud",
    "nextcloud-cron": "Nextcloud cron",
    "onlyoffice": "OnlyOffice Docs",
    "consul": "Consul",
    "vault": "Vault",
    "watchtower": "Watchtower",
    "socket-proxy": "Docker socket proxy",
}


def log(message: str) -> None:
    print(f"{SERVICE}-double: {message}", flush=True)


def page(title: str) -> tuple[int, str, str]:
    return 200, "text/html; charset=utf-8", (
        f"<!doctype html><title>{title} (AINI test double)</title>"
        f"<h1>{title}</h1><p>aini-double service={SERVICE}</p>\n"
    )


def text(body: str, status: int = 200, kind: str = "text/plain; charset=utf-8") -> tuple[int, str, str]:
    return status, kind, body


def as_json(data: object, status: int = 200) -> tuple[int, str, str]:
    return status, "application/json", json.dumps(data) + "\n"


def routes(path: str, query: dict[str, list[str]]) -> tuple[int, str, str] | None:
    title = TITLES.get(SERVICE, SERVICE)
    table = {
        "librechat": {"/health": lambda: text("OK"), "/": lambda: page(title)},
        "meilisearch": {
            "/health": lambda: as_json({"status": "available", "aini_double": SERVICE}),
            "/version": lambda: as_json({"pkgVersion": "1.35.1", "aini_double": SERVICE}),
        },
        "nextcloud": {"/": lambda: page(title)},  # status.php: nextcloud_double.py
        "onlyoffice": {"/healthcheck": lambda: text("true"), "/": lambda: page(title)},
    }.get(SERVICE, {})
    handler = table.get(path)
    return handler() if handler else None


# Doubles with a module of their own; double.py hands them each request first.
SERVICE_MODULES = {"nextcloud": "nextcloud_double", "nextcloud-cron": "nextcloud_double",
                   "onlyoffice": "onlyoffice_double",
                   # their start() applies upstream's start-up rules (mongodb, watchtower: never returns)
                   "librechat": "librechat_double", "mongodb": "mongodb_double", "watchtower": "watchtower_double"}


def service_module():
    name = SERVICE_MODULES.get(SERVICE)
    return importlib.import_module(name) if name else None


def service_answer(handler: BaseHTTPRequestHandler, path: str) -> tuple[int, str, str | bytes] | None:
    module = service_module()
    if module is None:
        return None
    length = int(handler.headers.get("Content-Length") or 0)
    return module.answer(handler.command, path, handler.headers, handler.rfile.read(length) if length else b"")


HEALTH_PATHS = {"/health", "/status.php", "/healthcheck", "/v1/sys/health", "/v1/status/leader", "/_ping"}


class Handler(BaseHTTPRequestHandler):
    server_version = f"aini-double/{SERVICE}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if MODE == "broken" and url.path in HEALTH_PATHS:
            answer = text(f"{SERVICE} double: broken on purpose\n", 500)
        elif (own := service_answer(self, url.path)) is not None:
            answer = own
        else:
            answer = routes(url.path, parse_qs(url.query)) or text(
                f"{SERVICE} double: no such path {url.path}\n", 404)
        status, kind, body = answer
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Aini-Double", SERVICE)
        self.end_headers()
        self.wfile.write(data)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self.do_GET()

    def log_message(self, fmt: str, *args: object) -> None:
        if self.path.split("?")[0] not in HEALTH_PATHS and not self.path.endswith("/top"):  # Consul asks often
            log(fmt % args)


# ----------------------------------------------------------- vault and consul: full API

API_MODULES = {"vault": "vault_api", "consul": "consul_api"}


def api_servers(argv: list[str]) -> list[ThreadingHTTPServer]:
    """The API double behind the same face as the others: the X-Aini-Double header, a UI
    page, and health endpoints that fail on purpose in broken mode.

    In the image, the upstream start-up comes first (hashicorp_start: the entrypoint's
    ownership rules, the config files read with an HCL parser, upstream's refusals), and the
    API listens where the configuration says. Outside an image (AINI_DOUBLE_HOST/PORT, the
    contract tests of the API) only the API runs, with its state in AINI_DOUBLE_DATA."""
    api = importlib.import_module(API_MODULES[SERVICE])
    if os.environ.get("AINI_DOUBLE_HOST"):
        addresses, port = [os.environ["AINI_DOUBLE_HOST"]], int(os.environ.get("AINI_DOUBLE_PORT") or PORTS[SERVICE])
        data_dir = os.environ.get("AINI_DOUBLE_DATA")
        audit: dict = {}
    else:
        import hashicorp_start

        started = hashicorp_start.start(SERVICE, os.environ.get("AINI_DOUBLE_FLAVOR", ""), argv[1:])
        addresses, port, data_dir = started.addresses, started.port, started.data_dir
        audit = started.audit
    openbao = os.environ.get("AINI_DOUBLE_FLAVOR") == "openbao"
    double = api.VaultDouble(data_dir, api_audit=not openbao, declared_audit=audit) if SERVICE == "vault" \
        else api.ConsulDouble(data_dir)
    log(f"state in {data_dir or 'memory only'}")

    class ApiHandler(api.Handler):
        server_version = Handler.server_version
        extra_headers = {**api.Handler.extra_headers, "X-Aini-Double": SERVICE}  # noqa: RUF012 - read only

        def intercept(self, method: str, path: str):
            if MODE == "broken" and path in HEALTH_PATHS:
                return api.Reply(500, f"{SERVICE} double: broken on purpose\n".encode(), "text/plain; charset=utf-8")
            if path in ("/", "/ui/"):
                status, kind, body = page(TITLES[SERVICE])
                return api.Reply(status, body.encode(), kind)
            return None

        def log_message(self, fmt: str, *args: object) -> None:
            if self.path.split("?")[0] not in HEALTH_PATHS:
                log(fmt % args)

    servers = [api.api_http.DoubleServer((address, port), ApiHandler, double) for address in addresses]
    log(f"listening on {', '.join(f'{a}:{port}' for a in addresses)} (API double)")
    return servers


# -------------------------------------------------------------------------- startup

REQUIRED_ENV = {
    # librechat, mongodb: what upstream refuses is in librechat_double.py and mongodb_double.py
    "meilisearch": ("MEILI_MASTER_KEY",),
    # nextcloud: none; like upstream it starts without them and is not installed (nextcloud_double.py)
    "onlyoffice": ("JWT_SECRET",),
}
PORTS = {"librechat": 3080, "mongodb": 27017, "meilisearch": 7700, "nextcloud": 80, "onlyoffice": 80,
         "consul": 8500, "vault": 8200}


def dependencies() -> list[tuple[str, int]]:
    env = os.environ
    deps: list[tuple[str, int]] = []
    if SERVICE == "librechat":  # MongoDB: librechat_double.start() connects as the driver does
        if env.get("SEARCH") == "true" and env.get("MEILI_HOST"):
            hostport = urlsplit(env["MEILI_HOST"])
            deps.append((hostport.hostname or "", hostport.port or 7700))
    elif SERVICE == "nextcloud":
        deps += [(h, p) for h, p in ((env.get("MYSQL_HOST"), 3306), (env.get("REDIS_HOST"), 6379)) if h]
    return deps


def wait_for(host: str, port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                log(f"{host}:{port} accepts connections")
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                log(f"gave up waiting for {host}:{port}: {exc}")
                sys.exit(1)
            time.sleep(1)


def stop(*_: object) -> None:
    log("stopping")
    sys.exit(0)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, stop)  # PID 1 gets no default handler: exit promptly
    signal.signal(signal.SIGINT, stop)
    if not SERVICE:
        sys.exit("AINI_DOUBLE is not set")
    if SERVICE == "socket-proxy":  # its own flags and rules, from the first argument on
        importlib.import_module("socket_proxy_double").start(argv[1:])
    log(f"starting (AINI test double of {TITLES.get(SERVICE, SERVICE)}; mode={MODE})")
    if MODE == "broken":
        # A careless application printing its configuration: the deploy step must scrub it.
        for key in REQUIRED_ENV.get(SERVICE, ()):
            log(f"config {key}={os.environ.get(key, '')}")
    missing = [k for k in REQUIRED_ENV.get(SERVICE, ()) if not os.environ.get(k)]
    if missing:
        log(f"missing required environment: {', '.join(missing)}")
        sys.exit(1)
    if SERVICE == "nextcloud-cron":
        service_module().crond()  # /cron.sh: runs the image's crontab, never returns
    if argv[1:2] == ["crond"] or SERVICE == "nextcloud-cron":
        log("running (no port; stays up)")
        while True:
            time.sleep(3600)
    for host, port in dependencies():
        wait_for(host, port)
    if hasattr(module := service_module(), "start"):
        module.start()  # the upstream entrypoint's work before the server starts
    port = int(os.environ.get("AINI_DOUBLE_PORT") or PORTS[SERVICE])
    host = os.environ.get("AINI_DOUBLE_HOST", "0.0.0.0")
    if SERVICE in API_MODULES:
        first, *more = api_servers(argv)
        for extra in more:
            threading.Thread(target=extra.serve_forever, daemon=True).start()
        first.serve_forever()
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    log(f"listening on :{port}")
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
