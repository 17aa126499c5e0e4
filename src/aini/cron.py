"""5-field cron expressions (minute hour day-of-month month day-of-week), as cron(8) reads
them: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; day 7 is Sunday as 0.
When both day fields are restricted, a day matches either (cron(8), "Note: The day of a
command's execution can be specified in the following two fields")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def matches(self, t: dt.datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        day, weekday = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def fires(self, start: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """Every time in [start, until) it fires at, to the minute."""
        found = []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < until:
            if self.matches(day.replace(hour=min(self.hours), minute=min(self.minutes))):
                found += [t for h in sorted(self.hours) for m in sorted(self.minutes)
                          if start <= (t := day.replace(hour=h, minute=m)) < until]
            day += dt.timedelta(days=1)
        return found

    def longest_gap(self, start: dt.datetime) -> dt.timedelta | None:
        """The longest time between two runs in the 8 weeks from `start`; None: fewer than two runs."""
        runs = self.fires(start, start + dt.timedelta(weeks=8)) if self.minutes else []
        if len(runs) < 2:
            return None
        return max(b - a for a, b in zip(runs, runs[1:]))


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit() or step_text == "0":
            raise ValueError(f"{_NAMES[index]}: '{part}' has a bad step")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"{_NAMES[index]}: '{part}' is not a number, range or *")
            first, last = int(a), int(b)
        elif base.isdigit():
            first = last = int(base)
            if step_text:
                last = high
        else:
            raise ValueError(f"{_NAMES[index]}: '{part}' is not a number, range or *")
        if not low <= first <= last <= high:
            raise ValueError(f"{_NAMES[index]}: '{part}' is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(expression: str) -> Cron:
    """A Cron, or ValueError naming the field that is wrong."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError("must be a 5-field cron expression (minutes hours day month weekday)")
    fields = [_field(p, i) for i, p in enumerate(parts)]
    weekdays = frozenset(d % 7 for d in fields[4])
    return Cron(fields[0], fields[1], fields[2], fields[3], weekdays, parts[2].startswith("*"),
                parts[4].startswith("*"))


_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def on_calendar(expression: str) -> list[str]:
    """The systemd OnCalendar= values (one timer, each line a union member) that fire when the
    cron expression does. systemd ANDs its day-of-week with the date, where cron ORs two
    restricted day fields: that case takes two lines."""
    c = parse(expression)

    def listed(values: frozenset[int], index: int, width: int) -> str:
        low, high = _RANGES[index]
        return "*" if values == frozenset(range(low, high + 1)) else ",".join(f"{v:0{width}d}" for v in sorted(values))

    months = listed(c.months, 3, 2)
    clock = f"{listed(c.hours, 1, 2)}:{listed(c.minutes, 0, 2)}:00"
    weekdays = "" if len(c.weekdays) == 7 else ",".join(_WEEKDAYS[d] for d in sorted(c.weekdays)) + " "
    by_date = f"*-{months}-{listed(c.days, 2, 2)} {clock}"
    if c.any_day or c.any_weekday:
        return [weekdays + by_date]
    return [by_date, f"{weekdays}*-{months}-* {clock}"]
