"""Start-up of the Consul, Vault and OpenBao images, as TEST DOUBLES (never shipped).

What the real images do before their API answers, and every refusal on the way that AINI's
rendered configuration could run into (facts and sources: ../UPSTREAM.md):

- the official entrypoint (docker-entrypoint.sh) turns `agent` / `server` into the full
  command line with the image's data and config directories, fixes the ownership of the
  directories it knows (Consul: /consul/data and /consul/config, top level only, unless
  CONSUL_DISABLE_PERM_MGMT; Vault: /vault/config, /vault/logs, /vault/file recursively,
  unless SKIP_CHOWN) and drops to the image's user (UID 100, GID 1000) with su-exec.
  OpenBao's image (>= 2.6) starts as `openbao` already: nothing is chowned;
- the agent reads every *.hcl and *.json file of its config directory, as that user, with
  an HCL parser; Consul refuses a key it does not know ("invalid config key"), Vault only
  warns and ignores it, which the double turns into a refusal (an ignored key in AINI's
  bundle is a defect nobody would see);
- Consul without `bind_addr` (or with 0.0.0.0) and without `advertise_addr` picks the one
  private IPv4 address of the container, and refuses to start when there are several:
  "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or
  'advertise'."; a bind address the container does not have cannot be bound;
- Vault/OpenBao need a storage stanza; raft needs `path`, `node_id` or a generated one,
  and `cluster_addr`; raft opens `<path>/vault.db` and fails with "permission denied" when
  the running user cannot write there (a root-owned volume: hashicorp/vault#24837); a tcp
  listener needs TLS material unless `tls_disable`.

`start()` returns where the API listens and where its state lives; it exits the process
with upstream's message (and exit code 1) wherever upstream would.
"""
from __future__ import annotations

import grp
import ipaddress
import json
import os
import pwd
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2  # python-hcl2: the doubles image carries it (see Dockerfile)


@dataclass(frozen=True)
class Image:
    user: str
    config_dir: str
    chown: tuple[str, ...]  # what the entrypoint hands to `user` when it runs as root
    recursive: bool
    skip_env: str
    data_dir: str = ""


IMAGES = {
    "consul": Image("consul", "/consul/config", ("/consul/data", "/consul/config"), False,
                    "CONSUL_DISABLE_PERM_MGMT", "/consul/data"),
    "vault": Image("vault", "/vault/config", ("/vault/config", "/vault/logs", "/vault/file"), True, "SKIP_CHOWN"),
    "openbao": Image("openbao", "/openbao/config", (), False, ""),
}


@dataclass
class Started:
    addresses: list[str]
    port: int
    data_dir: str
    notes: list[str] = field(default_factory=list)
    audit: dict[str, dict] = field(default_factory=dict)  # OpenBao's declared audit devices, path -> device


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


# ------------------------------------------------------------------------ entrypoint


def drop_privileges(image: Image) -> None:
    """As root: the entrypoint's chown rules, then su-exec to the image's user."""
    entry = pwd.getpwnam(image.user)
    if os.geteuid() == 0:
        if not (image.skip_env and os.environ.get(image.skip_env)):
            for path in image.chown:
                if os.path.isdir(path) and os.stat(path).st_uid != entry.pw_uid:
                    _chown(path, entry.pw_uid, entry.pw_gid, image.recursive)
        os.setgroups([])
        os.setgid(grp.getgrgid(entry.pw_gid).gr_gid)
        os.setuid(entry.pw_uid)
    elif os.geteuid() != entry.pw_uid:
        fail(f"double: running as uid {os.geteuid()}, the image's user is {image.user}")


def _chown(path: str, uid: int, gid: int, recursive: bool) -> None:
    try:
        os.chown(path, uid, gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), uid, gid)
    except OSError as exc:  # a read-only bind mount: upstream prints this and goes on
        print(f"Could not chown {path} (may not have appropriate permissions): {exc}", flush=True)


# ------------------------------------------------------------------------ config files


