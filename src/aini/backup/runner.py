"""What one backup run does on a site, in order: the journal first (what the next run acts
on if this one is killed), each group quiesced and saved, the run's manifest, the site's
record, the retention. It decides nothing about which services, repository or tokens: the
operator's `aini backup` (ops.backup) and the server's scheduled run (backup.scheduled)
hand those in. Standard library only: the scheduled run carries it to the server."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..docker import restic
from ..docker.cmd import Cmd, Tools
from ..docker.compose import group_healthy
from ..errors import AiniError
from ..sites.base import Site
from . import plan, record, retention

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


def run_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def run_ok(site: Site, cmd: Cmd, what: str) -> str:
    r = site.run(cmd)
    if r.returncode != 0:
        raise AiniError(f"{what}: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    return r.stdout


def snapshot_list(site: Site, tools: Tools, repo: restic.Repository, create: bool = False) -> list[restic.Snapshot]:
    """The project's snapshots; with `create`, a missing repository is initialised first."""
    r = site.run(restic.snapshots_cmd(tools, repo))
    if r.returncode == 10 and create:
        run_ok(site, restic.init_cmd(tools, repo), "restic init")
        return []
    if r.returncode != 0:
        raise AiniError(f"backup repository: {restic.error_line(r.returncode, r.stdout, r.stderr)}")
    return restic.parse_snapshots(r.stdout)


def apply_retention(site: Site, tools: Tools, repo: restic.Repository, keep: retention.Keep, say: Say) -> None:
    """backup.retention: the runs it no longer keeps forgotten, and the repository pruned."""
    snaps = snapshot_list(site, tools, repo)
    if not restic.complete(snaps):
        return  # no manifest at all: a listing without them, and nothing to judge runs by; forget nothing
    goes = retention.forgettable(snaps, keep.daily, keep.weekly, keep.monthly, dt.datetime.now(dt.UTC))
    if goes:
        say(f"retention: forgetting {retention.summary(goes, snaps)}, pruning")
        run_ok(site, restic.forget_cmd(tools, repo, goes), "restic forget")
        run_ok(site, restic.prune_cmd(tools, repo), "restic prune")


def write_journal(site: Site, kind: str, run: str, chosen: Sequence[plan.Item], safety_run: str | None = None) -> None:
    site.write(JOURNAL, record.journal_text(record.Journal(kind, run, tuple({i.group for i in chosen}), safety_run)))


def tidy(site: Site, tools: Tools, repo: restic.Repository, enabled: Sequence[plan.Item], say: Say,
         restoring: bool) -> None:
    """After a backup or restore that was killed (its journal is still there): its restic
    containers removed, its locks cleared, its groups out of maintenance mode and started, and
    the snapshots of its run without a manifest forgotten. A restore killed after its safety
    backup may have half-written data: a backup of that is refused until it is restored.
    `enabled`: every enabled service's Item (a group no longer enabled is left alone)."""
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
    items = [i for i in enabled if i.group in groups]
    problems = undo_quiet(site, tools, items)
    cut = [s.id for s in snaps if s.run in (run, safety_run) and s.run not in whole]
    if cut:
        run_ok(site, restic.forget_cmd(tools, repo, cut), "restic forget")
    say(f"an earlier {kind} (run {safety_run if kind == 'restore' else run}) was interrupted: its restic "
        f"containers and locks are gone, {len(cut)} snapshots it left unfinished are forgotten"
        + (f", {', '.join(groups)} put back in service" if items else ""))
    if problems:
        raise AiniError("tidying up after the interrupted run: " + "; ".join(problems))
    site.remove(JOURNAL)


def undo_quiet(site: Site, tools: Tools, items: Sequence[plan.Item]) -> list[str]:
    """Each group's stopped containers started and healthy again, its `after` hooks run (both
    harmless when the run had not got that far). The problems, as lines."""
    problems = []
    for group, members in plan.by_group(items).items():
        stopped = [m.container for m in members if m.backup.stop]
        if stopped:
            r = site.run(plan.start_cmd(tools, stopped))
            if r.returncode != 0:
                problems.append(f"docker start {' '.join(stopped)}: {r.stderr.strip()[:300]}")
            elif not group_healthy(tools, site.run, site.root, group, time.monotonic() + HEALTH_WAIT):
                problems.append(f"{', '.join(stopped)} not healthy within {HEALTH_WAIT}s of its restart")
        for m in reversed([m for m in members if m.backup.after]):
            r = site.run(plan.in_container(tools, m, m.backup.after or "", timeout=300))
            if r.returncode != 0:
                problems.append(f"{m.service}: {m.backup.after}: {r.stderr.strip()[:300]}")
    return problems


def backup_on(site: Site, tools: Tools, repo: restic.Repository, chosen: Sequence[plan.Item], say: Say, run: str,
              tokens: Mapping[str, str], not_saved: dict[str, str] | None = None, safety: bool = False) -> RunResult:
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
        r = fed(site, restic.manifest_cmd(tools, repo, run, [s.service for s in whole], safety), manifest)
        if r.returncode != 0:
            for s in whole:
                s.error = f"the run's manifest was not stored: {restic.error_line(r.returncode, '', r.stderr)}"
    return result


