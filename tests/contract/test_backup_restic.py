"""Backups with the real restic 0.18 (Debian trixie's build, tests/harness/images/stack-restic)
and a real PostgreSQL: AINI's commands as the catalog and aini.backup.plan build them, run
by aini.ops.backup on this machine's Docker engine, into a repository on a path.

Shown here: a dump streamed in and restored brings the rows back; a dump that fails leaves
no snapshot behind (restic had stored what it was sent before the pipe failed); a wrong
password is refused with restic's own message.
"""
from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid

import pytest

from aini import catalog
from aini.backup import plan
from aini.catalog.backup import RESTIC
from aini.docker import restic
from aini.docker.cmd import Tools
from aini.errors import AiniError
from aini.ops import backup
from aini.sites.local import LocalSite
from tests.contract.helpers import docker
from tests.harness import stack_images
from tests.harness.world import build_or_fail

pytestmark = pytest.mark.sandbox
TOOLS = Tools(("docker",), ())
PASSWORD = "contract-restic-password"


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return build_or_fail("contract", "the restic and PostgreSQL images",
                         lambda: {"restic": stack_images.restic_image(), "postgres": stack_images.postgres_image()})


@pytest.fixture
def postgres(images):
    name = f"aini-contract-pg-{uuid.uuid4().hex[:6]}"
    docker("run", "-d", "--name", name, "-e", "POSTGRES_USER=n8n", "-e", "POSTGRES_DB=n8n",
           "-e", "POSTGRES_PASSWORD=contract", images["postgres"])
    try:
        # pg_isready waits by itself (-t seconds); a few tries cover the entrypoint's initdb restart.
        for _ in range(6):
            if docker("exec", name, "pg_isready", "-t", "20", "-U", "n8n", "-d", "n8n", check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail(f"contract world unavailable: {name} never accepted connections", pytrace=False)
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.fixture
def repo(images, tmp_path):
    site = LocalSite(tmp_path / "site")
    location = tmp_path / "repository"
    site.write("restic.env", restic.env_file({"RESTIC_REPOSITORY": str(location), "RESTIC_PASSWORD": PASSWORD}))
    repository = restic.Repository(images["restic"], str(site.root / "restic.env"), host="contract",
                                   path=str(location))
    assert site.run(restic.init_cmd(TOOLS, repository)).returncode == 0
    yield site, repository
    # restic runs as root in its container: the repository's files are root's, like pytest's.


def sql(container: str, query: str) -> str:
    return docker("exec", container, "psql", "-U", "n8n", "-d", "n8n", "-tAc", query).stdout.strip()


def item_for(container: str, **changes) -> plan.Item:
    spec = catalog.by_name("n8n-postgres")
    return plan.Item(spec.name, spec.group, container, (), dataclasses.replace(spec.backup, **changes))


def test_a_postgres_dump_streamed_into_restic_restores_the_rows(postgres, repo):
    site, repository = repo
    sql(postgres, "CREATE TABLE workflows (name text); INSERT INTO workflows VALUES ('kept'), ('also kept')")
    item = item_for(postgres)
    result = backup.backup_on(site, TOOLS, repository, [item], say=lambda _: None)
    assert result.ok, result.services
    (saved,) = result.services
    assert len(saved.snapshots) == 1 and saved.bytes > 0

    snaps = restic.parse_snapshots(site.run(restic.snapshots_cmd(TOOLS, repository)).stdout)
    assert [(s.service, s.run, s.dump, s.paths) for s in snaps] == [("n8n-postgres", result.run, True, ("/n8n.pgdump",))]

    sql(postgres, "DELETE FROM workflows WHERE name = 'kept'; CREATE TABLE later (i int)")
    assert sql(postgres, "SELECT count(*) FROM workflows") == "1"
    (cmd,) = plan.restore_cmds(TOOLS, repository, item, snaps)
    r = site.run(cmd)
    assert r.returncode == 0, r.stderr
    assert sql(postgres, "SELECT name FROM workflows ORDER BY name") == "also kept\nkept"


def test_a_failed_dump_leaves_no_snapshot_and_names_the_service(postgres, repo):
    site, repository = repo
    broken = item_for(postgres, dump="pg_dump -U n8n --format=custom no_such_database")
    result = backup.backup_on(site, TOOLS, repository, [broken], say=lambda _: None)
    (saved,) = result.services
    assert not result.ok and saved.snapshots == [] and saved.service == "n8n-postgres"
    assert saved.error
    # restic saw an empty stdin end and stored it; AINI forgot that snapshot again.
    assert restic.parse_snapshots(site.run(restic.snapshots_cmd(TOOLS, repository)).stdout) == []


def test_a_wrong_password_is_refused_with_restics_message(repo):
    site, repository = repo
    text = site.read("restic.env") or ""
    site.write("restic.env", text.replace(PASSWORD, "not-the-password"))
    r = site.run(restic.snapshots_cmd(TOOLS, repository))
    assert r.returncode == 12
    assert restic.error_line(r.returncode, r.stdout, r.stderr) == "wrong password or no key found"
    with pytest.raises(AiniError, match="wrong password or no key found"):
        backup.snapshot_list(site, TOOLS, repository)


def test_the_restic_image_is_the_pinned_version():
    image = build_or_fail("contract", "the restic image", stack_images.restic_image)
    out = subprocess.run(["docker", "run", "--rm", image, "version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith(f"restic {RESTIC.version} "), out.stdout
