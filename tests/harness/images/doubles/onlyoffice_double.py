"""OnlyOffice Document Server TEST DOUBLE: the slice of its HTTP API that Nextcloud's
connector calls (healthcheck, the command service, the conversion service), as strict as
upstream about the two things AINI's wiring depends on. Never shipped.

Upstream facts it implements (each checked against the source named):
- JWT_ENABLED defaults to true, JWT_SECRET to a random value, JWT_HEADER to Authorization,
  ALLOW_PRIVATE_IP_ADDRESS and ALLOW_META_IP_ADDRESS to false
  (ONLYOFFICE/Docker-DocumentServer README.md, "Available Configuration Parameters").
- With inbox tokens on, a request's parameters come from its JSON body, and the token from
  the body's `token` field, else from `<JWT_HEADER>: Bearer <jwt>`; a missing or invalid
  token leaves the error code VKEY (ONLYOFFICE/server DocService/sources/DocsCoServer.js,
  getRequestParams, checkJwtHeader). jsonwebtoken verifies HS256/384/512 and `exp`.
- The command service answers `{"error": 6}` (c_oAscServerCommandErrors.Token) for a bad
  token, 0 and the version for `{"c": "version"}`; the conversion service answers error -8
  for a bad token and -4 when the document cannot be downloaded, as XML from
  /ConvertService.ashx unless the client accepts JSON (DocsCoServer.js commandFromServer;
  converterservice.js convertRequest; Common/sources/utils.js fillResponse; the codes as
  onlyoffice-nextcloud lib/DocumentService.php maps them).
- Downloads go through request-filtering-agent, which refuses an address the host name
  resolves to when it is private ("DNS lookup <ip>(family:4, host:<host>) is not allowed.
  Because, It is private IP address.") or meta (0.0.0.0, ::) unless allowed
  (azu/request-filtering-agent src/request-filtering-agent.ts; the Docker image feeds it
  ALLOW_PRIVATE_IP_ADDRESS / ALLOW_META_IP_ADDRESS). Outgoing requests carry a JWT of
  `{"payload": {"url": ...}}` in the same header (token.enable.request.outbox).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

VERSION = "9.4.0.1"
# Upstream generates a secret when none is given: nobody else knows it, so every signed
# request fails, which is the point of modelling it.
_RANDOM_SECRET = secrets.token_hex(16)
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# The `ip` package's isPrivate ranges, which request-filtering-agent uses.
_PRIVATE = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128")]
_META = {"0.0.0.0", "::"}

_converted: dict[str, tuple[str, bytes]] = {}
_lock = threading.Lock()


def log(message: str) -> None:
    print(f"onlyoffice-double: {message}", flush=True)


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() == "true"


def jwt_enabled() -> bool:
    return _flag("JWT_ENABLED", "true")


def jwt_secret() -> str:
    return os.environ.get("JWT_SECRET") or _RANDOM_SECRET


def jwt_header() -> str:
    return os.environ.get("JWT_HEADER") or "Authorization"


# ------------------------------------------------------------------------------ JWT

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict, secret: str, alg: str = "HS256") -> str:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), _HASHES[alg]).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify(token: str, secret: str) -> dict | None:
    """The decoded claims, or None where jsonwebtoken's verify would throw."""
    try:
        head, body, mac = token.split(".")
        alg = json.loads(_unb64(head)).get("alg")
        if alg not in _HASHES:
            return None
        want = hmac.new(secret.encode(), f"{head}.{body}".encode(), _HASHES[alg]).digest()
        if not hmac.compare_digest(want, _unb64(mac)):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError, json.JSONDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    now = time.time()
    if "exp" in claims and now >= float(claims["exp"]):
        return None
    if "nbf" in claims and now < float(claims["nbf"]):
        return None
    return claims