def _backup_group(site: Site, tools: Tools, repo: restic.Repository, run: str, members: Sequence[plan.Item],
                  say: Say, safety: bool, tokens: Mapping[str, str]) -> tuple[list[Saved], float | None]:
    hooked = [m for m in members if m.backup.before]
    stopped = [m.container for m in members if m.backup.stop]
    saved = [Saved(m.service, m.group) for m in members]
    quiet_since = time.monotonic() if hooked or stopped else None
    try:
        for m in hooked:
            say(f"{m.service}: {m.backup.before}")
            run_ok(site, plan.in_container(tools, m, m.backup.before or "", timeout=300), f"{m.service}: before backup")
        if stopped:
            say(f"stopping {', '.join(stopped)} for a consistent copy")
            run_ok(site, plan.stop_cmd(tools, stopped), "docker stop")
        for m, result in zip(members, saved):
            _save(site, tools, repo, run, m, result, say, safety, tokens.get(m.service))
    except AiniError as exc:
        for result in saved:
            if not result.snapshots and result.error is None:
                result.error = str(exc)
    finally:
        problems = undo_quiet(site, tools, members) if quiet_since is not None else []
        window = time.monotonic() - quiet_since if quiet_since is not None else None
        if problems:  # the service is left stopped or in maintenance mode: say so loudly
            raise AiniError(f"after the backup of group {members[0].group}: " + "; ".join(problems))
    return saved, window


def run_fed(site: Site, cmd: Cmd, line: str | None) -> subprocess.CompletedProcess:
    """`cmd` with `line` (a token) as the first line of its stdin: never an argv, never a
    file. Without one, site.run."""
    return site.run(cmd) if line is None else fed(site, cmd, line.encode() + b"\n")


def fed(site: Site, cmd: Cmd, data: bytes) -> subprocess.CompletedProcess:
    """`cmd` reading `data` (a token, a manifest: far below a pipe's buffer) from a pipe."""
    r = fed_bytes(site, cmd, data)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr)


def fed_bytes(site: Site, cmd: Cmd, data: bytes) -> subprocess.CompletedProcess:
    """As fed, with stdout as bytes (a tar)."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as feed, tempfile.TemporaryFile() as out:
        r = site.stream(cmd, stdin=feed, stdout=out)
        out.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode, out.read(), r.stderr)


def what(cmd: Cmd) -> str:
    """For the progress line: a dump travels through a pipe (restic.pipe_cmd), volumes do not."""
    return "its dump" if cmd.argv[0] == "bash" else "its volumes"


def _save(site: Site, tools: Tools, repo: restic.Repository, run: str, item: plan.Item, result: Saved,
          say: Say, safety: bool, token: str | None) -> None:
    start = time.monotonic()
    if item.backup.token and not token:
        result.error = f"no snapshot token for {item.service} yet; run aini up once (it makes one)"
        return
    for cmd in plan.backup_cmds(tools, repo, item, run, safety):
        say(f"{item.service}: saving {what(cmd)}")
        r = run_fed(site, cmd, token)
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


def probe(site: Site, tools: Tools, repo: restic.Repository) -> None:
    """The repository reached once within restic.PROBE_TIMEOUT: a wrong address or key fails
    in a minute with restic's reason, not after its 15 of retries. A missing one is fine
    (a backup creates it)."""
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


def run_backup(site: Site, tools: Tools, repo: restic.Repository, chosen: Sequence[plan.Item],
               tokens: Mapping[str, str], keep: retention.Keep, say: Say,
               not_saved: dict[str, str] | None = None) -> RunResult:
    """One run, on a site already locked, probed and tidied: every chosen service's volumes
    and dump, group by group; the run in the site's record (what `aini status` judges); then
    backup.retention."""
    run = run_id()
    write_journal(site, "backup", run, chosen)  # first: a kill from here on leaves it for the next run to act on
    snapshot_list(site, tools, repo, create=True)
    result = backup_on(site, tools, repo, chosen, say, run, tokens, not_saved=not_saved)
    site.write(record.FILE, record.merged(
        site.read(record.FILE), result.run, dt.datetime.now(dt.UTC),
        [s.service for s in result.services if s.error is None], {s.service: s.error for s in result.services
                                                                   if s.error is not None}))
    if result.ok:
        apply_retention(site, tools, repo, keep, say)  # a killed prune leaves an exclusive lock: inside the journal
    site.remove(JOURNAL)
    return result


def check_repository(site: Site, tools: Tools, repo: restic.Repository, read_data_percent: int | None) -> str | None:
    """`restic check` (with a share of the data read back), its outcome in the site's record:
    None, or restic's reason. It locks the repository exclusively: inside a journal."""
    write_journal(site, "check", run_id(), [])
    r = site.run(restic.check_cmd(tools, repo, read_data_percent))
    error = None if r.returncode == 0 else restic.error_line(r.returncode, r.stdout, r.stderr)
    site.write(record.FILE, record.with_check(site.read(record.FILE),
                                              record.Check(dt.datetime.now(dt.UTC), read_data_percent, error)))
    site.remove(JOURNAL)
    return error
