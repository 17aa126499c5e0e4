"""`aini backup`, `aini backup list` and `aini restore`: restic on the site's engine, from
the pinned image, into `backup.repository`.

The repository password and credentials reach restic through a 0600 env file in the site's
root (never an argv, never the terminal). Backups and deploys take the same site lock, so
neither sees the other's half-done work."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .. import catalog
from ..backup import plan, record, retention
from ..catalog import backup as backup_catalog
from ..controlplane.bootstrap import State, key_for, root_token
from ..deploy.apply import group_healthy
from ..docker import restic
from ..docker.cmd import Cmd, Tools
from ..docker.compose import compose_up_cmd
from ..errors import AiniError, InputError
from ..project import Project
from ..render.compose import pinned_ref
from ..sites.base import Site
from . import confirm_project
from .render import prepare_secrets
from .targets import site_for, tools_for

ENV_FILE = "restic.env"
JOURNAL = record.JOURNAL
HEALTH_WAIT = 300  # seconds a group may take to be healthy again after a restart or restore

Say = Callable[[str], None]


@dataclass
class Saved:
    """One service's part of a run."""

    service: str
    group: str
    snapshots: list[str] = field(default_factory=list)  # short ids
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunResult:
    run: str
    services: list[Saved]
    windows: dict[str, float]  # group -> seconds it was stopped or in maintenance mode
    not_saved: dict[str, str]

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.services)


@dataclass
class Restored:
    run: str
    safety_run: str
    services: list[str]
    seconds: float


def run_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def repository_env(project: Project) -> dict[str, str]:
    """What restic reads from its env file: the repository, its password, its credentials.
    Called before the site is reached: bad input is refused before any connection."""
    config = project.config
    if not backup_catalog.enabled(config):
        raise InputError("backup.repository is not set in aini.yml; backups are off "
                         "(e.g. backup: {repository: 's3:https://fsn1.your-objectstorage.com/BUCKET/aini'})")
    store, _, _ = prepare_secrets(project)
    store.save()  # a generated repository password is kept before anything is encrypted with it
    env = {"RESTIC_REPOSITORY": config.backup.repository or "",
           "RESTIC_PASSWORD": store.get(backup_catalog.REPOSITORY_PASSWORD.name) or ""}
    missing = []
    for secret, variable, required in backup_catalog.credentials(config):
        value = store.get(secret.name)
        if value:
            env[variable] = value
        elif required:
            missing.append(secret.env_var)
    if missing:
        raise InputError(f"backup.repository needs {' and '.join(missing)} in the environment once "
                         "(aini keeps them in .aini/); they are not set")
    return env


