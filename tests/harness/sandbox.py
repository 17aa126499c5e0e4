"""Sandbox hosts: real Debian 12 machines (systemd + sshd) as containers on the local engine.

Images are built from Debian's own packages only (no registry is reachable): debootstrap
makes the base, `docker import` turns it into an image, Dockerfiles under images/ layer on
it. Every image is tagged by a hash of its recipe, so an unchanged recipe is never rebuilt.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .docker_engine import EngineError, ensure_engine

IMAGES_DIR = Path(__file__).parent / "images"
REPO = "aini-sandbox"
LABEL = "aini-sandbox=1"
OWNER_LABEL = "aini-sandbox.pid"
BOOT_TIMEOUT = 90.0
# The hosts' own network. A fresh dockerd reports its default bridge without a gateway
# (`"Config":[{"Subnet":"172.17.0.0/16"}]` while docker0 holds 172.17.0.1), so nothing in
# the world may read addresses off the default bridge: this network says them itself. The
# subnet overlaps neither the hosts' own docker0 (172.17.0.0/16) nor AINI's proxy network.
WORLD_NETWORK = "aini-world"
WORLD_SUBNET = "10.213.0.0/24"
WORLD_GATEWAY = "10.213.0.1"

BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": os.environ.get("AINI_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
    "revision": 1,  # bump to force a rebuild after changing build_base_image()
}

# Exactly what a systemd host with its own Docker engine needs here: --privileged is
# refused (SYS_RESOURCE is not in this machine's bounding set), so is --cap-add ALL alone.
RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
]


class SandboxError(RuntimeError):
    """The test world could not be built or a host did not come up."""


@functools.cache
def docker_cli() -> str:
    # Checked once per process: `docker info` on every call would double each call's cost.
    return ensure_engine()


def docker(*args: str, check: bool = True, input: bytes | None = None,
           timeout: float | None = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([docker_cli(), *args], input=input, capture_output=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise SandboxError(f"docker {' '.join(args[:3])}... failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace')[-2000:]}")
    return r


def _out(*args: str) -> str:
    return docker(*args).stdout.decode().strip()


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


@contextmanager
def _build_lock():
    # Two pytest runs on one machine must not debootstrap the same tag at once.
    with open(os.path.join(tempfile.gettempdir(), "aini-sandbox-build.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _context_digest(context: Path) -> list[bytes | str]:
    parts: list[bytes | str] = []
    # Bytecode a test left beside a double is not part of the recipe (and .dockerignore'd).
    for f in sorted(p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        parts += [str(f.relative_to(context)), oct(f.stat().st_mode & 0o777), f.read_bytes()]
    return parts


def base_image(suite: str = "bookworm") -> str:
    """Debian minbase from debootstrap (12 by default; `suite` "trixie": 13), imported as an
    image; built once per recipe."""
    recipe = BASE_RECIPE | {"suite": suite}
    tag = f"{REPO}/debian-base:{_digest(json.dumps(recipe, sort_keys=True))}"
    with _build_lock():
        if not image_exists(tag):
            build_base_image(tag, recipe)
    return tag


def build_base_image(tag: str, recipe: dict = BASE_RECIPE) -> None:
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        raise SandboxError("debootstrap is not installed (apt-get install debootstrap)")
    workdir = Path(tempfile.mkdtemp(prefix="aini-debootstrap-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    try:
        r = subprocess.run(
            ["debootstrap", f"--variant={recipe['variant']}", recipe["suite"], str(rootfs), recipe["mirror"]],
            capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else r.stderr[-2000:]
            raise SandboxError(f"debootstrap failed ({r.returncode}):\n{r.stdout[-1000:]}\n{detail}")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run([docker_cli(), "import", "--change", 'CMD ["/bin/bash"]',
                              "-", tag], stdin=tar.stdout, capture_output=True, timeout=600)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise SandboxError(f"docker import failed: {imp.stderr.decode(errors='replace')}")
    finally:
        _unmount_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    # A debootstrap that died midway can leave /proc, /sys or a bind of the real /dev
    # mounted in the target; rmtree would then walk into them.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def layered_image(name: str, parent: str, context: Path | None = None,
                  build_args: dict[str, str] | None = None) -> str:
    """Build images/<name>/Dockerfile FROM `parent` (passed as build arg BASE).

    The tag hashes the parent tag (itself a content hash), the build args and every
    file of the context, so a change anywhere down the chain rebuilds what depends on it.
    This is the hook for later images, e.g. a host with docker.io preinstalled.
    """
    context = context or IMAGES_DIR / name
    args = {"BASE": parent, **(build_args or {})}
    tag = f"{REPO}/{name}:{_digest(json.dumps(args, sort_keys=True), *_context_digest(context))}"
    with _build_lock():
        if not image_exists(tag):
            cmd = ["build", "--network", "bridge", "-t", tag]
            for k, v in args.items():
                cmd += ["--build-arg", f"{k}={v}"]
            docker(*cmd, str(context), timeout=1800)
    return tag


def host_image() -> str:
    return layered_image("host", base_image())


def docker_host_image() -> str:
    """The host image plus Debian's docker.io (see images/host-docker/Dockerfile)."""
    return layered_image("host-docker", host_image())


