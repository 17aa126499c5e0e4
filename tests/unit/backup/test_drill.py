"""The restore drill's commands, from the catalog: throwaway copies on an internal network of
their own, labelled so that everything a drill made is found and removed."""

from __future__ import annotations

import datetime as dt

from aini import catalog
from aini.backup import drill, plan, scope
from aini.docker import restic
from aini.docker.cmd import Tools

from ..conftest import config_of

TOOLS = Tools(("docker",), ())
REPO = restic.Repository("restic/restic:0.18.0", "/opt/aini/deployed/restic.env", host="p")
SCRATCH = drill.Scratch("p", "d1")
WHEN = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def _item(service: str, config=None) -> plan.Item:
    return next(i for i in scope.items(config or config_of()) if i.service == service)


def test_each_service_is_loaded_read_back_or_restored_by_what_it_keeps():
    kinds = {i.service: drill.kind(i) for i in scope.items(config_of())}
    assert kinds == {"traefik": "volumes", "consul": "read", "vault": "read", "mongodb": "load",
                     "librechat": "volumes", "n8n": "volumes", "mariadb": "load", "nextcloud": "volumes"}


def test_a_throwaway_database_runs_on_an_internal_network_with_throwaway_credentials():
    config = config_of()
    spec = catalog.by_name("mariadb")
    assert drill.network_cmd(TOOLS, SCRATCH).argv == (
        "docker", "network", "create", "--internal", "--label", "aini.drill=p", "aini-drill-d1")
    cmd = drill.database_cmd(TOOLS, SCRATCH, spec, "docker.io/library/mariadb:11.8.9", "/x/drill.env")
    assert cmd.argv[:12] == ("docker", "run", "-d", "--name", "aini-drill-d1-mariadb", "--label", "aini.drill=p",
                             "--network", "aini-drill-d1", "--env-file", "/x/drill.env",
                             "docker.io/library/mariadb:11.8.9")
    assert "-p" not in cmd.argv and "--publish" not in cmd.argv
    env = drill.throwaway_env(spec, catalog.context(config))
    assert env["MARIADB_DATABASE"] == "nextcloud" and len(env["MARIADB_ROOT_PASSWORD"]) == 32
    assert env["MARIADB_ROOT_PASSWORD"] != drill.throwaway_env(spec, catalog.context(config))["MARIADB_ROOT_PASSWORD"]


def test_the_dump_loads_into_the_copy_and_the_catalogs_check_runs_there():
    mariadb = _item("mariadb")
    snap = restic.Snapshot("abc123", "abc123", WHEN, "mariadb", ("/nextcloud.sql",))
    load, verify = drill.load_cmds(TOOLS, REPO, mariadb, SCRATCH, [snap])
    assert "aini-drill-d1-mariadb" in load.argv and "aini-mariadb" not in load.argv
    assert verify.argv[:6] == ("docker", "exec", "-u", "root", "aini-drill-d1-mariadb", "sh")
    assert "information_schema.tables" in verify.argv[-1]
    ready = drill.ready_cmd(TOOLS, mariadb, SCRATCH, catalog.by_name("mariadb").health)
    assert ready is not None and ready.argv == ("docker", "exec", "aini-drill-d1-mariadb", "healthcheck.sh",
                                                "--connect", "--innodb_initialized")
    postgres = _item("n8n-postgres", config_of(services={"n8n": {"database": "postgres"}}))
    ready = drill.ready_cmd(TOOLS, postgres, SCRATCH, catalog.by_name("n8n-postgres").health)
    assert ready is not None and ready.argv[-1] == "pg_isready -h 127.0.0.1 -U n8n -d n8n"  # TCP: not the init server


def test_volumes_are_restored_into_a_throwaway_volume_and_verified_and_a_snapshot_read_back():
    n8n = _item("n8n")
    snap = restic.Snapshot("def456", "def456", WHEN, "n8n", ("/data/n8n",))
    create, restore = drill.volume_cmds(TOOLS, REPO, n8n, SCRATCH, snap)
    assert create.argv == ("docker", "volume", "create", "--label", "aini.drill=p", "aini-drill-d1-n8n")
    assert restore.argv[-7:] == ("restic/restic:0.18.0", "restore", "def456", "--target", "/drill", "--verify",
                                 "--json")
    assert "aini-drill-d1-n8n:/drill" in restore.argv and "aini-n8n-data:/drill" not in restore.argv
    vault = restic.Snapshot("v1", "v1", WHEN, "vault", ("/vault.snap",))
    back = drill.read_back_cmd(TOOLS, REPO, vault, "vault.snap")
    assert back.argv[-2:] == ("wc", "-c") and "v1" in back.argv


def test_leftovers_are_found_by_label_and_removed_containers_first():
    assert [c.argv for c in drill.leftovers_cmds(TOOLS, "p").values()] == [
        ("docker", "ps", "-aq", "--filter", "label=aini.drill=p"),
        ("docker", "volume", "ls", "-q", "--filter", "label=aini.drill=p"),
        ("docker", "network", "ls", "-q", "--filter", "label=aini.drill=p")]
    cmds = drill.remove_cmds(TOOLS, {"networks": ["n1"], "containers": ["c1", "c2"], "volumes": []})
    assert [c.argv for c in cmds] == [("docker", "rm", "-f", "-v", "c1", "c2"), ("docker", "network", "rm", "n1")]


def test_an_image_run_with_its_own_command_gets_none_added():
    cmd = drill.database_cmd(TOOLS, SCRATCH, catalog.by_name("mongodb"), "docker.io/library/mongo:8.0.30", "/e")
    assert cmd.argv[-1] == "docker.io/library/mongo:8.0.30"
