"""Docker Compose argv lists for one group (one compose project), and the parser of `ps`.
No I/O: a Site runs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath

from .cmd import Cmd, Runner, Tools


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


def compose_create_cmd(tools: Tools, deploy_dir: PurePath, group: str) -> Cmd:
    """The group's containers made as its compose file says, none started (a running one
    that already is as it says stays running): a restore puts the data back before the
    version it belongs to starts on it."""
    return Cmd((*compose_base(tools, deploy_dir, group), "up", "--no-start", "--pull", "never", "--remove-orphans"),
               timeout=300)


def compose_start_cmd(tools: Tools, deploy_dir: PurePath, group: str, services: Sequence[str],
                      wait_timeout: int) -> Cmd:
    """Only `services` of the group up and healthy, what depends on them not started: a
    database takes its dump before its application opens it."""
    return Cmd((*compose_base(tools, deploy_dir, group), "up", "--detach", "--wait", "--wait-timeout",
                str(wait_timeout), "--pull", "never", "--no-deps", *services), timeout=wait_timeout + 300)


def compose_down_cmd(tools: Tools, deploy_dir: PurePath, group: str) -> Cmd:
    """Stop and remove a group's containers; its volumes (the data) stay."""
    return Cmd((*compose_base(tools, deploy_dir, group), "down", "--remove-orphans"), timeout=300)


def compose_ps_cmd(tools: Tools, deploy_dir: PurePath, group: str) -> Cmd:
    return Cmd((*compose_base(tools, deploy_dir, group), "ps", "--all", "--format", "json"))


def parse_ps(stdout: str) -> list[dict]:
    """`compose ps --format json`: one object per line (Compose >= 2.21) or one array (older)."""
    rows: list[dict] = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
        elif line.startswith("["):
            rows.extend(json.loads(line))
    return rows


def unhealthy(rows: Iterable[Mapping]) -> list[Mapping]:
    """`compose ps` rows of containers that are not running, or whose health check does not
    say healthy (starting counts as not healthy)."""
    return [c for c in rows if c.get("State") != "running" or c.get("Health") not in ("", "healthy", None)]


def group_healthy(tools: Tools, run: Runner, deploy_dir: PurePath, group: str, deadline: float) -> bool:
    """Compose's `--wait` said the group is up: check it ourselves, until `deadline`, for
    every container running and healthy. Seen in CI: `up --wait` returning 0 while the
    container it had just recreated was still starting and then failed its checks."""
    while True:
        rows = parse_ps(run(compose_ps_cmd(tools, deploy_dir, group)).stdout)
        if not unhealthy(rows):
            return True
        if time.monotonic() >= deadline or any(r.get("State") not in ("running", "restarting")
                                               or r.get("Health") == "unhealthy" for r in rows):
            return False
        time.sleep(2)
