"""TEST DOUBLE of the HashiCorp Consul HTTP API (one server agent, ACLs on, default deny).
Never shipped, never a real Consul.

Written from the upstream API documentation (developer.hashicorp.com/consul/api-docs) for
the slice AINI calls: status/leader, acl/bootstrap, acl/policy, acl/token,
agent/service/register and deregister, agent/services, agent/checks, agent/check/update
(and pass, warn, fail), health/service,
health/checks, health/state, catalog/services, kv and snapshot.

What it keeps faithful, because AINI's behaviour depends on it:
- ACLs: bootstrap works once, then 403 "Permission denied: ACL bootstrap no longer allowed
  (reset index: N)"; the anonymous token is denied everything (403 "Permission denied: ..."
  on writes and key reads; lists are filtered, with X-Consul-Results-Filtered-By-ACLs);
  an unknown token is 403 "ACL not found"; tokens come from X-Consul-Token,
  `Authorization: Bearer` or ?token=; rules are the HCL subset
  `service_prefix "" { policy = "write" }` / `key "x" {...}` / `operator = "read"`, exact
  rules before the longest prefix, deny winning over every other grant;
- TTL checks turn critical ("TTL expired", with the last output) when no update came within
  their TTL, counted from registration; /v1/agent/check/update|pass|warn|fail need
  service:write on the check's service;
- HTTP and TCP checks REALLY run on their interval (minimum 1 s, timeout default 10 s): a
  2xx answer is passing, 429 warning, anything else or no answer critical; a TCP connect
  that succeeds is passing. A stopped container therefore turns its check critical.
  DeregisterCriticalServiceAfter (minimum 1 minute) removes a service that stays critical;
- KV: base64 `Value`, Flags, CreateIndex/ModifyIndex, ?cas, ?recurse, ?keys with
  ?separator, ?raw, 404 for a missing key, `true`/`false` answers to writes.

State (ACLs, services and checks, KV) is a JSON file under `data_dir`, like the agent's
data directory; check results are not kept: after a restart checks start critical until
they run. Differences: no blocking queries (?index is ignored), one node, and a snapshot is
a gzip of the double's JSON state rather than a raft snapshot.

Stdlib only (Python 3.11): `serve()` runs it in-process for tests; double.py serves it in
the doubles image when AINI_DOUBLE=consul.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

try:  # a package in the tests; top-level modules beside double.py in the doubles image
    from . import api_http
except ImportError:
    import api_http  # type: ignore[no-redef]

Reply = api_http.Reply

STATE_FILE = "consul-double.json"
LEADER = "127.0.0.1:8300"
MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
MIN_INTERVAL = 1.0
MIN_DEREGISTER_AFTER = 60.0
MAX_VALUE = 512 * 1024
OUTPUT_MAX = 4096
LEVELS = {"read": 1, "list": 2, "write": 3}
KINDS = ("acl", "agent", "event", "key", "keyring", "node", "operator", "query", "service", "session", "mesh",
         "peering")



class ApiError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(status, message)
        self.status = status
        self.message = message


def as_json(data: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, (json.dumps(data, indent=2) + "\n").encode(), "application/json",
                 tuple((k.replace("_", "-"), v) for k, v in headers.items()))


def now() -> str:
    return datetime.now(UTC).isoformat()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def seconds(value: Any, field: str) -> float:
    """A Go duration ("10s", "1m30s") or a number of nanoseconds, as the agent accepts."""
    if value in (None, "", 0):
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1e9
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ApiError(400, f"Request decode failed: {field}: time: invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


# ------------------------------------------------------------------------------- ACL rules
# https://developer.hashicorp.com/consul/docs/security/acl/acl-rules


def parse_rules(text: str) -> dict[tuple[str, str], str]:
    """-> {(kind, name): policy}; kind is e.g. "key" or "key_prefix", top-level ones have name ""."""
    rules: dict[tuple[str, str], str] = {}

    def add(kind: str, name: str, policy: str) -> None:
        base = kind.removesuffix("_prefix")
        if base not in KINDS or policy not in (*LEVELS, "deny"):
            raise ApiError(400, f"Failed to parse ACL rules: invalid rule {kind} {name!r} = {policy!r}")
        old = rules.get((kind, name))
        rules[(kind, name)] = "deny" if "deny" in (old, policy) else max(old or policy, policy, key=LEVELS.get)

    if text.lstrip().startswith("{"):
        try:
            for kind, value in json.loads(text).items():
                if isinstance(value, str):
                    add(kind, "", value)
                else:
                    for name, body in value.items():
                        add(kind, name, body["policy"])
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise ApiError(400, f"Failed to parse ACL rules: {exc}") from None
        return rules
    clean = re.sub(r"(#|//)[^\n]*", "", text)
    for kind, name, body in re.findall(r'(\w+)\s+"([^"]*)"\s*\{([^}]*)\}', clean):
        policy = re.search(r'policy\s*=\s*"(\w+)"', body)
        add(kind, name, policy.group(1) if policy else "?")
    rest = re.sub(r'(\w+)\s+"([^"]*)"\s*\{([^}]*)\}', "", clean)
    for kind, policy in re.findall(r'(\w+)\s*=\s*"(\w+)"', rest):
        add(kind, "", policy)
    if not rules and rest.strip():
        raise ApiError(400, "Failed to parse ACL rules: no rules found")
    return rules


class Authorizer:
    def __init__(self, accessor: str, rule_texts: list[str], management: bool):
        self.accessor = accessor
        self.management = management
        self.rules: dict[tuple[str, str], str] = {}
        for text in rule_texts:
            for key, policy in parse_rules(text).items():
                old = self.rules.get(key)
                self.rules[key] = "deny" if "deny" in (old, policy) else max(old or policy, policy, key=LEVELS.get)

    def allowed(self, kind: str, name: str, level: str) -> bool:
        if self.management:
            return True
        if kind in ("acl", "operator", "keyring", "mesh", "peering"):
            granted = self.rules.get((kind, ""))
        else:
            granted = self.rules.get((kind, name))
            if granted is None:
                prefixes = [p for (k, p) in self.rules if k == kind + "_prefix" and name.startswith(p)]
                granted = self.rules[(kind + "_prefix", max(prefixes, key=len))] if prefixes else None
        return granted not in (None, "deny") and LEVELS[granted] >= LEVELS[level]

    def require(self, kind: str, name: str, level: str) -> None:
        if not self.allowed(kind, name, level):
            on = f' on "{name}"' if kind not in ("acl", "operator", "keyring", "mesh", "peering") else ""
            raise ApiError(403, f"Permission denied: token with AccessorID '{self.accessor}' lacks permission "
                                f"'{kind}:{level}'{on}")


# ------------------------------------------------------------------------------- checks


class CheckRunner:
    """One thread per HTTP/TCP check: runs it every Interval and reports to the double."""

    def __init__(self, double: ConsulDouble, check_id: str, definition: dict[str, Any]):
        self.double, self.check_id, self.definition = double, check_id, definition
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"consul-check-{check_id}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        interval = max(MIN_INTERVAL, self.definition["interval"])
        # Upstream staggers the first run randomly inside the interval to spread load.
        if self.stop.wait(random.uniform(0, min(interval, 1.0))):
            return
        while not self.stop.is_set():
            status, output = self._run()
            self.double.report(self.check_id, status, output)
            if self.stop.wait(interval):
                return

    def _run(self) -> tuple[str, str]:
        d, timeout = self.definition, self.definition["timeout"] or 10.0
        if d.get("HTTP"):
            method = d.get("Method") or "GET"
            headers = {k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in (d.get("Header") or {}).items()}
            headers.setdefault("User-Agent", "Consul Health Check")
            headers.setdefault("Accept", "text/plain, text/*, */*")
            request = urllib.request.Request(d["HTTP"], method=method, headers=headers,
                                             data=(d.get("Body") or "").encode() or None)
            context = ssl._create_unverified_context() if d.get("TLSSkipVerify") else None
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                    code, reason, body = response.status, response.reason, response.read(OUTPUT_MAX)
            except urllib.error.HTTPError as exc:
                code, reason, body = exc.code, exc.reason, exc.read(OUTPUT_MAX)
            except (OSError, ValueError) as exc:
                return "critical", f'{method.title()} "{d["HTTP"]}": {exc}'
            output = f"HTTP {method} {d['HTTP']}: {code} {reason} Output: {body.decode(errors='replace')}"
            status = "passing" if 200 <= code < 300 else "warning" if code == 429 else "critical"
            return status, output
        host, _, port = d["TCP"].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return "passing", f"TCP connect {d['TCP']}: Success"
        except (OSError, ValueError) as exc:
            return "critical", f"dial tcp {d['TCP']}: {exc}"


# ------------------------------------------------------------------------------- double


class ConsulDouble:
    """The state machine behind the HTTP API; `handle` is the whole API."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, node: str = "aini-consul",
                 datacenter: str = "aini", acl_enabled: bool = True):
        self.file = Path(data_dir) / STATE_FILE if data_dir else None
        self.node, self.datacenter, self.acl_enabled = node, datacenter, acl_enabled
        self.node_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, node))
        self.lock = threading.RLock()
        self.results: dict[str, dict[str, Any]] = {}  # check id -> Status, Output, counters (memory only)
        self.runners: dict[str, CheckRunner] = {}
        self.state: dict[str, Any] = self._load()
        for check_id in self.state["checks"]:
            self._start(check_id)

    # --- persistence ------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self.file and self.file.exists():
            return json.loads(self.file.read_text())
        return {"index": 1, "acl": {"bootstrapped": False, "reset_index": 0}, "policies": {
            MANAGEMENT_POLICY_ID: {"ID": MANAGEMENT_POLICY_ID, "Name": "global-management",
                                   "Description": "Builtin Policy that grants unlimited access",
                                   "Rules": "", "Datacenters": None, "CreateIndex": 1, "ModifyIndex": 1}},
            "tokens": {}, "services": {}, "checks": {}, "kv": {}}

    def _save(self) -> None:
        if not self.file:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.file)

    def _next_index(self) -> int:
        self.state["index"] += 1
        return self.state["index"]

    def close(self) -> None:
        with self.lock:
            runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            runner.stop.set()
        for runner in runners:
            runner.thread.join(timeout=15)

    # --- entry point --------------------------------------------------------------------
    def handle(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes, client: str = "") -> Reply:
        """`client` (the caller's address) is not used: Consul's ACLs go by token alone."""
        with self.lock:
            try:
                reply = self._route(method.upper(), path, query, headers, body)
            except ApiError as exc:
                reply = Reply(exc.status, (exc.message + "\n").encode() if exc.message else b"",
                              "text/plain; charset=utf-8")
            except Exception as exc:  # noqa: BLE001 - upstream answers 500 with the error text
                reply = Reply(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain; charset=utf-8")
            common = (("X-Consul-Index", str(self.state["index"])), ("X-Consul-Knownleader", "true"),
                      ("X-Consul-Lastcontact", "0"), ("X-Consul-Default-Acl-Policy", "deny"))
            return reply._replace(headers=reply.headers + common)

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes) -> Reply:
        def one(name: str) -> str | None:
            return query.get(name, [None])[0]

        if path == "/v1/status/leader":
            return as_json(LEADER)
        if path == "/v1/status/peers":
            return as_json([LEADER])
        if path == "/v1/acl/bootstrap":
            self._method(method, "PUT", "POST")
            return self.acl_bootstrap(self._json(body, dict) if body.strip() else {})
        authz = self._authorizer(headers, one("token"))
        if path.startswith("/v1/kv"):
            return self.kv(method, unquote(path[len("/v1/kv"):]).lstrip("/"), query, body, authz)
        if path == "/v1/agent/service/register":
            self._method(method, "PUT")
            return self.register(self._json(body, dict), authz, "replace-existing-checks" in query)
        if path.startswith("/v1/agent/service/deregister/"):
            self._method(method, "PUT")
            return self.deregister(unquote(path.rsplit("/", 1)[1]), authz)
        if path == "/v1/agent/services":
            return self._filtered({sid: self._agent_service(s) for sid, s in self.state["services"].items()
                                   if authz.allowed("service", s["Service"], "read")},
                                  len(self.state["services"]))
        if path.startswith("/v1/agent/service/"):
            service = self.state["services"].get(unquote(path.rsplit("/", 1)[1]))
            if service is None:
                raise ApiError(404, "unknown service ID")
            authz.require("service", service["Service"], "read")
            return as_json(self._agent_service(service))
        if path.startswith("/v1/agent/check/update/"):
            self._method(method, "PUT")
            update = self._json(body, dict)
            return self.ttl_update(unquote(path.rsplit("/", 1)[1]), str(update.get("Status", "")),
                                   str(update.get("Output", "")), authz)
        if m := re.fullmatch(r"/v1/agent/check/(pass|warn|fail)/(.+)", path):
            self._method(method, "PUT")
            status = {"pass": "passing", "warn": "warning", "fail": "critical"}[m.group(1)]
            return self.ttl_update(unquote(m.group(2)), status, one("note") or "", authz)
        if path == "/v1/agent/checks":
            checks = {c["CheckID"]: c for c in self._checks() if authz.allowed("service", c["ServiceName"], "read")}
            return self._filtered(checks, len(self.state["checks"]))
        if path.startswith("/v1/health/service/"):
            return self.health_service(unquote(path.rsplit("/", 1)[1]), "passing" in query, authz)
        if path.startswith("/v1/health/checks/"):
            name = unquote(path.rsplit("/", 1)[1])
            visible = authz.allowed("service", name, "read") and authz.allowed("node", self.node, "read")
            checks = [c for c in self._checks() if c["ServiceName"] == name]
            return self._filtered(checks if visible else [], len(checks))
        if path.startswith("/v1/health/state/"):
            state = path.rsplit("/", 1)[1]
            if state not in ("any", "passing", "warning", "critical"):
                raise ApiError(400, f"Bad state: {state}")
            every = [self._serf_check(), *self._checks()]
            allowed = [c for c in every if authz.allowed("node", self.node, "read")
                       and (not c["ServiceName"] or authz.allowed("service", c["ServiceName"], "read"))]
            return self._filtered([c for c in allowed if state in ("any", c["Status"])], len(allowed) != len(every))
        if path == "/v1/catalog/services":
            names: dict[str, list[str]] = {}
            for s in self.state["services"].values():
                if authz.allowed("service", s["Service"], "read"):
                    names.setdefault(s["Service"], [])
                    names[s["Service"]] = sorted(set(names[s["Service"]]) | set(s["Tags"]))
            return as_json(names)
        if path.startswith("/v1/acl/"):
            return self.acl(method, path[len("/v1/acl/"):], body, authz)
        if path == "/v1/snapshot":
            # agent/consul/snapshot_endpoint.go: one ACL sense for save and restore, the
            # authorizer's Snapshot(), which is `acl = "write"` (acl/policy_authorizer.go):
            # "reading gets you all the ACLs and you could escalate from there".
            self._method(method, "GET", "PUT")
            authz.require("acl", "", "write")
            if method == "GET":
                return Reply(200, gzip.compress(json.dumps(self.state, sort_keys=True).encode()), "application/x-gzip")
            try:
                state = json.loads(gzip.decompress(body))
            except (OSError, ValueError, EOFError):
                raise ApiError(500, "failed to read snapshot: not a snapshot archive") from None
            for check_id in list(self.state["checks"]):
                self._drop_check(check_id)
            self.state = state
            for check_id in self.state["checks"]:
                self._start(check_id)
            self._save()
            return Reply(200, b"")
        raise ApiError(404, f"404 page not found ({path})")

    @staticmethod
    def _method(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise ApiError(405, f"method {method} not allowed")

    @staticmethod
    def _json(body: bytes, kind: type) -> Any:
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            raise ApiError(400, f"Request decode failed: {exc}") from None
        if not isinstance(data, kind):
            raise ApiError(400, "Request decode failed: unexpected JSON type")
        return data

    @staticmethod
    def _filtered(data: Any, hidden: int | bool) -> Reply:
        """Lists drop what the token may not see; the header says that happened."""
        count = len(data) if isinstance(data, (list, dict)) else 0
        was_filtered = hidden is True or (hidden is not False and count < hidden)
        return as_json(data, X_Consul_Results_Filtered_By_ACLs="true") if was_filtered else as_json(data)

    # --- ACL ----------------------------------------------------------------------------
    # https://developer.hashicorp.com/consul/api-docs/acl
    def _authorizer(self, headers: Mapping[str, str], query_token: str | None) -> Authorizer:
        if not self.acl_enabled:
            return Authorizer("", [], management=True)
        auth = headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        secret = headers.get("X-Consul-Token") or bearer or query_token
        if not secret:
            return Authorizer(ANONYMOUS_ACCESSOR, [], management=False)
        token = next((t for t in self.state["tokens"].values() if t["SecretID"] == secret), None)
        if token is None or (token.get("ExpirationTime") and token["ExpirationTime"] < now()):
            raise ApiError(403, "ACL not found")
        policies = [self.state["policies"].get(p["ID"]) for p in token["Policies"]]
        return Authorizer(token["AccessorID"], [p["Rules"] for p in policies if p],
                          management=any(p and p["ID"] == MANAGEMENT_POLICY_ID for p in policies))

    def acl_bootstrap(self, data: dict[str, Any]) -> Reply:
        acl = self.state["acl"]
        if acl["bootstrapped"]:
            raise ApiError(403, f"Permission denied: ACL bootstrap no longer allowed (reset index: {acl['reset_index']})")
        token = self._new_token({"Description": "Bootstrap Token (Global Management)",
                                 "Policies": [{"ID": MANAGEMENT_POLICY_ID}],
                                 "SecretID": data.get("BootstrapSecret")})
        acl.update(bootstrapped=True, reset_index=token["CreateIndex"])
        self._save()
        return as_json({**token, "ID": token["SecretID"]})  # "ID": the deprecated legacy field

    def _new_token(self, data: dict[str, Any]) -> dict[str, Any]:
        links = []
        for link in data.get("Policies") or []:
            policy = self.state["policies"].get(link.get("ID", "")) or next(
                (p for p in self.state["policies"].values() if p["Name"] == link.get("Name")), None)
            if policy is None:
                raise ApiError(400, f"Invalid Policy: cannot find policy {link.get('ID') or link.get('Name')!r}")
            links.append({"ID": policy["ID"], "Name": policy["Name"]})
        index = self._next_index()
        token = {"AccessorID": data.get("AccessorID") or str(uuid.uuid4()),
                 "SecretID": data.get("SecretID") or str(uuid.uuid4()),
                 "Description": data.get("Description", ""), "Policies": links, "Local": bool(data.get("Local")),
                 "CreateTime": now(), "Hash": base64.b64encode(os.urandom(32)).decode(),
                 "CreateIndex": index, "ModifyIndex": index}
        if data.get("ExpirationTTL"):
            expires = time.time() + seconds(data["ExpirationTTL"], "ExpirationTTL")
            token["ExpirationTime"] = datetime.fromtimestamp(expires, UTC).isoformat()
        self.state["tokens"][token["AccessorID"]] = token
        return token

    def acl(self, method: str, rest: str, body: bytes, authz: Authorizer) -> Reply:
        policies, tokens = self.state["policies"], self.state["tokens"]
        if rest == "policies":
            authz.require("acl", "", "read")
            return as_json([{k: v for k, v in p.items() if k != "Rules"} for p in policies.values()])
        if rest == "tokens":
            authz.require("acl", "", "read")
            return as_json([{k: v for k, v in t.items() if k != "SecretID"} for t in tokens.values()])
        if rest == "token/self":
            token = next((t for t in tokens.values() if t["AccessorID"] == authz.accessor), None)
            if token is None:
                raise ApiError(403, "ACL not found")
            return as_json(token)
        if rest == "policy" or rest.startswith("policy/"):
            return self._policy_api(method, rest[len("policy"):].lstrip("/"), body, authz)
        if rest == "token" or rest.startswith("token/"):
            accessor = rest[len("token"):].lstrip("/")
            if method == "PUT" and not accessor:
                authz.require("acl", "", "write")
                token = self._new_token(self._json(body, dict))
                self._save()
                return as_json(token)
            token = tokens.get(accessor)
            if token is None:
                raise ApiError(403, "ACL not found")
            if method == "GET":
                authz.require("acl", "", "read")
                shown = authz.allowed("acl", "", "write")
                return as_json(token if shown else {**token, "SecretID": "<hidden>"})
            authz.require("acl", "", "write")
            if method == "PUT":  # update: description and policies; the secret stays
                update = self._json(body, dict)
                fresh = self._new_token({**update, "AccessorID": accessor, "SecretID": token["SecretID"]})
                fresh.update(CreateIndex=token["CreateIndex"], CreateTime=token["CreateTime"])
                self._save()
                return as_json(fresh)
            if method == "DELETE":
                del tokens[accessor]
                self._next_index()
                self._save()
                return as_json(True)
            raise ApiError(405, f"method {method} not allowed")
        raise ApiError(404, f"404 page not found (/v1/acl/{rest})")

    def _policy_api(self, method: str, ref: str, body: bytes, authz: Authorizer) -> Reply:
        policies = self.state["policies"]
        if ref.startswith("name/"):
            policy = next((p for p in policies.values() if p["Name"] == ref[5:]), None)
        else:
            policy = policies.get(ref) if ref else None
        if method == "GET":
            authz.require("acl", "", "read")
            if policy is None:
                raise ApiError(404, "Requested policy does not exist: ACL not found")
            return as_json(policy)
        authz.require("acl", "", "write")
        if method == "DELETE":
            if policy and policy["ID"] == MANAGEMENT_POLICY_ID:
                raise ApiError(403, "Permission denied: Delete of builtin global-management policy not allowed")
            if policy:
                del policies[policy["ID"]]
                self._next_index()
                self._save()
            return as_json(True)
        if method != "PUT":
            raise ApiError(405, f"method {method} not allowed")
        data = self._json(body, dict)
        name = data.get("Name", "")
        if not re.fullmatch(r"[A-Za-z0-9\-_]{1,128}", name):
            raise ApiError(400, "Invalid Policy: invalid Name")
        parse_rules(data.get("Rules", ""))
        clash = next((p for p in policies.values() if p["Name"] == name and p is not policy), None)
        if clash:  # upstream reports this RPC error as a 500
            raise ApiError(500, f'Invalid Policy: A Policy with Name "{name}" already exists')
        if ref and policy is None:
            raise ApiError(400, f"cannot find policy {ref}")
        index = self._next_index()
        entry = policy or {"ID": str(uuid.uuid4()), "CreateIndex": index}
        entry.update(Name=name, Description=data.get("Description", ""), Rules=data.get("Rules", ""),
                     Datacenters=data.get("Datacenters"), ModifyIndex=index,
                     Hash=base64.b64encode(hashlib.sha256(data.get("Rules", "").encode()).digest()).decode())
        policies[entry["ID"]] = entry
        self._save()
        return as_json(entry)

    # --- services and checks ----------------------------------------------------------------
    # https://developer.hashicorp.com/consul/api-docs/agent/service
    def register(self, data: dict[str, Any], authz: Authorizer, replace_checks: bool) -> Reply:
        name = data.get("Name")
        if not name:
            raise ApiError(400, "Missing service name")
        authz.require("service", name, "write")
        service_id = data.get("ID") or name
        definitions = [data["Check"]] if data.get("Check") else []
        definitions += data.get("Checks") or []
        checks = {}
        for number, raw in enumerate(definitions, start=1):
            check_id = raw.get("CheckID") or raw.get("ID") or (
                f"service:{service_id}" if len(definitions) == 1 else f"service:{service_id}:{number}")
            checks[check_id] = self._check_definition(raw, service_id, name)
        index = self._next_index()
        old = self.state["services"].get(service_id)
        self.state["services"][service_id] = {
            "ID": service_id, "Service": name, "Tags": list(data.get("Tags") or []),
            "Address": data.get("Address", ""), "Port": int(data.get("Port") or 0), "Meta": data.get("Meta") or {},
            "Weights": data.get("Weights") or {"Passing": 1, "Warning": 1},
            "EnableTagOverride": bool(data.get("EnableTagOverride")),
            "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index}
        if replace_checks:
            for check_id in [c for c, d in self.state["checks"].items() if d["ServiceID"] == service_id]:
                if check_id not in checks:
                    self._drop_check(check_id)
        for check_id, definition in checks.items():
            self._drop_check(check_id)
            self.state["checks"][check_id] = definition
            self._start(check_id)
        self._save()
        return Reply(200)

    def _check_definition(self, raw: dict[str, Any], service_id: str, service_name: str) -> dict[str, Any]:
        if not (raw.get("HTTP") or raw.get("TCP") or raw.get("TTL")):
            raise ApiError(400, "Invalid check: test double: only HTTP, TCP and TTL checks are implemented")
        interval = seconds(raw.get("Interval"), "Interval")
        if (raw.get("HTTP") or raw.get("TCP")) and interval <= 0:
            raise ApiError(400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks")
        status = raw.get("Status") or "critical"
        if status not in ("passing", "warning", "critical"):
            raise ApiError(400, f"Invalid check: invalid initial status {status!r}")
        return {**raw, "ServiceID": service_id, "ServiceName": service_name, "Status": status,
                "Name": raw.get("Name") or f"Service '{service_name}' check",
                "interval": interval, "timeout": seconds(raw.get("Timeout"), "Timeout"),
                "ttl": seconds(raw.get("TTL"), "TTL") if raw.get("TTL") else 0.0,
                "deregister_after": max(MIN_DEREGISTER_AFTER, seconds(raw.get("DeregisterCriticalServiceAfter"),
                                                                      "DeregisterCriticalServiceAfter"))
                if raw.get("DeregisterCriticalServiceAfter") else 0.0}

    def _start(self, check_id: str) -> None:
        definition = self.state["checks"][check_id]
        self.results[check_id] = {"Status": definition["Status"], "Output": "", "since": time.monotonic(),
                                  "renewed": time.monotonic(), "ok": 0, "failed": 0,
                                  "ModifyIndex": self.state["index"]}
        if definition.get("HTTP") or definition.get("TCP"):
            self.runners[check_id] = CheckRunner(self, check_id, definition)

    def _expire(self, definition: dict[str, Any], result: dict[str, Any]) -> None:
        """agent/checks/check.go CheckTTL: a timer armed at registration and reset by every
        update; when it fires the check is critical, "TTL expired" with the last output."""
        if definition.get("ttl") and time.monotonic() - result["renewed"] >= definition["ttl"] \
                and not result.get("expired"):
            last = result.get("last_output", "")
            result.update(Status="critical", expired=True, since=time.monotonic(), ModifyIndex=self._next_index(),
                          Output=f"TTL expired (last output before timeout follows): {last}" if last else "TTL expired")

    def ttl_update(self, check_id: str, status: str, output: str, authz: Authorizer) -> Reply:
        """agent_endpoint.go AgentCheckUpdate / agentCheckPass|Warn|Fail: service:write on
        the check's service (node:write for a node's own check), TTL checks only."""
        definition = self.state["checks"].get(check_id)
        if definition is None:
            raise ApiError(404, f'Unknown check ID "{check_id}"')
        if definition["ServiceName"]:
            authz.require("service", definition["ServiceName"], "write")
        else:
            authz.require("node", self.node, "write")
        if status not in ("passing", "warning", "critical"):
            raise ApiError(400, f"Invalid check status: '{status}'")
        if not definition.get("ttl"):
            raise ApiError(500, f'CheckID "{check_id}" does not have associated TTL')
        result = self.results[check_id]
        output = output[:OUTPUT_MAX]
        if status != result["Status"]:
            result.update(Status=status, since=time.monotonic())
        result.update(Output=output, last_output=output, renewed=time.monotonic(), expired=False,
                      ModifyIndex=self._next_index())
        return Reply(200, b"")

    def _drop_check(self, check_id: str) -> None:
        self.state["checks"].pop(check_id, None)
        self.results.pop(check_id, None)
        runner = self.runners.pop(check_id, None)
        if runner:
            runner.stop.set()

    def report(self, check_id: str, status: str, output: str) -> None:
        """A check run finished (called from its thread)."""
        with self.lock:
            result, definition = self.results.get(check_id), self.state["checks"].get(check_id)
            if result is None or definition is None:
                return
            result["ok"], result["failed"] = ((result["ok"] + 1, 0) if status == "passing" else (0, result["failed"] + 1))
            # SuccessBeforePassing / FailuresBeforeCritical: hold the old status until the streak is long enough
            if status == "passing" and result["ok"] < int(definition.get("SuccessBeforePassing") or 0):
                status = result["Status"]
            if status != "passing" and result["failed"] < int(definition.get("FailuresBeforeCritical") or 0):
                status = result["Status"]
            if status != result["Status"]:
                result.update(Status=status, since=time.monotonic(), ModifyIndex=self._next_index())
            result["Output"] = output[:OUTPUT_MAX]
            after = definition["deregister_after"]
            if after and status == "critical" and time.monotonic() - result["since"] >= after:
                self._remove_service(definition["ServiceID"])
                self._save()

    def deregister(self, service_id: str, authz: Authorizer) -> Reply:
        service = self.state["services"].get(service_id)
        if service is None:
            raise ApiError(404, f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                                "not the service name.")
        authz.require("service", service["Service"], "write")
        self._remove_service(service_id)
        self._save()
        return Reply(200)

    def _remove_service(self, service_id: str) -> None:
        self.state["services"].pop(service_id, None)
        for check_id in [c for c, d in self.state["checks"].items() if d["ServiceID"] == service_id]:
            self._drop_check(check_id)
        self._next_index()

    # --- JSON shapes ------------------------------------------------------------------------
    # https://developer.hashicorp.com/consul/api-docs/health
    def _check_json(self, check_id: str) -> dict[str, Any]:
        d, r = self.state["checks"][check_id], self.results[check_id]
        self._expire(d, r)
        service = self.state["services"].get(d["ServiceID"], {})
        kind = "http" if d.get("HTTP") else "tcp" if d.get("TCP") else "ttl"
        return {"Node": self.node, "CheckID": check_id, "Name": d["Name"], "Status": r["Status"],
                "Notes": d.get("Notes", ""), "Output": r["Output"], "ServiceID": d["ServiceID"],
                "ServiceName": d["ServiceName"], "ServiceTags": service.get("Tags", []), "Type": kind,
                "Interval": d.get("Interval", ""), "Timeout": d.get("Timeout", ""), "ExposedPort": 0,
                "Definition": {}, "CreateIndex": service.get("CreateIndex", 0), "ModifyIndex": r["ModifyIndex"]}

    def _serf_check(self) -> dict[str, Any]:
        return {"Node": self.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
                "ServiceTags": [], "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
                "CreateIndex": 1, "ModifyIndex": 1}

    def _checks(self) -> list[dict[str, Any]]:
        return [self._check_json(c) for c in sorted(self.state["checks"])]

    def _agent_service(self, s: dict[str, Any]) -> dict[str, Any]:
        return {"ID": s["ID"], "Service": s["Service"], "Tags": s["Tags"], "Meta": s["Meta"], "Port": s["Port"],
                "Address": s["Address"], "Weights": s["Weights"], "EnableTagOverride": s["EnableTagOverride"],
                "Datacenter": self.datacenter}

    def health_service(self, name: str, passing_only: bool, authz: Authorizer) -> Reply:
        node = {"ID": self.node_id, "Node": self.node, "Address": "127.0.0.1", "Datacenter": self.datacenter,
                "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
                "Meta": {"consul-network-segment": ""}, "CreateIndex": 1, "ModifyIndex": 1}
        entries = []
        for s in self.state["services"].values():
            if s["Service"] != name:
                continue
            checks = [self._check_json(c) for c, d in sorted(self.state["checks"].items())
                      if d["ServiceID"] == s["ID"]] + [self._serf_check()]
            service = {**self._agent_service(s), "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}
            service.pop("Datacenter")
            entries.append({"Node": node, "Service": service, "Checks": checks})
        if passing_only:
            entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
        visible = authz.allowed("service", name, "read") and authz.allowed("node", self.node, "read")
        return self._filtered(entries if visible else [], len(entries))

    # --- KV ---------------------------------------------------------------------------------
    # https://developer.hashicorp.com/consul/api-docs/kv
    def kv(self, method: str, key: str, query: Mapping[str, list[str]], body: bytes, authz: Authorizer) -> Reply:
        store = self.state["kv"]
        if method == "GET":
            if "keys" in query:
                authz.require("key", key, "list")
                separator = query.get("separator", [""])[0]
                found = set()
                for k in store:
                    if k.startswith(key) and authz.allowed("key", k, "read"):
                        cut = k.find(separator, len(key)) if separator else -1
                        found.add(k[: cut + len(separator)] if cut >= 0 else k)
                if not found:
                    raise ApiError(404)
                return as_json(sorted(found))
            if "recurse" in query:
                entries = [self._kv_json(store[k]) for k in sorted(store)
                           if k.startswith(key) and authz.allowed("key", k, "read")]
                if not entries:
                    raise ApiError(404)
                return as_json(entries)
            authz.require("key", key, "read")
            if key not in store:
                raise ApiError(404)
            if "raw" in query:
                return Reply(200, base64.b64decode(store[key]["Value"] or ""), "text/plain; charset=utf-8",
                             (("X-Content-Type-Options", "nosniff"),))
            return as_json([self._kv_json(store[key])])
        if method == "PUT":
            if not key:
                raise ApiError(400, "Missing key name")
            authz.require("key", key, "write")
            if len(body) > MAX_VALUE:
                raise ApiError(413, f"Request body({len(body)} bytes) too large, max size: {MAX_VALUE} bytes.")
            old = store.get(key)
            cas = query.get("cas", [None])[0]
            if cas is not None and int(cas) != (old["ModifyIndex"] if old else 0):
                return as_json(False)
            index = self._next_index()
            store[key] = {"Key": key, "Flags": int(query.get("flags", [old["Flags"] if old else 0])[0]),
                          "Value": base64.b64encode(body).decode() if body else None, "LockIndex": 0,
                          "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index}
            self._save()
            return as_json(True)
        if method == "DELETE":
            recurse = "recurse" in query
            authz.require("key", key, "write")
            cas = query.get("cas", [None])[0]
            if cas is not None and (int(cas) == 0 or key not in store or store[key]["ModifyIndex"] != int(cas)):
                return as_json(False)
            for k in [k for k in store if (k.startswith(key) if recurse else k == key)]:
                del store[k]
            self._next_index()
            self._save()
            return as_json(True)
        raise ApiError(405, f"method {method} not allowed")

    @staticmethod
    def _kv_json(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: entry[k] for k in ("LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex")}


# ------------------------------------------------------------------------------- serving


class Handler(api_http.Handler):
    server_version = "consul-test-double"


def serve(data_dir: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 0,
          **options: Any) -> api_http.DoubleServer:
    """Start the double on a thread; `server.url` is its address, `server.stop()` ends it
    (and its check threads)."""
    return api_http.serve(ConsulDouble(data_dir, **options), Handler, "consul-double", host, port)
