"""The record of backup runs kept on the site (`backups.json` in its root): the last run and,
per service, its last good backup. `aini backup` writes it, `aini status` judges it. Pure:
text in, text out."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .. import cron

FILE = "backups.json"
JOURNAL = "backup-run.json"  # a backup, restore or check under way; still there after one was killed


@dataclass(frozen=True)
class Journal:
    kind: str  # backup, restore or check
    run: str
    groups: tuple[str, ...]
    safety_run: str | None = None


def journal_text(journal: Journal) -> str:
    return json.dumps({"kind": journal.kind, "run": journal.run, "safety_run": journal.safety_run,
                       "groups": sorted(journal.groups)}) + "\n"


def parse_journal(text: str | None) -> Journal | None:
    """None when there is none, or it was cut short by the kill itself (nothing had started)."""
    if text is None:
        return None
    try:
        left = json.loads(text)
        safety = left.get("safety_run")
        return Journal(str(left["kind"]), str(left["run"]), tuple(str(g) for g in left["groups"]),
                       str(safety) if safety else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class Record:
    last_run: str | None
    last_finished: dt.datetime | None
    failed: Mapping[str, str]  # service -> error, of the last run
    last_good: Mapping[str, dt.datetime]  # service -> when its last good backup finished
    drill: Drill | None = None  # the last restore drill
    check: Check | None = None  # the last `restic check`


@dataclass(frozen=True)
class Check:
    finished: dt.datetime
    read_data_percent: int | None
    error: str | None  # restic's reason when it found damage


@dataclass(frozen=True)
class Drill:
    run: str  # the backup run it restored
    finished: dt.datetime
    passed: tuple[str, ...]
    failed: Mapping[str, str]  # service -> what failed


def _document(text: str | None) -> dict:
    """The record's JSON object; an empty one when there is none or it is damaged."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse(text: str | None) -> Record:
    data = _document(text)
    last = data.get("last_run") if isinstance(data.get("last_run"), dict) else {}
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    good = {name: t for name, row in services.items()
            if isinstance(row, dict) and (t := _time(row.get("last_good"))) is not None}
    failed = last.get("failed") if isinstance(last.get("failed"), dict) else {}
    drill, drilled = data.get("drill"), None
    if isinstance(drill, dict) and (when := _time(drill.get("finished"))) is not None:
        gone = drill.get("failed") if isinstance(drill.get("failed"), dict) else {}
        passed = drill.get("passed") if isinstance(drill.get("passed"), list) else []
        drilled = Drill(str(drill.get("run", "")), when, tuple(str(p) for p in passed),
                        {str(k): str(v) for k, v in gone.items()})
    checked, check = data.get("check"), None
    if isinstance(checked, dict) and (when := _time(checked.get("finished"))) is not None:
        share, error = checked.get("read_data_percent"), checked.get("error")
        check = Check(when, share if isinstance(share, int) else None, str(error) if error else None)
    return Record(last.get("run"), _time(last.get("finished")), {str(k): str(v) for k, v in failed.items()}, good,
                  drilled, check)


def with_check(previous: str | None, check: Check) -> str:
    """The record with the last repository check's outcome; the rest unchanged."""
    data = _document(previous)
    data["check"] = {"finished": check.finished.isoformat(timespec="seconds"),
                     "read_data_percent": check.read_data_percent, "error": check.error}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def check_due(record: Record, now: dt.datetime, every: dt.timedelta) -> bool:
    return record.check is None or now - record.check.finished >= every


def with_drill(previous: str | None, drill: Drill) -> str:
    """The record with the last drill's outcome; the backups' part unchanged."""
    data = _document(previous)
    data["drill"] = {"run": drill.run, "finished": drill.finished.isoformat(timespec="seconds"),
                     "passed": list(drill.passed), "failed": dict(drill.failed)}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def merged(previous: str | None, run: str, finished: dt.datetime, good: Iterable[str],
           failed: Mapping[str, str]) -> str:
    """The record after a run: its outcome, and the services it saved marked good now."""
    data = _document(previous)
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    for name in good:
        services[name] = {"last_good": finished.isoformat(timespec="seconds"), "run": run}
    return json.dumps({**data, "format": 1, "last_run": {"run": run, "finished": finished.isoformat(timespec="seconds"),
                                                         "failed": dict(failed)},
                       "services": services}, indent=2, sort_keys=True) + "\n"


def interrupted_note(journal: Journal) -> str:
    """What `aini status` adds to the rows of the journal's groups."""
    run = journal.safety_run if journal.kind == "restore" and journal.safety_run else journal.run
    return (f"a {journal.kind} (run {run}) is running or was interrupted; if interrupted, the next aini backup "
            "tidies it (maintenance mode off, stopped containers started)")


def overdue_after(schedule: str, now: dt.datetime) -> dt.timedelta:
    """How old the last good backup may be: two periods of the schedule (its longest gap).
    `aini status` judges by it, and Consul's TTL check on the scheduled run lapses after it."""
    return 2 * (cron.parse(schedule).longest_gap(now) or dt.timedelta(days=31))


def verdicts(record: Record, services: Iterable[str], schedule: str, now: dt.datetime
             ) -> dict[str, tuple[bool, str]]:
    """Per service that should be saved: (ok, what to show). Not ok when the last run failed
    for it, or its last good backup is older than two periods of the schedule."""
    overdue = overdue_after(schedule, now)
    result = {}
    for name in services:
        good = record.last_good.get(name)
        if name in record.failed:
            result[name] = (False, f"the last backup failed: {record.failed[name][:200]}")
        elif good is None:
            result[name] = (True, "no backup yet")
        elif now - good > overdue:
            result[name] = (False, f"last good backup {_age(now - good)} ago, older than two periods of "
                                   f"'{schedule}'")
        else:
            result[name] = (True, f"backed up {_age(now - good)} ago")
    if record.check is not None and record.check.error:
        for name, (_ok, note) in result.items():
            result[name] = (False, f"{note}; the repository check {_age(now - record.check.finished)} ago found "
                                   f"damage: {record.check.error[:200]}")
    drill = record.drill
    if drill is not None:
        for name, (ok, note) in result.items():
            if name in drill.failed:
                result[name] = (False, f"{note}; the last restore drill failed: {drill.failed[name][:200]}")
            elif name in drill.passed:
                result[name] = (ok, f"{note}; drill passed {_age(now - drill.finished)} ago")
    return result


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