def load_dir(directory: str) -> list[tuple[str, dict[str, Any]]]:
    """Every *.hcl / *.json file in the directory, in name order, parsed as the agent does."""
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        fail(f"Error loading config: {directory}: {exc}")
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith((".hcl", ".json")) or os.path.isdir(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            fail(f"Error loading {path}: {exc}")
        try:
            data = json.loads(text) if name.endswith(".json") else hcl2.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is upstream's refusal too
            fail(f"Error parsing {path}: {exc}")
        found.append((path, _plain(data)))
    return found


def _plain(value: Any) -> Any:
    """python-hcl2's output as plain data: strings without their quotes, blocks as dicts."""
    if isinstance(value, dict):
        return {_unquote(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return _unquote(value) if isinstance(value, str) else value


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _blocks(value: Any) -> list[dict[str, Any]]:
    return [b for b in (value if isinstance(value, list) else [value]) if isinstance(b, dict)]


def check_keys(path: str, data: dict[str, Any], known: dict[str, Any], prefix: str = "",
               message: str = "failed to parse {path}: 1 error occurred:\n\t* invalid config key {key}") -> None:
    """Refuse unknown keys, nested blocks included (`known` maps a block key to its own map)."""
    for key, value in data.items():
        if key not in known:
            fail(message.format(path=path, key=f"{prefix}{key}"))
        nested = known[key]
        if isinstance(nested, dict):
            for block in _blocks(value):
                check_keys(path, block, nested, f"{prefix}{key}.", message)


# ---------------------------------------------------------------------------- consul

_ANY = None  # a leaf key
CONSUL_KEYS: dict[str, Any] = {
    k: _ANY for k in (
        "datacenter", "data_dir", "server", "bootstrap", "bootstrap_expect", "client_addr", "bind_addr",
        "advertise_addr", "advertise_addr_wan", "serf_lan", "serf_wan", "node_name", "node_id", "log_level",
        "log_json", "encrypt", "encrypt_verify_incoming", "encrypt_verify_outgoing", "retry_join", "start_join",
        "disable_update_check", "enable_script_checks", "enable_local_script_checks", "primary_datacenter",
        "leave_on_terminate", "skip_leave_on_interrupt", "rejoin_after_leave", "domain", "recursors",
        "enable_central_service_config", "disable_remote_exec", "ui", "raft_protocol", "verify_incoming",
        "verify_outgoing", "ca_file", "cert_file", "key_file")
} | {
    "ports": {k: _ANY for k in ("dns", "http", "https", "grpc", "grpc_tls", "serf_lan", "serf_wan", "server")},
    "addresses": {k: _ANY for k in ("dns", "http", "https", "grpc", "grpc_tls")},
    "ui_config": {k: _ANY for k in ("enabled", "dir", "content_path", "metrics_provider")},
    "acl": {k: _ANY for k in ("enabled", "default_policy", "down_policy", "enable_token_persistence",
                              "enable_token_replication", "token_ttl", "policy_ttl", "role_ttl")}
    | {"tokens": {k: _ANY for k in ("initial_management", "agent", "default", "replication",
                                     "agent_recovery", "config_file_service_registration")}},
    "performance": {k: _ANY for k in ("raft_multiplier", "leave_drain_time", "rpc_hold_timeout")},
    "telemetry": {k: _ANY for k in ("disable_hostname", "prometheus_retention_time", "statsd_address")},
    "connect": {k: _ANY for k in ("enabled",)},
    "limits": {k: _ANY for k in ("http_max_conns_per_client", "rpc_max_conns_per_client")},
}


def consul_start(argv: list[str]) -> Started:
    """`agent [flags]` as the image's entrypoint completes it, then the agent's config rules."""
    image = IMAGES["consul"]
    if argv[:1] != ["agent"]:
        fail(f"consul double: only the `agent` command is modelled, not {argv[:1]}")
    # The entrypoint prepends -data-dir and -config-dir of the image, and writes
    # CONSUL_LOCAL_CONFIG into the config directory as local.json, as root.
    flags = [f"-data-dir={image.data_dir}", f"-config-dir={image.config_dir}", *argv[1:]]
    if os.environ.get("CONSUL_LOCAL_CONFIG"):
        Path(image.config_dir, "local.json").write_text(os.environ["CONSUL_LOCAL_CONFIG"] + "\n")
    drop_privileges(image)
    config: dict[str, Any] = {}
    flag_values: dict[str, Any] = {}
    config_dirs: list[str] = []
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name == "config-dir":
            config_dirs.append(value)
        elif name in ("data-dir", "bind", "client", "advertise", "bootstrap-expect", "datacenter", "node"):
            flag_values[{"data-dir": "data_dir", "bind": "bind_addr", "client": "client_addr",
                         "advertise": "advertise_addr", "node": "node_name"}.get(name, name)] = value
        elif name in ("server", "ui", "dev"):
            flag_values[name] = True
        else:
            fail(f"flag provided but not defined: -{name}")
    for directory in dict.fromkeys(config_dirs):
        for path, data in load_dir(directory):
            check_keys(path, data, CONSUL_KEYS)
            config.update(data)
    config.update(flag_values)  # flags win over files, as upstream

    data_dir = str(config.get("data_dir") or "")
    if not data_dir:
        fail("==> data_dir cannot be empty")
    try:
        probe = Path(data_dir) / ".aini-double-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        fail(f"==> Error starting agent: Failed to create data dir: {exc}")

    if "encrypt" in config:
        _gossip_keyring(str(config["encrypt"]), data_dir)

    for key in ("bind_addr", "advertise_addr", "client_addr"):
        if "{{" in str(config.get(key, "")):
            fail(f"consul double: go-sockaddr templates in {key} are not modelled")
    bind = str(config.get("bind_addr") or "0.0.0.0")
    advertise = str(config.get("advertise_addr") or "")
    mine = own_ipv4()
    if bind != "0.0.0.0" and bind not in mine:
        fail(f"==> Failed to start Consul server: Failed to start LAN Serf: Failed to create memberlist: "
             f"Could not set up network transport: failed to obtain an address: Failed to start TCP listener "
             f"on \"{bind}\" port 8301: listen tcp {bind}:8301: bind: cannot assign requested address")
    if bind == "0.0.0.0" and not advertise:
        private = [a for a in mine if ipaddress.ip_address(a).is_private and not ipaddress.ip_address(a).is_loopback]
        if len(private) > 1:
            fail("==> Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'.")
        if not private:
            fail("==> No private IPv4 address found")

    client = str(config.get("client_addr") or "127.0.0.1").split()
    http_port = int(_blocks(config.get("ports", {}))[0].get("http", 8500)) if config.get("ports") else 8500
    for address in client:
        if address != "0.0.0.0" and address not in mine:
            fail(f"==> Error starting agent: listen tcp {address}:{http_port}: bind: cannot assign requested address")
    return Started(client, http_port, data_dir)


def _gossip_keyring(key: str, data_dir: str) -> None:
    """`encrypt`: standard base64 of a 16, 24 or 32 byte key (memberlist.ValidateKey), put
    into <data_dir>/serf/local.keyring on the first start; an existing keyring wins."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error as exc:
        fail(f"==> encrypt has invalid key: {exc}")
    if len(raw) not in (16, 24, 32):
        fail("==> Error starting agent: Failed to configure keyring: Invalid key: key size must be 16, 24 or 32 bytes")
    keyring = Path(data_dir, "serf", "local.keyring")
    if not keyring.exists():
        keyring.parent.mkdir(parents=True, exist_ok=True)
        keyring.write_text(json.dumps([key]))


def own_ipv4() -> list[str]:
    """Every IPv4 address of this network namespace (what sockaddr's GetPrivateIPs sees)."""
    addresses: list[str] = []
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return ["127.0.0.1"]
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            addr = lines[i - 1].split()[-1]
            if addr not in addresses:
                addresses.append(addr)
    return addresses


# ----------------------------------------------------------------------------- vault

VAULT_KEYS: dict[str, Any] = {
    k: _ANY for k in (
        "ui", "disable_mlock", "api_addr", "cluster_addr", "cluster_name", "disable_cache", "log_level",
        "log_format", "log_file", "default_lease_ttl", "max_lease_ttl", "default_max_request_duration",
        "plugin_directory", "pid_file", "disable_clustering", "raw_storage_endpoint", "introspection_endpoint",
        "enable_response_header_hostname", "enable_response_header_raft_node_id", "license_path",
        "imprecise_lease_role_tracking", "disable_performance_standby")
} | {
    "storage": {"raft": {k: _ANY for k in ("path", "node_id", "performance_multiplier", "trailing_logs",
                                           "snapshot_threshold", "max_entry_size", "autopilot_reconcile_interval")}
                | {"retry_join": {k: _ANY for k in ("leader_api_addr", "leader_ca_cert_file")}},
                "file": {"path": _ANY}, "inmem": {}},
    "listener": {"tcp": {k: _ANY for k in (
        "address", "cluster_address", "tls_disable", "tls_cert_file", "tls_key_file", "tls_min_version",
        "proxy_protocol_behavior", "x_forwarded_for_authorized_addrs", "max_request_size", "max_request_duration",
        "tls_disable_client_certs")} | {"telemetry": {"unauthenticated_metrics_access": _ANY}}},
    "telemetry": {k: _ANY for k in ("disable_hostname", "prometheus_retention_time", "statsd_address")},
    "seal": {"transit": None, "static": None, "awskms": None},
}
# OpenBao (>= 2.4) declares audit devices in its configuration (openbao.org/docs/configuration/
# audit): `audit "<type>" "<path>" { description = ..., options { ... } }`. Vault has no such
# stanza (it would warn and ignore it: the double refuses).
OPENBAO_KEYS: dict[str, Any] = VAULT_KEYS | {"audit": _ANY}


def declared_audit(blocks: list[Any]) -> dict[str, dict]:
    devices: dict[str, dict] = {}
    for block in blocks:
        for kind, by_path in _blocks(block)[0].items():
            for path, stanza in _blocks(by_path)[0].items():
                stanza = _blocks(stanza)[0]
                options = {str(k): str(v) for k, v in _blocks(stanza.get("options") or {})[0].items()}
                if path in devices:
                    fail(f"Error parsing audit devices: duplicate path {path}")
                if kind == "file" and not options.get("file_path"):
                    fail(f"Error creating audit device {path}: file_path is required")
                devices[path] = {"type": kind, "description": str(stanza.get("description") or ""),
                                 "options": options, "local": False}
    return devices


def vault_start(flavor: str, argv: list[str]) -> Started:
    image = IMAGES[flavor]
    if argv[:1] != ["server"]:
        fail(f"{flavor} double: only the `server` command is modelled, not {argv[:1]}")
    if flavor == "openbao" and os.geteuid() == 0:
        fail("openbao double: the image runs as `openbao`; started as root it is not the image")
    drop_privileges(image)
    config: dict[str, Any] = {}
    for path, data in load_dir(image.config_dir):
        # Upstream only warns here ("unknown or unsupported field", configutil
        # ValidateUnusedFields) and runs on without the setting; the double refuses, because
        # a key Vault ignores is a defect in AINI's bundle that nothing else would show.
        check_keys(path, data, OPENBAO_KEYS if flavor == "openbao" else VAULT_KEYS, message="[WARN] unknown or unsupported field {key} found in "
                   "configuration at {path} (the AINI double refuses what upstream would ignore)")
        for key, value in data.items():
            if key in ("storage", "listener", "audit"):
                config.setdefault(key, []).extend(_blocks(value))
            else:
                config[key] = value
    storages = config.get("storage", [])
    if not storages:
        fail("Error: No storage backend specified")
    if len(storages) > 1:
        fail("Error: Only one 'storage' block is permitted")
    (kind, stanza), = _blocks(storages[0])[0].items()
    stanza = _blocks(stanza)[0]
    data_dir = ""
    if kind == "raft":
        data_dir = str(stanza.get("path") or os.environ.get("VAULT_RAFT_PATH") or "")
        if not data_dir:
            fail("Error initializing storage of type raft: 'path' must be set")
        if not config.get("cluster_addr"):
            fail("Cluster address must be set when using raft storage")
        try:
            with open(os.path.join(data_dir, "vault.db"), "a"):
                pass
        except OSError as exc:
            fail(f"Error initializing storage of type raft: failed to create fsm: failed to open bolt file: "
                 f"open {data_dir}/vault.db: {exc.strerror.lower() if exc.strerror else exc}")
    elif kind == "file":
        data_dir = str(stanza.get("path") or "")
    listeners = config.get("listener", [])
    if not listeners:
        fail("Error initializing listener: no listener configured")
    addresses: list[str] = []
    port = 8200
    for block in listeners:
        (_, tcp), = block.items()
        tcp = _blocks(tcp)[0]
        if not tcp.get("tls_disable") and not (tcp.get("tls_cert_file") and tcp.get("tls_key_file")):
            fail("Error initializing listener of type tcp: error loading TLS cert: open : no such file or directory")
        host, _, p = str(tcp.get("address", "127.0.0.1:8200")).rpartition(":")
        addresses.append(host or "0.0.0.0")
        port = int(p)
    return Started(addresses, port, data_dir, audit=declared_audit(config.get("audit", [])))


def start(service: str, flavor: str, argv: list[str]) -> Started:
    if service == "consul":
        return consul_start(argv)
    return vault_start(flavor or "vault", argv)
