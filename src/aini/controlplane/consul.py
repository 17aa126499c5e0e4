"""Consul as the service catalog, the health checks and the deployed configuration.

ACLs are on with default deny (catalog/core.py). The bootstrap token (break-glass file)
is used to create the `aini-deploy` policy and token; deploys use that token, which may
register services, read health and write keys under `aini/` only.

Consul KV holds non-secret data only: the deployed configuration per service (image,
bundle hash, deploy time, AINI version). The callers write nothing else, so no guard here
tries to recognise secrets; secrets live in Vault.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from ..catalog.model import HealthCheck
from ..errors import InputError
from . import ControlPlaneError, Http, Request, Response

Health = Literal["passing", "warning", "critical"]
DEPLOY_POLICY = "aini-deploy"
DEPLOY_TOKEN = "aini-deploy"
KV_PREFIX = "aini/"
# Backups. Consul has one ACL sense for snapshots, `acl = "write"`, because a snapshot holds
# every token's secret: whoever can take one can become management anyway (agent/consul/
# snapshot_endpoint.go). No narrower token exists; it stays in .aini/ (sent on stdin per run).
SNAPSHOT_POLICY = "aini-snapshot"
SNAPSHOT_TOKEN = "aini-snapshot"
# The scheduled backup reports each run to a TTL check on BACKUP_SERVICE with the same token
# (updating a service's check needs service:write on it): one more right, on one service.
BACKUP_SERVICE = "aini-backup"
BACKUP_CHECK = f"service:{BACKUP_SERVICE}"
SNAPSHOT_RULES = f'acl = "write"\nservice "{BACKUP_SERVICE}" {{ policy = "write" }}\n'
DEPLOY_RULES = """# AINI deploys: register services, read health, keep the deployed configuration.
service_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
key_prefix "aini/" { policy = "write" }
"""
_KEY = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_RANK = {"passing": 0, "warning": 1, "critical": 2}


class ConsulError(ControlPlaneError):
    """A Consul call failed."""


@dataclass(frozen=True, repr=False)
class ConsulToken:
    accessor_id: str  # an identifier, not a credential
    secret_id: str  # the credential

    def __repr__(self) -> str:
        return f"ConsulToken(accessor_id={self.accessor_id!r}, secret_id=<hidden>)"


def name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InputError(f"{value!r} is not a valid Consul name (letters, digits, '_', '-', '.')")
    return value


def key(value: str) -> str:
    if not _KEY.fullmatch(value) or ".." in value.split("/"):
        raise InputError(f"{value!r} is not a valid Consul key")
    return value


# ----------------------------------------------------------------------- pure builders


def check_definition(check: HealthCheck, address: str, service_port: int | None, service: str) -> dict[str, Any] | None:
    """A catalog HealthCheck as a Consul agent check: HTTP when it has a path, else TCP, on
    the check's port (or the service's); None when there is nothing to probe."""
    port = check.port or service_port
    if port is None:
        return None
    host = f"[{address}]" if ":" in address else address
    probe = {"HTTP": f"http://{host}:{port}{check.path}"} if check.path else {"TCP": f"{host}:{port}"}
    return {"Name": f"{service} health", **probe, "Interval": check.interval, "Timeout": check.timeout}


def service_definition(service: str, address: str, port: int | None, check: HealthCheck | None, *,
                       service_id: str | None = None, tags: Iterable[str] = (), meta: Mapping[str, str] | None = None,
                       deregister_critical_after: str | None = None,
                       check_address: str | None = None) -> dict[str, Any]:
    """The agent's register payload. Without `deregister_critical_after` a stopped service
    stays registered and critical, which is what `aini status` must see. `check_address`:
    the check probes another host (a container with no port, asked of the Docker API)."""
    definition: dict[str, Any] = {"ID": name(service_id or service), "Name": name(service), "Address": address,
                                  "Tags": list(tags), "Meta": dict(meta or {})}
    if port is not None:
        definition["Port"] = port
    probe = check_definition(check, check_address or address, port, service) if check else None
    if probe:
        if deregister_critical_after:
            probe["DeregisterCriticalServiceAfter"] = deregister_critical_after
        definition["Check"] = probe
    return definition


def backup_service_definition(ttl_seconds: int, schedule: str) -> dict[str, Any]:
    """The service the scheduled backup reports to: a TTL check, warning until the first run
    reports, critical by itself when no run reported within the TTL (two periods of the
    schedule). No AINI tag: registry.sync leaves it alone."""
    return {"ID": BACKUP_SERVICE, "Name": BACKUP_SERVICE, "Meta": {"schedule": schedule},
            "Check": {"CheckID": BACKUP_CHECK, "Name": "scheduled backup", "TTL": f"{ttl_seconds}s",
                      "Status": "warning", "Notes": f"each backup.schedule run ({schedule}) reports here"}}


def leader_request() -> Request:
    return Request("GET", "/v1/status/leader")


def acl_bootstrap_request() -> Request:
    return Request("PUT", "/v1/acl/bootstrap", ok=(200, 403))


def token_self_request() -> Request:
    return Request("GET", "/v1/acl/token/self", ok=(200, 403))  # 403 "ACL not found": not a token here


def policy_by_name_request(policy: str) -> Request:
    return Request("GET", f"/v1/acl/policy/name/{name(policy)}", ok=(200, 404))


def policy_write_request(policy: str, rules: str, description: str = "", policy_id: str | None = None) -> Request:
    path = f"/v1/acl/policy/{policy_id}" if policy_id else "/v1/acl/policy"
    return Request("PUT", path, {"Name": name(policy), "Description": description, "Rules": rules})


def tokens_request() -> Request:
    return Request("GET", "/v1/acl/tokens")


def token_read_request(accessor_id: str) -> Request:
    return Request("GET", f"/v1/acl/token/{quote(accessor_id, safe='')}")


def token_write_request(description: str, policies: Iterable[str], accessor_id: str | None = None) -> Request:
    path = f"/v1/acl/token/{quote(accessor_id, safe='')}" if accessor_id else "/v1/acl/token"
    return Request("PUT", path, {"Description": description, "Policies": [{"Name": name(p)} for p in policies]})


def register_request(definition: Mapping[str, Any]) -> Request:
    # replace-existing-checks: a re-registration drops checks the catalog no longer has
    return Request("PUT", "/v1/agent/service/register", dict(definition), query=(("replace-existing-checks", "true"),))


def deregister_request(service_id: str) -> Request:
    return Request("PUT", f"/v1/agent/service/deregister/{name(service_id)}")


def health_request(service: str) -> Request:
    return Request("GET", f"/v1/health/service/{name(service)}")


def kv_put_request(k: str, value: bytes, *, cas: int | None = None, flags: int | None = None) -> Request:
    query = tuple((p, str(v)) for p, v in (("cas", cas), ("flags", flags)) if v is not None)
    return Request("PUT", f"/v1/kv/{key(k)}", value, query=query)


def kv_get_request(k: str) -> Request:
    return Request("GET", f"/v1/kv/{key(k)}", ok=(200, 404))


def kv_tree_request(prefix: str) -> Request:
    return Request("GET", f"/v1/kv/{key(prefix)}", query=(("recurse", "true"),), ok=(200, 404))


def kv_delete_request(k: str, *, recurse: bool = False) -> Request:
    return Request("DELETE", f"/v1/kv/{key(k)}", query=(("recurse", "true"),) if recurse else ())


def snapshot_request() -> Request:
    """What `consul snapshot save` fetches (needs `acl = "write"`: SNAPSHOT_RULES)."""
    return Request("GET", "/v1/snapshot")


def aggregate(statuses: Iterable[str]) -> Health:
    """Consul's rule: any critical is critical, else any warning is warning."""
    worst = max((_RANK.get(s, 2) for s in statuses), default=2)
    return ("passing", "warning", "critical")[worst]  # type: ignore[return-value]


