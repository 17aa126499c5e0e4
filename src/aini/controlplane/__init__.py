"""The control plane's clients: Vault (or OpenBao, the same API) keeps every secret, Consul
keeps the service catalog, health and the deployed configuration, and the operator's
machine keeps the break-glass material (breakglass.py).

Small and typed on the standard library's urllib, so no SDK joins the dependencies. A call
is data first: the modules build `Request` values with pure functions (unit-tested as
data), and `Http.send` is the one place that touches the network.

Secrets: a token travels only in a request header, a secret value only in a request or
response body. Neither is in a Request's repr, an error message or a log line: errors name
the service, the method, the path (names, never values) and the upstream's one-line
reason, with every token of the call scrubbed from it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import AiniError, InputError


class ControlPlaneError(AiniError):
    """A call to Vault or Consul failed (exit 1). `status` is the HTTP status, or None when
    the server was not reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # "/v1/sys/init": names only, never a secret value
    body: Any = field(default=None, repr=False)  # JSON-able, or bytes sent as they are
    query: tuple[tuple[str, str], ...] = ()
    ok: tuple[int, ...] = (200, 204)  # statuses the caller handles; others raise

    @property
    def target(self) -> str:
        return self.path + (f"?{urlencode(self.query)}" if self.query else "")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would resend our token headers to wherever a redirect points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Http:
    """One service's HTTP endpoint: explicit timeout, TLS optional (a CA file, or `verify`
    off for a local test CA), no redirects, and no proxy: the control plane is reached on
    the server's own network or through a tunnel, never through a proxy that would see the
    tokens."""

    def __init__(self, service: str, address: str, *, timeout: float = 10.0, ca_file: str | None = None,
                 verify: bool = True, error: type[ControlPlaneError] = ControlPlaneError):
        url = urlsplit(address)
        if url.scheme not in ("http", "https") or not url.hostname or url.path.strip("/") or url.query:
            raise InputError(f"{service} address must be http(s)://host[:port], not {address!r}")
        self.service, self.address, self.timeout, self.error = service, address.rstrip("/"), timeout, error
        handlers: list[Any] = [_NoRedirect(), urllib.request.ProxyHandler({})]
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def send(self, request: Request, headers: Mapping[str, str] | None = None) -> Response:
        headers = dict(headers or {})
        secrets = list(headers.values())  # callers pass only credentials here
        data = None
        if request.body is not None:
            data = request.body if isinstance(request.body, bytes) else json.dumps(request.body).encode()
            headers.setdefault("Content-Type", "application/json")
        call = urllib.request.Request(self.address + request.target, data=data, method=request.method,
                                      headers=headers)
        where = f"{self.service} {request.method} {request.path}"
        try:
            with self._opener.open(call, timeout=self.timeout) as answer:
                response = Response(answer.status, answer.read())
        except urllib.error.HTTPError as exc:
            response = Response(exc.code, exc.read())
        except TimeoutError:
            raise self.error(f"{where}: no answer within {self.timeout:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self.error(f"{self.service} at {self.address} cannot be reached ({_one_line(reason)})") from None
        if response.status not in request.ok:
            reason = _scrub(_reason(response.body), secrets)
            raise self.error(f"{where}: HTTP {response.status}" + (f": {reason}" if reason else ""),
                             response.status)
        return response


def _reason(body: bytes) -> str:
    """Vault answers {"errors": [...]}, Consul plain text: the first line of either."""
    text = body.decode(errors="replace").strip()
    try:
        errors = json.loads(text).get("errors")
        text = "; ".join(str(e) for e in errors) if errors else ""
    except (ValueError, AttributeError):
        pass
    return _one_line(text)


def _one_line(value: object) -> str:
    text = " ".join(str(value).replace("*", " ").split())
    return text if len(text) <= 200 else text[:197] + "..."


def _scrub(text: str, secrets: Any) -> str:
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text
