"""backup.schedule on the server: a systemd timer runs the backup there, without the
operator's machine. The run is the one `aini backup` makes (backup.runner), so a scheduled
run and a manual one leave the same snapshots, journal and record.

`aini up` leaves in the site's root, under SCHEDULE_DIR: the standard-library modules the
run needs (MODULES, run by the server's own python3 with -E -s -S, so nothing installed
there can stand in for them), JOB (what to save, as data: the Items, the repository,
backup.retention) and TOKENS (the snapshot tokens, 0600 like restic's env file beside
them); and the two systemd units, whose OnCalendar= is backup.schedule (cron.on_calendar).
A run that cannot start once it holds the lock (the repository unreachable, a wrong
password) is recorded as failed for every service, so `aini status` says so at once; one
that never got the lock (held past LOCK_WAIT) is told to Consul and the webhook only. Once a week a run
also checks the repository, reading back a share of its data (`aini status` fails every
row when that finds damage). Each run reports to Consul's TTL check on `aini-backup`
(passing or critical, naming what failed), so a run that never comes turns it critical by
itself; backup.notify_url is told of a failure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import cron
from ..catalog.model import Backup
from ..docker import restic
from ..docker.cmd import Cmd, Tools
from ..errors import AiniError
from ..sites.local import LocalSite
from . import plan, record, runner
from .retention import Keep

SCHEDULE_DIR = "schedule"
JOB = f"{SCHEDULE_DIR}/job.json"
TOKENS = f"{SCHEDULE_DIR}/tokens.json"
UNIT = "aini-backup"
UNIT_DIR = PurePosixPath("/etc/systemd/system")
LOCK_WAIT = 3600.0  # seconds a scheduled run waits for a deploy or a manual backup to finish
CHECK_EVERY = dt.timedelta(days=7)  # a scheduled run after this long also checks the repository
CHECK_SHARE = 5  # percent of the stored data that check reads back (packs picked at random)
RUN_LIMIT = "6h"  # systemd stops a run that hangs longer (the next one tidies what it left)
PYTHON = "/usr/bin/python3"
NOTIFY_TIMEOUT = 15.0

# The package files the run imports (a test runs them without site-packages); the catalog's
# entries stay behind: the run builds its Items from JOB, it needs only their model.
MODULES = ("__init__.py", "errors.py", "cron.py", "project.py", "docker/__init__.py", "docker/cmd.py",
           "docker/compose.py", "docker/restic.py", "sites/__init__.py", "sites/base.py", "sites/local.py",
           "backup/__init__.py", "backup/plan.py", "backup/record.py", "backup/retention.py",
           "backup/runner.py", "backup/scheduled.py", "catalog/model.py")
CATALOG_INIT = '"""The catalog\'s model only: the scheduled backup reads its entries from job.json."""\n'
ENTRY = ('"""aini-backup.service runs this: aini.backup.scheduled, the server\'s scheduled backup."""\n'
         "import sys\n\nfrom aini.backup.scheduled import main\n\nsys.exit(main(sys.argv[1:]))\n")


@dataclass(frozen=True)
class Job:
    root: str  # the site's root on the server
    lock: str  # the deploy lock SshSite.lock takes
    tools: Tools
    repository: restic.Repository
    items: tuple[plan.Item, ...]
    keep: Keep
    not_saved: Mapping[str, str]
    notify_url: str | None = None  # backup.notify_url: told when a run fails
    consul: str | None = None  # Consul's container: each run updates its TTL check (controlplane.consul)


@dataclass(frozen=True)
class File:
    content: str
    private: bool = False


def job_text(job: Job) -> str:
    return json.dumps({"version": 1, "root": job.root, "lock": job.lock, "tools": dataclasses.asdict(job.tools),
                       "repository": dataclasses.asdict(job.repository), "keep": dataclasses.asdict(job.keep),
                       "not_saved": dict(job.not_saved), "notify_url": job.notify_url, "consul": job.consul,
                       "items": [{"service": i.service, "group": i.group, "container": i.container,
                                  "volumes": list(i.volumes), "backup": dataclasses.asdict(i.backup)}
                                 for i in job.items]}, indent=1, sort_keys=True)


