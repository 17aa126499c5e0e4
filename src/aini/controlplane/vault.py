"""Vault (or OpenBao: the same HTTP API) as the home of every secret.

The layout AINI creates, idempotently (`VaultClient.bootstrap`, run once with the root
token, and again whenever the service list changes):

- a KV version 2 engine at `aini/`: a mount of AINI's own, so its policies and backups
  never touch (or collide with) a mount the user already has;
- secrets at `aini/data/<service>/<NAME>`, one entry per secret, so each has its own
  versions and `aini secrets list` is a LIST of the service's folder;
- one read-only policy per service, `aini-read-<service>` (its own folder only), for
  services that read Vault themselves later;
- the `aini-snapshot` policy (`read` on sys/storage/raft/snapshot, nothing else) and a
  periodic token with it that each backup renews (30 days without a backup let it lapse;
  the next `aini up` makes another);
- the `aini-deploy` policy (create/read/update the data, read/list the metadata; no
  delete, nothing in sys/) and the `aini-deploy` AppRole with it: short-lived tokens
  (20 minutes, at most 1 hour) for every deploy. The root token is not used after
  bootstrap; it stays in the operator's break-glass file.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError
from . import ControlPlaneError, Http, Request, Response

MOUNT = "aini"
DEPLOY_POLICY = "aini-deploy"
DEPLOY_ROLE = "aini-deploy"
APPROLE_PATH = "approle"
SNAPSHOT_POLICY = "aini-snapshot"
SNAPSHOT_PERIOD = "720h"
# Every status /sys/health documents; each comes with the same JSON body.
HEALTH_STATUSES = (200, 429, 472, 473, 474, 501, 503, 530)
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class VaultError(ControlPlaneError):
    """A Vault call failed."""


# ------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class VaultHealth:
    initialized: bool
    sealed: bool
    standby: bool
    version: str

    @property
    def state(self) -> Literal["uninitialized", "sealed", "standby", "active"]:
        if not self.initialized:
            return "uninitialized"
        return "sealed" if self.sealed else "standby" if self.standby else "active"


@dataclass(frozen=True)
class SealStatus:
    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int


@dataclass(frozen=True, repr=False)
class InitResult:
    """The unseal key shares and the root token: straight into the break-glass file."""

    keys: tuple[str, ...]
    root_token: str
    shares: int
    threshold: int

    def __repr__(self) -> str:
        return f"InitResult(<{len(self.keys)} keys hidden>, root_token=<hidden>, threshold={self.threshold})"


@dataclass(frozen=True, repr=False)
class AppRoleCredentials:
    role_id: str
    secret_id: str

    def __repr__(self) -> str:
        return "AppRoleCredentials(<hidden>)"


@dataclass(frozen=True)
class KvVersion:
    created_time: str
    deletion_time: str
    destroyed: bool


@dataclass(frozen=True)
class KvMetadata:
    current_version: int
    oldest_version: int
    created_time: str
    updated_time: str
    versions: Mapping[int, KvVersion]


@dataclass(frozen=True)
class TokenInfo:
    policies: tuple[str, ...]
    ttl: int  # seconds left; 0 for a token that never expires
    num_uses: int  # 0: unlimited
    display_name: str


# ------------------------------------------------------------------------ names, policies


def segment(name: str) -> str:
    """A service or secret name as one path segment: it ends up in URLs and policy paths."""
    if not _SEGMENT.fullmatch(name):
        raise InputError(f"{name!r} is not a valid secret path segment (letters, digits, '_', '-', '.')")
    return name


def secret_path(path: str) -> str:
    return "/".join(segment(part) for part in path.strip("/").split("/"))


def service_policy_name(service: str) -> str:
    return f"aini-read-{segment(service)}"


def service_read_policy(service: str, mount: str = MOUNT) -> str:
    service = segment(service)
    return (f"# AINI: {service} reads its own secrets, nothing else.\n"
            f'path "{mount}/data/{service}/*" {{\n  capabilities = ["read"]\n}}\n'
            f'path "{mount}/metadata/{service}/*" {{\n  capabilities = ["read", "list"]\n}}\n')


def deploy_policy(mount: str = MOUNT) -> str:
    return ("# AINI deploys: read and write service secrets; never delete, nothing in sys/.\n"
            f'path "{mount}/data/*" {{\n  capabilities = ["create", "read", "update"]\n}}\n'
            f'path "{mount}/metadata/*" {{\n  capabilities = ["read", "list"]\n}}\n')


# ------------------------------------------------------------------------------ requests
# https://developer.hashicorp.com/vault/api-docs


def health_request() -> Request:
    return Request("GET", "/v1/sys/health", ok=HEALTH_STATUSES)


def seal_status_request() -> Request:
    return Request("GET", "/v1/sys/seal-status")


def init_request(shares: int, threshold: int) -> Request:
    if not 1 <= threshold <= shares <= 255 or (shares > 1 and threshold < 2):
        raise InputError(f"Vault key shares {shares} / threshold {threshold}: need 1 <= threshold <= shares "
                         "<= 255, and a threshold of at least 2 when there are several shares")
    return Request("PUT", "/v1/sys/init", {"secret_shares": shares, "secret_threshold": threshold})


def unseal_request(key: str) -> Request:
    return Request("PUT", "/v1/sys/unseal", {"key": key})


def unseal_reset_request() -> Request:
    return Request("PUT", "/v1/sys/unseal", {"reset": True})


def mounts_request() -> Request:
    return Request("GET", "/v1/sys/mounts")


def enable_kv_request(mount: str = MOUNT) -> Request:
    return Request("POST", f"/v1/sys/mounts/{segment(mount)}",
                   {"type": "kv", "options": {"version": "2"}, "description": "AINI: service secrets"})


# The audit device every Vault gets: path, then the body of PUT sys/audit/<path> (the file
# device writing to the process's stdout, i.e. the container's log; values HMAC-ed).
AUDIT_DEVICE = ("stdout", {"type": "file", "description": "AINI: every request, values HMAC-ed",
                           "options": {"file_path": "stdout"}})


def audit_devices_request() -> Request:
    return Request("GET", "/v1/sys/audit")


def enable_audit_request(path: str = AUDIT_DEVICE[0], body: dict | None = None) -> Request:
    return Request("PUT", f"/v1/sys/audit/{segment(path)}", body or AUDIT_DEVICE[1])


def auth_methods_request() -> Request:
    return Request("GET", "/v1/sys/auth")


def enable_approle_request(path: str = APPROLE_PATH) -> Request:
    return Request("POST", f"/v1/sys/auth/{segment(path)}", {"type": "approle", "description": "AINI deploys"})


def policy_request(name: str, text: str) -> Request:
    return Request("PUT", f"/v1/sys/policies/acl/{segment(name)}", {"policy": text})


def approle_role_request(role: str, policies: Iterable[str], *, token_ttl: str, token_max_ttl: str,
                         secret_id_ttl: str, token_num_uses: int = 0, bound_cidrs: Iterable[str] = (),
                         path: str = APPROLE_PATH) -> Request:
    """`bound_cidrs`: where logins may come from, and where the tokens they give may be used."""
    cidrs = sorted(bound_cidrs)
    return Request("POST", f"/v1/auth/{segment(path)}/role/{segment(role)}", {
        "token_policies": sorted(policies), "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
        "token_num_uses": token_num_uses, "token_type": "service", "bind_secret_id": True,
        "secret_id_ttl": secret_id_ttl, "secret_id_num_uses": 0,
        "secret_id_bound_cidrs": cidrs, "token_bound_cidrs": cidrs})


def role_id_request(role: str, path: str = APPROLE_PATH) -> Request:
    return Request("GET", f"/v1/auth/{segment(path)}/role/{segment(role)}/role-id")


def secret_id_request(role: str, path: str = APPROLE_PATH) -> Request:
    return Request("POST", f"/v1/auth/{segment(path)}/role/{segment(role)}/secret-id", {})


def secret_id_accessors_request(role: str, path: str = APPROLE_PATH) -> Request:
    """The accessors of the role's secret IDs (404: none)."""
    return Request("LIST", f"/v1/auth/{segment(path)}/role/{segment(role)}/secret-id", ok=(200, 404))


