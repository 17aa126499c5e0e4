"""The record of backup runs on the site, and what `aini status` makes of it."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from aini.backup import record
from aini.cli import tables
from aini.ops import status

from ..conftest import config_of

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
DAILY = "30 3 * * *"


def test_a_run_marks_what_it_saved_and_keeps_the_others_last_good():
    first = record.merged(None, "r1", NOW - dt.timedelta(days=1), ["n8n", "mariadb"], {})
    second = record.merged(first, "r2", NOW, ["n8n"], {"mariadb": "mariadb-dump: exit 2"})
    rec = record.parse(second)
    assert rec.last_run == "r2" and rec.failed == {"mariadb": "mariadb-dump: exit 2"}
    assert rec.last_good == {"n8n": NOW, "mariadb": NOW - dt.timedelta(days=1)}


def test_damaged_or_missing_records_read_as_no_backup_yet():
    for text in (None, "", "not json", "[1]", '{"services": {"n8n": {"last_good": "yesterday"}}}'):
        rec = record.parse(text)
        assert rec.last_good == {} and rec.failed == {}


def test_a_failed_last_run_or_a_backup_older_than_two_periods_is_not_ok():
    text = record.merged(record.merged(None, "r0", NOW - dt.timedelta(days=3), ["traefik"], {}),
                         "r1", NOW - dt.timedelta(hours=20), ["n8n"], {"mariadb": "exit 2"})
    v = record.verdicts(record.parse(text), ["n8n", "mariadb", "traefik", "nextcloud"], DAILY, NOW)
    assert v["n8n"] == (True, "backed up 20 h ago")
    assert v["mariadb"] == (False, "the last backup failed: exit 2")
    assert v["traefik"] == (False, "last good backup 3 days ago, older than two periods of '30 3 * * *'")
    assert v["nextcloud"] == (True, "no backup yet")
    weekly = record.verdicts(record.parse(text), ["traefik"], "0 3 * * 0", NOW)
    assert weekly["traefik"][0] is True  # three days is within two weeks


def test_status_fails_the_row_and_shows_the_backup_column():
    config = config_of(backup={"repository": "/var/backups/aini"})
    rows = tuple(status.ServiceStatus(name, "g", "running", "healthy", 0, None, None, None, None, True, "")
                 for name in ("n8n", "mariadb", "redis"))
    report = status.StatusReport("p", rows, NOW)
    text = record.merged(None, "r1", NOW - dt.timedelta(hours=2), ["n8n"], {"mariadb": "exit 2"})
    result = status.overlay_backups(report, config, text)
    by = {r.service: r for r in result.services}
    assert by["n8n"].ok and by["n8n"].backup == "backed up 2 h ago"
    assert not by["mariadb"].ok and by["mariadb"].reason == "the last backup failed: exit 2"
    assert by["redis"].backup is None and by["redis"].ok  # a cache: nothing to judge
    assert not result.ok and result.to_dict()["services"][0]["backup"] == "backed up 2 h ago"
    out = io.StringIO()
    tables.status_table(result, Console(file=out, width=250))
    assert "backup" in out.getvalue() and "backed up 2 h ago" in out.getvalue()


def test_a_journal_left_on_the_site_is_named_on_its_groups_rows_and_a_cut_one_is_none():
    config = config_of(backup={"repository": "/var/backups/aini"})
    rows = tuple(status.ServiceStatus(name, "g", "running", "healthy", 0, None, None, None, None, True, "")
                 for name in ("n8n", "mariadb", "nextcloud"))
    text = record.merged(None, "r1", NOW - dt.timedelta(hours=2), ["n8n", "mariadb", "nextcloud"], {})
    journal = record.journal_text(record.Journal("backup", "20261127T120000Z", ("nextcloud",)))
    assert record.parse_journal(journal) == record.Journal("backup", "20261127T120000Z", ("nextcloud",))
    assert record.parse_journal('{"kind": "backup", "ru') is None and record.parse_journal(None) is None
    by = {r.service: r for r in status.overlay_backups(status.StatusReport("p", rows, NOW), config, text,
                                                       journal).services}
    assert by["n8n"].backup == "backed up 2 h ago"
    assert by["mariadb"].backup == by["nextcloud"].backup == (
        "backed up 2 h ago; a backup (run 20261127T120000Z) is running or was interrupted; if interrupted, the next "
        "aini backup tidies it (maintenance mode off, stopped containers started)")
    restore = record.Journal("restore", "r1", ("n8n",), safety_run="r2")
    assert "a restore (run r2)" in record.interrupted_note(restore)


def test_the_last_drill_is_kept_beside_the_backups_and_a_failed_one_fails_its_row():
    text = record.merged(None, "r1", NOW - dt.timedelta(hours=2), ["n8n", "mariadb"], {})
    text = record.with_drill(text, record.Drill("r1", NOW - dt.timedelta(hours=1), ("n8n",), {"mariadb": "loading"}))
    text = record.merged(text, "r2", NOW, ["n8n", "mariadb"], {})  # a later backup keeps the drill
    v = record.verdicts(record.parse(text), ["n8n", "mariadb", "traefik"], DAILY, NOW)
    assert v["n8n"] == (True, "backed up 0 h ago; drill passed 1 h ago")
    assert v["mariadb"] == (False, "backed up 0 h ago; the last restore drill failed: loading")
    assert v["traefik"] == (True, "no backup yet")


def test_a_repository_check_that_found_damage_fails_every_row_until_one_passes():
    text = record.merged(None, "r1", NOW - dt.timedelta(hours=2), ["n8n", "mariadb"], {})
    assert record.check_due(record.parse(text), NOW, dt.timedelta(days=7))  # never checked
    text = record.with_check(text, record.Check(NOW - dt.timedelta(hours=1), 5, "pack 3f2a: ciphertext verification failed"))
    v = record.verdicts(record.parse(text), ["n8n", "mariadb"], DAILY, NOW)
    assert v["n8n"] == (False, "backed up 2 h ago; the repository check 1 h ago found damage: pack 3f2a: "
                               "ciphertext verification failed")
    assert not record.check_due(record.parse(text), NOW, dt.timedelta(days=7))
    text = record.with_check(record.merged(text, "r2", NOW, ["n8n"], {}), record.Check(NOW, None, None))
    assert record.verdicts(record.parse(text), ["n8n"], DAILY, NOW) == {"n8n": (True, "backed up 0 h ago")}
    assert record.check_due(record.parse(text), NOW + dt.timedelta(days=7), dt.timedelta(days=7))
