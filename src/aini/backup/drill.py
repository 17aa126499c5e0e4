"""`aini backup drill`: a run put back into throwaway containers and volumes beside the
stack, checked, and removed. Pure: the commands are data, ops.drill runs them.

Per service, from its catalog entry:
- a database dump is loaded into a new container of the same pinned image, on an internal
  network of its own (no route, no published port), with throwaway credentials; then the
  entry's `verify` command runs in it (a query that fails when the data is not there);
- volumes are restored into new volumes with `restic restore --verify`, which reads every
  restored file back and compares it with the snapshot;
- a control plane's snapshot (Vault, Consul) is read back whole (`restic dump`, which checks
  every blob's hash); loading it needs an initialised Vault or Consul, so it is not loaded.
Applications are not started: they would reach out (mail, webhooks, ACME) from a copy."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..catalog.model import Context, HealthCheck, Ref, ServiceSpec
from ..docker import restic
from ..docker.cmd import Cmd, Tools
from . import plan

LABEL = "aini.drill"  # on everything a drill creates, valued with the project: found and removed by it
READY_TIMEOUT = 180  # seconds a throwaway database may take to accept connections


@dataclass(frozen=True)
class Scratch:
    """The names of one drill's throwaway resources."""

    project: str
    drill: str  # a short random id

    @property
    def network(self) -> str:
        return f"aini-drill-{self.drill}"

    def name(self, service: str) -> str:
        return f"aini-drill-{self.drill}-{service}"

    @property
    def label(self) -> tuple[str, str]:
        return ("--label", f"{LABEL}={self.project}")


def new_scratch(project: str) -> Scratch:
    return Scratch(project, secrets.token_hex(4))


def kind(item: plan.Item) -> str:
    """load (a database dump into a throwaway copy), read (a control plane's snapshot), or
    volumes."""
    if item.dump:
        return "read" if item.backup.token else "load"
    return "volumes"


def throwaway_env(spec: ServiceSpec, ctx: Context) -> dict[str, str]:
    """The database's environment with every secret replaced by a throwaway value: the copy
    needs credentials, never the real ones."""
    fresh: dict[str, str] = {}
    env = {}
    for name, value in (spec.env(ctx) if spec.env else {}).items():
        if isinstance(value, Ref):
            value = value.template.format(fresh.setdefault(value.secret, secrets.token_hex(16)))
        env[name] = value
    return env


def network_cmd(tools: Tools, scratch: Scratch) -> Cmd:
    return Cmd((*tools.docker, "network", "create", "--internal", *scratch.label, scratch.network), timeout=60)


def database_cmd(tools: Tools, scratch: Scratch, spec: ServiceSpec, image: str, env_file: str) -> Cmd:
    return Cmd((*tools.docker, "run", "-d", "--name", scratch.name(spec.name), *scratch.label,
                "--network", scratch.network, "--env-file", env_file, image, *(spec.command or ())), timeout=300)


def ready_cmd(tools: Tools, item: plan.Item, scratch: Scratch, health: HealthCheck) -> Cmd | None:
    """The catalog's `ready` command, else the entry's own health check, run in the throwaway
    container; None when it has neither."""
    container = scratch.name(item.service)
    if item.backup.ready:
        return Cmd((*tools.docker, "exec", container, "sh", "-c", item.backup.ready), timeout=60)
    test = health.test
    if not test or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    argv = test[1:] if test[0] == "CMD" else ("sh", "-c", " ".join(test[1:]))
    return Cmd((*tools.docker, "exec", container, *argv), timeout=60)


def in_copy(item: plan.Item, scratch: Scratch) -> plan.Item:
    """The item as its throwaway copy: the catalog's restore and verify run there."""
    return replace(item, container=scratch.name(item.service))


def load_cmds(tools: Tools, repo: restic.Repository, item: plan.Item, scratch: Scratch,
              snapshots: Sequence[restic.Snapshot]) -> list[Cmd]:
    copy = in_copy(item, scratch)
    cmds = plan.restore_cmds(tools, repo, copy, [s for s in snapshots if s.dump])
    if item.backup.verify:
        cmds.append(plan.in_container(tools, copy, item.backup.verify, timeout=300))
    return cmds


def read_back_cmd(tools: Tools, repo: restic.Repository, snapshot: restic.Snapshot, filename: str) -> Cmd:
    """The dump read whole and counted: restic checks each blob's hash as it reads."""
    return restic.pipe_cmd(restic.dump_cmd(tools, repo, snapshot.id, filename), Cmd(("wc", "-c"), timeout=60))


def volume_cmds(tools: Tools, repo: restic.Repository, item: plan.Item, scratch: Scratch,
                snapshot: restic.Snapshot) -> list[Cmd]:
    volume = scratch.name(item.service)
    return [Cmd((*tools.docker, "volume", "create", *scratch.label, volume), timeout=60),
            restic.restic(tools, repo, "restore", snapshot.id, "--target", "/drill", "--verify", "--json",
                          mounts=[(volume, "/drill", False)])]


def leftovers_cmds(tools: Tools, project: str) -> Mapping[str, Cmd]:
    """What a drill of this project left (containers, volumes, networks): listed by label."""
    label = ("--filter", f"label={LABEL}={project}")
    return {"containers": Cmd((*tools.docker, "ps", "-aq", *label), timeout=60),
            "volumes": Cmd((*tools.docker, "volume", "ls", "-q", *label), timeout=60),
            "networks": Cmd((*tools.docker, "network", "ls", "-q", *label), timeout=60)}


def remove_cmds(tools: Tools, found: Mapping[str, Sequence[str]]) -> list[Cmd]:
    """Containers first (with their anonymous volumes), then volumes and networks."""
    verbs = {"containers": ("rm", "-f", "-v"), "volumes": ("volume", "rm", "-f"), "networks": ("network", "rm")}
    return [Cmd((*tools.docker, *verbs[k], *found[k]), timeout=300) for k in ("containers", "volumes", "networks")
            if found.get(k)]
