"""Docker engine argv lists (containers, networks, images, logs) and the parsers of their
output. No I/O: a Site runs them. Formats name fields one by one: `Config.Env` holds secret
values and is never asked for."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .cmd import Cmd, Tools

DEFAULT_PULL_TIMEOUT = 900
LOG_LINES = 40


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    subnet: str | None = None
    internal: bool = False


def _ps(tools: Tools, project: str, fmt: str, *extra: str, timeout: float = 30) -> Cmd:
    """The project's containers, running or not, one line each in `fmt`."""
    return Cmd((*tools.docker, "ps", "--all", *extra, "--filter", f"label=aini.project={project}", "--format", fmt),
               timeout=timeout)


def containers_cmd(tools: Tools, project: str) -> Cmd:
    """Group, service, state, name and image of each container (`parse_running` and
    `parse_images` read it)."""
    return _ps(tools, project,
               '{{.Label "aini.group"}}\t{{.Label "aini.service"}}\t{{.State}}\t{{.Names}}\t{{.Image}}', timeout=120)


def status_cmd(tools: Tools, project: str) -> Cmd:
    """The containers' IDs (`inspect_cmd` reads the rest)."""
    return _ps(tools, project, "{{.ID}}", "--no-trunc")


def parse_running(stdout: str) -> dict[str, set[str]]:
    """`containers_cmd` output: group -> names of its services whose container runs."""
    result: dict[str, set[str]] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2] == "running":
            result.setdefault(parts[0], set()).add(parts[1])
    return result


def parse_images(stdout: str) -> dict[str, str]:
    """`containers_cmd` output: service -> the image its container was created from, running
    or not (an image ID when the reference was since moved to another image)."""
    return {parts[1]: parts[4] for parts in (line.split("\t") for line in stdout.splitlines())
            if len(parts) >= 5 and parts[1] and parts[4]}


# One JSON object per container; named fields only (Config.Env holds secret values).
# The whole .State object: Docker's templates fail on .State.Health for a container without
# a health check ("map has no entry for key"), so health is read from it in Python.
INSPECT_FORMAT = (
    '{"id":{{json .Id}},"name":{{json .Name}},"state":{{json .State}},'
    '"restarts":{{json .RestartCount}},'
    '"group":{{json (index .Config.Labels "aini.group")}},'
    '"service":{{json (index .Config.Labels "aini.service")}}}'
)


def inspect_cmd(tools: Tools, ids: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "inspect", "--type", "container", "--format", INSPECT_FORMAT, *ids), timeout=30)


def networks_cmd(tools: Tools) -> Cmd:
    return Cmd((*tools.docker, "network", "ls", "--format", "{{.Name}}"))


def network_create_cmd(tools: Tools, net: NetworkSpec, project: str) -> Cmd:
    argv = [*tools.docker, "network", "create", "--label", f"aini.project={project}"]
    if net.subnet:
        argv += ["--subnet", net.subnet]
    if net.internal:
        argv.append("--internal")
    return Cmd((*argv, net.name))


def network_rm_cmd(tools: Tools, name: str) -> Cmd:
    return Cmd((*tools.docker, "network", "rm", name))


def volume_create_cmd(tools: Tools, name: str, labels: Mapping[str, str]) -> Cmd:
    """A named volume with `labels` (one that exists already is left as it is)."""
    return Cmd((*tools.docker, "volume", "create", *(a for k, v in labels.items() for a in ("--label", f"{k}={v}")),
                name))


def volumes_cmd(tools: Tools, label: str) -> Cmd:
    """The names of the volumes carrying `label`, one per line."""
    return Cmd((*tools.docker, "volume", "ls", "--quiet", "--filter", f"label={label}"))


def volume_rm_cmd(tools: Tools, names: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "volume", "rm", *names))


# The address the kernel would send from to reach address:port (a UDP connect sends nothing).
_SOURCE_ADDRESS = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                   "s.connect((sys.argv[1], int(sys.argv[2]))); print(s.getsockname()[0])")


def source_address_cmd(address: str, port: int) -> Cmd:
    """Where the engine's host reaches a container from: its own address on that Docker
    network (the gateway Docker picked), wherever the network was created."""
    return Cmd(("python3", "-c", _SOURCE_ADDRESS, address, str(port)))


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


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    group: str
    service: str
    state: str  # running, exited, restarting, created, paused, dead
    health: str | None  # healthy, unhealthy, starting; None: no health check
    restarts: int = 0
    started_at: dt.datetime | None = None
    exit_code: int | None = None


def parse_ids(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if re.fullmatch(r"[0-9a-f]{12,64}", line.strip())]


def parse_inspect(stdout: str) -> list[Container]:
    """`docker inspect --format INSPECT_FORMAT` output; lines that are not such objects are
    skipped (a container removed between `ps` and `inspect` simply is not there)."""
    result = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        name = str(row.get("name") or "").lstrip("/")
        state = row.get("state") if isinstance(row.get("state"), dict) else {}
        health = state.get("Health") if isinstance(state.get("Health"), dict) else {}
        result.append(Container(
            id=str(row.get("id") or ""),
            name=name,
            group=str(row.get("group") or ""),
            service=str(row.get("service") or "") or name,
            state=str(state.get("Status") or "unknown"),
            health=health.get("Status") or None,
            restarts=_int(row.get("restarts")) or 0,
            started_at=parse_time(state.get("StartedAt")),
            exit_code=_int(state.get("ExitCode")),
        ))
    return result


def parse_time(value: object) -> dt.datetime | None:
    """Docker's RFC 3339 time with nanoseconds; None for its zero time ("never")."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