def parse_job(text: str) -> Job:
    data = json.loads(text)
    if data.get("version") != 1:
        raise AiniError(f"{JOB} is from another version of aini; run aini up again")
    items = tuple(plan.Item(i["service"], i["group"], i["container"], tuple(i["volumes"]),
                            Backup(**{**i["backup"], "volumes": tuple(i["backup"]["volumes"])}))
                  for i in data["items"])
    tools = Tools(tuple(data["tools"]["docker"]), tuple(data["tools"]["compose"]))
    return Job(data["root"], data["lock"], tools, restic.Repository(**data["repository"]), items,
               Keep(**data["keep"]), data["not_saved"], data.get("notify_url"),
               data.get("consul"))


def files(job: Job, tokens: Mapping[str, str], schedule: str, project: str, package: Path) -> dict[str, File]:
    """Everything `aini up` puts under SCHEDULE_DIR (site.sync): the modules read from
    `package` (the installed aini), JOB, TOKENS and the units."""
    code = {f"{SCHEDULE_DIR}/aini/{m}": File((package / m).read_text(encoding="utf-8")) for m in MODULES}
    return {**code, f"{SCHEDULE_DIR}/aini/catalog/__init__.py": File(CATALOG_INIT),
            f"{SCHEDULE_DIR}/run.py": File(ENTRY),
            JOB: File(job_text(job), private=True),
            TOKENS: File(json.dumps(dict(tokens)), private=True),
            f"{SCHEDULE_DIR}/{UNIT}.service": File(service_unit(job.root, project)),
            f"{SCHEDULE_DIR}/{UNIT}.timer": File(timer_unit(schedule, project))}


def service_unit(root: str, project: str) -> str:
    base = PurePosixPath(root) / SCHEDULE_DIR
    return f"""[Unit]
Description=AINI scheduled backup of {project}
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
ExecStart={PYTHON} -E -s -S {base / 'run.py'} {PurePosixPath(root) / JOB}
TimeoutStartSec={RUN_LIMIT}
Nice=10
IOSchedulingClass=idle
"""


def timer_unit(schedule: str, project: str) -> str:
    """`Persistent=`: a run missed while the server was off happens when it is back."""
    calendars = "".join(f"OnCalendar={line}\n" for line in cron.on_calendar(schedule))
    return f"""[Unit]
Description=AINI backup.schedule of {project} ({schedule}, server time)

[Timer]
{calendars}Persistent=true

[Install]
WantedBy=timers.target
"""


def install_cmds(root: PurePosixPath) -> list[Cmd]:
    """The units put in place and the timer (re)started, so a changed schedule takes effect."""
    units = [Cmd(("install", "-m", "0644", str(root / SCHEDULE_DIR / f"{UNIT}.{kind}"), str(UNIT_DIR)))
             for kind in ("service", "timer")]
    return [*units, Cmd(("systemctl", "daemon-reload")), Cmd(("systemctl", "enable", f"{UNIT}.timer")),
            Cmd(("systemctl", "restart", f"{UNIT}.timer"))]


def remove_cmds(root: PurePosixPath) -> list[Cmd]:
    """backup.repository unset: the timer stopped and gone, with the tokens; its record stays."""
    return [Cmd(("systemctl", "disable", "--now", f"{UNIT}.timer")),
            Cmd(("rm", "-rf", "--", str(UNIT_DIR / f"{UNIT}.service"), str(UNIT_DIR / f"{UNIT}.timer"),
                 str(root / SCHEDULE_DIR))),
            Cmd(("systemctl", "daemon-reload"))]


def next_run_cmd() -> Cmd:
    return Cmd(("systemctl", "show", f"{UNIT}.timer", "--property", "NextElapseUSecRealtime", "--value"))