def destroy_secret_id_request(role: str, accessor: str, path: str = APPROLE_PATH) -> Request:
    return Request("POST", f"/v1/auth/{segment(path)}/role/{segment(role)}/secret-id-accessor/destroy",
                   {"secret_id_accessor": accessor})


def approle_login_request(role_id: str, secret_id: str, path: str = APPROLE_PATH) -> Request:
    return Request("POST", f"/v1/auth/{segment(path)}/login", {"role_id": role_id, "secret_id": secret_id})


def lookup_self_request() -> Request:
    return Request("GET", "/v1/auth/token/lookup-self")


def revoke_self_request() -> Request:
    return Request("POST", "/v1/auth/token/revoke-self")


def kv_put_request(path: str, data: Mapping[str, str], *, cas: int | None = None, mount: str = MOUNT) -> Request:
    body: dict[str, Any] = {"data": dict(data)}
    if cas is not None:
        body["options"] = {"cas": cas}
    return Request("POST", f"/v1/{segment(mount)}/data/{secret_path(path)}", body)


def kv_get_request(path: str, *, version: int | None = None, mount: str = MOUNT) -> Request:
    query = (("version", str(version)),) if version else ()
    return Request("GET", f"/v1/{segment(mount)}/data/{secret_path(path)}", query=query, ok=(200, 404))


