"""backup.schedule on the server, as data: the job round-trips, the units say what systemd
runs and when, and the commands that install them."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import aini
from aini.backup import scheduled, scope
from aini.backup.retention import Keep
from aini.docker import restic
from aini.docker.cmd import Tools

from ..conftest import config_of

ROOT = PurePosixPath("/opt/aini/deployed")


def _job() -> scheduled.Job:
    config = config_of()
    return scheduled.Job(str(ROOT), "/opt/aini/deploy.lock", Tools(("docker",), ("docker", "compose")),
                         restic.Repository("restic/restic:0.18.0", str(ROOT / "restic.env"), host="aini"),
                         tuple(scope.items(config)), Keep(7, 4, 6), scope.not_saved(config))


def test_the_job_is_data_that_comes_back_whole():
    job = _job()
    assert scheduled.parse_job(scheduled.job_text(job)) == job
    assert {i.service for i in job.items} >= {"mariadb", "nextcloud", "vault", "consul"}


def test_the_timer_runs_the_service_at_the_schedule_and_catches_up_after_downtime():
    assert scheduled.timer_unit("0 4 1,15 * 0", "acme") == (
        "[Unit]\nDescription=AINI backup.schedule of acme (0 4 1,15 * 0, server time)\n\n"
        "[Timer]\nOnCalendar=*-*-01,15 04:00:00\nOnCalendar=Sun *-*-* 04:00:00\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n")
    unit = scheduled.service_unit(str(ROOT), "acme")
    assert ("ExecStart=/usr/bin/python3 -E -s -S /opt/aini/deployed/schedule/run.py "
            "/opt/aini/deployed/schedule/job.json\n") in unit
    assert "Type=oneshot\n" in unit and "After=docker.service\n" in unit


def test_what_aini_up_leaves_on_the_server_keeps_the_tokens_private():
    files = scheduled.files(_job(), {"vault": "hvs.snap"}, "30 3 * * *", "acme", Path(aini.__file__).parent)
    private = {rel for rel, f in files.items() if f.private}
    assert private == {"schedule/job.json", "schedule/tokens.json"}
    assert "hvs.snap" not in "".join(f.content for rel, f in files.items() if rel != "schedule/tokens.json")
    assert {f"schedule/aini/{m}" for m in scheduled.MODULES} < set(files)
    assert files["schedule/aini/catalog/__init__.py"].content == scheduled.CATALOG_INIT


def test_installing_and_removing_the_timer_are_commands():
    assert [c.argv for c in scheduled.install_cmds(ROOT)] == [
        ("install", "-m", "0644", "/opt/aini/deployed/schedule/aini-backup.service", "/etc/systemd/system"),
        ("install", "-m", "0644", "/opt/aini/deployed/schedule/aini-backup.timer", "/etc/systemd/system"),
        ("systemctl", "daemon-reload"), ("systemctl", "enable", "aini-backup.timer"),
        ("systemctl", "restart", "aini-backup.timer")]
    assert [c.argv for c in scheduled.remove_cmds(ROOT)] == [
        ("systemctl", "disable", "--now", "aini-backup.timer"),
        ("rm", "-rf", "--", "/etc/systemd/system/aini-backup.service", "/etc/systemd/system/aini-backup.timer",
         "/opt/aini/deployed/schedule"),
        ("systemctl", "daemon-reload")]


def test_each_run_tells_consuls_ttl_check_with_the_token_on_stdin_only():
    from aini.controlplane import consul

    cmd = scheduled.ttl_update_cmd(Tools(("docker",), ()), "aini-consul")
    assert cmd.argv[:5] == ("docker", "exec", "-i", "aini-consul", "sh")
    assert f"/v1/agent/check/update/{consul.BACKUP_CHECK} 3<<EOF" in cmd.argv[-1]  # the check aini up registers
    assert "$CONSUL_HTTP_TOKEN" in cmd.argv[-1] and "curl -fsS -X PUT -H @/dev/fd/3 --data-binary @-" in cmd.argv[-1]
    assert json.loads(scheduled.ttl_update({}, ["n8n", "consul"], "r1")) == {
        "Status": "passing", "Output": "run r1: saved n8n, consul"}
    failed = json.loads(scheduled.ttl_update({"n8n": "x" * 5000}, [], "r2"))
    assert failed["Status"] == "critical" and failed["Output"].startswith("run r2 failed: n8n: xxx")
    assert len(failed["Output"]) == scheduled.TTL_OUTPUT_MAX
    definition = consul.backup_service_definition(172800, "30 3 * * *")
    assert definition["Check"] == {"CheckID": consul.BACKUP_CHECK, "Name": "scheduled backup", "TTL": "172800s",
                                   "Status": "warning", "Notes": "each backup.schedule run (30 3 * * *) reports here"}
    assert 'service "aini-backup" { policy = "write" }' in consul.SNAPSHOT_RULES
