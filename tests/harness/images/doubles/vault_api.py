"""TEST DOUBLE of the HashiCorp Vault / OpenBao HTTP API. Never shipped, never a real Vault.

Written from the upstream API documentation (developer.hashicorp.com/vault/api-docs) for
the slice AINI calls: sys/health, sys/init, sys/seal-status, sys/unseal, sys/seal,
sys/mounts, sys/auth, sys/policies/acl, sys/audit, sys/storage/raft/snapshot, auth/token
(lookup-self, revoke-self, create), an AppRole auth method (role, role-id, secret-id,
login) and KV version 2 (config, data, metadata, delete/undelete/destroy, LIST).

What it keeps faithful, because AINI's behaviour depends on it:
- status codes: health 200 active / 429 standby / 501 not initialised / 503 sealed, with
  the documented query parameters; 400 "Vault is already initialized"; 503 "Vault is
  sealed" for every data path while sealed; 403 "permission denied" without a valid token;
- a restart comes back SEALED: the seal state lives only in memory, everything else in a
  JSON file under `data_dir` (the container's volume);
- unseal key shares, threshold, progress and reset; a wrong share is only detected when
  the threshold is reached, as with Shamir upstream;
- ACL policies (an HCL subset: `path "..." { capabilities = [...] }`) with exact, `*` and
  `+` matching and the documented priority rules; `sudo` on root-protected paths;
- AppRole tokens carry the role's policies, TTL and use count;
- audit devices: a `file` device on `stdout` prints one JSON line per request with the
  token HMAC-ed; OpenBao refuses API-made devices and takes them from its configuration.

It is not a secure store: the state file holds everything in plaintext (tokens and
secret IDs only as SHA-256), because it only ever holds test data.

Stdlib only (Python 3.11): `serve()` runs it in-process for tests; double.py serves it in
the doubles image when AINI_DOUBLE=vault.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

try:  # a package in the tests; top-level modules beside double.py in the doubles image
    from . import api_http
except ImportError:
    import api_http  # type: ignore[no-redef]

Reply = api_http.Reply

VERSION = "1.21.4"
STATE_FILE = "vault-double.json"
ALL_CAPABILITIES = {"create", "read", "update", "patch", "delete", "list", "sudo", "deny"}
# Paths that need `sudo` besides the operation's capability (api-docs: "root-protected");
# a trailing slash marks a prefix. sys/storage/raft/snapshot is not one: api-docs/system/
# storage/raft lists `read` for a snapshot and `update` for a restore, nothing more.
ROOT_PROTECTED = ("sys/auth/", "sys/seal", "sys/audit", "sys/audit/", "sys/raw/", "sys/rotate",
                  "auth/token/accessors/")
SNAPSHOT_PATHS = ("sys/storage/raft/snapshot", "sys/storage/raft/snapshot-force")
DEFAULT_POLICY = """
# Vault's built-in "default" policy, reduced to the paths this double implements.
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
"""
DEFAULT_TOKEN_TTL = 768 * 3600  # Vault's default_lease_ttl (32 days)



class ApiError(Exception):
    def __init__(self, status: int, *errors: str):
        super().__init__(status, errors)
        self.status = status
        self.errors = list(errors)


def as_json(data: Any, status: int = 200) -> Reply:
    return Reply(status, (json.dumps(data) + "\n").encode())


def logical(data: Any = None, *, auth: Any = None, warnings: Any = None, status: int = 200) -> Reply:
    """The envelope every logical (non-sys-health) answer has upstream."""
    return as_json({"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
                    "data": data, "wrap_info": None, "warnings": warnings, "auth": auth}, status)


NO_CONTENT = Reply(204)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _in_cidrs(client: str, cidrs: list[str] | tuple[str, ...]) -> bool:
    """No CIDRs: any address. Upstream compares the connection's remote address."""
    if not cidrs:
        return True
    address = ipaddress.ip_address(client)
    return any(address in ipaddress.ip_network(c, strict=False) for c in cidrs)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> int:
    """Vault's durations: an integer of seconds or a Go duration string ("20m", "1h30m")."""
    if value in (None, ""):
        return 0
    if isinstance(value, bool):
        raise ApiError(400, f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ApiError(400, f"time: invalid duration {text!r}")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def token_string(prefix: str = "hvs.") -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


# ---------------------------------------------------------------------------- policies
# https://developer.hashicorp.com/vault/docs/concepts/policies


def parse_policy(text: str) -> dict[str, set[str]]:
    """`path "p" { capabilities = [...] }` blocks (HCL) or the JSON form -> {pattern: caps}."""
    if text.lstrip().startswith("{"):
        try:
            paths = json.loads(text).get("path", {})
            rules = {p: set(body.get("capabilities", [])) for p, body in paths.items()}
        except (ValueError, AttributeError) as exc:
            raise ApiError(400, f"failed to parse policy: {exc}") from None
    else:
        rules = {}
        clean = re.sub(r"(#|//)[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL))
        pos = 0
        for match in re.finditer(r'path\s+"([^"]*)"\s*\{', clean):
            if match.start() < pos:
                continue
            depth, end = 1, match.end()
            while depth and end < len(clean):
                depth += {"{": 1, "}": -1}.get(clean[end], 0)
                end += 1
            if depth:
                raise ApiError(400, "failed to parse policy: unbalanced braces")
            body, pos = clean[match.end(): end - 1], end
            caps = re.search(r"capabilities\s*=\s*\[(.*?)\]", body, flags=re.DOTALL)
            legacy = re.search(r'policy\s*=\s*"(\w+)"', body)
            if caps:
                found = set(re.findall(r'"([^"]*)"', caps.group(1)))
            elif legacy:
                found = {"deny": {"deny"}, "read": {"read", "list"}, "sudo": ALL_CAPABILITIES - {"deny"},
                         "write": {"create", "read", "update", "patch", "delete", "list"}}.get(legacy.group(1), {"?"})
            else:
                raise ApiError(400, f"failed to parse policy: path {match.group(1)!r} has no capabilities")
            rules.setdefault(match.group(1), set()).update(found)
        leftover = re.sub(r'path\s+"[^"]*"\s*\{', "", clean)
        if not rules and leftover.strip():
            raise ApiError(400, "failed to parse policy: no path blocks")
    for pattern, caps in rules.items():
        if "*" in pattern[:-1]:
            raise ApiError(400, f"failed to parse policy: path {pattern!r}: '*' is only supported at the end")
        if caps - ALL_CAPABILITIES:
            raise ApiError(400, f"failed to parse policy: invalid capabilities {sorted(caps - ALL_CAPABILITIES)}")
    return rules


def pattern_matches(pattern: str, path: str) -> bool:
    prefix = pattern.endswith("*")
    pat = pattern[:-1] if prefix else pattern
    if "+" not in pat:
        return path.startswith(pat) if prefix else path == pat
    want, have = pat.split("/"), path.split("/")
    if len(have) < len(want) or (not prefix and len(have) != len(want)):
        return False
    for i, part in enumerate(want):
        last = prefix and i == len(want) - 1
        if part == "+":
            continue
        if not (have[i].startswith(part) if last else have[i] == part):
            return False
    return True


def _priority(pattern: str) -> tuple:
    """Higher sorts later: the documented rules 1-5, from most to least significant."""
    wild = [i for i, c in enumerate(pattern) if c in "+*"]
    return (wild[0] if wild else len(pattern), not pattern.endswith("*"),
            -pattern.split("/").count("+"), len(pattern), pattern)


def capabilities(policy_texts: list[str], path: str) -> set[str]:
    merged: dict[str, set[str]] = {}
    for text in policy_texts:
        for pattern, caps in parse_policy(text).items():
            merged.setdefault(pattern, set()).update(caps)
    if path in merged and "+" not in path:  # an exact rule beats every glob
        chosen = merged[path]
    else:
        matching = [p for p in merged if ("*" in p or "+" in p) and pattern_matches(p, path)]
        if not matching:
            return set()
        chosen = merged[max(matching, key=_priority)]
    return set() if "deny" in chosen else chosen


# ------------------------------------------------------------------------------ double


class VaultDouble:
    """The state machine behind the HTTP API; `handle` is the whole API."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, version: str = VERSION,
                 api_audit: bool = True, declared_audit: Mapping[str, dict[str, Any]] | None = None):
        """`api_audit` False: OpenBao (>= 2.4), which refuses audit devices made through the API;
        `declared_audit`: the `audit` stanzas of its configuration, path -> device."""
        self.version = version
        self.api_audit = api_audit
        self.declared_audit = dict(declared_audit or {})
        self.audit_salt = secrets.token_bytes(16)
        self.file = Path(data_dir) / STATE_FILE if data_dir else None
        self.lock = threading.RLock()
        self.sealed = True  # never persisted: a restart comes back sealed, like upstream
        self.standby = False  # a test knob: pretend to be an HA standby node
        self.parts: list[bytes] = []
        self.nonce = ""
        self.state: dict[str, Any] = self._load()

    # --- persistence ------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self.file and self.file.exists():
            return json.loads(self.file.read_text())
        return {"initialized": False}

    def _save(self) -> None:
        if not self.file:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.file)

    def close(self) -> None:
        pass

    # --- entry point --------------------------------------------------------------------
    def handle(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes, client: str = "127.0.0.1") -> Reply:
        """`client`: the caller's IP address (bound CIDRs of AppRoles and their tokens)."""
        with self.lock:
            try:
                if not path.startswith("/v1/"):
                    raise ApiError(404, f'no handler for route "{path}". route entry not found.')
                reply = self._route(method.upper(), path[4:], query, headers, body, client)
            except ApiError as exc:
                reply = as_json({"errors": exc.errors}, exc.status)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed input
                reply = as_json({"errors": [f"{type(exc).__name__}: {exc}"]}, 400)
            self.audit(method.upper(), query, path, headers, reply.status)
            return reply

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes, client: str) -> Reply:
        if path == "sys/health":
            return self.health(method, query)
        if path == "sys/seal-status":
            self._only(method, "GET")
            return as_json(self.seal_status())
        if path == "sys/init":
            return self.init(method, self._json(body))
        if path == "sys/unseal":
            self._only(method, "PUT", "POST")
            return self.unseal(self._json(body))
        if path == "sys/leader":
            return as_json({"ha_enabled": True, "is_self": not self.sealed, "leader_address": "",
                            "leader_cluster_address": "", "performance_standby": False})
        if self.sealed:
            raise ApiError(503, "Vault is sealed")
        data = {} if path in SNAPSHOT_PATHS else self._json(body)  # a restore's body is the snapshot itself
        if method in ("POST", "PUT") and path.startswith(self._approle_mounts()) and path.endswith("/login"):
            return self.approle_login(path.rsplit("/", 1)[0] + "/", data, client)
        op = self._operation(method, query)
        if op == "list" and not path.endswith("/"):
            path += "/"  # listing always operates on a prefix upstream, so do policies
        raw_token = headers.get("X-Vault-Token") or _bearer(headers.get("Authorization", ""))
        token = self._token(raw_token)
        if not _in_cidrs(client, token.get("bound_cidrs") or ()):
            raise ApiError(403, "permission denied")  # a token bound to other addresses
        if op in ("create", "update"):
            op = "update" if self._exists(path) else "create"
        self._use(raw_token, token)  # upstream spends a use even on a request it then denies
        self._authorize(token, path, op)
        if path in SNAPSHOT_PATHS and op == "update":
            return self.restore(body, force=path.endswith("-force"))
        return self._dispatch(op, path, query, headers, data, raw_token or "", token)

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise ApiError(405)

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"failed to parse JSON input: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "failed to parse JSON input: not an object")
        return data

    @staticmethod
    def _operation(method: str, query: Mapping[str, list[str]]) -> str:
        if method == "GET" and query.get("list", [""])[0] in ("true", "1"):
            return "list"
        ops = {"GET": "read", "HEAD": "read", "LIST": "list", "POST": "create", "PUT": "create",
               "DELETE": "delete", "PATCH": "patch"}
        if method not in ops:
            raise ApiError(405)
        return ops[method]

    # --- sys: health, init, seal ----------------------------------------------------------
    # https://developer.hashicorp.com/vault/api-docs/system/health
    def health(self, method: str, query: Mapping[str, list[str]]) -> Reply:
        self._only(method, "GET", "HEAD")

        # Upstream parses every code parameter first: a bad one is a 400 in any state.
        codes = {"uninitcode": 501, "sealedcode": 503, "standbycode": 429, "activecode": 200,
                 "drsecondarycode": 472, "performancestandbycode": 473, "removedcode": 530}
        for name in codes:
            value = query.get(name, [None])[0]
            if value is not None:
                if not value.isdigit():
                    raise ApiError(400, f"bad code value {value!r} for {name}")
                codes[name] = int(value)
        initialized = self.state["initialized"]
        if not initialized:
            status = codes["uninitcode"]
        elif self.sealed:
            status = codes["sealedcode"]
        elif self.standby and query.get("standbyok", ["false"])[0] not in ("", "true", "1"):
            status = codes["standbycode"]
        else:
            status = codes["activecode"]
        body = {"initialized": initialized, "sealed": self.sealed, "standby": self.standby,
                "performance_standby": False, "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled", "server_time_utc": int(time.time()),
                "version": self.version, "enterprise": False, "echo_duration_ms": 0, "clock_skew_ms": 0,
                "removed_from_cluster": False, "aini_double": "vault"}
        if initialized:
            body.update(cluster_name=self.state["cluster_name"], cluster_id=self.state["cluster_id"])
        reply = as_json(body, status)
        return reply._replace(body=b"") if method == "HEAD" else reply

    # https://developer.hashicorp.com/vault/api-docs/system/init
    def init(self, method: str, data: dict[str, Any]) -> Reply:
        if method == "GET":
            return as_json({"initialized": self.state["initialized"]})
        self._only(method, "PUT", "POST")
        if self.state["initialized"]:
            raise ApiError(400, "Vault is already initialized")
        shares, threshold = data.get("secret_shares"), data.get("secret_threshold")
        if not isinstance(shares, int) or not isinstance(threshold, int):
            raise ApiError(400, "invalid seal configuration: secret_shares and secret_threshold are required")
        problem = ("shares must be at least one" if shares < 1 else
                   "threshold must be at least one" if threshold < 1 else
                   "shares must be less than 256" if shares > 255 else
                   "threshold cannot be larger than shares" if threshold > shares else
                   "threshold must be greater than one for multiple shares" if shares > 1 and threshold == 1
                   else None)
        if problem:
            raise ApiError(400, f"invalid seal configuration: {problem}")
        # One share is the key itself (32 bytes); several are Shamir shares (32 + 1 bytes).
        keys = ([secrets.token_bytes(32)] if shares == 1 else
                [secrets.token_bytes(32) + bytes([i + 1]) for i in range(shares)])
        root = token_string()
        self.state = {
            "initialized": True, "cluster_name": f"vault-cluster-{secrets.token_hex(4)}",
            "cluster_id": str(uuid.uuid4()),
            "seal": {"n": shares, "t": threshold, "shares": [hashlib.sha256(k).hexdigest() for k in keys]},
            "tokens": {}, "policies": {"default": DEFAULT_POLICY},
            "mounts": {"cubbyhole/": self._mount("cubbyhole"), "identity/": self._mount("identity"),
                       "sys/": self._mount("system")},
            "auth": {"token/": self._mount("token")}, "kv": {}, "approle": {},
        }
        self._issue(root, policies=["root"], ttl=0, path="auth/token/root", display_name="root")
        self._save()
        return as_json({"keys": [k.hex() for k in keys], "keys_base64": [base64.b64encode(k).decode() for k in keys],
                        "root_token": root})

    # https://developer.hashicorp.com/vault/api-docs/system/seal-status
    def seal_status(self) -> dict[str, Any]:
        seal = self.state.get("seal", {"n": 0, "t": 0})
        status = {"type": "shamir", "initialized": self.state["initialized"], "sealed": self.sealed,
                  "t": seal["t"], "n": seal["n"], "progress": len(self.parts), "nonce": self.nonce,
                  "version": self.version, "build_date": "2026-01-01T00:00:00Z", "migration": False,
                  "recovery_seal": False, "storage_type": "raft", "removed_from_cluster": False}
        if self.state["initialized"] and not self.sealed:
            status.update(cluster_name=self.state["cluster_name"], cluster_id=self.state["cluster_id"])
        return status

    # https://developer.hashicorp.com/vault/api-docs/system/unseal
    def unseal(self, data: dict[str, Any]) -> Reply:
        fields = {k.lower(): v for k, v in data.items()}  # upstream decodes these case-insensitively
        if fields.get("reset"):
            if not self.sealed:
                raise ApiError(400, "vault is unsealed")
            self.parts, self.nonce = [], ""
            return as_json(self.seal_status())
        key = fields.get("key") or ""
        if not key:
            raise ApiError(400, "'key' must be specified in request body as JSON, or 'reset' set to true")
        try:
            raw = bytes.fromhex(key)
            if not 32 <= len(raw) <= 33:
                raise ValueError
        except ValueError:
            try:
                raw = base64.b64decode(key, validate=True)
            except ValueError:
                raise ApiError(400, "'key' must be a valid hex or base64 string") from None
        if not self.state["initialized"]:
            raise ApiError(400, "Vault is not initialized")
        if not self.sealed:
            return as_json(self.seal_status())
        if raw not in self.parts:  # the same share twice does not count twice
            self.parts.append(raw)
            self.nonce = self.nonce or str(uuid.uuid4())
        seal = self.state["seal"]
        if len(self.parts) >= seal["t"]:
            parts, self.parts, self.nonce = self.parts, [], ""
            if not all(hashlib.sha256(p).hexdigest() in seal["shares"] for p in parts):
                raise ApiError(400, "Unseal failed, invalid key")
            self.sealed = False
        return as_json(self.seal_status())

    # https://developer.hashicorp.com/vault/api-docs/system/storage/raft#restore-raft-using-a-snapshot
    def restore(self, body: bytes, *, force: bool) -> Reply:
        """The state replaced by a snapshot's. Without -force upstream refuses a snapshot whose
        keyring is another cluster's; the double compares cluster ids."""
        try:
            state = json.loads(gzip.decompress(body))
        except (OSError, ValueError, EOFError):
            raise ApiError(400, "failed to read snapshot file: not a snapshot") from None
        if not isinstance(state, dict) or not state.get("initialized"):
            raise ApiError(400, "failed to read snapshot file: not a snapshot")
        other = state.get("cluster_id") != self.state.get("cluster_id")
        if not force and other:
            raise ApiError(400, "could not verify hash file, possibly the snapshot is using a different set of "
                                "unseal keys; use the snapshot-force API to bypass this check")
        self.state = state
        self._save()
        if other:  # another keyring: upstream (Shamir) seals itself; only the snapshot's own keys unseal it
            self.sealed, self.parts, self.nonce = True, [], ""
        return NO_CONTENT

    # --- tokens and ACLs ---------------------------------------------------------------
    def _issue(self, raw: str, *, policies: list[str], ttl: int, path: str, display_name: str,
               num_uses: int = 0, meta: dict[str, str] | None = None, period: int = 0) -> dict[str, Any]:
        ttl = period or ttl  # a periodic token's TTL is its period, renewed to it each time
        entry = {"accessor": token_string("")[:24], "policies": sorted(set(policies)), "ttl": ttl,
                 "expire": time.time() + ttl if ttl else None, "num_uses": num_uses, "path": path,
                 "display_name": display_name, "meta": meta, "creation_time": int(time.time()),
                 "issue_time": now(), "period": period}
        self.state["tokens"][sha(raw)] = entry
        return entry

    def _token(self, raw: str | None) -> dict[str, Any]:
        entry = self.state["tokens"].get(sha(raw)) if raw else None
        if entry and entry["expire"] is not None and entry["expire"] < time.time():
            del self.state["tokens"][sha(raw or "")]
            self._save()
            entry = None
        if entry is None:
            raise ApiError(403, "permission denied")
        return entry

    def _use(self, raw: str | None, token: dict[str, Any]) -> None:
        # token_num_uses: the request that spends the last use still succeeds
        if token["num_uses"] > 0:
            token["num_uses"] -= 1
            if token["num_uses"] == 0:
                del self.state["tokens"][sha(raw or "")]
            self._save()

    def _authorize(self, token: dict[str, Any], path: str, op: str) -> None:
        if "root" in token["policies"]:
            return
        texts = [self.state["policies"][p] for p in token["policies"] if p in self.state["policies"]]
        caps = capabilities(texts, path)
        needs_sudo = any(path == p or (p.endswith("/") and path.startswith(p)) for p in ROOT_PROTECTED)
        if op not in caps or (needs_sudo and "sudo" not in caps):
            raise ApiError(403, "1 error occurred:\n\t* permission denied\n\n")

    # --- routing -----------------------------------------------------------------------
    def _approle_mounts(self) -> tuple[str, ...]:
        return tuple("auth/" + p for p, m in self.state.get("auth", {}).items() if m["type"] == "approle")

    def _kv_mount(self, path: str) -> str | None:
        return next((m for m in self.state["mounts"] if path.startswith(m) and m in self.state["kv"]), None)

    def _exists(self, path: str) -> bool:
        mount = self._kv_mount(path)
        if mount and path[len(mount):].startswith("data/"):
            return path[len(mount) + 5:] in self.state["kv"][mount]["secrets"]
        approle = next((m for m in self._approle_mounts() if path.startswith(m + "role/")), None)
        if approle:
            name = path[len(approle) + 5:]
            return "/" in name or name in self.state["approle"][approle[5:]]["roles"]
        return True  # paths without an existence check upstream are always "update"

    def _dispatch(self, op: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
                  data: dict[str, Any], raw_token: str, token: dict[str, Any]) -> Reply:
        if path == "sys/seal" and op in ("create", "update"):
            self.sealed, self.parts = True, []
            return NO_CONTENT
        if path == "sys/mounts" and op == "read":
            return self._mount_table("mounts")
        if path.startswith("sys/mounts/"):
            return self.mount(op, path[len("sys/mounts/"):], data)
        if path == "sys/auth" and op == "read":
            return self._mount_table("auth")
        if path.startswith("sys/auth/"):
            return self.enable_auth(op, path[len("sys/auth/"):], data)
        if path.startswith("sys/policies/acl"):
            return self.policy(op, path[len("sys/policies/acl"):].strip("/"), data)
        if path == "sys/audit" and op == "read":
            table = self.audit_table()
            return as_json({**table, **json.loads(logical(table).body)})
        if path.startswith("sys/audit/"):
            return self.enable_audit(op, path[len("sys/audit/"):].strip("/"), data)
        if path == SNAPSHOT_PATHS[0] and op == "read":
            snapshot = gzip.compress(json.dumps(self.state, sort_keys=True).encode())
            return Reply(200, snapshot, "application/octet-stream")
        if path.startswith("auth/token/"):
            return self.token_api(op, path[len("auth/token/"):], data, raw_token, token)
        approle = next((m for m in self._approle_mounts() if path.startswith(m)), None)
        if approle:
            return self.approle(op, approle[5:], path[len(approle):], data)
        mount = self._kv_mount(path)
        if mount:
            return self.kv(op, mount, path[len(mount):], query, headers, data)
        raise ApiError(404, f'no handler for route "{path}". route entry not found.')

    # --- sys/audit ---------------------------------------------------------------------------
    def audit_table(self) -> dict[str, Any]:
        return {**self.state.get("audit", {}), **{f"{p}/": d for p, d in self.declared_audit.items()}}

    def enable_audit(self, op: str, name: str, data: dict[str, Any]) -> Reply:
        """PUT sys/audit/<path> {type, options}: a `file` device (the only type modelled) needs
        options.file_path; a used path is refused. OpenBao refuses every API creation
        (openbao.org/docs/configuration/audit; the 400 text is OpenBao's)."""
        if op not in ("create", "update"):
            raise ApiError(405, "unsupported operation")
        if not self.api_audit:
            raise ApiError(400, "cannot enable audit device via API; use declarative, config-based audit "
                                "device management instead")
        if f"{name}/" in self.audit_table():
            raise ApiError(400, f"path already in use at {name}/")
        if data.get("type") != "file":
            raise ApiError(400, f"unknown backend type: {data.get('type')!r}")
        options = {str(k): str(v) for k, v in (data.get("options") or {}).items()}
        if not options.get("file_path"):
            raise ApiError(400, "file_path is required")
        self.state.setdefault("audit", {})[f"{name}/"] = {
            "type": "file", "description": str(data.get("description") or ""), "options": options, "local": False}
        self._save()
        return NO_CONTENT

    def audit(self, method: str, query: Mapping[str, list[str]], path: str, headers: Mapping[str, str],
              status: int) -> None:
        """One JSON line per request on each `stdout` device, the token HMAC-ed, as Vault's
        file device writes them (values are never logged in clear)."""
        devices = [d for d in self.audit_table().values() if d["options"].get("file_path") in ("stdout", "/dev/stdout")]
        if not devices or path.startswith("/v1/sys/health"):
            return
        try:
            operation = self._operation(method, query)
        except ApiError:
            operation = method.lower()
        raw = headers.get("X-Vault-Token") or _bearer(headers.get("Authorization", "")) or ""
        token = "hmac-sha256:" + hmac.new(self.audit_salt, raw.encode(), hashlib.sha256).hexdigest() if raw else ""
        line = json.dumps({"time": now(), "type": "response", "auth": {"client_token": token},
                           "request": {"operation": operation, "path": path[4:]}, "response": {"status": status}})
        # fd 1, not sys.stdout: in-process tests swap sys.stdout for the CLI's output, and the
        # container's log is the process's stdout either way
        for _ in devices:
            os.write(1, (line + "\n").encode())

    # --- sys/mounts and sys/auth ----------------------------------------------------------
    @staticmethod
    def _mount(kind: str, description: str = "", options: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"type": kind, "description": description, "accessor": f"{kind}_{secrets.token_hex(4)}",
                "uuid": str(uuid.uuid4()), "options": options, "local": False, "seal_wrap": False,
                "external_entropy_access": False, "plugin_version": "", "running_plugin_version": "",
                "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False}}

    def _mount_table(self, which: str) -> Reply:
        table = self.state[which]
        reply = json.loads(logical(table).body)
        reply.update(table)  # upstream repeats the table at the top level for old clients
        return as_json(reply)

    def mount(self, op: str, name: str, data: dict[str, Any]) -> Reply:
        name = name.strip("/") + "/"
        mounts = self.state["mounts"]
        if op == "read":
            if name not in mounts:
                raise ApiError(400, f"No secret engine mount at {name}")
            return logical(mounts[name])
        if op == "delete":
            mounts.pop(name, None)
            self.state["kv"].pop(name, None)
            self._save()
            return NO_CONTENT
        if op not in ("create", "update"):
            raise ApiError(405)
        if any(name.startswith(p) or p.startswith(name) for p in mounts):
            clash = next(p for p in mounts if name.startswith(p) or p.startswith(name))
            raise ApiError(400, f"path is already in use at {clash}")
        kind, options = data.get("type"), dict(data.get("options") or {})
        if kind == "kv-v2":
            kind, options["version"] = "kv", "2"
        if kind != "kv" or str(options.get("version")) != "2":
            raise ApiError(400, f"test double: only KV version 2 is implemented (type={kind!r}, options={options})")
        mounts[name] = self._mount("kv", data.get("description", ""), {"version": "2"})
        self.state["kv"][name] = {"config": {"max_versions": 0, "cas_required": False,
                                             "delete_version_after": "0s"}, "secrets": {}}
        self._save()
        return NO_CONTENT

    def enable_auth(self, op: str, name: str, data: dict[str, Any]) -> Reply:
        name = name.strip("/") + "/"
        if op == "delete":
            self.state["auth"].pop(name, None)
            self.state["approle"].pop(name, None)
            self._save()
            return NO_CONTENT
        if op not in ("create", "update"):
            raise ApiError(405)
        if name in self.state["auth"]:
            raise ApiError(400, f"path is already in use at auth/{name}")
        if data.get("type") != "approle":
            raise ApiError(400, f"test double: only the approle auth method is implemented (type={data.get('type')!r})")
        self.state["auth"][name] = self._mount("approle", data.get("description", ""))
        self.state["approle"][name] = {"roles": {}, "secret_ids": {}}
        self._save()
        return NO_CONTENT

    # --- sys/policies/acl -------------------------------------------------------------------
    # https://developer.hashicorp.com/vault/api-docs/system/policies
    def policy(self, op: str, name: str, data: dict[str, Any]) -> Reply:
        policies = self.state["policies"]
        if not name:
            if op != "list":
                raise ApiError(405)
            return logical({"keys": sorted([*policies, "root"])})
        name = name.lower()  # upstream lowercases policy names
        if op == "read":
            if name == "root":
                return logical({"name": "root", "policy": ""})
            if name not in policies:
                raise ApiError(404)
            return logical({"name": name, "policy": policies[name]})
        if op == "delete":
            if name in ("root", "default"):
                raise ApiError(400, f'cannot delete "{name}" policy')
            policies.pop(name, None)
            self._save()
            return NO_CONTENT
        if op not in ("create", "update"):
            raise ApiError(405)
        if name == "root":
            raise ApiError(400, 'cannot update "root" policy')
        text = data.get("policy")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "'policy' parameter not supplied or empty")
        parse_policy(text)
        policies[name] = text
        self._save()
        return NO_CONTENT

    # --- auth/token -----------------------------------------------------------------------
    # https://developer.hashicorp.com/vault/api-docs/auth/token
    def _lookup(self, raw: str, token: dict[str, Any]) -> dict[str, Any]:
        left = max(0, int(token["expire"] - time.time())) if token["expire"] else 0
        return {"accessor": token["accessor"], "creation_time": token["creation_time"],
                "creation_ttl": token["ttl"], "display_name": token["display_name"], "entity_id": "",
                "expire_time": (datetime.fromtimestamp(token["expire"], UTC).isoformat()
                                if token["expire"] else None),
                "explicit_max_ttl": 0, "id": raw, "issue_time": token["issue_time"], "meta": token["meta"],
                "num_uses": token["num_uses"], "orphan": True, "path": token["path"],
                "policies": token["policies"], "renewable": bool(token["ttl"]), "ttl": left, "type": "service",
                "period": token.get("period", 0)}

    def token_api(self, op: str, rest: str, data: dict[str, Any], raw: str, token: dict[str, Any]) -> Reply:
        if rest == "lookup-self" and op == "read":
            return logical(self._lookup(raw, token))
        if rest == "revoke-self" and op in ("create", "update"):
            self.state["tokens"].pop(sha(raw), None)
            self._save()
            return NO_CONTENT
        if rest == "renew-self" and op in ("create", "update"):
            if not token["ttl"]:
                raise ApiError(400, "lease is not renewable")
            token["expire"] = time.time() + token["ttl"]
            self._save()
            return logical(auth=self._auth(raw, token))
        if rest == "create" and op in ("create", "update"):
            wanted = list(data.get("policies") or token["policies"])
            root = "root" in token["policies"]
            if not root and not set(wanted) <= set(token["policies"]) | {"default"}:
                raise ApiError(400, "child policies must be subset of parent")
            period = seconds(data.get("period"))
            if (period or data.get("no_parent")) and not root:  # api-docs: root or sudo only
                raise ApiError(400, "root or sudo privileges required to create periodic or orphan token")
            new = token_string()
            ttl = seconds(data.get("ttl")) or (0 if "root" in wanted else DEFAULT_TOKEN_TTL)
            policies = wanted if "root" in wanted or data.get("no_default_policy") else [*wanted, "default"]
            entry = self._issue(new, policies=policies, ttl=ttl, path="auth/token/create",
                                display_name=f"token-{data['display_name']}" if data.get("display_name") else "token",
                                num_uses=int(data.get("num_uses") or 0), period=period)
            self._save()
            return logical(auth=self._auth(new, entry))
        raise ApiError(404, f'no handler for route "auth/token/{rest}". route entry not found.')

    @staticmethod
    def _auth(raw: str, entry: dict[str, Any]) -> dict[str, Any]:
        return {"client_token": raw, "accessor": entry["accessor"], "policies": entry["policies"],
                "token_policies": entry["policies"], "identity_policies": None, "metadata": entry["meta"],
                "lease_duration": entry["ttl"], "renewable": bool(entry["ttl"]), "entity_id": "",
                "token_type": "service", "orphan": True, "mfa_requirement": None, "num_uses": entry["num_uses"]}

    # --- AppRole --------------------------------------------------------------------------
    # https://developer.hashicorp.com/vault/api-docs/auth/approle
    ROLE_DEFAULTS: ClassVar[dict[str, Any]] = {"bind_secret_id": True, "secret_id_bound_cidrs": [], "secret_id_num_uses": 0,
                     "secret_id_ttl": 0, "local_secret_ids": False, "token_ttl": 0, "token_max_ttl": 0,
                     "token_policies": [], "token_bound_cidrs": [], "token_explicit_max_ttl": 0,
                     "token_no_default_policy": False, "token_num_uses": 0, "token_period": 0,
                     "token_type": "default"}

    def approle(self, op: str, mount: str, rest: str, data: dict[str, Any]) -> Reply:
        store = self.state["approle"][mount]
        roles = store["roles"]
        if rest == "role/":
            if op != "list":
                raise ApiError(405)
            if not roles:
                raise ApiError(404)
            return logical({"keys": sorted(roles)})
        match = re.fullmatch(r"role/([\w. -]+?)(/role-id|/secret-id/?|/secret-id/destroy|/secret-id-accessor/destroy)?",
                             rest)
        if not match:
            raise ApiError(404, f'no handler for route "auth/{mount}{rest}". route entry not found.')
        name, sub = match.group(1), (match.group(2) or "").rstrip("/")
        if not sub:
            return self._role(op, roles, name, data)
        if name not in roles:
            raise ApiError(400, f'role "{name}" does not exist') if op != "list" else ApiError(404)
        role = roles[name]
        if sub == "/role-id":
            if op == "read":
                return logical({"role_id": role["role_id"]})
            if op in ("create", "update") and data.get("role_id"):
                role["role_id"] = str(data["role_id"])
                self._save()
                return NO_CONTENT
            raise ApiError(405)
        if sub == "/secret-id/destroy":
            store["secret_ids"].pop(sha(str(data.get("secret_id", ""))), None)
            self._save()
            return NO_CONTENT
        if sub == "/secret-id-accessor/destroy":  # upstream: an unknown accessor is an error
            accessor = str(data.get("secret_id_accessor", ""))
            found = [k for k, s in store["secret_ids"].items() if s["accessor"] == accessor and s["role"] == name]
            if not found:
                raise ApiError(500, f'failed to find accessor entry for secret_id_accessor: "{accessor}"')
            store["secret_ids"].pop(found[0])
            self._save()
            return NO_CONTENT
        if op == "list":
            keys = [s["accessor"] for s in store["secret_ids"].values() if s["role"] == name]
            if not keys:
                raise ApiError(404)
            return logical({"keys": sorted(keys)})
        if op not in ("create", "update"):
            raise ApiError(405)
        ttl = seconds(data["ttl"]) if "ttl" in data else role["secret_id_ttl"]
        uses = int(data["num_uses"]) if "num_uses" in data else role["secret_id_num_uses"]
        if role["secret_id_ttl"] and (not ttl or ttl > role["secret_id_ttl"]):
            ttl = role["secret_id_ttl"]
        secret_id, accessor = str(uuid.uuid4()), str(uuid.uuid4())
        store["secret_ids"][sha(secret_id)] = {"role": name, "accessor": accessor, "num_uses": uses,
                                                "expire": time.time() + ttl if ttl else None}
        self._save()
        return logical({"secret_id": secret_id, "secret_id_accessor": accessor, "secret_id_ttl": ttl,
                        "secret_id_num_uses": uses})

    def _role(self, op: str, roles: dict[str, Any], name: str, data: dict[str, Any]) -> Reply:
        if op == "read":
            if name not in roles:
                raise ApiError(404)
            return logical({k: v for k, v in roles[name].items() if k != "role_id"})
        if op == "delete":
            roles.pop(name, None)
            self._save()
            return NO_CONTENT
        if op not in ("create", "update"):
            raise ApiError(405)
        role = roles.get(name) or {**self.ROLE_DEFAULTS, "role_id": str(uuid.uuid4())}
        for key, value in data.items():
            if key == "policies":  # the deprecated alias
                key = "token_policies"
            if key not in self.ROLE_DEFAULTS:
                continue
            if key.endswith("_ttl") or key == "token_period":
                value = seconds(value)
            elif key in ("token_policies", "secret_id_bound_cidrs", "token_bound_cidrs"):
                value = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
            elif key.endswith("_num_uses"):
                value = int(value)
            role[key] = value
        if not role["bind_secret_id"] and not role["secret_id_bound_cidrs"]:
            raise ApiError(400, "at least one constraint should be enabled on the role")
        roles[name] = role
        self._save()
        return NO_CONTENT

    def approle_login(self, mount_path: str, data: dict[str, Any], client: str = "127.0.0.1") -> Reply:
        store = self.state["approle"][mount_path[len("auth/"):]]
        role_id = data.get("role_id")
        if not role_id:
            raise ApiError(400, "missing role_id")
        name, role = next(((n, r) for n, r in store["roles"].items() if r["role_id"] == role_id), (None, None))
        entry = store["secret_ids"].get(sha(str(data.get("secret_id", ""))))
        if entry and entry["expire"] is not None and entry["expire"] < time.time():
            entry = None
        if role is None or (role["bind_secret_id"] and (entry is None or entry["role"] != name)):
            raise ApiError(400, "invalid role or secret ID")
        if not _in_cidrs(client, role["secret_id_bound_cidrs"]):
            raise ApiError(400, f'source address "{client}" unauthorized by CIDR restrictions on the role')
        if not _in_cidrs(client, role["token_bound_cidrs"]):
            raise ApiError(403, "permission denied")
        if entry and entry["num_uses"] > 0:
            entry["num_uses"] -= 1
            if entry["num_uses"] == 0:
                del store["secret_ids"][sha(str(data.get("secret_id")))]
        policies = list(role["token_policies"]) + ([] if role["token_no_default_policy"] else ["default"])
        ttl = role["token_ttl"] or DEFAULT_TOKEN_TTL
        if role["token_max_ttl"]:
            ttl = min(ttl, role["token_max_ttl"])
        raw = token_string()
        token = self._issue(raw, policies=policies, ttl=ttl, path=f"{mount_path}login", display_name="approle",
                            num_uses=role["token_num_uses"], meta={"role_name": name})
        token["bound_cidrs"] = list(role["token_bound_cidrs"])
        self._save()
        return logical(auth=self._auth(raw, token))

    # --- KV version 2 -----------------------------------------------------------------------
    # https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2
    def kv(self, op: str, mount: str, rest: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
           data: dict[str, Any]) -> Reply:
        engine = self.state["kv"][mount]
        store = engine["secrets"]
        if rest == "config":
            if op == "read":
                return logical(engine["config"])
            if op in ("create", "update"):
                for key in ("max_versions", "cas_required", "delete_version_after"):
                    if key in data:
                        engine["config"][key] = data[key]
                self._save()
                return NO_CONTENT
            raise ApiError(405)
        kind, _, key = rest.partition("/")
        if kind == "metadata" and op == "list":
            return self._kv_list(store, key)
        if not key or key.endswith("/"):
            raise ApiError(404, f'no handler for route "{mount}{rest}". route entry not found.')
        entry = store.get(key)
        if kind == "data":
            if op == "read":
                return self._kv_read(entry, query)
            if op in ("create", "update"):
                return self._kv_write(engine, store, key, data)
            if op == "patch":
                return self._kv_patch(engine, store, key, headers, data)
            if op == "delete":
                if entry and entry["current_version"]:
                    entry["versions"][str(entry["current_version"])]["deletion_time"] = now()
                    self._save()
                return NO_CONTENT
        if kind in ("delete", "undelete", "destroy") and op in ("create", "update"):
            for version in data.get("versions") or []:
                meta = (entry or {"versions": {}})["versions"].get(str(version))
                if meta and kind == "delete":
                    meta["deletion_time"] = meta["deletion_time"] or now()
                elif meta and kind == "undelete" and not meta["destroyed"]:
                    meta["deletion_time"] = ""
                elif meta and kind == "destroy":
                    meta.update(destroyed=True, data=None)
            self._save()
            return NO_CONTENT
        if kind == "metadata":
            if op == "read":
                if entry is None:
                    raise ApiError(404)
                return logical(self._kv_metadata(entry))
            if op in ("create", "update"):
                entry = store.setdefault(key, self._kv_entry())
                for field in ("max_versions", "cas_required", "custom_metadata", "delete_version_after"):
                    if field in data:
                        entry[field] = data[field]
                self._save()
                return NO_CONTENT
            if op == "delete":
                store.pop(key, None)
                self._save()
                return NO_CONTENT
        raise ApiError(405)

    @staticmethod
    def _kv_entry() -> dict[str, Any]:
        stamp = now()
        return {"versions": {}, "current_version": 0, "oldest_version": 0, "created_time": stamp,
                "updated_time": stamp, "max_versions": 0, "cas_required": False, "custom_metadata": None,
                "delete_version_after": "0s"}

    @staticmethod
    def _version_meta(entry: dict[str, Any], version: int) -> dict[str, Any]:
        meta = entry["versions"][str(version)]
        return {"created_time": meta["created_time"], "custom_metadata": entry["custom_metadata"],
                "deletion_time": meta["deletion_time"], "destroyed": meta["destroyed"], "version": version}

    def _kv_read(self, entry: dict[str, Any] | None, query: Mapping[str, list[str]]) -> Reply:
        version = int(query.get("version", ["0"])[0] or 0)
        if entry is None or not entry["current_version"]:
            raise ApiError(404)
        version = version or entry["current_version"]
        if str(version) not in entry["versions"]:
            raise ApiError(404)
        meta = self._version_meta(entry, version)
        stored = entry["versions"][str(version)]
        if stored["deletion_time"] or stored["destroyed"]:
            return logical({"data": None, "metadata": meta}, status=404)
        return logical({"data": stored["data"], "metadata": meta})

    def _kv_write(self, engine: dict[str, Any], store: dict[str, Any], key: str, data: dict[str, Any],
                  payload: Any = None) -> Reply:
        payload = data.get("data") if payload is None else payload
        if not isinstance(payload, dict):
            raise ApiError(400, "no data provided")
        entry = store.get(key) or self._kv_entry()
        cas = (data.get("options") or {}).get("cas")
        if cas is None and (engine["config"]["cas_required"] or entry["cas_required"]):
            raise ApiError(400, "check-and-set parameter required for this call")
        if cas is not None and int(cas) != entry["current_version"]:
            raise ApiError(400, "check-and-set parameter did not match the current version")
        version = entry["current_version"] + 1
        stamp = now()
        entry["versions"][str(version)] = {"data": payload, "created_time": stamp, "deletion_time": "",
                                           "destroyed": False}
        entry.update(current_version=version, updated_time=stamp)
        keep = entry["max_versions"] or engine["config"]["max_versions"] or 10
        for old in sorted(int(v) for v in entry["versions"])[:-keep]:
            del entry["versions"][str(old)]
        entry["oldest_version"] = min(int(v) for v in entry["versions"])
        store[key] = entry
        self._save()
        return logical(self._version_meta(entry, version))

    def _kv_patch(self, engine: dict[str, Any], store: dict[str, Any], key: str, headers: Mapping[str, str],
                  data: dict[str, Any]) -> Reply:
        if headers.get("Content-Type", "").split(";")[0].strip() != "application/merge-patch+json":
            raise ApiError(415, "PATCH requires Content-Type application/merge-patch+json")
        entry = store.get(key)
        current = entry and entry["versions"].get(str(entry["current_version"]))
        if not current or current["deletion_time"] or current["destroyed"]:
            raise ApiError(404)
        merged = dict(current["data"])
        for name, value in (data.get("data") or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return self._kv_write(engine, store, key, data, merged)

    def _kv_metadata(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {"cas_required": entry["cas_required"], "created_time": entry["created_time"],
                "current_version": entry["current_version"], "custom_metadata": entry["custom_metadata"],
                "delete_version_after": entry["delete_version_after"], "max_versions": entry["max_versions"],
                "oldest_version": entry["oldest_version"], "updated_time": entry["updated_time"],
                "versions": {v: {k: m[k] for k in ("created_time", "deletion_time", "destroyed")}
                             for v, m in entry["versions"].items()}}

    @staticmethod
    def _kv_list(store: dict[str, Any], prefix: str) -> Reply:
        keys = set()
        for key in store:
            if key.startswith(prefix):
                head, slash, _ = key[len(prefix):].partition("/")
                keys.add(head + slash)
        if not keys:
            raise ApiError(404)
        return logical({"keys": sorted(keys)})


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# ------------------------------------------------------------------------------- serving


class Handler(api_http.Handler):
    server_version = "vault-test-double"
    extra_headers: Mapping[str, str] = {"Cache-Control": "no-store"}


def serve(data_dir: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 0,
          **options: Any) -> api_http.DoubleServer:
    """Start the double on a thread; `server.url` is its address, `server.stop()` ends it.
    `options`: VaultDouble's (api_audit, declared_audit: OpenBao's behaviour)."""
    return api_http.serve(VaultDouble(data_dir, **options), Handler, "vault-double", host, port)