def main(argv: Sequence[str]) -> int:
    """One scheduled run: exit 0 when every service was saved, 1 otherwise (systemd marks the
    unit failed; the record says which service and why)."""
    job_path = Path(argv[0])
    try:
        job = parse_job(job_path.read_text(encoding="utf-8"))
        tokens = json.loads((job_path.parent / Path(TOKENS).name).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"the scheduled backup cannot read {job_path.parent} ({exc}); run aini up again", file=sys.stderr)
        return 2
    site = LocalSite(Path(job.root), lock_file=Path(job.lock), lock_wait=LOCK_WAIT)

    def say(line: str) -> None:
        print(line, flush=True)

    failed: dict[str, str] = {}
    saved: list[str] = []
    run = None
    try:
        with site.lock():
            try:
                runner.probe(site, job.tools, job.repository)
                runner.tidy(site, job.tools, job.repository, job.items, say, restoring=False)
                result = runner.run_backup(site, job.tools, job.repository, job.items, tokens, job.keep, say,
                                           job.not_saved)
                now = dt.datetime.now(dt.UTC)
                damage = None
                if result.ok and record.check_due(record.parse(site.read(record.FILE)), now, CHECK_EVERY):
                    say(f"checking the repository, reading back {CHECK_SHARE}% of its data")
                    damage = runner.check_repository(site, job.tools, job.repository, CHECK_SHARE)
            except AiniError as exc:
                site.write(record.FILE, record.merged(site.read(record.FILE), runner.run_id(), dt.datetime.now(dt.UTC),
                                                      [], {i.service: str(exc) for i in job.items}))
                raise
    except AiniError as exc:
        print(f"the scheduled backup failed: {exc}", file=sys.stderr, flush=True)
        failed = {i.service: str(exc) for i in job.items}
    else:
        run = result.run
        for s in result.services:
            print(f"{s.service}: {'saved ' + ' '.join(s.snapshots) if s.error is None else 'FAILED: ' + s.error}",
                  flush=True)
        failed = {s.service: s.error for s in result.services if s.error is not None}
        saved = [s.service for s in result.services if s.error is None]
        if damage:
            print(f"the repository check found damage: {damage}", file=sys.stderr, flush=True)
            failed["repository check"] = damage
    tell_consul(site, job, tokens.get("consul"), ttl_update(failed, saved, run))
    if failed:
        notify(job, failed, run)
    return 1 if failed else 0


# The check's ID is controlplane.consul.BACKUP_CHECK (not imported: the run carries only the
# standard-library modules). The token comes from stdin's first line and reaches curl through
# a here-document (fd 3), the update's JSON through the rest of stdin: neither is in an argv.
TTL_UPDATE = ('IFS= read -r CONSUL_HTTP_TOKEN || exit 2; curl -fsS -X PUT -H @/dev/fd/3 --data-binary @- '
              'http://127.0.0.1:8500/v1/agent/check/update/service:aini-backup 3<<EOF\n'
              'X-Consul-Token: $CONSUL_HTTP_TOKEN\nEOF')
TTL_OUTPUT_MAX = 4000  # Consul keeps 4 KiB of a check's output


def ttl_update_cmd(tools: Tools, container: str) -> Cmd:
    return Cmd((*tools.docker, "exec", "-i", container, "sh", "-c", TTL_UPDATE), timeout=60)


def ttl_update(failed: Mapping[str, str], saved: Sequence[str], run: str | None) -> bytes:
    """The update's body: critical naming what failed, else passing naming the run."""
    if failed:
        text = f"run {run or '-'} failed: " + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
        return json.dumps({"Status": "critical", "Output": text[:TTL_OUTPUT_MAX]}).encode()
    return json.dumps({"Status": "passing", "Output": f"run {run}: saved {', '.join(saved)}"[:TTL_OUTPUT_MAX]}).encode()


def tell_consul(site: LocalSite, job: Job, token: str | None, body: bytes) -> None:
    """The TTL check updated; a failure to reach Consul is said in the journal and changes
    nothing else (the check then turns critical when its TTL lapses)."""
    if not job.consul:
        return
    if not token:
        print("Consul's check was not updated: no snapshot token for consul yet (aini up makes one)", file=sys.stderr)
        return
    r = runner.fed(site, ttl_update_cmd(job.tools, job.consul), token.encode() + b"\n" + body)
    if r.returncode != 0:
        print(f"Consul's check was not updated: {(r.stderr.strip().splitlines() or ['no answer'])[-1][:300]}",
              file=sys.stderr, flush=True)


def report(job: Job, failed: Mapping[str, str], run: str | None) -> bytes:
    """What backup.notify_url receives: which project, which run, what failed and why (the
    lines the record keeps and `aini status` shows)."""
    return json.dumps({"event": "aini.backup.failed", "project": job.repository.host, "host": socket.gethostname(),
                       "run": run, "failed": dict(failed)}, sort_keys=True).encode()


def notify(job: Job, failed: Mapping[str, str], run: str | None = None) -> None:
    """POST the report; a notification that fails is said in the journal (without the URL,
    which may hold a token) and changes nothing else."""
    if not job.notify_url:
        return
    request = urllib.request.Request(job.notify_url, data=report(job, failed, run), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "aini-backup"})
    try:
        with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT) as answer:
            answer.read(1024)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or type(exc).__name__
        print(f"backup.notify_url was not told: {reason}", file=sys.stderr, flush=True)
