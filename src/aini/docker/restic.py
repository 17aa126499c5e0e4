"""restic commands as data, run from the pinned restic image on the site's engine, and the
parsers of their JSON output. No I/O here.

Facts relied on (restic 0.18.0, checked by running Debian trixie's build; upstream docs
075_scripting "Exit codes" and the backup command's help):
- exit 0 ok; 1 failed, no snapshot; 3 backup read only part of its sources (a snapshot was
  made, incomplete); 10 no repository at that location; 11 the repository is locked;
  12 wrong password; 130 interrupted. Unknown codes are failures.
- `backup --stdin --stdin-filename NAME` stores stdin as /NAME; NAME may not contain a
  directory (`a/b` fails with "unable to save snapshot: open /a").
- `backup --stdin-from-command -- CMD...` makes no snapshot when CMD exits non-zero (exit 1);
  plain `--stdin` cannot know that its writer failed.
- `--json`: backup prints a final {"message_type":"summary", ..., "snapshot_id"} line;
  errors print {"message_type":"exit_error","code":N,"message":...}; `snapshots --json`
  prints one array of {id, short_id, time, paths, hostname, tags, summary{...}}.
- The password and the repository's credentials come from the environment (RESTIC_PASSWORD,
  RESTIC_REPOSITORY, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), here from a 0600 env file on
  the site: never in an argv.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .cmd import Cmd, Tools

EXIT_MEANING = {
    1: "failed",
    3: "some source data could not be read (an incomplete snapshot was made)",
    10: "there is no restic repository at that location",
    11: "the repository is locked by another restic process",
    12: "wrong repository password",
    130: "interrupted",
}
CACHE_VOLUME = "aini-restic-cache"
LABEL = "aini.restic"  # on every restic container, valued with the project: a run's leftovers are found by it
DATA_ROOT = "/data"  # where volumes are mounted in the restic container: /data/<service>/<volume>


@dataclass(frozen=True)
class Repository:
    """How a restic container reaches the repository: its image, the env file on the site
    (RESTIC_REPOSITORY, RESTIC_PASSWORD and the backend's credentials) and the host name
    its snapshots carry."""

    image: str
    env_file: str
    host: str = "aini"
    path: str | None = None  # a repository that is a directory on the site: mounted at the same path


def env_file(values: Mapping[str, str]) -> str:
    """The 0600 file `docker run --env-file` reads: `NAME=value` lines taken literally (docker
    strips no quotes and reads no multi-line values: docker/cli#3630, #4665), so a value with a
    line break or NUL is refused rather than cut."""
    lines = []
    for name, value in values.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"the value of {name} holds a line break or NUL; an env file cannot carry it")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def restic(tools: Tools, repo: Repository, *args: str, mounts: Sequence[tuple[str, str, bool]] = (),
           stdin: bool = False, timeout: float = 3600, name: str | None = None) -> Cmd:
    """`docker run --rm` of the restic image with `args`; `mounts` are (volume, target, read_only)."""
    argv = [*tools.docker, "run", "--rm", *(("--name", name) if name else ()), "--label", f"{LABEL}={repo.host}",
            "--env-file", repo.env_file, "-e", "RESTIC_CACHE_DIR=/cache", "-v", f"{CACHE_VOLUME}:/cache"]
    if stdin:
        argv.append("-i")
    if repo.path:
        argv += ["-v", f"{repo.path}:{repo.path}"]
    for volume, target, read_only in mounts:
        argv += ["-v", f"{volume}:{target}{':ro' if read_only else ''}"]
    return Cmd((*argv, repo.image, *args), timeout=timeout)


SAFETY_TAG = "safety"  # the backup a restore takes of what it overwrites


def tags(service: str, run: str, safety: bool = False) -> tuple[str, ...]:
    """Every AINI snapshot is tagged with its service and its run (one `aini backup`): a
    restore takes a service's snapshots of one run, so its files and its dump match."""
    return ("--tag", "aini", "--tag", f"service={service}", "--tag", f"run={run}",
            *(("--tag", SAFETY_TAG) if safety else ()))


COMPLETE_TAG = "complete"
MANIFEST_FILE = "aini-run.json"


def manifest_cmd(tools: Tools, repo: Repository, run: str, services: Iterable[str], safety: bool = False) -> Cmd:
    """The run's last snapshot: its manifest (JSON on stdin), tagged `complete` and `ok=<service>`
    for each service whose snapshots all succeeded. A run without one was interrupted or failed,
    and a restore never takes what it lacks: the repository says by itself which runs are whole."""
    oks = [a for s in services for a in ("--tag", f"ok={s}")]
    return restic(tools, repo, "backup", "--json", "--host", repo.host, "--tag", "aini", "--tag", f"run={run}",
                  "--tag", COMPLETE_TAG, *oks, *(("--tag", SAFETY_TAG) if safety else ()), "--stdin",
                  "--stdin-filename", MANIFEST_FILE, stdin=True, timeout=300)


PROBE_TIMEOUT = 60.0


def probe_cmd(tools: Tools, repo: Repository, name: str) -> Cmd:
    """The repository's config read, with no lock: the first contact of every command, bounded.
    restic 0.18 retries a backend error (connection refused, a wrong S3 key) for 15 minutes,
    a limit it does not let anyone change (restic/restic#5570); AINI stops asking after a minute
    and removes the container by its `name` (a killed `docker run` client leaves it running)."""
    return restic(tools, repo, "cat", "config", "--no-lock", timeout=PROBE_TIMEOUT, name=name)


def last_retry(stderr: str) -> str:
    """What restic's last retry said (`... returned error, retrying after 2s: WHY`), or ""."""
    lines = [line for line in stderr.splitlines() if "returned error, retrying after" in line]
    return lines[-1].split(": ", 1)[-1].strip()[:300] if lines else ""


def init_cmd(tools: Tools, repo: Repository) -> Cmd:
    return restic(tools, repo, "init", "--json", timeout=300)


def backup_volumes_cmd(tools: Tools, repo: Repository, service: str, run: str, volumes: Iterable[str],
                       safety: bool = False) -> Cmd:
    """The service's volumes, mounted read-only, as one snapshot of /data/<service>."""
    mounts = [(v, f"{DATA_ROOT}/{service}/{v}", True) for v in volumes]
    return restic(tools, repo, "backup", "--json", "--host", repo.host, *tags(service, run, safety),
                  f"{DATA_ROOT}/{service}", mounts=mounts)


def backup_stdin_cmd(tools: Tools, repo: Repository, service: str, run: str, filename: str,
                     safety: bool = False) -> Cmd:
    """stdin (a dump streamed in) as /<filename> of a snapshot of its own."""
    if "/" in filename:
        raise ValueError(f"restic stores stdin under a bare file name, not {filename!r}")
    return restic(tools, repo, "backup", "--json", "--host", repo.host, *tags(service, run, safety), "--stdin",
                  "--stdin-filename", filename, stdin=True)


def snapshots_cmd(tools: Tools, repo: Repository, service: str | None = None) -> Cmd:
    """This project's snapshots (its host name), of one service or all."""
    extra = ("--tag", f"service={service}") if service else ("--tag", "aini")
    return restic(tools, repo, "snapshots", "--json", "--host", repo.host, *extra, timeout=300)


def forget_cmd(tools: Tools, repo: Repository, snapshot_ids: Sequence[str]) -> Cmd:
    """Snapshots forgotten by id: what the retention plan (aini.backup.retention) lets go, or
    what a failed dump left. The prune comes apart."""
    return restic(tools, repo, "forget", "--json", *snapshot_ids, timeout=1800)


def prune_cmd(tools: Tools, repo: Repository) -> Cmd:
    return restic(tools, repo, "prune", "--json", timeout=6 * 3600)


def unlock_cmd(tools: Tools, repo: Repository) -> Cmd:
    """Every lock removed, stale or not. Only after an interrupted run whose restic containers
    are gone, under the site lock: a lock left by a killed container names a host (its container
    id) that no later restic can check, so restic alone would wait 30 minutes to call it stale."""
    return restic(tools, repo, "unlock", "--remove-all", timeout=300)


def leftovers_cmd(tools: Tools, repo: Repository) -> Cmd:
    """The project's restic containers still running (an interrupted run's)."""
    return Cmd((*tools.docker, "ps", "-q", "--filter", f"label={LABEL}={repo.host}"), timeout=60)


def remove_containers_cmd(tools: Tools, ids: Sequence[str]) -> Cmd:
    return Cmd((*tools.docker, "rm", "-f", *ids), timeout=120)


def check_cmd(tools: Tools, repo: Repository, read_data_percent: int | None = None) -> Cmd:
    extra = ("--read-data-subset", f"{read_data_percent}%") if read_data_percent else ()
    return restic(tools, repo, "check", *extra, timeout=6 * 3600)


def dump_cmd(tools: Tools, repo: Repository, snapshot: str, filename: str) -> Cmd:
    """A stored dump streamed to stdout (restored into its database without a file in between)."""
    return restic(tools, repo, "dump", snapshot, f"/{filename}")


def restore_volumes_cmd(tools: Tools, repo: Repository, snapshot: str, service: str, volumes: Iterable[str]) -> Cmd:
    """The snapshot's /data/<service> written back into the service's volumes (mounted writable)."""
    mounts = [(v, f"{DATA_ROOT}/{service}/{v}", False) for v in volumes]
    return restic(tools, repo, "restore", snapshot, "--target", "/", "--include", f"{DATA_ROOT}/{service}",
                  "--delete", mounts=mounts)


# The recovery kit (ops.recovery): aini.yml and .aini/ as one tar, in snapshots of their own
# tag (no `aini` tag: no run, retention or restore ever counts them), readable with a second
# key whose password is the break-glass passphrase.
KIT_TAG = "aini-kit"
KIT_FILE = "aini-kit.tar"
KIT_KEY_HOST = "aini-breakglass"  # the host name the kit's key carries, so it is found again
KEEP_KITS = 3
BY_PASSPHRASE = ("--password-file", "/dev/stdin")  # restic reads it before the env's RESTIC_PASSWORD


def kit_snapshots_cmd(tools: Tools, repo: Repository, by_passphrase: bool = False, every_host: bool = False) -> Cmd:
    """The kits, oldest first; `by_passphrase`: opened with the passphrase on stdin (recovery,
    which knows neither the repository password nor the project, so `every_host`)."""
    pw = BY_PASSPHRASE if by_passphrase else ()
    host = () if every_host else ("--host", repo.host)
    return restic(tools, repo, *pw, "snapshots", "--json", "--tag", KIT_TAG, *host, stdin=by_passphrase, timeout=300)


def kit_backup_cmd(tools: Tools, repo: Repository, fingerprint: str) -> Cmd:
    return restic(tools, repo, "backup", "--json", "--host", repo.host, "--tag", KIT_TAG, "--tag",
                  f"sha={fingerprint}", "--stdin", "--stdin-filename", KIT_FILE, stdin=True, timeout=300)


def kit_forget_cmd(tools: Tools, repo: Repository) -> Cmd:
    """Only the last few kits kept (the next prune frees the rest): each holds the whole of .aini/."""
    return restic(tools, repo, "forget", "--json", "--host", repo.host, "--tag", KIT_TAG,
                  "--keep-last", str(KEEP_KITS), timeout=600)


def kit_dump_cmd(tools: Tools, repo: Repository, snapshot: str) -> Cmd:
    return restic(tools, repo, *BY_PASSPHRASE, "dump", snapshot, f"/{KIT_FILE}", stdin=True, timeout=300)


def key_list_cmd(tools: Tools, repo: Repository) -> Cmd:
    return restic(tools, repo, "key", "list", "--json", timeout=300)


def key_add_cmd(tools: Tools, repo: Repository, user: str) -> Cmd:
    """A second key, its password (the break-glass passphrase) read from stdin; `user` says
    which project and which break-glass file it belongs to."""
    return restic(tools, repo, "key", "add", "--host", KIT_KEY_HOST, "--user", user,
                  "--new-password-file", "/dev/stdin", stdin=True, timeout=300)


def key_remove_cmd(tools: Tools, repo: Repository, key_id: str) -> Cmd:
    return restic(tools, repo, "key", "remove", key_id, timeout=300)


def parse_keys(stdout: str) -> list[dict]:
    """`key list --json`: [{id, current, userName, hostName, created}]."""
    try:
        rows = json.loads(stdout or "[]")
    except ValueError:
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


class Kit(NamedTuple):
    id: str
    host: str  # the project
    time: str
    fingerprint: str


def parse_kits(stdout: str) -> list[Kit]:
    """`snapshots --json --tag aini-kit`, oldest first."""
    try:
        rows = json.loads(stdout or "[]")
    except ValueError:
        return []
    kits = [Kit(str(r.get("id")), str(r.get("hostname") or ""), str(r.get("time") or ""),
                next((t[4:] for t in r.get("tags") or () if t.startswith("sha=")), ""))
            for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict) and r.get("id")]
    return sorted(kits, key=lambda k: _time(k.time))


def pipe_cmd(first: Cmd, second: Cmd, first_line: bool = False) -> Cmd:
    """`first | second` on the site, failing when either fails (bash's pipefail). The argvs
    travel as positional parameters, never through a shell string: nothing in them is parsed.
    With `first_line`, the first line of stdin goes to `second` ahead of `first`'s output
    (a token for a restore that reads it so)."""
    head = '{ IFS= read -r line && printf "%s\\n" "$line" && "${@:1:n}"; }' if first_line else '"${@:1:n}"'
    script = f'set -o pipefail; n=$1; shift; {head} | "${{@:n+1}}"'
    return Cmd(("bash", "-c", script, "aini-pipe", str(len(first.argv)), *first.argv, *second.argv),
               timeout=max(first.timeout, second.timeout))


# ------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: dt.datetime
    service: str
    paths: tuple[str, ...]
    size: int | None = None  # bytes processed when it was made
    tags: tuple[str, ...] = field(default=())

    @property
    def run(self) -> str:
        return next((t.split("=", 1)[1] for t in self.tags if t.startswith("run=")), "")

    @property
    def safety(self) -> bool:
        return SAFETY_TAG in self.tags

    @property
    def manifest(self) -> bool:
        return COMPLETE_TAG in self.tags

    @property
    def vouches(self) -> frozenset[str]:
        """The services a manifest says were saved whole in its run."""
        return frozenset(t[3:] for t in self.tags if t.startswith("ok="))

    @property
    def dump(self) -> bool:
        """A dump streamed in (one file at the root), rather than a copy of volumes."""
        return not any(p.startswith(DATA_ROOT + "/") for p in self.paths)


def parse_snapshots(stdout: str) -> list[Snapshot]:
    """`snapshots --json`, oldest first: a service's snapshots and the runs' manifests (service
    ""); entries that are not AINI's are left out."""
    try:
        rows = json.loads(stdout or "[]")
    except ValueError:
        return []
    result = []
    for row in rows if isinstance(rows, list) else []:
        tags = tuple(row.get("tags") or ())
        service = next((t.split("=", 1)[1] for t in tags if t.startswith("service=")), None) or None
        if service is None and COMPLETE_TAG in tags and "aini" in tags:
            service = ""
        if service is None or not row.get("id"):
            continue
        summary = row.get("summary") or {}
        result.append(Snapshot(row["id"], row.get("short_id") or row["id"][:8], _time(row.get("time")), service,
                               tuple(row.get("paths") or ()), summary.get("total_bytes_processed"), tags))
    return sorted(result, key=lambda s: s.time)


def complete(snapshots: Iterable[Snapshot]) -> dict[str, frozenset[str]]:
    """run -> the services its manifest vouches for (runs without one are left out)."""
    return {s.run: s.vouches for s in snapshots if s.manifest}


def parse_summary(stdout: str) -> Mapping | None:
    """The final summary of `backup --json` (it carries snapshot_id), None when there is none."""
    for line in reversed(stdout.splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "summary":
            return message
    return None


def error_line(returncode: int, stdout: str, stderr: str) -> str:
    """One line for a failed restic command: its own message when it printed one, else the
    meaning of its exit code."""
    for line in reversed((stdout + "\n" + stderr).splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "exit_error":
            return (str(message.get("message", "")).splitlines() or [""])[0].removeprefix("Fatal: ")[:300]
    if returncode == 125:  # docker's own failure (no such image, a bad mount): its first line says why
        text = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
        return f"docker could not start restic: {text[:300]}"
    text = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    meaning = EXIT_MEANING.get(returncode, f"exit {returncode}")
    return f"{meaning}: {text[:300]}" if text and returncode not in (10, 11, 12) else meaning


def _time(value: object) -> dt.datetime:
    text = str(value or "1970-01-01T00:00:00Z")
    # restic writes nanoseconds; Python reads at most microseconds.
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
