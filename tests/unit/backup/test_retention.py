"""Retention decided per run: a service keeps whole runs, never the volumes of one run and
the dump of another."""

from __future__ import annotations

import datetime as dt

from aini.backup import retention
from aini.docker import restic

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)


def _snap(service, run, when, sid, dump=False, safety=False):
    path = f"/{service}.dump" if dump else f"/data/{service}"
    return restic.Snapshot(sid, sid[:8], when, service, (path,),
                           tags=("aini", f"service={service}", f"run={run}", *(("safety",) if safety else ())))


def _manifest(run, when, sid, *services, safety=False):
    return restic.Snapshot(sid, sid[:8], when + dt.timedelta(seconds=30), "", ("/aini-run.json",),
                           tags=("aini", f"run={run}", "complete", *(f"ok={s}" for s in services),
                                 *(("safety",) if safety else ())))


def _run(run, when, *services, vouch=None, safety=False):
    """A run of `services` (each a volume and a dump snapshot) and its manifest."""
    snaps = [_snap(s, run, when, f"{run}-{s}-{k}", dump=k == "d", safety=safety) for s in services for k in "vd"]
    vouched = services if vouch is None else vouch
    return snaps + ([_manifest(run, when, f"{run}-manifest", *vouched, safety=safety)] if vouched else [])


def test_the_newest_run_of_each_of_the_last_n_days_is_kept():
    snaps = [s for day in range(10) for s in _run(f"r{day}", NOW - dt.timedelta(days=day), "n8n")]
    goes = retention.forgettable(snaps, daily=3, weekly=0, monthly=0, now=NOW)
    kept = {s.run for s in snaps if s.id not in goes}
    assert kept == {"r0", "r1", "r2"}
    assert len(goes) == 7 * 3  # volumes, dump and manifest of each run let go


def test_a_service_keeps_its_last_whole_run_when_a_later_one_failed_for_it():
    morning, evening = NOW - dt.timedelta(hours=10), NOW - dt.timedelta(hours=1)
    # the evening run saved mariadb whole, but nextcloud's dump failed after its volumes were stored
    snaps = _run("am", morning, "mariadb", "nextcloud") + _run("pm", evening, "mariadb", "nextcloud",
                                                               vouch=["mariadb"])
    goes = set(retention.forgettable(snaps, daily=1, weekly=0, monthly=0, now=NOW))
    kept = {(s.service, s.run) for s in snaps if s.id not in goes}
    # restic's per-group policy would keep pm's nextcloud volumes beside am's nextcloud dump
    assert kept == {("nextcloud", "am"), ("mariadb", "pm"), ("", "am"), ("", "pm")}


def test_what_an_interrupted_run_left_goes_and_the_newest_whole_run_always_stays():
    snaps = _run("old", NOW - dt.timedelta(days=40), "n8n") + _run("cut", NOW, "n8n", vouch=[])
    goes = set(retention.forgettable(snaps, daily=0, weekly=0, monthly=0, now=NOW))
    assert {s.run for s in snaps if s.id in goes} == {"cut"}
    assert {s.run for s in snaps if s.id not in goes} == {"old"}


def test_safety_backups_stay_thirty_days_whole_or_not():
    young = _run("s1", NOW - dt.timedelta(days=29), "n8n", vouch=[], safety=True)
    old = _run("s2", NOW - dt.timedelta(days=31), "n8n", safety=True)
    goes = set(retention.forgettable(young + old, daily=7, weekly=4, monthly=6, now=NOW))
    assert goes == {s.id for s in old}
    assert retention.summary(goes, old) == "3 snapshots of 1 runs"


def test_weeks_and_months_thin_older_runs_like_restics_policy():
    times = {f"r{d}": NOW - dt.timedelta(days=d) for d in range(0, 120)}
    kept = retention.keep_runs(times, daily=2, weekly=2, monthly=3)
    # 2 days; this ISO week (Mon 23 Nov) is covered by r0, the previous by its Sunday r5; months
    # Nov (r0), Oct (r27 = 31 Oct), Sep (r58 = 30 Sep)
    assert kept == {"r0", "r1", "r5", "r27", "r58"}
