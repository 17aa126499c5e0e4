#!/usr/bin/env python3
"""Docker socket proxy TEST DOUBLE (stands in for docker.io/wollomatic/socket-proxy 1.12.2).
Never shipped.

It enforces what upstream enforces (tests/harness/images/UPSTREAM.md, "wollomatic"):
- Go `flag` parsing: `-name=value` (or `-name value`), an unknown flag exits 2; each flag's
  `SP_*` environment twin, the flag winning;
- `-listenip` defaults to 127.0.0.1 and `-allowfrom` to 127.0.0.1/32: a container that
  forgets either is unreachable, as upstream's is;
- a client outside `-allowfrom` (CIDRs, or names resolved on every request) gets 403, a
  method without an allow-list 405, a path its method's regex does not match in full 403,
  each with the plain-text status as body;
- without a Docker socket it can connect to at start, it exits 2;
- `-allowhealthcheck`: `HEAD /health` on 127.0.0.1:55555, which `/healthcheck` asks.
What passes is forwarded to the mounted Docker socket, as upstream does.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "OPTIONS")
VALUED = {"allowfrom": "127.0.0.1/32", "listenip": "127.0.0.1", "proxyport": "2375",
          "socketpath": "/var/run/docker.sock", "loglevel": "INFO", "watchdoginterval": "0",
          "shutdowngracetime": "10", **{f"allow{m}": "" for m in METHODS}}
BOOLEAN = {"logjson", "allowhealthcheck", "stoponwatchdog"}
ENV_TWIN = {**{f"allow{m}": f"SP_ALLOW_{m}" for m in METHODS},
            **{name: f"SP_{name.upper()}" for name in (*VALUED, *BOOLEAN) if name[5:] not in METHODS}}
HEALTH = ("127.0.0.1", 55555)


def log(level: str, message: str) -> None:
    print(f"level={level} msg={message!r}", flush=True)


def parse(argv: list[str]) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {**VALUED, **{b: False for b in BOOLEAN}}
    for name, var in ENV_TWIN.items():
        if var in os.environ:
            options[name] = os.environ[var] if name in VALUED else os.environ[var].lower() in ("1", "true", "t")
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            break
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in BOOLEAN:
            options[name] = not has_value or value.lower() in ("1", "true", "t")
        elif name in VALUED:
            if not has_value:
                if not args:
                    sys.stderr.write(f"flag needs an argument: -{name}\n")
                    sys.exit(2)
                value = args.pop(0)
            options[name] = value
        else:
            sys.stderr.write(f"flag provided but not defined: -{name}\n")
            sys.exit(2)
    return options


def dial(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = dial(self.path)


def allowed_client(client: str, allowfrom: str) -> bool:
    ip = ipaddress.ip_address(client)
    for entry in (e.strip() for e in allowfrom.split(",") if e.strip()):
        try:
            return ip in ipaddress.ip_network(entry, strict=False)  # upstream: a CIDR answers at once
        except ValueError:
            pass
        try:
            resolved = {info[4][0] for info in socket.getaddrinfo(entry, None)}
        except OSError:
            continue
        if client in resolved:
            return True
    return False


def serve(options: dict[str, str | bool]) -> None:
    socket_path = str(options["socketpath"])
    rules = {m: re.compile("^" + str(options[f"allow{m}"]) + "$") for m in METHODS if options[f"allow{m}"]}

    class Proxy(BaseHTTPRequestHandler):
        server_version = "aini-double/socket-proxy"

        def refuse(self, status: int, why: str) -> None:
            log("WARN", f"blocked request: {why} {self.command} {self.path} from {self.client_address[0]}")
            body = (http.client.responses[status] + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_one(self) -> None:
            if not allowed_client(self.client_address[0], str(options["allowfrom"])):
                return self.refuse(403, "forbidden IP")
            rule = rules.get(self.command)
            if rule is None:
                return self.refuse(405, "method not allowed")
            if not rule.match(urlsplit(self.path).path):
                return self.refuse(403, "path not allowed")
            length = int(self.headers.get("Content-Length") or 0)
            conn = UnixConnection(socket_path)
            try:
                conn.request(self.command, self.path, self.rfile.read(length) if length else None,
                             {"Content-Type": self.headers.get("Content-Type", "application/json")})
                response = conn.getresponse()
                data = response.read()
            except OSError as exc:
                log("ERROR", f"docker socket: {exc}")
                return self.refuse(502, "socket")
            finally:
                conn.close()
            self.send_response(response.status)
            self.send_header("Content-Type", response.getheader("Content-Type") or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def __getattr__(self, name: str):
            if name.startswith("do_"):
                return self.handle_one
            raise AttributeError(name)

        def log_message(self, fmt: str, *args: object) -> None:
            if options["loglevel"] == "DEBUG":
                log("DEBUG", fmt % args)

    class Health(BaseHTTPRequestHandler):
        def __getattr__(self, name: str):
            if name.startswith("do_"):
                return self.check
            raise AttributeError(name)

        def check(self) -> None:
            if self.command != "HEAD" or self.path != "/health":
                status = 405 if self.path == "/health" else 404
            else:
                try:
                    dial(socket_path).close()
                    status = 200
                except OSError:
                    status = 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *args: object) -> None:
            pass

    if options["allowhealthcheck"]:
        health = ThreadingHTTPServer(HEALTH, Health)
        threading.Thread(target=health.serve_forever, daemon=True).start()
    server = ThreadingHTTPServer((str(options["listenip"]), int(options["proxyport"])), Proxy)
    server.daemon_threads = True
    log("INFO", f"socket-proxy listening on {options['listenip']}:{options['proxyport']}, "
                f"allowed from {options['allowfrom']}, rules {sorted(rules)}")
    server.serve_forever()


def start(argv: list[str]) -> None:
    options = parse(argv)
    for method in METHODS:
        try:
            re.compile(str(options[f"allow{method}"]))
        except re.error as exc:
            log("ERROR", f"invalid regex for -allow{method}: {exc}")
            sys.exit(2)
    try:
        dial(str(options["socketpath"])).close()
    except OSError as exc:
        log("ERROR", f"cannot connect to the Docker socket {options['socketpath']}: {exc}")
        sys.exit(2)
    serve(options)


def healthcheck() -> None:
    """/healthcheck: HEAD the health listener; exit 0 only on 200."""
    conn = http.client.HTTPConnection(*HEALTH, timeout=5)
    try:
        conn.request("HEAD", "/health")
        sys.exit(0 if conn.getresponse().status == 200 else 1)
    except OSError:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["healthcheck"]:
        healthcheck()
    start(sys.argv[1:])
