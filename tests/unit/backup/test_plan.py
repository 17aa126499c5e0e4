"""What a backup consists of, from the catalog: volumes read-only into restic, dumps streamed
in from their containers, and why the rest is not saved."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from aini.backup import plan, scope
from aini.docker import restic
from aini.docker.cmd import Tools
from aini.errors import InputError

from ..conftest import config_of

TOOLS = Tools(("docker",), ())
REPO = restic.Repository("restic/restic:0.18.0", "/opt/aini/backup/restic.env")


def test_the_default_stack_saves_these_volumes_and_dumps_in_deploy_order():
    assert [(i.service, i.volumes, i.backup.dump_file) for i in scope.items(config_of())] == [
        ("traefik", ("aini-traefik-acme",), None),
        ("consul", (), "consul.snap"),
        ("vault", (), "vault.snap"),
        ("mongodb", (), "mongodb.archive.gz"),
        ("librechat", ("aini-librechat-images", "aini-librechat-uploads", "aini-librechat-data"), None),
        ("n8n", ("aini-n8n-data",), None),
        ("mariadb", (), "nextcloud.sql"),
        ("nextcloud", ("aini-nextcloud-html",), None),
    ]


def test_what_is_not_saved_says_why():
    skipped = scope.not_saved(config_of())
    assert skipped["redis"] == "a cache; not backed up"
    assert skipped["meilisearch"] == "an index rebuilt from MongoDB; not backed up"
    assert set(skipped) == {"meilisearch", "redis", "nextcloud-cron", "onlyoffice", "socket-proxy",
                            "netdata", "watchtower"}


def test_n8n_on_postgresql_adds_its_dump_and_disabled_services_drop_out():
    config = config_of(services={"n8n": {"database": "postgres"}, "librechat": {"enabled": False}})
    saved = {i.service: i for i in scope.items(config)}
    assert saved["n8n-postgres"].backup.dump_file == "n8n.pgdump"
    assert "librechat" not in saved and "mongodb" not in saved


def test_only_takes_services_or_whole_groups_and_names_what_it_does_not_know():
    assert [i.service for i in scope.items(config_of(), ["nextcloud"])] == ["mariadb", "nextcloud"]  # the group
    assert [i.service for i in scope.items(config_of(), ["mariadb", "n8n"])] == ["n8n", "mariadb"]
    with pytest.raises(InputError, match="no enabled service or group named nope; known: .*mariadb"):
        scope.items(config_of(), ["nope"])


def _argvs(cmd):
    """The two argvs of a pipe_cmd."""
    n = int(cmd.argv[4])
    return cmd.argv[5:5 + n], cmd.argv[5 + n:]


def test_a_dump_is_piped_from_its_container_into_restic_with_no_secret_in_argv():
    mariadb = next(i for i in scope.items(config_of()) if i.service == "mariadb")
    (cmd,) = plan.backup_cmds(TOOLS, REPO, mariadb, "r1")
    assert cmd.argv[:2] == ("bash", "-c") and "pipefail" in cmd.argv[2]
    first, second = _argvs(cmd)
    assert first[:6] == ("docker", "exec", "-u", "root", "aini-mariadb", "sh") and "$MARIADB_ROOT_PASSWORD" in first[-1]
    assert second[-3:] == ("--stdin", "--stdin-filename", "nextcloud.sql") and "service=mariadb" in second


def test_a_control_plane_snapshot_reads_its_token_from_the_first_line_of_stdin_never_argv():
    """The executor sends the token as a line (backup.runner.run_fed); the argv holds only the
    variable's name. Restoring takes that line through the pipe ahead of restic's output."""
    vault = next(i for i in scope.items(config_of()) if i.service == "vault")
    (cmd,) = plan.backup_cmds(TOOLS, REPO, vault, "r1")
    first, second = _argvs(cmd)
    assert first[:5] == ("docker", "exec", "-i", "-u", "root") and first[5] == "aini-vault"
    assert first[-1] == ('IFS= read -r VAULT_TOKEN || { echo "no token on stdin" >&2; exit 2; }; export VAULT_TOKEN; '
                         'export VAULT_ADDR=http://127.0.0.1:8200; vault token renew >/dev/null && '
                         'vault operator raft snapshot save /dev/stdout')
    assert "--stdin" in second
    snap = restic.Snapshot("abcd1234ef", "abcd1234", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "vault",
                           ("/vault.snap",), tags=("service=vault", "run=r1"))
    (back,) = plan.restore_cmds(TOOLS, REPO, vault, [snap])
    assert back.argv[2].startswith('set -o pipefail; n=$1; shift; { IFS= read -r line && printf "%s\\n" "$line" && ')
    dump, load = _argvs(back)
    assert dump[-2:] == ("abcd1234ef", "/vault.snap") or "/vault.snap" in dump
    assert load[2] == "-i" and load[-1].endswith("vault operator raft snapshot restore /dev/stdin")


def test_a_service_without_a_token_gets_no_token_read_and_no_first_line():
    mongodb = next(i for i in scope.items(config_of()) if i.service == "mongodb")
    snap = restic.Snapshot("ab", "ab", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "mongodb", ("/mongodb.archive.gz",))
    (back,) = plan.restore_cmds(TOOLS, REPO, mongodb, [snap])
    assert "read -r" not in back.argv[2] and "read -r" not in " ".join(back.argv[3:])


def test_volumes_are_one_snapshot_per_service():
    librechat = next(i for i in scope.items(config_of()) if i.service == "librechat")
    (cmd,) = plan.backup_cmds(TOOLS, REPO, librechat, "r1")
    assert [a for a in cmd.argv if a.endswith(":ro")] == [
        "aini-librechat-images:/data/librechat/aini-librechat-images:ro",
        "aini-librechat-uploads:/data/librechat/aini-librechat-uploads:ro",
        "aini-librechat-data:/data/librechat/aini-librechat-data:ro",
    ]


def test_nextcloud_is_in_maintenance_mode_and_n8n_stopped_around_their_copies():
    saved = {i.service: i for i in scope.items(config_of())}
    nextcloud, n8n = saved["nextcloud"], saved["n8n"]
    assert nextcloud.backup.before.endswith("php occ maintenance:mode --on") and nextcloud.backup.user == "www-data"
    assert plan.in_container(TOOLS, nextcloud, nextcloud.backup.after).argv == (
        "docker", "exec", "-u", "www-data", "aini-nextcloud", "sh", "-c",
        "cd /var/www/html && php occ maintenance:mode --off")
    assert n8n.backup.stop and plan.stop_cmd(TOOLS, ["aini-n8n"]).argv == ("docker", "stop", "--time", "60", "aini-n8n")


def _snap(service, run, path, sid, day=27):
    return restic.Snapshot(sid * 8, sid, dt.datetime(2026, 11, day, tzinfo=dt.UTC), service, (path,),
                           tags=("aini", f"service={service}", f"run={run}"))


def _manifest(run, *services, sid="m0", day=27, safety=False):
    """What restic.manifest_cmd stores at the end of a run, as `snapshots --json` lists it."""
    return restic.Snapshot(sid * 8, sid, dt.datetime(2026, 11, day, 1, tzinfo=dt.UTC), "", ("/aini-run.json",),
                           tags=("aini", f"run={run}", "complete", *(f"ok={s}" for s in services),
                                 *(("safety",) if safety else ())))


def test_a_restore_streams_the_dump_into_the_running_database_and_writes_volumes_back():
    saved = {i.service: i for i in scope.items(config_of())}
    (dump,) = plan.restore_cmds(TOOLS, REPO, saved["mariadb"], [_snap("mariadb", "r1", "/nextcloud.sql", "ab")])
    first, second = _argvs(dump)
    assert first[-3:] == ("dump", "ab" * 8, "/nextcloud.sql")
    assert second == ("docker", "exec", "-i", "-u", "root", "aini-mariadb", "sh", "-c",
                      'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot')
    (volumes,) = plan.restore_cmds(TOOLS, REPO, saved["n8n"], [_snap("n8n", "r1", "/data/n8n", "cd")])
    assert volumes.argv[-7:] == ("restore", "cd" * 8, "--target", "/", "--include", "/data/n8n", "--delete")


def test_the_run_restored_is_the_latest_its_manifest_vouches_for_or_the_one_named():
    items = scope.items(config_of(), ["nextcloud"])
    snaps = [_snap("mariadb", "r1", "/nextcloud.sql", "a1"), _snap("nextcloud", "r1", "/data/nextcloud", "b1"),
             _manifest("r1", "mariadb", "nextcloud", sid="m1"),
             _snap("mariadb", "r2", "/nextcloud.sql", "a2"), _snap("nextcloud", "r2", "/data/nextcloud", "b2"),
             _manifest("r2", "mariadb", sid="m2"),  # r2: nextcloud's file copy failed
             _snap("mariadb", "r3", "/nextcloud.sql", "a3"), _snap("nextcloud", "r3", "/data/nextcloud", "b3")]
    # r3 has both kinds of snapshot but no manifest: it was killed, its dump may be cut short
    run, picked = plan.pick_run(items, snaps)
    assert run == "r1" and [s.short_id for s in picked["nextcloud"]] == ["b1"]
    assert [s.short_id for s in picked["mariadb"]] == ["a1"]
    assert plan.pick_run(items, snaps, "b1")[0] == "r1"  # a snapshot id stands for its run
    assert plan.pick_run(scope.items(config_of(), ["mariadb"]), snaps)[0] == "r2"
    with pytest.raises(InputError, match="run r2 has no complete backup of nextcloud"):
        plan.pick_run(items, snaps, "r2")
    with pytest.raises(InputError, match="run r3 did not finish .* cut short"):
        plan.pick_run(items, snaps, "a3")
    with pytest.raises(InputError, match="no snapshot or run 'zz'"):
        plan.pick_run(items, snaps, "zz")
    with pytest.raises(InputError, match="no run in the repository has a complete backup"):
        plan.pick_run(items, snaps[3:])


def test_a_restores_safety_backup_is_never_the_default_but_can_be_named():
    items = scope.items(config_of(), ["mariadb"])
    regular = _snap("mariadb", "r1", "/nextcloud.sql", "a1")
    safety = dataclasses.replace(_snap("mariadb", "r2", "/nextcloud.sql", "a2"),
                                 tags=("aini", "service=mariadb", "run=r2", restic.SAFETY_TAG))
    snaps = [regular, _manifest("r1", "mariadb", sid="m1"), safety, _manifest("r2", "mariadb", sid="m2", safety=True)]
    assert plan.pick_run(items, snaps)[0] == "r1"
    assert plan.pick_run(items, snaps, "r2")[0] == "r2"
    cmd = plan.backup_cmds(TOOLS, REPO, items[0], "r3", safety=True)[0]
    assert "safety" in _argvs(cmd)[1]


def test_setting_a_volume_aside_copies_it_once_then_empties_it():
    cmd = plan.set_aside_cmd(Tools(("docker",), ()), "restic/restic:0.18.0", "aini-n8n-postgres",
                             "aini-n8n-postgres.before-15.14-bookworm")
    assert cmd.argv[:-1] == ("docker", "run", "--rm", "--entrypoint", "sh", "-v", "aini-n8n-postgres:/volume",
                             "-v", "aini-n8n-postgres.before-15.14-bookworm:/kept", "restic/restic:0.18.0", "-c")
    script = cmd.argv[-1]
    # a complete copy is never overwritten (a rerun after a kill finds part of the new cluster
    # in the volume); the volume is emptied either way
    assert script.index("[ ! -e /kept/.aini-kept ]") < script.index("cp -a /volume/. /kept/") \
        < script.index("touch /kept/.aini-kept") < script.index("find /volume -mindepth 1 -delete")