def _repository(project: Project, site: Site, tools: Tools, env: dict[str, str]) -> restic.Repository:
    """The env file written, and the repository reached once within restic.PROBE_TIMEOUT: a
    wrong address or key fails in a minute with restic's reason, not after its 15 of retries."""
    site.write(ENV_FILE, restic.env_file(env))
    location = project.config.backup.repository or ""
    repo = restic.Repository(pinned_ref(backup_catalog.RESTIC, project.config.images), str(site.root / ENV_FILE),
                             host=project.config.project, path=location if location.startswith("/") else None)
    name = f"aini-restic-probe-{secrets.token_hex(4)}"
    r = site.run(restic.probe_cmd(tools, repo, name))
    if r.returncode == 124:
        site.run(restic.remove_containers_cmd(tools, [name]))
        why = restic.last_retry(r.stderr) or "no answer"
        if "bucket does not exist" in why:  # restic retries that too; Hetzner's buckets are made in its Console
            raise AiniError("the bucket named in backup.repository does not exist; create it (Hetzner: Console -> "
                            "Object Storage), then run this again")
        raise AiniError(f"the backup repository did not answer within {restic.PROBE_TIMEOUT:.0f}s ({why}); "
                        "check backup.repository and its credentials")
    if r.returncode not in (0, 10):  # 10: there is none yet; aini backup creates it
        raise AiniError(f"backup repository: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    return repo


@contextlib.contextmanager
def opened(project: Project, say: Say, site: Site | None = None) -> Iterator[tuple[Site, Tools, restic.Repository]]:
    """The site locked (backups and deploys exclude each other), the repository reached, and
    what an interrupted run left tidied: how every backup command but restore begins (and a
    deploy that finds a journal). `site`: one already open."""
    env = repository_env(project)
    with (contextlib.nullcontext(site) if site else site_for(project)) as site, site.lock():
        tools = tools_for(project)
        repo = _repository(project, site, tools, env)
        tidy(project, site, tools, repo, say, restoring=False)
        yield site, tools, repo


def _run(site: Site, cmd: Cmd, what: str) -> str:
    r = site.run(cmd)
    if r.returncode != 0:
        raise AiniError(f"{what}: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    return r.stdout


def snapshot_list(site: Site, tools: Tools, repo: restic.Repository, create: bool = False) -> list[restic.Snapshot]:
    """The project's snapshots; with `create`, a missing repository is initialised first."""
    r = site.run(restic.snapshots_cmd(tools, repo))
    if r.returncode == 10 and create:
        _run(site, restic.init_cmd(tools, repo), "restic init")
        return []
    if r.returncode != 0:
        raise AiniError(f"backup repository: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    return restic.parse_snapshots(r.stdout)


def backup(project: Project, only: Sequence[str] = (), say: Say = lambda _: None) -> RunResult:
    """One run: every chosen service's volumes and dump, group by group; then the retention
    of backup.retention, and the run in the site's record (what `aini status` judges)."""
    config = project.config
    chosen = plan.items(config, only)
    with opened(project, say) as (site, tools, repo):
        run = run_id()
        write_journal(site, "backup", run, chosen)  # first: a kill from here on leaves it for the next run to act on
        snapshot_list(site, tools, repo, create=True)
        result = backup_on(site, tools, repo, chosen, say, run, _tokens(project, chosen),
                           not_saved=plan.not_saved(config) if not only else {})
        site.write(record.FILE, record.merged(
            site.read(record.FILE), result.run, dt.datetime.now(dt.UTC),
            [s.service for s in result.services if s.error is None], {s.service: s.error for s in result.services
                                                                       if s.error is not None}))
        if result.ok:
            _retention(project, site, tools, repo, say)  # a killed prune leaves an exclusive lock: inside the journal
        site.remove(JOURNAL)
        return result


def _retention(project: Project, site: Site, tools: Tools, repo: restic.Repository, say: Say) -> None:
    keep = project.config.backup.retention
    snaps = snapshot_list(site, tools, repo)
    if not restic.complete(snaps):
        return  # no manifest at all: a listing without them, and nothing to judge runs by; forget nothing
    goes = retention.forgettable(snaps, keep.daily, keep.weekly, keep.monthly, dt.datetime.now(dt.UTC))
    if goes:
        say(f"retention: forgetting {retention.summary(goes, snaps)}, pruning")
        _run(site, restic.forget_cmd(tools, repo, goes), "restic forget")
        _run(site, restic.prune_cmd(tools, repo), "restic prune")


def write_journal(site: Site, kind: str, run: str, chosen: Sequence[plan.Item], safety_run: str | None = None) -> None:
    site.write(JOURNAL, record.journal_text(record.Journal(kind, run, tuple({i.group for i in chosen}), safety_run)))


def tidy(project: Project, site: Site, tools: Tools, repo: restic.Repository, say: Say, restoring: bool) -> None:
    """After a backup or restore that was killed (its journal is still there): its restic
    containers removed, its locks cleared, its groups out of maintenance mode and started, and
    the snapshots of its run without a manifest forgotten. A restore killed after its safety
    backup may have half-written data: a backup of that is refused until it is restored."""
    text = site.read(JOURNAL)
    if text is None:
        return
    left = record.parse_journal(text)
    if left is None:
        site.remove(JOURNAL)  # a journal cut short by the kill itself: nothing had started
        return
    kind, run, groups, safety_run = left.kind, left.run, list(left.groups), left.safety_run
    leftovers = site.run(restic.leftovers_cmd(tools, repo)).stdout.split()
    if leftovers:
        site.run(restic.remove_containers_cmd(tools, leftovers))
    r = site.run(restic.unlock_cmd(tools, repo))  # before any read: a killed prune's exclusive lock blocks reads
    if r.returncode not in (0, 10):  # 10: killed before its `restic init`, there is no repository yet
        raise AiniError(f"restic unlock: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    snaps = snapshot_list(site, tools, repo) if r.returncode == 0 else []
    whole = restic.complete(snaps)
    if kind == "restore" and safety_run in whole and not restoring:
        raise AiniError(f"a restore of {', '.join(groups)} to run {run} was interrupted, so their data may be half "
                        f"written; finish it first (aini restore {' '.join(groups)} --snapshot {run}), or put back "
                        f"what they held before (--snapshot {safety_run})")
    known = [g for g in groups if g in {s.group for s in catalog.enabled(project.config)}]
    items = plan.items(project.config, known) if known else []
    problems = _undo_quiet(site, tools, items)
    cut = [s.id for s in snaps if s.run in (run, safety_run) and s.run not in whole]
    if cut:
        _run(site, restic.forget_cmd(tools, repo, cut), "restic forget")
    say(f"an earlier {kind} (run {safety_run if kind == 'restore' else run}) was interrupted: its restic "
        f"containers and locks are gone, {len(cut)} snapshots it left unfinished are forgotten"
        + (f", {', '.join(groups)} put back in service" if items else ""))
    if problems:
        raise AiniError("tidying up after the interrupted run: " + "; ".join(problems))
    site.remove(JOURNAL)


def _undo_quiet(site: Site, tools: Tools, items: Sequence[plan.Item]) -> list[str]:
    """Each group's stopped containers started and healthy again, its `after` hooks run (both
    harmless when the run had not got that far). The problems, as lines."""
    problems = []
    for group, members in plan.by_group(items).items():
        stopped = [m.container for m in members if m.backup.stop]
        if stopped:
            r = site.run(plan.start_cmd(tools, stopped))
            if r.returncode != 0:
                problems.append(f"docker start {' '.join(stopped)}: {r.stderr.strip()[:300]}")
            elif not group_healthy(tools, site, group, time.monotonic() + HEALTH_WAIT):
                problems.append(f"{', '.join(stopped)} not healthy within {HEALTH_WAIT}s of its restart")
        for m in reversed([m for m in members if m.backup.after]):
            r = site.run(plan.in_container(tools, m, m.backup.after or "", timeout=300))
            if r.returncode != 0:
                problems.append(f"{m.service}: {m.backup.after}: {r.stderr.strip()[:300]}")
    return problems


def check(project: Project, read_data_percent: int | None = None) -> None:
    """`restic check`: the repository's structure, and with a percentage that share of its
    data read back and verified. AiniError with restic's message when it finds damage."""
    if read_data_percent is not None and not 0 < read_data_percent <= 100:
        raise InputError("--read-data: a percentage from 1 to 100")
    with opened(project, lambda _: None) as (site, tools, repo):
        write_journal(site, "check", run_id(), [])  # check locks the repository exclusively
        _run(site, restic.check_cmd(tools, repo, read_data_percent), "restic check")
        site.remove(JOURNAL)


def backup_on(site: Site, tools: Tools, repo: restic.Repository, chosen: Sequence[plan.Item], say: Say, run: str,
              tokens: dict[str, str], not_saved: dict[str, str] | None = None, safety: bool = False) -> RunResult:
    """Group by group, then the run's manifest vouching for the services saved whole.
    `tokens`: service -> the token its dump reads (_tokens)."""
    result = RunResult(run, [], {}, not_saved or {})
    for group, members in plan.by_group(chosen).items():
        saved, window = _backup_group(site, tools, repo, run, members, say, safety, tokens)
        result.services += saved
        if window is not None:
            result.windows[group] = window
    whole = [s for s in result.services if s.error is None]
    if whole:
        manifest = json.dumps({"run": run, "safety": safety,
                               "snapshots": {s.service: s.snapshots for s in whole}}, sort_keys=True).encode()
        r = _fed(site, restic.manifest_cmd(tools, repo, run, [s.service for s in whole], safety), manifest)
        if r.returncode != 0:
            for s in whole:
                s.error = f"the run's manifest was not stored: {restic.error_line(r.returncode, '', r.stderr)}"
    return result


def _backup_group(site: Site, tools: Tools, repo: restic.Repository, run: str, members: Sequence[plan.Item],
                  say: Say, safety: bool, tokens: dict[str, str]) -> tuple[list[Saved], float | None]:
    hooked = [m for m in members if m.backup.before]
    stopped = [m.container for m in members if m.backup.stop]
    saved = [Saved(m.service, m.group) for m in members]
    quiet_since = time.monotonic() if hooked or stopped else None
    try:
        for m in hooked:
            say(f"{m.service}: {m.backup.before}")
            _run(site, plan.in_container(tools, m, m.backup.before or "", timeout=300), f"{m.service}: before backup")
        if stopped:
            say(f"stopping {', '.join(stopped)} for a consistent copy")
            _run(site, plan.stop_cmd(tools, stopped), "docker stop")
        for m, result in zip(members, saved):
            _save(site, tools, repo, run, m, result, say, safety, tokens.get(m.service))
    except AiniError as exc:
        for result in saved:
            if not result.snapshots and result.error is None:
                result.error = str(exc)
    finally:
        problems = _undo_quiet(site, tools, members) if quiet_since is not None else []
        window = time.monotonic() - quiet_since if quiet_since is not None else None
        if problems:  # the service is left stopped or in maintenance mode: say so loudly
            raise AiniError(f"after the backup of group {members[0].group}: " + "; ".join(problems))
    return saved, window


def _tokens(project: Project, chosen: Sequence[plan.Item], restoring: bool = False) -> dict[str, str]:
    """Service -> the token its dump (or its restore) reads: the backups' snapshot tokens from
    .aini/, and for a restore that needs it Vault's root token from the break-glass file."""
    state, tokens = State.load(project.root), {}
    for item in chosen:
        if not item.backup.token:
            continue
        if restoring and item.backup.restore_token == "root":
            tokens[item.service] = root_token(project.root, key_for(project.config),
                                              f"restoring {item.service} needs Vault's root token")
        elif token := state.snapshot_token(item.group):
            tokens[item.service] = token
    return tokens


def _run_fed(site: Site, cmd: Cmd, line: str | None) -> subprocess.CompletedProcess:
    """`cmd` with `line` (a token) as the first line of its stdin: never an argv, never a
    file. Without one, site.run."""
    return site.run(cmd) if line is None else _fed(site, cmd, line.encode() + b"\n")


def _fed(site: Site, cmd: Cmd, data: bytes) -> subprocess.CompletedProcess:
    """`cmd` reading `data` (a token, a manifest: far below a pipe's buffer) from a pipe."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as feed, tempfile.TemporaryFile() as out:
        r = site.stream(cmd, stdin=feed, stdout=out)
        out.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode, out.read().decode(errors="replace"), r.stderr)


def _what(cmd: Cmd) -> str:
    """For the progress line: a dump travels through a pipe (restic.pipe_cmd), volumes do not."""
    return "its dump" if cmd.argv[0] == "bash" else "its volumes"


def _save(site: Site, tools: Tools, repo: restic.Repository, run: str, item: plan.Item, result: Saved,
          say: Say, safety: bool, token: str | None) -> None:
    start = time.monotonic()
    if item.backup.token and not token:
        result.error = f"no snapshot token for {item.service} yet; run aini up once (it makes one)"
        return
    for cmd in plan.backup_cmds(tools, repo, item, run, safety):
        say(f"{item.service}: saving {_what(cmd)}")
        r = _run_fed(site, cmd, token)
        summary = restic.parse_summary(r.stdout)
        if r.returncode != 0:
            if summary and summary.get("snapshot_id"):  # restic stored what a failed dump had sent
                site.run(restic.forget_cmd(tools, repo, [str(summary["snapshot_id"])]))
            result.error = restic.error_line(r.returncode, "" if summary else r.stdout, r.stderr)
            break
        if summary:
            result.snapshots.append(str(summary.get("snapshot_id", ""))[:8])
            result.bytes += int(summary.get("total_bytes_processed") or 0)
    result.seconds = time.monotonic() - start


def snapshots(project: Project) -> list[restic.Snapshot]:
    env = repository_env(project)
    with site_for(project) as site:
        tools = tools_for(project)
        return snapshot_list(site, tools, _repository(project, site, tools, env))


def restore(project: Project, only: Sequence[str], confirm: str | None, ask: Callable[[str], str],
            run: str | None = None, say: Say = lambda _: None) -> Restored:
    """The chosen services put back to one run: first a safety backup of what they hold now,
    then per group the containers other than the databases stopped, volumes written back,
    dumps loaded into the running databases, the group started and health-gated."""
    config = project.config
    chosen = plan.items(config, only)
    if not chosen:
        raise InputError("nothing to restore: none of those services keeps data")
    env = repository_env(project)
    start = time.monotonic()
    with site_for(project) as site, site.lock():
        tools = tools_for(project)
        repo = _repository(project, site, tools, env)
        picked_run, picked = plan.pick_run(chosen, snapshot_list(site, tools, repo), run)
        names = ", ".join(i.service for i in chosen)
        confirm_project(config.project, confirm, ask, f"Restore {names} to run {picked_run}, overwriting their data?",
                        "nothing was restored")
        restore_tokens = _tokens(project, chosen, restoring=True)  # Vault's asks for the break-glass passphrase
        tidy(project, site, tools, repo, say, restoring=True)
        safety_run = run_id()
        write_journal(site, "restore", picked_run, chosen, safety_run)
        say(f"safety backup of {names} first")
        safety = backup_on(site, tools, repo, chosen, say, safety_run, _tokens(project, chosen), safety=True)
        if not safety.ok:
            site.remove(JOURNAL)  # nothing was overwritten
            failed = "; ".join(f"{s.service}: {s.error}" for s in safety.services if s.error)
            raise AiniError(f"the safety backup failed, nothing was restored: {failed}")
        for group, members in plan.by_group(chosen).items():
            _restore_group(project, site, tools, repo, group, members, picked, safety.run, say, restore_tokens)
        site.remove(JOURNAL)
    return Restored(picked_run, safety.run, [i.service for i in chosen], time.monotonic() - start)


def _restore_group(project: Project, site: Site, tools: Tools, repo: restic.Repository, group: str,
                   members: Sequence[plan.Item], picked: dict[str, list[restic.Snapshot]], safety_run: str,
                   say: Say, tokens: dict[str, str]) -> None:
    databases = {m.container for m in members if m.dump}
    stop = [s.container for s in catalog.enabled(project.config) if s.group == group and s.container not in databases]
    if stop:
        say(f"{group}: stopping {', '.join(stop)}")
        _run(site, plan.stop_cmd(tools, stop), "docker stop")
    for m in members:
        for cmd in plan.restore_cmds(tools, repo, m, picked[m.service]):
            say(f"{m.service}: restoring {_what(cmd)}")
            r = _run_fed(site, cmd, tokens.get(m.service))
            if r.returncode != 0:
                raise AiniError(f"restore of {m.service} failed ({r.stderr.strip()[-300:] or 'no message'}); "
                                f"group {group} is left stopped; what it held before is run {safety_run} "
                                f"(aini restore {group} --snapshot {safety_run})")
    say(f"{group}: starting, waiting for it to be healthy")
    if stop:
        _run(site, plan.start_cmd(tools, stop), "docker start")
    for m in members:  # the snapshot was taken in the state `before` put it in (maintenance mode)
        if m.backup.after:
            _run(site, plan.in_container(tools, m, m.backup.after, timeout=300), f"{m.service}: after restore")
    r = site.run(compose_up_cmd(tools, site.root, group, HEALTH_WAIT))
    if r.returncode != 0:
        raise AiniError(f"group {group} did not become healthy after the restore: {r.stderr.strip()[-300:]}")