def deploy_record(service: str, *, image: str, bundle_hash: str, deployed_at: str, aini_version: str) -> tuple[str, bytes]:
    """The key and value `aini plan` compares against: what is deployed, never a secret."""
    value = {"image": image, "bundle_hash": bundle_hash, "deployed_at": deployed_at, "aini_version": aini_version}
    return f"{KV_PREFIX}deploy/{name(service)}", json.dumps(value, sort_keys=True).encode()


# -------------------------------------------------------------------------------- client


class ConsulClient:
    def __init__(self, address: str, *, token: str | None = None, timeout: float = 10.0,
                 ca_file: str | None = None, verify: bool = True):
        self.http = Http("Consul", address, timeout=timeout, ca_file=ca_file, verify=verify, error=ConsulError)
        self._token = token

    def __repr__(self) -> str:
        return f"ConsulClient({self.http.address!r}, token={'<set>' if self._token else None})"

    def with_token(self, token: str) -> ConsulClient:
        other = copy.copy(self)
        other._token = token
        return other

    def _call(self, request: Request) -> Response:
        return self.http.send(request, {"X-Consul-Token": self._token} if self._token else {})

    def leader(self) -> str:
        return str(self._call(leader_request()).json())

    # --- ACL ------------------------------------------------------------------------------
    def token_valid(self) -> bool:
        return self._call(token_self_request()).status == 200

    def acl_bootstrap(self) -> ConsulToken | None:
        """The management token, once; None when the cluster was bootstrapped before (its
        token is then the one in the break-glass file)."""
        response = self._call(acl_bootstrap_request())
        if response.status == 403:
            if b"ACL bootstrap no longer allowed" in response.body:
                return None
            raise ConsulError("Consul ACL bootstrap: HTTP 403 (ACLs misconfigured?)", 403)
        data = response.json()
        return ConsulToken(data["AccessorID"], data["SecretID"])

    def ensure_policy(self, policy: str, rules: str, description: str = "") -> str:
        """Create or update a policy by name; returns its ID."""
        response = self._call(policy_by_name_request(policy))
        if response.status == 404:
            return str(self._call(policy_write_request(policy, rules, description)).json()["ID"])
        current = response.json()
        if current.get("Rules") != rules or current.get("Description", "") != description:
            self._call(policy_write_request(policy, rules, description, current["ID"]))
        return str(current["ID"])

    def ensure_token(self, description: str, policies: Iterable[str]) -> ConsulToken:
        """The token with this description (AINI's tokens are found by it), with exactly
        these policies; created when missing."""
        wanted = sorted(policies)
        found = next((t for t in self._call(tokens_request()).json() or [] if t.get("Description") == description),
                     None)
        if found is None:
            data = self._call(token_write_request(description, wanted)).json()
        else:
            data = self._call(token_read_request(found["AccessorID"])).json()
            if sorted(p["Name"] for p in data.get("Policies") or []) != wanted:
                data = self._call(token_write_request(description, wanted, found["AccessorID"])).json()
        return ConsulToken(data["AccessorID"], data["SecretID"])

    def ensure_deploy_token(self) -> ConsulToken:
        """With the bootstrap token: the deploy policy and the token that carries it."""
        self.ensure_policy(DEPLOY_POLICY, DEPLOY_RULES, "AINI deploys")
        return self.ensure_token(DEPLOY_TOKEN, [DEPLOY_POLICY])

    def ensure_snapshot_token(self) -> ConsulToken:
        """With the bootstrap token: the token backups take and restore snapshots with."""
        self.ensure_policy(SNAPSHOT_POLICY, SNAPSHOT_RULES, "AINI backups: snapshots")
        return self.ensure_token(SNAPSHOT_TOKEN, [SNAPSHOT_POLICY])

    def ensure_policies(self) -> None:
        """With the snapshot token (it has `acl = "write"`): AINI's policies as this version
        writes them, so a deployment made by an earlier one needs no break-glass token for a
        new rule (the snapshot policy gained `service "aini-backup"` for the scheduled runs)."""
        self.ensure_policy(DEPLOY_POLICY, DEPLOY_RULES, "AINI deploys")
        self.ensure_policy(SNAPSHOT_POLICY, SNAPSHOT_RULES, "AINI backups: snapshots")

    # --- services ---------------------------------------------------------------------------
    def register_service(self, service: str, address: str, port: int | None, check: HealthCheck | None, *,
                         service_id: str | None = None, tags: Iterable[str] = (),
                         meta: Mapping[str, str] | None = None, deregister_critical_after: str | None = None) -> None:
        self._call(register_request(service_definition(
            service, address, port, check, service_id=service_id, tags=tags, meta=meta,
            deregister_critical_after=deregister_critical_after)))

    def deregister_service(self, service_id: str) -> None:
        self._call(deregister_request(service_id))

    def service_health(self, service: str) -> Health:
        """The worst check of every instance; "critical" when no instance is registered (or
        the token may not see it: Consul filters instead of refusing)."""
        entries = self._call(health_request(service)).json() or []
        return aggregate(c["Status"] for e in entries for c in e.get("Checks") or []) if entries else "critical"

    # --- KV ---------------------------------------------------------------------------------
    def kv_put(self, k: str, value: str | bytes, *, cas: int | None = None, flags: int | None = None) -> bool:
        """False when a check-and-set lost (`cas=0`: only if the key is new)."""
        data = value.encode() if isinstance(value, str) else value
        return bool(self._call(kv_put_request(k, data, cas=cas, flags=flags)).json())

    def kv_get(self, k: str) -> bytes | None:
        response = self._call(kv_get_request(k))
        return None if response.status == 404 else _value(response.json()[0])

    def kv_tree(self, prefix: str) -> dict[str, bytes]:
        response = self._call(kv_tree_request(prefix))
        return {} if response.status == 404 else {e["Key"]: _value(e) for e in response.json()}

    def kv_delete(self, k: str, *, recurse: bool = False) -> bool:
        return bool(self._call(kv_delete_request(k, recurse=recurse)).json())

    def snapshot(self) -> bytes:
        return self._call(snapshot_request()).body


def _value(entry: Mapping[str, Any]) -> bytes:
    return base64.b64decode(entry.get("Value") or "")
