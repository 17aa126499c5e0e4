"""Stand-ins for a container's health endpoint on 127.0.0.1, for tests whose Consul checks
really run against something: an HTTP server or a bare TCP listener."""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpEndpoint:
    """Answers every GET with `status(path)`, or with `self.code` (tests change it)."""

    def __init__(self, status: Callable[[str], int] | None = None, code: int = 200) -> None:
        self.code = code
        answer = status or (lambda path: self.code)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(answer(self.path))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpEndpoint:
    """Accepts connections and closes them: a database port as a TCP check sees it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.sock.accept()[0].close()
            except OSError:
                return

    def stop(self) -> None:
        self.sock.close()
