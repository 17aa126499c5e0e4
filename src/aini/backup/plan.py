"""What a backup of the enabled services consists of, decided from the catalog alone: per
service its volumes (mounted read-only into restic) and its dump (a command run in its
container, streamed into restic; never a file on the server). Pure: the commands are data.

Services with neither are listed with the catalog's reason (a cache, an index rebuilt from
its database, metrics history)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import catalog
from ..config import AiniConfig
from ..docker import restic
from ..docker.cmd import Cmd, Tools
from ..render.compose import volume_name


@dataclass(frozen=True)
class Item:
    service: str
    group: str
    container: str
    volumes: tuple[str, ...]  # Docker volume names
    dump: str | None  # a shell command in the container; its stdout is the dump
    dump_file: str | None
    notes: str = ""


def items(config: AiniConfig) -> list[Item]:
    """The enabled services with something to save, in deploy order."""
    result = []
    for spec in catalog.enabled(config):
        b = spec.backup
        if b.volumes or b.dump:
            result.append(Item(spec.name, spec.group, spec.container, tuple(volume_name(v) for v in b.volumes),
                               b.dump, b.dump_file, b.notes))
    return result


def not_saved(config: AiniConfig) -> dict[str, str]:
    """Enabled services without a backup -> why (the catalog's note)."""
    return {s.name: s.backup.notes or "nothing to save" for s in catalog.enabled(config)
            if not (s.backup.volumes or s.backup.dump)}


def dump_cmd(tools: Tools, item: Item) -> Cmd:
    """The dump, run in the service's container: it reads its credentials from the container's
    environment, so no secret is in this argv."""
    assert item.dump is not None
    return Cmd((*tools.docker, "exec", item.container, "sh", "-c", item.dump), timeout=3600)


def commands(tools: Tools, repo: restic.Repository, item: Item) -> list[Cmd]:
    """One snapshot for the volumes, one for the dump (`dump | restic backup --stdin`)."""
    cmds = []
    if item.volumes:
        cmds.append(restic.backup_volumes_cmd(tools, repo, item.service, item.volumes))
    if item.dump and item.dump_file:
        cmds.append(restic.pipe_cmd(dump_cmd(tools, item), restic.backup_stdin_cmd(tools, repo, item.service,
                                                                                   item.dump_file)))
    return cmds