def scanner_image() -> str:
    """The host image plus nmap and busybox-static (see images/scanner/Dockerfile)."""
    return layered_image("scanner", host_image())


# --------------------------------------------------------------------------- hosts


def world_network() -> str:
    """The hosts' network, created once with a fixed subnet and gateway; returns the
    gateway, the address at which this machine's listeners (Pebble) are reached from it."""
    r = docker("network", "inspect", WORLD_NETWORK, "--format",
               "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", check=False)
    if r.returncode == 0:
        found = r.stdout.decode().split()
        if found != [WORLD_SUBNET, WORLD_GATEWAY]:
            raise SandboxError(f"network {WORLD_NETWORK} exists with {found}, not {WORLD_SUBNET} "
                               f"via {WORLD_GATEWAY}: remove it (docker network rm {WORLD_NETWORK})")
        return WORLD_GATEWAY
    r = docker("network", "create", "--driver", "bridge", "--subnet", WORLD_SUBNET, "--gateway",
               WORLD_GATEWAY, "--label", LABEL, WORLD_NETWORK, check=False)
    if r.returncode != 0 and b"already exists" not in r.stderr:  # another run made it meanwhile
        raise SandboxError(f"docker network create {WORLD_NETWORK} failed: {r.stderr.decode(errors='replace')}")
    return WORLD_GATEWAY