def request_params(headers, body: bytes) -> tuple[bool, dict]:
    """getRequestParams: (token accepted, parameters)."""
    try:
        params = json.loads(body.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        params = {}
    if not isinstance(params, dict):
        params = {}
    if not jwt_enabled():
        return True, params
    token = params.get("token")
    if not token:
        value = headers.get(jwt_header()) or ""
        token = value[len("Bearer "):] if value.startswith("Bearer ") else None
    claims = verify(token, jwt_secret()) if token else None
    if claims is None:
        return False, params
    params = {**params, **claims}
    if isinstance(claims.get("payload"), dict):
        params.update(claims["payload"])
    return True, params


# ---------------------------------------------------------------------- downloads

def refusal(host: str) -> str | None:
    """request-filtering-agent's verdict on every address `host` resolves to."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"getaddrinfo ENOTFOUND {host}: {exc}"
    for family, _, _, _, sockaddr in infos:
        address = sockaddr[0]
        fam = 6 if family == socket.AF_INET6 else 4
        if address in _META and not _flag("ALLOW_META_IP_ADDRESS", "false"):
            return f"DNS lookup {address}(family:{fam}, host:{host}) is not allowed. Because, It is meta IP address."
        ip = ipaddress.ip_address(address)
        if any(ip in net for net in _PRIVATE) and not _flag("ALLOW_PRIVATE_IP_ADDRESS", "false"):
            return (f"DNS lookup {address}(family:{fam}, host:{host}) is not allowed. "
                    "Because, It is private IP address.")
    return None


def download(url: str) -> bytes | None:
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme not in ("http", "https") or not host:
        log(f"download refused: not an http(s) URL: {url!r}")
        return None
    why = refusal(host)
    if why:
        log(f"error downloadFile: {why}")
        return None
    headers = {}
    if jwt_enabled():
        headers[jwt_header()] = "Bearer " + sign({"payload": {"url": url}}, jwt_secret())
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
            return r.read(50_000_000)
    except (urllib.error.URLError, OSError) as exc:
        log(f"error downloadFile: {url}: {exc}")
        return None


# ---------------------------------------------------------------------- answers

def _json(data: dict) -> tuple[int, str, str]:
    return 200, "application/json", json.dumps(data, separators=(",", ":"))


def _convert_answer(output: dict, as_json: bool) -> tuple[int, str, str]:
    if as_json:
        return _json(output)
    xml = '<?xml version="1.0" encoding="utf-8"?><FileResult>'
    if "error" in output:
        xml += f"<Error>{output['error']}</Error>"
    else:
        xml += (f"<FileUrl>{output['fileUrl']}</FileUrl><FileType>{output['fileType']}</FileType>"
                f"<Percent>{output['percent']}</Percent><EndConvert>True</EndConvert>")
    return 200, "text/xml; charset=UTF-8", xml + "</FileResult>"


def command(headers, body: bytes) -> tuple[int, str, str]:
    ok, params = request_params(headers, body)
    if not ok:
        log("CommandService: invalid or missing token")
        return _json({"error": 6})
    if params.get("c") == "version":
        return _json({"error": 0, "version": VERSION})
    return _json({"error": 5})  # the double knows no other command


def convert(path: str, headers, body: bytes) -> tuple[int, str, str]:
    accept = headers.get("Accept") or ""
    as_json = "json" in accept if path == "/ConvertService.ashx" else "xml" not in accept or "json" in accept
    ok, params = request_params(headers, body)
    if not ok:
        log("ConvertService: invalid or missing token")
        return _convert_answer({"error": -8}, as_json)
    data = download(str(params.get("url") or ""))
    if data is None:
        return _convert_answer({"error": -4}, as_json)
    outputtype = str(params.get("outputtype") or params.get("filetype") or "docx")
    key = f"conv_{params.get('key') or secrets.token_hex(6)}_{outputtype}"
    with _lock:
        _converted[key] = (outputtype, data)
    host = headers.get("Host") or "localhost"
    url = f"http://{host}/cache/files/data/{key}/output.{outputtype}"
    return _convert_answer({"fileUrl": url, "fileType": outputtype, "percent": 100, "endConvert": True}, as_json)


def answer(method: str, path: str, headers, body: bytes) -> tuple[int, str, str | bytes] | None:
    """double.py's hook: None leaves the request to the generic routes."""
    if method == "POST" and path in ("/coauthoring/CommandService.ashx", "/command"):
        return command(headers, body)
    if method == "POST" and path in ("/ConvertService.ashx", "/converter"):
        return convert(path, headers, body)
    if method in ("GET", "HEAD") and path.startswith("/cache/files/data/"):
        key = path.split("/")[4] if len(path.split("/")) > 4 else ""
        with _lock:
            found = _converted.get(key)
        if found is None:
            return 404, "text/plain; charset=utf-8", "not found\n"
        return 200, "application/octet-stream", found[1]
    return None
