"""What a backup consists of, from the catalog: volumes read-only into restic, dumps streamed
in from their containers, and why the rest is not saved."""

from __future__ import annotations

from aini.backup import plan
from aini.docker import restic
from aini.docker.cmd import Tools

from ..conftest import config_of

TOOLS = Tools(("docker",), ())
REPO = restic.Repository("restic/restic:0.18.0", "/opt/aini/backup/restic.env")


def test_the_default_stack_saves_these_volumes_and_dumps_in_deploy_order():
    assert [(i.service, i.volumes, i.dump_file) for i in plan.items(config_of())] == [
        ("traefik", ("aini-traefik-acme",), None),
        ("consul", ("aini-consul-data",), None),
        ("vault", ("aini-vault-data",), None),
        ("mongodb", (), "mongodb.archive.gz"),
        ("librechat", ("aini-librechat-images", "aini-librechat-uploads", "aini-librechat-data"), None),
        ("n8n", ("aini-n8n-data",), None),
        ("mariadb", (), "nextcloud.sql"),
        ("nextcloud", ("aini-nextcloud-html",), None),
    ]


def test_what_is_not_saved_says_why():
    skipped = plan.not_saved(config_of())
    assert skipped["redis"] == "a cache; not backed up"
    assert skipped["meilisearch"] == "an index rebuilt from MongoDB; not backed up"
    assert set(skipped) == {"meilisearch", "redis", "nextcloud-cron", "onlyoffice", "socket-proxy", "netdata",
                            "watchtower"}


def test_n8n_on_postgresql_adds_its_dump_and_disabled_services_drop_out():
    config = config_of(services={"n8n": {"database": "postgres"}, "librechat": {"enabled": False}})
    saved = {i.service: i for i in plan.items(config)}
    assert saved["n8n-postgres"].dump_file == "n8n.pgdump" and "librechat" not in saved and "mongodb" not in saved


def test_a_dump_is_piped_from_its_container_into_restic_with_no_secret_in_argv():
    mariadb = next(i for i in plan.items(config_of()) if i.service == "mariadb")
    (cmd,) = plan.commands(TOOLS, REPO, mariadb)
    assert cmd.argv[:2] == ("bash", "-c") and "pipefail" in cmd.argv[2]
    n = int(cmd.argv[4])
    first, second = cmd.argv[5:5 + n], cmd.argv[5 + n:]
    assert first[:4] == ("docker", "exec", "aini-mariadb", "sh") and "$MARIADB_ROOT_PASSWORD" in first[-1]
    assert second[-3:] == ("--stdin", "--stdin-filename", "nextcloud.sql") and "service=mariadb" in second


def test_volumes_are_one_snapshot_per_service():
    librechat = next(i for i in plan.items(config_of()) if i.service == "librechat")
    (cmd,) = plan.commands(TOOLS, REPO, librechat)
    assert [a for a in cmd.argv if a.endswith(":ro")] == [
        "aini-librechat-images:/data/librechat/aini-librechat-images:ro",
        "aini-librechat-uploads:/data/librechat/aini-librechat-uploads:ro",
        "aini-librechat-data:/data/librechat/aini-librechat-data:ro",
    ]