def make_keypair(directory: Path) -> Path:
    """A fresh ed25519 key pair; returns the private key path (0600, no passphrase)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aini-sandbox",
                        "-f", str(key)], check=True)
    key.chmod(0o600)
    return key


SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]


@dataclass
class SandboxHost:
    name: str
    key: Path
    volume: str
    ssh_port: int = 0
    http_port: int = 0
    https_port: int = 0
    ip: str = ""  # address on the docker bridge, reachable from other containers
    ports: dict[int, int] = field(default_factory=dict)

    # -- lifecycle
    def refresh(self) -> None:
        # The bridge IP can change across a stop/start (ports are fixed at creation).
        info = json.loads(_out("inspect", self.name))[0]
        self.ports = {}
        for spec, binds in (info["NetworkSettings"]["Ports"] or {}).items():
            if binds:
                self.ports[int(spec.split("/")[0])] = int(binds[0]["HostPort"])
        self.ssh_port, self.http_port, self.https_port = (self.ports.get(p, 0) for p in (22, 80, 443))
        self.ip = next((n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values()
                        if n.get("IPAddress")), "")

    def start(self) -> None:
        docker("start", self.name)
        self.refresh()

    def stop(self) -> None:
        docker("stop", "-t", "30", self.name)

    def restart(self) -> None:
        """Power-cycle: stop and start the same container, keeping disk and volume state."""
        self.stop()
        self.start()
        self.wait_ready()

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)
        docker("volume", "rm", "-f", self.volume, check=False)

    # -- state
    def running(self) -> bool:
        return _out("inspect", "-f", "{{.State.Running}}", self.name) == "true"

    def system_state(self) -> str:
        r = self.exec("systemctl", "is-system-running", check=False)
        return r.stdout.strip() or r.stderr.strip()

    def failed_units(self) -> str:
        return self.exec("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout

    def ssh_ok(self) -> bool:
        return self.ssh("true", check=False, timeout=15).returncode == 0

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until systemd finished booting (running/degraded) and SSH accepts our key."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.system_state()
            if state in ("running", "degraded") and self.ssh_ok():
                return
            if not self.running():
                state = "container exited"
                break
            time.sleep(0.5)
        logs = docker("logs", "--tail", "40", self.name, check=False).stdout.decode(errors="replace")
        raise SandboxError(f"{self.name} not ready (waited up to {timeout:.0f}s): systemd={state!r}, "
                           f"ssh port {self.ssh_port}\nfailed units:\n{self.failed_units()}\n"
                           f"console:\n{logs}")

    # -- access
    def exec(self, *cmd: str, check: bool = True, input: str | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a command inside the container (root, no SSH), text output."""
        r = subprocess.run([docker_cli(), "exec", *(["-i"] if input is not None else []),
                            self.name, *cmd], input=input, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise SandboxError(f"{self.name}: {shlex.join(cmd)} -> {r.returncode}\n{r.stderr}")
        return r

    def ssh_command(self) -> list[str]:
        return ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-i", str(self.key), "-p", str(self.ssh_port), "root@127.0.0.1"]

    def ssh(self, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.ssh_command(), command], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise SandboxError(f"ssh {self.name}: {command} -> {r.returncode}\n{r.stderr}")
        return r

    def inventory(self) -> dict[str, str | int]:
        """Host variables for an Ansible inventory entry."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def testinfra(self):
        """A testinfra host over the ssh:// backend (paramiko is not installed here)."""
        import testinfra

        # One multiplexed connection per container (named after it, not after the port, so
        # a later host on a reused port never talks to a dead master) instead of a new
        # SSH handshake for every check.
        return testinfra.get_host(
            f"ssh://root@127.0.0.1:{self.ssh_port}", ssh_identity_file=str(self.key),
            controlpath=str(self.key.parent / f"cm-{self.name}"),
            ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                           "-o LogLevel=ERROR -o IdentitiesOnly=yes")


_handed_out: set[int] = set()


def _free_port() -> int:
    # Chosen here rather than by Docker (`-p 127.0.0.1::22`) so that a host keeps its
    # ports across stop/start and an inventory written before a restart stays valid.
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def start_hosts(n: int, key: Path, image: str | None = None, prefix: str = "aini-sandbox",
                publish: tuple[int, ...] = (22, 80, 443), owner: int | None = None) -> list[SandboxHost]:
    """Create n fresh hosts with `key` authorised for root, boot them together, wait for all.

    `owner`: the pid whose death makes the hosts leftovers (default: this process); a
    short-lived helper (e.g. Molecule's create step) passes a longer-lived one.
    """
    image = image or host_image()
    world_network()
    pub = Path(f"{key}.pub")
    hosts: list[SandboxHost] = []
    try:
        for _ in range(n):
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
            host = SandboxHost(name=name, key=key, volume=f"{name}-docker")
            hosts.append(host)
            labels = ["--label", LABEL, "--label", f"{OWNER_LABEL}={owner or os.getpid()}"]
            docker("volume", "create", *labels, host.volume)
            ports = [a for p in publish for a in ("-p", f"127.0.0.1:{_free_port()}:{p}")]
            docker("create", "--name", name, "--hostname", name, "--network", WORLD_NETWORK, *labels, *RUN_FLAGS,
                   "-v", f"{host.volume}:/var/lib/docker", *ports, image)
            # Copied in before boot, so sshd never runs without the key in place.
            docker("cp", str(pub), f"{name}:/root/.ssh/authorized_keys")
        for host in hosts:
            host.start()
        for host in hosts:
            host.wait_ready()
    except BaseException:
        for host in hosts:
            host.remove()
        raise
    return hosts


def write_inventory(hosts: list[SandboxHost], path: Path, group: str = "sandbox") -> Path:
    """An Ansible YAML inventory (JSON is valid YAML) with every host in `group`."""
    inv = {"all": {"children": {group: {"hosts": {h.name: h.inventory() for h in hosts}}}}}
    path.write_text(json.dumps(inv, indent=2))
    return path


def _owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(OWNER_LABEL, ""))
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid > 0


def cleanup_leftovers(all_owners: bool = False) -> int:
    """Remove sandbox containers/volumes whose owning test process is gone (killed runs).

    Hosts of a test run still alive on this machine are left alone unless `all_owners`.
    """
    def stale(labels: dict[str, str]) -> bool:
        return all_owners or not _owner_alive(labels)

    removed = 0
    for cid in _out("ps", "-aq", "--filter", f"label={LABEL}").split():
        labels = json.loads(_out("inspect", "-f", "{{json .Config.Labels}}", cid)) or {}
        if stale(labels):
            docker("rm", "-f", "-v", cid, check=False)
            removed += 1
    for vol in _out("volume", "ls", "-q", "--filter", f"label={LABEL}").split():
        labels = json.loads(_out("volume", "inspect", "-f", "{{json .Labels}}", vol)) or {}
        if stale(labels):
            docker("volume", "rm", "-f", vol, check=False)
    return removed


__all__ = ["EngineError", "SandboxError", "SandboxHost", "base_image", "host_image",
           "docker_host_image", "scanner_image", "world_network", "layered_image", "make_keypair", "start_hosts", "write_inventory", "cleanup_leftovers",
           "RUN_FLAGS"]
