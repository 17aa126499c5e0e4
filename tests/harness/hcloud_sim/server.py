"""HTTP layer: a stdlib ``ThreadingHTTPServer`` in front of :class:`State`.

Per request, in this order: fault schedule (:class:`Faults`) -> Bearer auth -> rate limit ->
``state.tick()`` -> route -> handler, all answers in the API's JSON error envelope, with
``RateLimit-Limit/Remaining/Reset`` headers. :meth:`Simulator.handle` is the same pipeline
without sockets (used by the HTTP handler, handy for unit tests).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import parse_qs, urlsplit

from .errors import ApiError, error_body
from .faults import Decision, Faults
from .ratelimit import RateLimiter
from .request import Request
from .resources import all_routes
from .state import State

log = logging.getLogger("hcloud_sim")

BASE_PATH = "/v1"


class RequestRecord(NamedTuple):
    """One entry of :attr:`Simulator.requests`; ``path`` is without ``/v1`` and query;
    ``status`` is ``None`` for a dropped connection."""

    method: str
    path: str
    status: int | None


@dataclass
class Exchange:
    """A full request/response pair, passed to :attr:`Simulator.observers`."""

    method: str
    path: str  # as requested, including /v1, without the query string
    query: dict[str, list[str]]
    request_headers: dict[str, str]
    request_body: bytes
    status: int | None  # None = connection dropped
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    fault: str | None = None  # description of an injected fault, if any

    @property
    def json(self) -> Any:
        return json.loads(self.response_body) if self.response_body else None


@dataclass
class Response:
    status: int | None
    headers: dict[str, str]
    body: bytes = b""
    delay: float = 0.0

    @property
    def dropped(self) -> bool:
        return self.status is None


class Simulator:
    """A stateful Hetzner Cloud API on ``127.0.0.1``.

    ::

        sim = Simulator(port=0, token="T", action_delay=0.05)
        url = sim.start()               # "http://127.0.0.1:PORT/v1"
        client = hcloud.Client("T", api_endpoint=url)
        ...
        sim.requests                    # [("POST", "/servers", 201), ...]
        sim.state.servers               # stored resources
        sim.stop()

    Parameters: ``token``/``tokens`` (accepted Bearer tokens), ``readonly_tokens`` (GET only,
    else 403 ``token_readonly``), ``action_delay`` (seconds an action stays ``running``),
    ``server_limit`` (quota -> 403 ``resource_limit_exceeded``), ``faults`` (:class:`Faults`),
    ``rate_limit``/``rate_limit_refill`` (bucket size, tokens per second), ``clock``,
    ``on_server_create``/``on_server_delete`` hooks (see :class:`state.Hooks`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str = "test-token",
                 tokens: Iterable[str] | None = None, readonly_tokens: Iterable[str] = (),
                 action_delay: float = 0.0, server_limit: int | None = None,
                 faults: Faults | None = None, rate_limit: int = 3600,
                 rate_limit_refill: float = 1.0, clock: Callable[[], float] = time.time,
                 on_server_create: Callable[[dict], Any] | None = None,
                 on_server_delete: Callable[[dict], Any] | None = None):
        self.host = host
        self.port = port
        self.tokens = set(tokens) if tokens is not None else {token}
        self.readonly_tokens = set(readonly_tokens)
        self.state = State(action_delay=action_delay, server_limit=server_limit,
                           faults=faults or Faults(), clock=clock)
        self.state.hooks.on_server_create = on_server_create
        self.state.hooks.on_server_delete = on_server_delete
        self.rate_limiter = RateLimiter(rate_limit, rate_limit_refill, clock)
        self.routes = all_routes()
        self.requests: list[RequestRecord] = []
        self.exchanges: list[Exchange] = []
        self.observers: list[Callable[[Exchange], None]] = []
        self.errors: list[str] = []  # tracebacks of unexpected exceptions (answered with 500)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._log_lock = threading.Lock()

    # ----- configuration shortcuts -------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        return self.state.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self.state.faults = value

    @property
    def on_server_create(self):
        return self.state.hooks.on_server_create

    @on_server_create.setter
    def on_server_create(self, fn) -> None:
        self.state.hooks.on_server_create = fn

    @property
    def on_server_delete(self):
        return self.state.hooks.on_server_delete

    @on_server_delete.setter
    def on_server_delete(self, fn) -> None:
        self.state.hooks.on_server_delete = fn

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("simulator is not running")
        return f"http://{self.host}:{self.port}{BASE_PATH}"

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        if self._httpd is not None:
            return self.url
        handler = type("BoundHandler", (_Handler,), {"sim": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"hcloud-sim:{self.port}", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._conns_lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conns.clear()
        if self._thread:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        self.start()
        try:
            while self._thread and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> "Simulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- request pipeline ----------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request; returns a :class:`Response` (``status=None``: drop it)."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        api_path = path[len(BASE_PATH):] if path.startswith(BASE_PATH + "/") else None
        decision = self.faults.decide(method, api_path or path)
        response = self._respond(method, api_path, query, headers, body, decision)
        self._record(method, path, api_path, query, headers, body, response, decision)
        return response

    def _respond(self, method: str, api_path: str | None, query: dict[str, list[str]],
                 headers: dict[str, str], body: bytes, decision: Decision | None) -> Response:
        delay = 0.0
        if decision is not None:
            if decision.kind == "drop":
                if decision.processed:
                    self._respond(method, api_path, query, headers, body, None)
                return Response(None, {})
            if decision.kind == "delay":
                delay = decision.seconds
            elif decision.kind == "status":
                limited = decision.status == 429
                hdrs = self.rate_limiter.headers(exhausted=limited)
                if decision.raw:
                    html = f"<html><body><h1>{decision.status} {decision.message}</h1></body></html>"
                    return Response(decision.status, {**hdrs, "Content-Type": "text/html"}, html.encode())
                return self._json(decision.status, error_body(decision.code, decision.message), hdrs)

        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if token not in self.tokens and token not in self.readonly_tokens:
            return self._json(401, error_body("unauthorized", "unable to authenticate"), {}, delay)
        if not self.rate_limiter.take():
            return self._json(429, error_body("rate_limit_exceeded", "limit of requests per hour reached"),
                              self.rate_limiter.headers(exhausted=True), delay)
        rl = self.rate_limiter.headers()
        if token in self.readonly_tokens and token not in self.tokens and method != "GET":
            return self._json(403, error_body("token_readonly", "the token is only allowed to perform GET requests"),
                              rl, delay)
        if api_path is None:
            return self._json(404, error_body("not_found", "not found"), rl, delay)

        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError as exc:
            return self._json(400, error_body("json_error", f"invalid JSON: {exc}"), rl, delay)
        req = Request(method, api_path, query, parsed, headers)
        with self.state.lock:
            self.state.tick()
            try:
                status, payload = self._dispatch(req)
            except ApiError as err:
                status, payload = err.status, err.body()
            except Exception:  # noqa: BLE001 - a simulator bug must not kill the server
                tb = traceback.format_exc()
                self.errors.append(tb)
                log.error("simulator error on %s %s\n%s", method, api_path, tb)
                status, payload = 500, error_body("server_error", "internal simulator error")
        return self._json(status, payload, rl, delay)

    def _dispatch(self, req: Request) -> tuple[int, Any]:
        path_matched = False
        for route in self.routes:
            params = route.match(req.path)
            if params is None:
                continue
            path_matched = True
            if route.method == req.method:
                return route.handler(self.state, req, **params)
        if path_matched:
            raise ApiError("method_not_allowed", f"method {req.method} not allowed on {req.path}")
        raise ApiError("not_found", f"route {req.path} not found")

    @staticmethod
    def _json(status: int, payload: Any, headers: dict[str, str], delay: float = 0.0) -> Response:
        hdrs = {**headers, "X-Correlation-Id": uuid.uuid4().hex[:16]}
        if status == 204 or payload is None:
            return Response(status, hdrs, b"", delay)
        hdrs["Content-Type"] = "application/json"
        return Response(status, hdrs, json.dumps(payload).encode(), delay)

    def _record(self, method, path, api_path, query, headers, body, response: Response,
                decision: Decision | None) -> None:
        exchange = Exchange(method=method, path=path, query=query, request_headers=dict(headers),
                            request_body=body, status=response.status, response_headers=response.headers,
                            response_body=response.body, fault=decision.describe() if decision else None)
        with self._log_lock:
            self.requests.append(RequestRecord(method, api_path or path, response.status))
            self.exchanges.append(exchange)
        log.debug("%s %s -> %s%s", method, path, response.status, f" [{exchange.fault}]" if exchange.fault else "")
        for observer in list(self.observers):
            observer(exchange)


class _Handler(BaseHTTPRequestHandler):
    sim: Simulator
    protocol_version = "HTTP/1.1"
    server_version = "hcloud-sim"
    sys_version = ""
    timeout = 30  # idle keep-alive connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms stalls

    def setup(self) -> None:
        super().setup()
        with self.sim._conns_lock:
            self.sim._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.sim._conns_lock:
                self.sim._conns.discard(self.connection)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.sim.handle(self.command, self.path, headers, body)
        if response.dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if response.delay:
            time.sleep(response.delay)
        try:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timeout)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)
