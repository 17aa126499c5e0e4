"""Which snapshots backup.retention lets go, decided per run rather than per snapshot. Pure.

restic's own `forget --keep-*` decides per group of snapshots (host, paths): a service's
volumes and its dump are two groups, so on a day with a failed run it could keep the volumes
of one run and the dump of another, and no run would be whole any more. Here a service keeps
whole runs only: the runs whose manifest vouches for it, thinned like restic's policy (per
day, ISO week and month the newest run, for the newest N of each); the newest whole run is
kept whatever the policy says. Everything else of the service goes: its snapshots in runs
that were interrupted or failed for it, and in runs the policy drops. A manifest stays while
any service it vouches for keeps its run. Safety backups (taken before a restore) are kept
SAFETY_DAYS whatever their state: they may be the only copy of what a restore overwrote."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..docker.restic import Snapshot, complete

SAFETY_DAYS = 30


@dataclass(frozen=True)
class Keep:
    """backup.retention: how many daily, weekly and monthly runs are kept."""

    daily: int
    weekly: int
    monthly: int


def _newest_per_bucket(times: dict[str, dt.datetime], count: int, bucket: Callable[[dt.datetime], object]) -> set[str]:
    kept: set[str] = set()
    seen: set[object] = set()
    for run in sorted(times, key=lambda r: times[r], reverse=True):
        key = bucket(times[run])
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.add(key)
        kept.add(run)
    return kept


def keep_runs(times: dict[str, dt.datetime], daily: int, weekly: int, monthly: int) -> set[str]:
    """The runs restic's --keep-daily/--keep-weekly/--keep-monthly would keep, and the newest."""
    if not times:
        return set()
    return ({max(times, key=lambda r: times[r])}
            | _newest_per_bucket(times, daily, lambda t: t.date())
            | _newest_per_bucket(times, weekly, lambda t: t.isocalendar()[:2])
            | _newest_per_bucket(times, monthly, lambda t: (t.year, t.month)))


def forgettable(snapshots: Sequence[Snapshot], daily: int, weekly: int, monthly: int,
                now: dt.datetime) -> list[str]:
    """The ids of the snapshots to forget, oldest first."""
    regular = [s for s in snapshots if not s.safety]
    whole = complete(regular)
    manifest_time = {s.run: s.time for s in regular if s.manifest}
    kept_by_service: dict[str, set[str]] = {}
    for service in {s.service for s in regular if s.service} | {v for runs in whole.values() for v in runs}:
        runs = {run: manifest_time[run] for run, vouched in whole.items() if service in vouched}
        kept_by_service[service] = keep_runs(runs, daily, weekly, monthly)
    kept_manifests = {run for run, vouched in whole.items()
                      if any(run in kept_by_service.get(v, ()) for v in vouched)}

    def goes(s: Snapshot) -> bool:
        if s.safety:
            return now - s.time > dt.timedelta(days=SAFETY_DAYS)
        if s.manifest:
            return s.run not in kept_manifests
        return s.run not in kept_by_service.get(s.service, set())

    return [s.id for s in sorted(snapshots, key=lambda s: s.time) if goes(s)]


def summary(forgotten: Iterable[str], snapshots: Sequence[Snapshot]) -> str:
    ids = set(forgotten)
    runs = {s.run for s in snapshots if s.id in ids}
    return f"{len(ids)} snapshots of {len(runs)} runs" if ids else "nothing"
