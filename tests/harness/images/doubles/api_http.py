"""HTTP serving shared by the Vault and Consul API TEST DOUBLES (vault_api.py, consul_api.py):
requests go to `server.double.handle`, its Reply goes back. Never shipped."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit


class Reply(NamedTuple):
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class Handler(BaseHTTPRequestHandler):
    """Subclasses may answer first (`intercept`) and add headers; double.py does both for
    the doubles image."""

    extra_headers: Mapping[str, str] = {}

    def intercept(self, method: str, path: str) -> Reply | None:
        return None

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        reply = self.intercept(self.command, url.path) or self.server.double.handle(  # type: ignore[attr-defined]
            self.command, url.path, parse_qs(url.query, keep_blank_values=True), self.headers, body,
            self.client_address[0])
        self.send_response(reply.status)
        if reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        for name, value in (*reply.headers, *self.extra_headers.items()):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and reply.status != 204:
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = _serve

    def log_message(self, fmt: str, *args: object) -> None:
        pass  # quiet in tests; request lines never carry tokens (headers do)


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], double: Any):
        super().__init__(address, handler)
        self.double = double

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.double.close()


def serve(double: Any, handler: type[Handler], name: str, host: str, port: int) -> DoubleServer:
    """Start serving `double` on a thread; `server.url` is its address, `server.stop()` ends it."""
    server = DoubleServer((host, port), handler, double)
    threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True).start()
    return server


__all__ = ["DoubleServer", "Handler", "Reply", "serve"]
