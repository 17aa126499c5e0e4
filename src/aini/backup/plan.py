"""What a backup of the enabled services consists of, decided from the catalog alone, and
the commands that take and restore it. Pure: the commands are data, a Site runs them.

The unit of consistency is a group (one compose project): its `before` hooks (Nextcloud's
maintenance mode) run and its `stop` containers stop before any of its members is saved,
and everything is undone after the last one. Per service: its volumes, mounted read-only
into restic as one snapshot, and its dump, a command run in its container whose stdout is
streamed into restic (never a file on the server). Services with neither are listed with
the catalog's reason (a cache, an index rebuilt from its database, metrics history).

Standard library only, as the rest of what the server's scheduled backup carries
(backup.scheduled): which services a backup covers is decided by backup.scope."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..docker import restic
from ..docker.cmd import Cmd, Tools
from ..errors import InputError

if TYPE_CHECKING:
    from ..catalog.model import Backup


@dataclass(frozen=True)
class Item:
    service: str
    group: str
    container: str
    volumes: tuple[str, ...]  # Docker volume names
    backup: Backup

    @property
    def dump(self) -> bool:
        return bool(self.backup.dump)


def by_group(chosen: Iterable[Item]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item in chosen:
        groups.setdefault(item.group, []).append(item)
    return groups


def in_container(tools: Tools, item: Item, script: str, stdin: bool = False, timeout: float = 3600,
                 token: bool = False) -> Cmd:
    """A catalog command run in the service's container: it reads its credentials from the
    container's environment, so no secret is in this argv. With `token`, the catalog's token
    variable is read first from the first line of stdin (the executor sends it)."""
    var = item.backup.token if token else None
    if var:
        script = f'IFS= read -r {var} || {{ echo "no token on stdin" >&2; exit 2; }}; export {var}; {script}'
    return Cmd((*tools.docker, "exec", *(("-i",) if stdin or var else ()), "-u", item.backup.user, item.container,
                "sh", "-c", script), timeout=timeout)


def ready_cmd(tools: Tools, item: Item) -> Cmd:
    """The database answers as its restore will reach it (Backup.ready)."""
    assert item.backup.ready
    return in_container(tools, item, item.backup.ready, timeout=30)


KEPT_LABEL = "aini.kept-before"  # on a volume set aside by a major upgrade: the image it was written by


def set_aside_cmd(tools: Tools, image: str, volume: str, kept: str) -> Cmd:
    """The volume's files copied into `kept`, then removed from the volume: a new major that
    cannot read them starts on an empty one (a new cluster), and the old one stays as it was.
    A copy already complete is never overwritten (run again after a kill, the volume may hold
    part of the new cluster). `image`: any with sh, cp and find (the restic image, always on
    the site)."""
    return _shell_on(tools, image, {volume: "/volume", kept: "/kept"},
                     "set -e; if [ ! -e /kept/.aini-kept ]; then find /kept -mindepth 1 -delete; "
                     "cp -a /volume/. /kept/; touch /kept/.aini-kept; fi; find /volume -mindepth 1 -delete")


def empty_volume_cmd(tools: Tools, image: str, volume: str) -> Cmd:
    """Every file of the volume removed: the old major starts a new cluster there, for its dump."""
    return _shell_on(tools, image, {volume: "/volume"}, "find /volume -mindepth 1 -delete")


def _shell_on(tools: Tools, image: str, mounts: Mapping[str, str], script: str) -> Cmd:
    """`script` in a throwaway container of `image` with the volumes mounted (volume -> path)."""
    volumes = [a for volume, path in mounts.items() for a in ("-v", f"{volume}:{path}")]
    return Cmd((*tools.docker, "run", "--rm", "--entrypoint", "sh", *volumes, image, "-c", script), timeout=3600)


def stop_cmd(tools: Tools, containers: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "stop", "--time", "60", *containers), timeout=300)


def start_cmd(tools: Tools, containers: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "start", *containers), timeout=300)


def backup_cmds(tools: Tools, repo: restic.Repository, item: Item, run: str, safety: bool = False) -> list[Cmd]:
    """One snapshot for the volumes, one for the dump (`dump | restic backup --stdin`)."""
    cmds = []
    if item.volumes:
        cmds.append(restic.backup_volumes_cmd(tools, repo, item.service, run, item.volumes, safety))
    if item.backup.dump and item.backup.dump_file:
        cmds.append(restic.pipe_cmd(
            in_container(tools, item, item.backup.dump, token=True),
            restic.backup_stdin_cmd(tools, repo, item.service, run, item.backup.dump_file, safety)))
    return cmds


def restore_cmds(tools: Tools, repo: restic.Repository, item: Item, snapshots: Sequence[restic.Snapshot],
                 foreign: bool = False) -> list[Cmd]:
    """The volumes written back from their snapshot (the container stopped), the dump streamed
    from the repository into the running database: `restic dump | docker exec -i ... restore`.
    `foreign`: the dump is another cluster's snapshot (Backup.restore_foreign)."""
    cmds = []
    for snap in snapshots:
        if snap.dump:
            script = item.backup.restore_foreign if foreign else item.backup.restore
            assert item.backup.dump_file and script
            cmds.append(restic.pipe_cmd(restic.dump_cmd(tools, repo, snap.id, item.backup.dump_file),
                                        in_container(tools, item, script, stdin=True, token=True),
                                        first_line=bool(item.backup.token)))
        else:
            cmds.append(restic.restore_volumes_cmd(tools, repo, snap.id, item.service, item.volumes))
    return cmds


def pick_run(chosen: Sequence[Item], snapshots: Sequence[restic.Snapshot], run: str | None = None
             ) -> tuple[str, dict[str, list[restic.Snapshot]]]:
    """The run to restore (the given one, else the latest whose manifest vouches for every
    chosen item and that is not a restore's safety backup) and each item's snapshots in it.
    `run` may also be a snapshot id (or its prefix): its run. A run without a manifest was
    interrupted: what it stored may be a cut dump, so it is never taken."""
    whole = restic.complete(snapshots)
    if run:
        match = [s for s in snapshots if s.id.startswith(run) or s.run == run]
        runs = {s.run for s in match}
        if not runs:
            raise InputError(f"no snapshot or run '{run}' in the repository (aini backup list shows them)")
        if len(runs) > 1:
            raise InputError(f"'{run}' matches several runs; give more of the id")
        candidates = [runs.pop()]
    else:
        candidates = sorted({s.run for s in snapshots if s.manifest and not s.safety}, reverse=True)
    for candidate in candidates:
        missing = [i.service for i in chosen if i.service not in whole.get(candidate, ())]
        if not missing:
            return candidate, {i.service: [s for s in snapshots if s.run == candidate and s.service == i.service]
                               for i in chosen}
        if run and candidate not in whole:
            raise InputError(f"run {candidate} did not finish (interrupted, or nothing in it succeeded): its "
                             "snapshots may be cut short; aini backup list shows the complete runs")
        if run:
            raise InputError(f"run {candidate} has no complete backup of {', '.join(missing)}")
    raise InputError(f"no run in the repository has a complete backup of "
                     f"{', '.join(i.service for i in chosen)} (aini backup list shows what there is)")
