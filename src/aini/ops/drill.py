"""`aini backup drill`: the latest complete run (or the one named) restored into throwaway
containers and volumes on the site, each service checked as backup.drill describes, all of
it removed afterwards, and the outcome recorded where `aini status` shows it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .. import catalog
from ..backup import drill, plan, record, scope
from ..docker import restic
from ..docker.cmd import Tools
from ..errors import AiniError
from ..project import Project
from ..render.compose import pinned_ref
from ..sites.base import Site
from ..backup.runner import JOURNAL, Say, run_id, run_ok, snapshot_list, write_journal
from .backup import opened

ENV_FILE = "drill.env"  # a throwaway database's credentials, removed with it
DOING = {"load": "loading its dump into a throwaway copy", "read": "reading its snapshot back",
         "volumes": "restoring its volumes into throwaway ones, verified"}


@dataclass
class Checked:
    service: str
    kind: str  # load, read or volumes (backup.drill.kind)
    ok: bool
    detail: str
    seconds: float


@dataclass
class DrillResult:
    run: str
    checked: list[Checked]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checked)


def run_drill(project: Project, run: str | None = None, only: Sequence[str] = (), say: Say = lambda _: None
              ) -> DrillResult:
    """`only`: services or groups, as for a backup (default: every service a backup saves)."""
    config = project.config
    chosen = scope.items(config, only)
    with opened(project, say) as (site, tools, repo):
        picked_run, picked = plan.pick_run(chosen, snapshot_list(site, tools, repo), run)
        say(f"drill of run {picked_run}: {len(chosen)} services into throwaway containers and volumes")
        write_journal(site, "drill", run_id(), [])  # a killed drill's restic locks are cleared by the next run
        _remove_leftovers(site, tools, config.project)  # an earlier killed drill's
        scratch = drill.new_scratch(config.project)
        start, checked = time.monotonic(), []
        try:
            run_ok(site, drill.network_cmd(tools, scratch), "docker network create")
            for item in chosen:
                say(f"{item.service}: {DOING[drill.kind(item)]}")
                checked.append(_check(project, site, tools, repo, scratch, item, picked[item.service]))
        finally:
            site.remove(ENV_FILE)
            _remove_leftovers(site, tools, config.project)
        result = DrillResult(picked_run, checked, time.monotonic() - start)
        site.write(record.FILE, record.with_drill(site.read(record.FILE), record.Drill(
            picked_run, dt.datetime.now(dt.UTC), tuple(c.service for c in checked if c.ok),
            {c.service: c.detail for c in checked if not c.ok})))
        site.remove(JOURNAL)
        return result


def _check(project: Project, site: Site, tools: Tools, repo: restic.Repository, scratch: drill.Scratch,
           item: plan.Item, snapshots: list[restic.Snapshot]) -> Checked:
    kind, start = drill.kind(item), time.monotonic()
    try:
        if kind == "load":
            detail = _load(project, site, tools, repo, scratch, item, snapshots)
        elif kind == "read":
            detail = _read(site, tools, repo, item, snapshots)
        else:
            detail = _volumes(site, tools, repo, scratch, item, snapshots)
        ok = True
    except AiniError as exc:
        detail, ok = str(exc), False
    return Checked(item.service, kind, ok, detail, time.monotonic() - start)


def _load(project: Project, site: Site, tools: Tools, repo: restic.Repository, scratch: drill.Scratch,
          item: plan.Item, snapshots: list[restic.Snapshot]) -> str:
    spec = catalog.by_name(item.service)
    site.write(ENV_FILE, restic.env_file(drill.throwaway_env(spec, catalog.context(project.config))))
    run_ok(site, drill.database_cmd(tools, scratch, spec, pinned_ref(spec, project.config.images),
                                   str(site.root / ENV_FILE)), "starting a throwaway copy")
    site.remove(ENV_FILE)
    ready = drill.ready_cmd(tools, item, scratch, spec.health)
    deadline = time.monotonic() + drill.READY_TIMEOUT
    while ready is not None and site.run(ready).returncode != 0:
        if time.monotonic() > deadline:
            raise AiniError(f"the throwaway copy was not ready within {drill.READY_TIMEOUT}s")
        time.sleep(2)
    output = ""
    for cmd in drill.load_cmds(tools, repo, item, scratch, snapshots):
        output = run_ok(site, cmd, "loading the dump" if cmd.argv[0] == "bash" else "checking the loaded data")
    return output.strip().splitlines()[-1][:200] if item.backup.verify and output.strip() else "the dump loaded"


def _read(site: Site, tools: Tools, repo: restic.Repository, item: plan.Item, snapshots: list[restic.Snapshot]
          ) -> str:
    (snap,) = [s for s in snapshots if s.dump]
    size = run_ok(site, drill.read_back_cmd(tools, repo, snap, item.backup.dump_file or ""), "reading it back")
    return f"{int(size.split()[0])} bytes read back whole"


def _volumes(site: Site, tools: Tools, repo: restic.Repository, scratch: drill.Scratch, item: plan.Item,
             snapshots: list[restic.Snapshot]) -> str:
    (snap,) = [s for s in snapshots if not s.dump]
    out = ""
    for cmd in drill.volume_cmds(tools, repo, item, scratch, snap):
        out = run_ok(site, cmd, "restoring the volumes")
    summary = restic.parse_summary(out) or {}
    return (f"{summary.get('files_restored', summary.get('total_files', '?'))} files, "
            f"{summary.get('bytes_restored', summary.get('total_bytes', '?'))} bytes restored and verified")



def _remove_leftovers(site: Site, tools: Tools, project: str) -> None:
    found = {k: site.run(c).stdout.split() for k, c in drill.leftovers_cmds(tools, project).items()}
    for cmd in drill.remove_cmds(tools, found):
        site.run(cmd)
