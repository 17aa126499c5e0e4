"""`aini up` on a fresh sandbox server: configure over SSH, deploy the whole stack, get
certificates from a real ACME CA (Pebble, HTTP-01), survive a power cycle.

The tests run in file order against one server (module fixture); each leaves it healthy.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import ssl
import subprocess
import tempfile
import time

import pytest
import yaml

from aini import catalog
from aini.catalog import backup as backup_catalog
from aini.controlplane import breakglass, registry
from aini.controlplane.bootstrap import State
from aini.deploy import record, rollback
from aini.docker.cmd import Cmd
from aini.ops.secrets import vault_at
from aini.ops.targets import site_for
from aini.project import Project
from aini.ops.status import fetch_certificate
from aini.render.compose import pinned_ref
from tests.e2e.conftest import _merge_figures
from tests.e2e.server import DOMAIN, ServerStack, load_images, server_world
from tests.e2e.stack import PASSPHRASE
from tests.e2e.test_local_stack import ANSWERS as LOCAL_ANSWERS
from tests.e2e.test_local_stack import BROWSER, REAL, _mariadb, _mongo, _n8n_login
from tests.harness import s3 as s3_harness
from tests.harness import sandbox
from tests.harness.world import build_or_fail

pytestmark = pytest.mark.sandbox

# This world runs OpenBao (the Vault double as the OpenBao image) and no OnlyOffice.
ANSWERS = {**{k: v for k, v in LOCAL_ANSWERS.items() if k not in ("vault", "onlyoffice")},
           "openbao": LOCAL_ANSWERS["vault"]}
DOUBLE_OF = {"openbao": "vault"}  # the X-Aini-Double header names the double, not the flavour
WAIT = 300
REBOOT_BUDGET = 180  # seconds from power-on until every container is healthy again


def _world(what: str, build):
    return build_or_fail("server e2e", what, build)


@pytest.fixture(scope="module")
def server(e2e_docker, e2e_images, tmp_path_factory):
    figures: dict = {}
    world = server_world(tmp_path_factory.mktemp("server-e2e"), e2e_images, WAIT, figures)
    s = _world("aini up on a fresh server", world.__enter__)
    try:
        _merge_figures(figures)
        yield s
    finally:
        world.__exit__(None, None, None)


def routed(s: ServerStack) -> list:
    return [spec for spec in catalog.enabled(s.config) if spec.route]


def test_every_service_answers_with_a_certificate_from_the_acme_ca(server: ServerStack):
    specs = routed(server)
    assert {spec.name for spec in specs} == set(ANSWERS)
    for spec in specs:
        host = server.host(spec.name)
        path, marker = ANSWERS[spec.name]
        # The client trusts only Pebble's root: the chain must lead there and name the host.
        r = server.wait_https(host, path, auth=server.admin() if spec.route.admin else None, timeout=180)
        assert marker in r.text, f"{host}{path}: {r.status} {r.text[:200]}"
        assert r.peer_names == [host]
        if spec.name not in REAL:
            assert r.headers["X-Aini-Double"] == DOUBLE_OF.get(spec.name, spec.name)


def test_issuer_is_pebble_and_the_default_certificate_is_not_served(server: ServerStack):
    context = ssl.create_default_context(cafile=str(server.ca))
    import socket

    with socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server.host("librechat")) as tls:
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
    assert "Pebble Intermediate CA" in issuer["commonName"]


def test_http_redirects_and_hsts(server: ServerStack):
    for spec in routed(server):
        host = server.host(spec.name)
        r = server.http(host, "/some/path?x=1")
        assert r.status in (301, 308), (host, r.status)
        assert r.headers["Location"] == f"https://{host}/some/path?x=1"
        path, _ = ANSWERS[spec.name]
        r = server.https(host, path, auth=server.admin() if spec.route.admin else None)
        assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"


BAD = ("MEDIUM", "HIGH", "CRITICAL")
LYNIS_FLOOR = 70


def test_testssl_finds_nothing_medium_or_worse_with_the_acme_certificate(server: ServerStack, tmp_path, figures):
    """Debian's testssl.sh, read from its JSON file: protocols, every cipher per protocol,
    server defaults, headers and the known vulnerabilities, trusting Pebble's root only."""
    report = tmp_path / "testssl.json"
    t0 = time.monotonic()
    r = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(server.ca),
                        "--ip", "127.0.0.1", "--jsonfile", str(report), "-p", "-E", "-S", "-h", "-U",
                        f"{server.host('librechat')}:{server.https_port}"],
                       capture_output=True, text=True, timeout=1200)
    figures({"testssl_seconds": round(time.monotonic() - t0, 1)})
    assert report.exists(), r.stdout[-3000:] + r.stderr[-2000:]
    findings = json.loads(report.read_text())
    assert not [(f["id"], f["severity"], f["finding"]) for f in findings if f["severity"] in BAD]
    found = {f["id"]: f["finding"] for f in findings}
    offered = {p for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3") if found[p].startswith("offered")}
    assert offered == {"TLS1_2", "TLS1_3"}, {p: found[p] for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")}
    ciphers = [f["finding"] for f in findings if f["id"].startswith("cipher-")]
    assert ciphers and not [c for c in ciphers if "CBC" in c], ciphers
    assert found["cert_chain_of_trust"].startswith("passed"), found["cert_chain_of_trust"]
    seconds = int(re.search(r"=(\d+) s", found["HSTS_time"]).group(1))
    assert seconds >= 365 * 86400, found["HSTS_time"]


LYNIS = ("/usr/sbin/lynis", "/usr/share/lynis", "/etc/lynis")  # Debian's, installed by .ci/run


def lynis_audit(host: sandbox.SandboxHost) -> tuple[int, list[str]]:
    """Debian's lynis, copied in (the server needs no package for it), run on the server:
    its hardening index and its suggestions (test IDs and text), from its report file."""
    for path in LYNIS:
        subprocess.run(["docker", "cp", path, f"{host.name}:{path}"], check=True, capture_output=True)
    host.exec("lynis", "audit", "system", "--quick", "--no-colors", "--report-file", "/root/lynis-report.dat",
              "--logfile", "/root/lynis.log", timeout=900)
    report = host.exec("cat", "/root/lynis-report.dat").stdout.splitlines()
    index = int(next(line.split("=", 1)[1] for line in report if line.startswith("hardening_index=")))
    return index, [line.split("=", 1)[1] for line in report if line.startswith("suggestion[]=")]


def test_lynis_hardening_index_of_the_server(server: ServerStack, figures):
    assert server.server is not None
    index, suggestions = lynis_audit(server.server)
    figures({"lynis_hardening_index": index})
    assert index >= LYNIS_FLOOR, "\n".join([f"hardening index {index}", *suggestions])


def test_admin_uis_need_credentials_and_disabled_service_has_no_route(server: ServerStack):
    user, password = server.admin()
    for spec in (s for s in routed(server) if s.route.admin):
        host, (path, _) = server.host(spec.name), ANSWERS[spec.name]
        assert server.https(host, path).status == 401
        assert server.https(host, path, auth=(user, password)).status == 200
    # onlyoffice is disabled in this config: no ACME certificate names it, and Traefik's
    # sniStrict gives it no TLS at all (never its self-signed default certificate).
    office = f"office.{DOMAIN}"
    assert server.tls_refused(office, timeout=0)
    assert fetch_certificate(office, ("127.0.0.1", server.https_port)).error is not None


def test_n8n_runs_on_postgresql_and_vault_is_openbao(server: ServerStack):
    """The server world deploys the variants the local one does not: n8n on PostgreSQL and
    the OpenBao flavour, from the same rendered bundle."""
    health = server.health()
    assert health.get("aini-n8n-postgres") == "healthy" and health.get("aini-n8n") == "healthy", health
    assert health.get("aini-openbao") == "healthy" and "aini-vault" not in health, health
    assert server.docker_cmd("exec", "aini-n8n", "printenv", "DB_TYPE").strip() == "postgresdb"
    # n8n really talks to PostgreSQL: its migrations made tables there.
    tables = server.docker_cmd("exec", "aini-n8n-postgres", "psql", "-U", "n8n", "-d", "n8n", "-Atc",
                               "select count(*) from information_schema.tables where table_name = 'workflow_entity'")
    assert tables.strip() == "1"


def test_bundle_on_the_server_is_root_only(server: ServerStack):
    assert server.server is not None
    out = server.server.exec("stat", "-c", "%a %U %n", "/opt/aini", "/opt/aini/deployed",
                             "/opt/aini/deployed/n8n/n8n.env", "/opt/aini/deployed/traefik/users",
                             "/opt/aini/deployed/n8n/compose.yml").stdout.splitlines()
    assert out == ["700 root /opt/aini", "700 root /opt/aini/deployed", "600 root /opt/aini/deployed/n8n/n8n.env",
                   "600 root /opt/aini/deployed/traefik/users", "644 root /opt/aini/deployed/n8n/compose.yml"]
    values = [v for v in server.store.values() if len(v) >= 8]
    for text in server.log:
        for value in values:
            assert value not in text


def test_vault_was_initialised_and_its_root_token_is_not_on_the_server(server: ServerStack):
    assert server.up_result["deployed"] is not None
    material = breakglass.load(server.project_dir / ".aini" / "breakglass.enc", PASSPHRASE)
    assert material.vault_root_token and material.consul_bootstrap_token
    assert server.server is not None
    # (Consul's own data holds its tokens, as upstream's raft state does; Vault keeps only
    # salted hashes of tokens and never the unseal keys.)
    for token in (material.vault_root_token, *material.vault_unseal_keys):
        r = server.server.exec("grep", "-rlF", "--", token, "/opt", "/etc", "/root", "/home", "/var/lib/docker/volumes",
                               "/tmp", "/var/log", check=False, timeout=300)
        assert r.returncode == 1 and r.stdout == "", r.stdout  # 1: searched everything, found nothing
    env = server.server.exec("cat", "/opt/aini/deployed/n8n/n8n.env").stdout
    assert server.store.get("n8n_encryption_key") in env  # rendered from what Vault holds (synced at up)


def test_second_up_recreates_nothing(server: ServerStack, figures):
    before = server.containers()
    assert before and all(state == "running" for _, state in before.values())
    start = time.monotonic()
    r = server.up_cli()
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stderr[-3000:]
    deployed = json.loads(r.stdout)["deployed"]
    assert all(g["action"] == "skip" for g in deployed["groups"].values()), deployed
    assert json.loads(r.stdout)["changed"] == 0
    assert server.containers() == before
    figures({"server_noop_up_seconds": round(seconds, 1)})


def test_a_power_cycle_brings_every_service_back_without_a_command(server: ServerStack, figures):
    assert server.server is not None
    expected = set(server.containers())
    server.server.stop()
    server.server.start()
    start = time.monotonic()
    health: dict[str, str] = {}
    while time.monotonic() - start < REBOOT_BUDGET:
        try:
            health = server.health()
        except Exception:  # noqa: BLE001 - dockerd inside may still be starting
            health = {}
        if set(health) == expected and all(h in ("healthy", "running") for h in health.values()):
            break
        time.sleep(2)
    seconds = time.monotonic() - start
    figures({"server_reboot_healthy_seconds": round(seconds, 1)})
    assert set(health) == expected and all(h in ("healthy", "running") for h in health.values()), (
        f"not healthy {REBOOT_BUDGET}s after power-on: {health}")
    # (Not server.wait_ready(): it logs in as root, which the hardening has closed.)
    r = server.wait_https(server.host("librechat"), "/health", timeout=60)
    assert "OK" in r.text
    # Vault came back sealed: the services run on, status says so, `aini vault unseal` fixes it.
    connect = f"127.0.0.1:{server.https_port}"
    vault = catalog.vault_of(catalog.enabled(server.config))
    assert vault is not None and vault.name == "openbao"  # this world runs the OpenBao flavour
    deadline = time.monotonic() + 60  # Consul re-checks every 10 s: its verdicts lag the containers' health
    while True:
        r = server.aini("status", "--json", "--connect", connect, timeout=120)
        rows = {row["service"]: row for row in json.loads(r.stdout)["services"]} if r.stdout.strip() else {}
        if [s for s, row in rows.items() if not row["ok"]] == [vault.name] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "aini vault unseal" in rows[vault.name]["reason"]
    assert [s for s, row in rows.items() if not row["ok"]] == [vault.name]
    r = server.aini("vault", "unseal", timeout=120)
    assert r.returncode == 0 and "Vault unsealed." in r.stdout, r.stderr[-2000:]


def test_status_reads_the_server_over_ssh(server: ServerStack):
    deadline = time.monotonic() + 45  # Consul re-checks Vault (unsealed just before) every 10 s
    while True:
        r = server.aini("status", "--json", "--connect", f"127.0.0.1:{server.https_port}", timeout=120)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    report = json.loads(r.stdout)
    rows = {row["service"]: row for row in report["services"]}
    assert set(rows) == {s.name for s in catalog.enabled(server.config)}
    assert all(row["ok"] for row in rows.values()), [row for row in rows.values() if not row["ok"]]
    assert "Pebble" in rows["librechat"]["cert_issuer"] and rows["librechat"]["cert_days_left"] > 0


def test_the_server_site_streams_bytes_both_ways_without_holding_them(server: ServerStack):
    """Site.stream over SSH (what backups stand on): 4 MiB of every byte value to a root-only
    file through sudo, back out again, equal; a failure keeps its exit code and stderr."""
    data = os.urandom(4 << 20)
    path = "/opt/aini/stream-test"
    with site_for(Project(server.config, server.project_dir)) as site, \
            tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst:
        src.write(data)
        src.seek(0)
        r = site.stream(Cmd(("sh", "-c", f"umask 077 && cat > {path} && sha256sum {path} >&2")), stdin=src)
        assert r.returncode == 0 and r.stdout is None and hashlib.sha256(data).hexdigest() in r.stderr, r.stderr
        r = site.stream(Cmd(("cat", path)), stdout=dst)
        dst.seek(0)
        assert r.returncode == 0 and dst.read() == data
        r = site.stream(Cmd(("sh", "-c", "echo refused >&2; exit 3")))
        assert (r.returncode, r.stderr.strip()) == (3, "refused")
        assert site.run(Cmd(("rm", "-f", path))).returncode == 0


def test_a_rollback_copy_over_ssh_is_root_only_and_read_back_whole(server: ServerStack):
    """What `aini up` keeps of a group before changing it, on a server: the files as the deploy
    record proved them, written through sudo, their secrets 0600, read back equal."""
    assert server.server is not None
    with site_for(Project(server.config, server.project_dir)) as site:
        deployed = record.parse_deployed(site.read(record.DEPLOYED_MANIFEST))
        target = rollback.proven(deployed, "n8n", site.read, lambda path: path.endswith(".env"))
        assert target is not None and "n8n/n8n.env" in target.files and target.images == deployed["groups"]["n8n"]["images"]
        try:
            rollback.keep(site, target)
            assert rollback.load(site, "n8n") == target
            out = server.server.exec("stat", "-c", "%a %U %n", "/opt/aini/deployed/.rollback/n8n/n8n.env",
                                     "/opt/aini/deployed/.rollback/n8n.json").stdout.splitlines()
            assert out == ["600 root /opt/aini/deployed/.rollback/n8n/n8n.env",
                           "600 root /opt/aini/deployed/.rollback/n8n.json"]
            site.run(Cmd(("sh", "-c", "echo >> /opt/aini/deployed/.rollback/n8n/compose.yml")))
            assert rollback.load(site, "n8n") is None  # a copy that is not whole is never gone back to
        finally:
            site.remove(".rollback")


def test_backup_and_restore_over_ssh_bring_back_n8ns_postgresql(server: ServerStack, figures):
    """`aini backup` and `aini restore` from this machine, run on the server over SSH: the real
    PostgreSQL's dump streamed into the real restic there, the password in a root-only file."""
    assert server.server is not None
    data = json.loads(json.dumps(server.data))
    data["backup"] = {"repository": "/var/backups/aini-e2e"}
    server.write_config(data)

    def psql(query: str) -> str:
        return server.docker_cmd("exec", "aini-n8n-postgres", "psql", "-U", "n8n", "-d", "n8n", "-tAc",
                                 query).strip()

    try:
        psql("CREATE TABLE aini_e2e (v text); INSERT INTO aini_e2e VALUES ('before')")
        start = time.monotonic()
        r = server.aini("backup", "--only", "n8n", "--only", "vault", "--only", "consul", timeout=900)
        backup_seconds = time.monotonic() - start
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        saved = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        assert {"n8n-postgres", "n8n", "openbao", "consul"} <= saved  # the snapshot tokens went over SSH on stdin
        assert "recovery kit (aini.yml and .aini/) stored in the repository" in r.stderr  # the passphrase went on
        assert "the repository now also opens with the break-glass passphrase" in r.stderr  # stdin over SSH
        out = server.server.exec("stat", "-c", "%a %U", "/opt/aini/deployed/restic.env").stdout.strip()
        assert out == "600 root"
        password = server.store.get("restic_password")
        assert password and all(password not in text for text in server.log)
        # The drill on the server: the real PostgreSQL's dump loaded into a throwaway PostgreSQL there.
        r = server.aini("backup", "drill", "--only", "n8n", timeout=900)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "n8n-postgres" in r.stdout and " workflows" in r.stdout and "restored and verified" in r.stdout

        psql("UPDATE aini_e2e SET v = 'after'")
        start = time.monotonic()
        r = server.aini("restore", "n8n", "--confirm", server.config.project, timeout=900)
        restore_seconds = time.monotonic() - start
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert psql("SELECT v FROM aini_e2e") == "before"
        assert server.health()["aini-n8n"] == "healthy"

        # backup.schedule: `aini up` installs the timer; the run it starts needs no operator.
        r = server.up_cli()
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Backups run on the server at '30 3 * * *'" in r.stderr
        assert "recovery kit" not in r.stderr and "opens with the break-glass" not in r.stderr  # unchanged: not again
        systemctl = functools.partial(server.server.exec, "systemctl", check=False)
        assert systemctl("is-enabled", "aini-backup.timer").stdout.strip() == "enabled"
        assert " 03:30:00 " in systemctl("show", "aini-backup.timer", "-p", "NextElapseUSecRealtime",
                                         "--value").stdout
        psql("UPDATE aini_e2e SET v = 'scheduled'")
        start = time.monotonic()
        r = systemctl("start", "aini-backup.service", timeout=900)  # a oneshot: returns when the run ends
        scheduled_seconds = time.monotonic() - start
        journal = server.server.exec("journalctl", "-u", "aini-backup.service", "--no-pager", "-o", "cat",
                                     check=False).stdout
        assert r.returncode == 0, journal[-3000:]
        r = server.aini("backup", "list", "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        runs: dict[str, set[str]] = {}
        for snap in json.loads(r.stdout):
            if snap["complete"] and not snap["safety"]:
                runs.setdefault(snap["run"], set()).add(snap["service"])
        newest = max(runs)
        order = [line.split(":")[0] for line in journal.splitlines() if ": saved " in line]
        saved = set(order)
        assert runs[newest] == saved and {"n8n-postgres", "openbao", "consul", "traefik"} <= saved, (runs, journal)
        (check,) = _consul_get(server, "/v1/health/checks/aini-backup")  # the run reported to its TTL check
        assert (check["Status"], check["Output"]) == ("passing", f"run {newest}: saved {', '.join(order)}"), check
        psql("UPDATE aini_e2e SET v = 'changed'")
        r = server.aini("restore", "n8n", "--confirm", server.config.project, timeout=900)
        assert r.returncode == 0 and psql("SELECT v FROM aini_e2e") == "scheduled"
        r = server.aini("status", "--json", "--connect", f"127.0.0.1:{server.https_port}", timeout=120)
        rows = {row["service"]: row for row in json.loads(r.stdout)["services"]}
        assert all(rows[name]["backup"].startswith("backed up ") for name in saved), rows  # and none failed

        server.write_config()  # backups off: the next up takes the timer away
        r = server.up_cli()
        assert r.returncode == 0, r.stderr[-3000:]
        assert "the server's backup timer is removed" in r.stderr
        assert systemctl("is-enabled", "aini-backup.timer").returncode != 0
        assert "aini-backup" not in _consul_get(server, "/v1/agent/services")
        figures({"server_backup_n8n_seconds": round(backup_seconds, 1),
                 "server_restore_n8n_seconds": round(restore_seconds, 1),
                 "server_scheduled_backup_seconds": round(scheduled_seconds, 1)})
    finally:
        server.write_config()
        psql("DROP TABLE IF EXISTS aini_e2e")


def _consul_get(server: ServerStack, path: str):
    """Consul on the server, read as aini status reads it: with the deploy's token."""
    from aini.controlplane import Request

    with site_for(Project(server.config, server.project_dir)) as site:
        client = registry.consul_at(site, State.load(server.project_dir).consul_deploy_token)
        return client._call(Request("GET", path)).json()


def _served_certificate(s: ServerStack, host: str) -> str:
    """The sha256 of the leaf certificate Traefik serves for `host`."""
    import socket

    context = ssl.create_default_context(cafile=str(s.ca))
    with socket.create_connection(("127.0.0.1", s.https_port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def _workspace(s: ServerStack, workflow_id: str, cookie: str) -> dict:
    """Every datum the disaster test writes, read back from where its service keeps it."""
    r = s.https(s.host("n8n"), f"/rest/workflows/{workflow_id}", headers={**BROWSER, "Cookie": cookie})
    assert r.status == 200, r.text[:300]
    state = State.load(s.project_dir)
    assert state.approle is not None
    with site_for(Project(s.config, s.project_dir)) as site:
        vault = vault_at(site, s.config).login_approle(state.approle).kv_get("e2e/disaster")
        consul = registry.consul_at(site, state.consul_deploy_token).kv_get("aini/e2e-disaster")
    sums = s.docker_cmd("exec", "aini-nextcloud", "sha256sum", "/var/www/html/aini-disaster.bin").split()[0], \
        s.docker_cmd("exec", "aini-librechat", "sha256sum", "/app/uploads/aini-disaster.bin").split()[0]
    return {"files": sums,
            "mariadb": _mariadb(s, "SELECT v FROM aini_disaster"),
            "postgres": s.docker_cmd("exec", "aini-n8n-postgres", "psql", "-U", "n8n", "-d", "n8n", "-tAc",
                                     "SELECT v FROM aini_disaster").strip(),
            "mongodb": _mongo(s, {"find": "conversations", "filter": {"title": "disaster"}, "$db": "LibreChat"}
                              )["documents"],
            "workflow": json.loads(r.body)["data"], "vault": vault, "consul": consul,
            "certificate": _served_certificate(s, s.host("librechat"))}


def _make_bucket(s3, directory, image: str) -> None:
    """The bucket, as an operator makes it in Hetzner's Console (aini's probe refuses a missing
    one): here by a `restic init` of another path in it, which creates a missing bucket."""
    from aini.docker import restic
    from aini.docker.cmd import Tools
    from aini.sites.local import LocalSite

    site = LocalSite(directory)
    site.write("restic.env", restic.env_file({"RESTIC_REPOSITORY": s3.repository("aini-disaster/bucket"),
                                              "RESTIC_PASSWORD": "bucket-maker-only", "AWS_ACCESS_KEY_ID": s3.access_key,
                                              "AWS_SECRET_ACCESS_KEY": s3.secret_key}))
    r = site.run(restic.init_cmd(Tools((sandbox.docker_cli(),), ()),
                                 restic.Repository(image, str(site.root / "restic.env"))))
    assert r.returncode == 0, r.stderr


def test_a_new_server_comes_back_from_s3_with_the_repository_and_the_passphrase_alone(server: ServerStack, figures,
                                                                                      tmp_path_factory):
    """The disaster: server A, backed up to S3, is removed whole. A fresh server B and a fresh
    operator directory holding only the repository's location, its S3 keys and the break-glass
    passphrase: `aini recover`, `aini up`, `aini restore`, `aini up`, and every datum is back."""
    assert server.server is not None and server.pebble is not None
    workdir = tmp_path_factory.mktemp("server-disaster")
    b_hosts: list[sandbox.SandboxHost] = []
    with s3_harness.serve(workdir / "s3", docker=sandbox.docker_cli(), host=sandbox.world_network()) as s3:
        keys = {"AINI_SECRET_BACKUP_S3_ACCESS_KEY": s3.access_key, "AINI_SECRET_BACKUP_S3_SECRET_KEY": s3.secret_key}
        repository = s3.repository("aini-disaster/workspace")
        _make_bucket(s3, workdir / "bucket", pinned_ref(backup_catalog.RESTIC, server.config.images))
        data = json.loads(json.dumps(server.data))
        data["backup"] = {"repository": repository}
        server.write_config(data)
        try:
            # Server A: a datum in every service that keeps one.
            n8n = server.host("n8n")
            cookie = _n8n_login(server)  # the owner AINI made
            workflow = {"name": "aini-disaster", "nodes": [], "connections": {}, "settings": {}, "active": False}
            r = server.https(n8n, "/rest/workflows", method="POST", body=json.dumps(workflow).encode(),
                             headers={**BROWSER, "Cookie": cookie})
            assert r.status == 200, r.text[:300]
            workflow_id = json.loads(r.body)["data"]["id"]
            _mariadb(server, "CREATE TABLE aini_disaster (v TEXT); INSERT INTO aini_disaster VALUES ('mariadb-row')")
            server.docker_cmd("exec", "aini-n8n-postgres", "psql", "-U", "n8n", "-d", "n8n", "-c",
                              "CREATE TABLE aini_disaster (v text); INSERT INTO aini_disaster VALUES ('postgres-row')")
            _mongo(server, {"insert": "conversations", "documents": [{"title": "disaster"}], "$db": "LibreChat"})
            for container, path in (("aini-nextcloud", "/var/www/html"), ("aini-librechat", "/app/uploads")):
                server.docker_cmd("exec", container, "sh", "-c",
                                  f"head -c 262144 /dev/urandom > {path}/aini-disaster.bin")
            state = State.load(server.project_dir)
            with site_for(Project(server.config, server.project_dir)) as site:
                vault_at(site, server.config).login_approle(state.approle).kv_put("e2e/disaster", {"value": "kv"})
                registry.consul_at(site, state.consul_deploy_token).kv_put("aini/e2e-disaster", "consul-kv")
            before = _workspace(server, workflow_id, cookie)

            start = time.monotonic()
            r = server.aini("backup", env=keys, timeout=1200)
            figures({"disaster_backup_seconds": round(time.monotonic() - start, 1)})
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            assert "the repository now also opens with the break-glass passphrase" in r.stderr
            material = breakglass.load(server.project_dir / ".aini" / "breakglass.enc", PASSPHRASE)
            known = [server.store.get("restic_password"), server.store.get("mariadb_root_password"),
                     material.vault_root_token, "mariadb-row", "postgres-row", "consul-kv", PASSPHRASE]
            stored = s3.stored_bytes()
            assert stored and [k for k in known if any(k.encode() in blob for blob in stored)] == []

            # A is gone, with its disk. B is a fresh server where the names now point.
            server.server.remove()
            start = time.monotonic()
            b_hosts = sandbox.start_hosts(1, server.server.key, image=sandbox.docker_host_image(),
                                          prefix="aini-server-b")
            host = b_hosts[0]
            load_images(host, sorted(set(server.data["images"]["overrides"].values())))
            server.pebble.set_default_ipv4(host.ip)

            # A fresh operator directory: the repository, its keys and the passphrase.
            operator = workdir / "operator"
            operator.mkdir()
            restic_image = pinned_ref(backup_catalog.RESTIC, server.config.images)  # no Docker Hub here
            b = ServerStack(operator, {}, host.http_port, host.https_port, sandbox.docker_cli(), server=host,
                            ca_pem=server.ca, pebble=server.pebble)
            r = b.aini("recover", "--repository", repository, "--into", str(operator), "--restic-image",
                       restic_image, env=keys, timeout=600)
            assert r.returncode == 0, r.stdout + r.stderr
            b.data = yaml.safe_load((operator / "aini.yml").read_text())
            assert b.data["backup"] == {"repository": repository}
            b.data["target"]["port"] = host.ssh_port  # the operator points aini.yml at the new server
            b.write_config()
            r = b.up_cli("--wait-timeout", str(WAIT))
            assert r.returncode == 0, r.stderr[-4000:]
            # A new Vault and Consul: the earlier ones' keys are retired in the break-glass file, not lost.
            fresh = breakglass.load(operator / ".aini" / "breakglass.enc", PASSPHRASE)
            assert fresh.retired_vaults == ((material.vault_unseal_keys, material.vault_root_token),)
            assert fresh.retired_consuls == (material.consul_bootstrap_token,)
            r = b.aini("restore", "--confirm", b.config.project, timeout=1200)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            assert "restoring it forced, then unsealing it with that one's keys" in r.stderr
            renewed = next(line for line in r.stdout.splitlines() if "came back with their own keys" in line)
            assert "run aini up" in renewed, r.stdout
            back = breakglass.load(operator / ".aini" / "breakglass.enc", PASSPHRASE)
            assert (back.vault_unseal_keys, back.consul_bootstrap_token) == (
                material.vault_unseal_keys, material.consul_bootstrap_token)
            r = b.up_cli("--wait-timeout", str(WAIT))  # AINI's AppRole and tokens made anew in the restored ones
            assert r.returncode == 0, r.stderr[-4000:]
            figures({"disaster_recovery_seconds": round(time.monotonic() - start, 1)})
            r = b.aini("backup", "--only", "vault", "--only", "consul", timeout=600)  # the new snapshot tokens work
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

            b.wait_https(b.host("nextcloud"), "/status.php", ok=lambda r: '"maintenance":false' in r.text)
            assert _workspace(b, workflow_id, _n8n_login(b)) == before
            deadline = time.monotonic() + 90  # Consul's checks of the restarted services turn passing
            while (r := b.aini("status", "--json", "--connect", f"127.0.0.1:{b.https_port}", timeout=120)
                   ).returncode != 0 and time.monotonic() < deadline:
                time.sleep(3)
            rows = {row["service"]: row for row in json.loads(r.stdout)["services"]} if r.stdout else {}
            assert r.returncode == 0, ([(row["service"], row["reason"]) for row in rows.values() if not row["ok"]],
                                       r.stderr[-2000:])
        finally:
            for h in b_hosts:
                h.remove()