def kv_list_request(path: str = "", *, mount: str = MOUNT) -> Request:
    folder = secret_path(path) + "/" if path.strip("/") else ""
    return Request("LIST", f"/v1/{segment(mount)}/metadata/{folder}", ok=(200, 404))


def kv_metadata_request(path: str, *, mount: str = MOUNT) -> Request:
    return Request("GET", f"/v1/{segment(mount)}/metadata/{secret_path(path)}", ok=(200, 404))


def raft_snapshot_request() -> Request:
    """What `vault operator raft snapshot save` fetches: `read` on the path is enough (api-docs/
    system/storage/raft; it is not root-protected). The snapshot is encrypted by Vault's
    barrier, so it is useless without the unseal keys."""
    return Request("GET", "/v1/sys/storage/raft/snapshot")


def snapshot_policy() -> str:
    return 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'


def snapshot_token_request() -> Request:
    """A periodic orphan token (root only): it never expires while something renews it within
    the period, and it outlives the deploy token that made it."""
    return Request("POST", "/v1/auth/token/create", {"policies": [SNAPSHOT_POLICY], "period": SNAPSHOT_PERIOD,
                                                     "no_parent": True, "display_name": "aini-snapshot"})


# -------------------------------------------------------------------------------- client


class VaultClient:
    def __init__(self, address: str, *, token: str | None = None, timeout: float = 10.0,
                 ca_file: str | None = None, verify: bool = True, mount: str = MOUNT):
        self.http = Http("Vault", address, timeout=timeout, ca_file=ca_file, verify=verify, error=VaultError)
        self._token = token
        self.mount = segment(mount)

    def __repr__(self) -> str:
        return f"VaultClient({self.http.address!r}, token={'<set>' if self._token else None})"

    def with_token(self, token: str) -> VaultClient:
        other = copy.copy(self)
        other._token = token
        return other

    def for_mount(self, mount: str) -> VaultClient:
        """The same address and token on another KV version 2 mount."""
        other = copy.copy(self)
        other.mount = segment(mount)
        return other

    def _call(self, request: Request) -> Response:
        headers = {"X-Vault-Token": self._token} if self._token else {}
        return self.http.send(request, headers)

    # --- state ------------------------------------------------------------------------
    def health(self) -> VaultHealth:
        data = self._call(health_request()).json()
        return VaultHealth(bool(data["initialized"]), bool(data["sealed"]), bool(data.get("standby")),
                           str(data.get("version", "")))

    def seal_status(self) -> SealStatus:
        return _seal_status(self._call(seal_status_request()).json())

    def wait_active(self, timeout: float = 30.0, interval: float = 0.5) -> VaultHealth:
        """Raft elects a leader a moment after unsealing: wait for that, bounded."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health.state == "active" or time.monotonic() > deadline:
                break
            time.sleep(interval)
        if health.state != "active":
            raise VaultError(f"Vault is {health.state}, not active, after {timeout:g} s")
        return health

    # --- init and unseal ----------------------------------------------------------------
    def init(self, shares: int = 5, threshold: int = 3) -> InitResult:
        request = init_request(shares, threshold)
        data = self._call(Request(request.method, request.path, request.body, ok=(200, 400))).json()
        if data.get("errors"):
            reason = "; ".join(data["errors"])
            if "already initialized" in reason:
                raise VaultError("Vault is already initialised: its unseal keys and root token are in the "
                                 "break-glass file of the machine that initialised it", 400)
            raise VaultError(f"Vault init: {reason}", 400)
        return InitResult(tuple(data["keys"]), data["root_token"], shares, threshold)

    def reset_unseal(self) -> None:
        """Shares given so far forgotten (another set of keys is tried next)."""
        self._call(unseal_reset_request())

    def unseal(self, keys: Iterable[str]) -> SealStatus:
        """Give key shares until Vault unseals; the threshold's worth is enough, the rest
        are not sent."""
        status = self.seal_status()
        if not status.initialized:
            raise VaultError("Vault is not initialised yet; nothing to unseal")
        remaining = iter(keys)
        while status.sealed and (key := next(remaining, None)) is not None:
            status = _seal_status(self._call(unseal_request(key)).json())
        if status.sealed:
            raise VaultError(f"Vault is still sealed: {status.progress} of {status.threshold} key shares given")
        return status

    # --- bootstrap ----------------------------------------------------------------------
    def bootstrap(self, root_token: str, services: Iterable[str], *, role: str = DEPLOY_ROLE,
                  token_ttl: str = "20m", token_max_ttl: str = "1h", secret_id_ttl: str = "0",
                  bound_cidrs: Iterable[str] = ()) -> AppRoleCredentials:
        """The audit device, KV v2, the policies and the deploy AppRole; safe to run again. Returns the role's
        ID and a new secret ID; every earlier secret ID of the role is destroyed (a copy of an
        old controlplane.json logs in no more)."""
        root = self.with_token(root_token)
        devices = root._call(audit_devices_request()).json()
        if f"{AUDIT_DEVICE[0]}/" not in (devices.get("data") or devices):  # OpenBao's is declared in its config
            root._call(enable_audit_request())
        mount = f"{self.mount}/"
        existing = root._call(mounts_request()).json()
        table = existing.get("data") or existing
        if mount not in table:
            root._call(enable_kv_request(self.mount))
        elif table[mount].get("type") != "kv" or str((table[mount].get("options") or {}).get("version")) != "2":
            raise VaultError(f"Vault already has a mount at {mount} that is not KV version 2; move it away")
        for service in services:
            root._call(policy_request(service_policy_name(service), service_read_policy(service, self.mount)))
        root._call(policy_request(DEPLOY_POLICY, deploy_policy(self.mount)))
        auth = root._call(auth_methods_request()).json()
        if f"{APPROLE_PATH}/" not in (auth.get("data") or auth):
            root._call(enable_approle_request())
        root._call(approle_role_request(role, [DEPLOY_POLICY], token_ttl=token_ttl, token_max_ttl=token_max_ttl,
                                        secret_id_ttl=secret_id_ttl, bound_cidrs=bound_cidrs))
        role_id = root._call(role_id_request(role)).json()["data"]["role_id"]
        issued = root._call(secret_id_request(role)).json()["data"]
        listed = root._call(secret_id_accessors_request(role))
        for accessor in (listed.json().get("data") or {}).get("keys", []) if listed.status == 200 else []:
            if accessor != issued["secret_id_accessor"]:
                root._call(destroy_secret_id_request(role, accessor))
        return AppRoleCredentials(role_id, issued["secret_id"])

    def snapshot_token(self, root_token: str) -> str:
        """The snapshot policy written and a new token with it (the backups')."""
        root = self.with_token(root_token)
        root._call(policy_request(SNAPSHOT_POLICY, snapshot_policy()))
        return str(root._call(snapshot_token_request()).json()["auth"]["client_token"])

    def token_valid(self) -> bool:
        try:
            self.lookup_self()
        except VaultError as exc:
            if exc.status in (401, 403):
                return False
            raise
        return True

    def login_approle(self, credentials: AppRoleCredentials) -> VaultClient:
        """A client holding a fresh deploy token (short TTL, the role's policies)."""
        data = self._call(approle_login_request(credentials.role_id, credentials.secret_id)).json()
        return self.with_token(data["auth"]["client_token"])

    def lookup_self(self) -> TokenInfo:
        data = self._call(lookup_self_request()).json()["data"]
        return TokenInfo(tuple(data.get("policies") or ()), int(data.get("ttl") or 0),
                         int(data.get("num_uses") or 0), str(data.get("display_name", "")))

    def revoke_self(self) -> None:
        self._call(revoke_self_request())

    # --- KV version 2 -------------------------------------------------------------------
    def kv_put(self, path: str, data: Mapping[str, str], *, cas: int | None = None) -> int:
        """Write a new version; returns its number. `cas=0` writes only if the path is new."""
        reply = self._call(kv_put_request(path, data, cas=cas, mount=self.mount)).json()
        return int(reply["data"]["version"])

    def kv_get(self, path: str, *, version: int | None = None) -> dict[str, str] | None:
        """The data of the latest (or the given) version; None when absent or deleted."""
        response = self._call(kv_get_request(path, version=version, mount=self.mount))
        if _absent(response, path):
            return None
        return dict(response.json()["data"]["data"])

    def kv_list(self, path: str = "") -> list[str]:
        """Names under a folder; sub-folders end with '/'."""
        response = self._call(kv_list_request(path, mount=self.mount))
        return [] if _absent(response, path) else list(response.json()["data"]["keys"])

    def kv_metadata(self, path: str) -> KvMetadata | None:
        response = self._call(kv_metadata_request(path, mount=self.mount))
        if _absent(response, path):
            return None
        d = response.json()["data"]
        versions = {int(v): KvVersion(m["created_time"], m["deletion_time"], bool(m["destroyed"]))
                    for v, m in (d.get("versions") or {}).items()}
        return KvMetadata(int(d["current_version"]), int(d["oldest_version"]), d["created_time"],
                          d["updated_time"], versions)

    def raft_snapshot(self) -> bytes:
        return self._call(raft_snapshot_request()).body


def _seal_status(data: dict[str, Any]) -> SealStatus:
    return SealStatus(bool(data["initialized"]), bool(data["sealed"]), int(data["t"]), int(data["n"]),
                      int(data["progress"]))


def _absent(response: Response, path: str) -> bool:
    """A 404 for a missing (or deleted) secret has no error text; one for a missing mount
    ("no handler for route") has, and is an error, not an empty answer."""
    if response.status != 404:
        return False
    errors = (response.json() or {}).get("errors")
    if errors:
        raise VaultError(f"Vault {path}: HTTP 404: {'; '.join(map(str, errors))[:200]}", 404)
    return True
