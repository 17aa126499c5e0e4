"""The cron reading behind backup.schedule: what is refused, and how far apart runs are."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess

import pytest

from aini import cron
from aini.errors import ConfigError

from .conftest import config_of

START = dt.datetime(2026, 1, 1)


@pytest.mark.parametrize(("expression", "gap"), [
    ("30 3 * * *", dt.timedelta(days=1)),
    ("0 */6 * * *", dt.timedelta(hours=6)),
    ("30 3 * * 1-5", dt.timedelta(days=3)),  # Friday to Monday
    ("0 3 * * 7", dt.timedelta(weeks=1)),  # 7 is Sunday, as 0
    ("0 3 1 * *", dt.timedelta(days=31)),
    ("15,45 2 * * *", dt.timedelta(hours=23, minutes=30)),
])
def test_the_longest_gap_between_runs(expression, gap):
    assert cron.parse(expression).longest_gap(START) == gap


def test_both_day_fields_restricted_match_either_day_as_cron_does():
    c = cron.parse("0 3 13 * 5")  # the 13th, and every Friday
    fired = c.fires(START, START + dt.timedelta(days=31))
    assert {t.day for t in fired} == {2, 9, 13, 16, 23, 30}


@pytest.mark.parametrize(("expression", "message"), [
    ("61 3 * * *", "minute: '61' is outside 0-59"),
    ("30 3 * * mon", "day of week: 'mon' is not a number"),
    ("*/0 * * * *", "minute: '*/0' has a bad step"),
    ("30 3 * *", "must be a 5-field cron expression"),
])
def test_what_is_refused_names_the_field(expression, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cron.parse(expression)


def test_backup_schedule_is_checked_in_aini_yml():
    with pytest.raises(ConfigError) as caught:
        config_of(backup={"schedule": "0 3 1 1 *"})
    assert "backup.schedule" in str(caught.value.problems) and "at least monthly" in str(caught.value.problems)
    with pytest.raises(ConfigError):
        config_of(backup={"schedule": "99 3 * * *"})
    assert config_of(backup={"schedule": "30  3 * * *"}).backup.schedule == "30 3 * * *"


@pytest.mark.parametrize("expression", ["30 3 * * *", "*/15 1-3 * * 1-5", "0 4 1,15 * 0", "0 4 */2 * *",
                                        "5 0 * 2 7", "0 4 */2 * 1", "0 0,12 29 2 *"])
def test_the_systemd_timer_fires_when_cron_would(expression):
    """systemd's own calendar parser (what the server's timer runs) against cron.fires, for the
    next runs from now: same instants, including cron's OR of two restricted day fields."""
    lines = cron.on_calendar(expression)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, second=0, microsecond=0) + dt.timedelta(minutes=1)
    seen: set[dt.datetime] = set()
    for line in lines:
        r = subprocess.run(["systemd-analyze", "calendar", "--iterations=12", line], capture_output=True, text=True,
                           env={"TZ": "UTC", "PATH": os.environ["PATH"]}, timeout=30)
        assert r.returncode == 0, r.stderr
        seen |= {dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
                 for m in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", r.stdout)}
    runs = sorted(seen)[:12]
    assert runs == cron.parse(expression).fires(now, runs[-1] + dt.timedelta(minutes=1))
